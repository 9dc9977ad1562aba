"""Model backends. Each implements `Model.stream` from `base`; heavy imports live in their own modules."""

from .base import Delta, GenerationSettings, Model, ModelError, Usage

__all__ = ["Delta", "GenerationSettings", "Model", "ModelError", "Usage"]
