"""One entry point from a model spec to a `Model`, for the magics, the CLI and the server.

- None or "default": the shipped default agent (a tiny Qwen3-VL-MoE trained by `r1v4-nb build-demo-model`)
- "demo": the bundled hand-written demonstration, replayed (`replay.demo_model()`)
- "replay:PATH": replay the model turns of a recorded trajectory
- "tiny" / "tiny-moe" / "tiny-dense": a tiny random Qwen3-VL(-MoE), built once under ~/.cache/r1v4-nb
- an http(s) URL, or `endpoint=URL`: an OpenAI-compatible server (spec, if given, is the model name)
- "r1v4-api" / "skywork/r1v4-lite" / "skywork/r1v4-vl-planner-lite": the hosted Skywork-R1V4 API
- anything else: a local folder or hub id for the Hugging Face backend
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .base import Model, ModelError

TINY = {"tiny": True, "tiny-moe": True, "tiny-dense": False}


def cache_dir() -> Path:
    """The one cache folder of the project (shared with the world and the tool cache)."""
    from ..paths import cache_root

    return cache_root()


def tiny_model_path(moe: bool = True) -> Path:
    """The cached tiny model folder, built on first use."""
    from .tiny import make_tiny_model

    path = cache_dir() / ("tiny-moe" if moe else "tiny-dense")
    if not (path / "config.json").exists() or not (path / "r1v4_tiny.json").exists():
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        make_tiny_model(tmp, moe=moe)
        if not (path / "config.json").exists():
            if path.exists():
                import shutil

                shutil.rmtree(path)
            tmp.rename(path)
    return path


def load_model(
    spec: str | None = None,
    *,
    endpoint: str | None = None,
    api_key_env: str | None = None,
    quantization: str | None = None,
    adapter: str | None = None,
    **kw: Any,
) -> Model:
    """Resolve `spec` (see the module docstring) to a loaded model."""
    from .openai import R1V4_MODELS, OpenAIModel, r1v4_api

    if endpoint or (spec and spec.startswith(("http://", "https://"))):
        if quantization or adapter:
            raise ModelError("quantization and adapters are the server's business with --endpoint; drop them")
        url = endpoint or spec
        name = spec if endpoint else None
        return OpenAIModel(endpoint=url, model=name, api_key_env=api_key_env or "OPENAI_API_KEY", **kw)
    if spec in ("r1v4-api", *R1V4_MODELS):
        model = R1V4_MODELS[0] if spec == "r1v4-api" else spec
        return r1v4_api(model, **({"api_key_env": api_key_env} if api_key_env else {}), **kw)
    if spec == "demo":
        from .replay import demo_model

        return demo_model(**kw)
    if spec is not None and spec.startswith("replay:"):
        from .replay import ReplayModel

        return ReplayModel.from_file(spec[len("replay:"):], **kw)
    from .hf import load

    if spec is None or spec == "default":
        from .default import default_model_path

        model = load(default_model_path(), quantization=quantization, adapter=adapter, **kw)
        model.name = "default agent (tiny Qwen3-VL-MoE trained by r1v4-nb build-demo-model)"
        return model
    if spec in TINY:
        model = load(tiny_model_path(TINY[spec]), quantization=quantization, adapter=adapter, **kw)
        model.name = f"{spec} (random weights, for tests)"  # it writes noise: every view that names it says so
        return model
    return load(spec, quantization=quantization, adapter=adapter, **kw)
