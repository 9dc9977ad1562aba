"""Shared fixtures. Append new ones here; keep them session-scoped when they build something costly."""

from __future__ import annotations

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
