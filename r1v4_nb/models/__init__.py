"""Model backends. Each implements `Model.stream` from `base`; heavy imports live in their own modules."""

from .base import Delta, GenerationSettings, Model, ModelError, Usage
from .loader import load_model

__all__ = ["Delta", "GenerationSettings", "Model", "ModelError", "Usage", "load_model"]
