"""Shared fixtures. Append new ones here; keep them session-scoped when they build something costly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_moe_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen3-VL-MoE model folder, built once per test session."""
    from r1v4_nb.models.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-moe"), moe=True)


@pytest.fixture(scope="session")
def tiny_dense_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random dense Qwen3-VL model folder, built once per test session."""
    from r1v4_nb.models.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-dense"), moe=False)


@pytest.fixture(scope="session")
def small_world(tmp_path_factory: pytest.TempPathFactory):
    """A small generated demo world (10 places, people and objects each), built once per test session."""
    from r1v4_nb.world import build_world

    return build_world(tmp_path_factory.mktemp("world") / "world", seed=3, per_kind=10, quiet=True)


# The chat template the Qwen3-VL Thinking models ship, kept beside the repository (never copied into it).
REAL_TEMPLATE = Path(__file__).resolve().parents[2] / "shared" / "templates" / "qwen3-vl-thinking.chat_template.jinja"
TEMPLATES = ("ours", "qwen3-vl-thinking")


def real_template() -> str:
    """The real template's text; a clear skip where the file is absent, a failure under CI=true."""
    if not REAL_TEMPLATE.is_file():
        reason = (f"the Qwen3-VL Thinking chat template is not at {REAL_TEMPLATE} "
                  "(../shared/templates beside the repository)")
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return REAL_TEMPLATE.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def tiny_real_template_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random dense Qwen3-VL model folder that carries the real Qwen3-VL Thinking chat template,
    put in place as a user does: the release's chat_template.jinja in the model folder."""
    from r1v4_nb.models.tiny import make_tiny_model

    template = real_template()
    folder = make_tiny_model(tmp_path_factory.mktemp("tiny-real-template"), moe=False)
    (folder / "chat_template.jinja").write_text(template, encoding="utf-8")
    return folder


@pytest.fixture(scope="session", params=TEMPLATES)
def templated_model_path(request: pytest.FixtureRequest, tiny_dense_path: Path) -> Path:
    """A tiny model folder with our chat template, then with the real one: tests run with both."""
    if request.param == "ours":
        return tiny_dense_path
    return request.getfixturevalue("tiny_real_template_path")
