"""Helpers shared by several test files (fixtures that are plain functions, hand-made trajectories, a
loopback HTTP server, a headless JupyterLab). `CHECKOUT` is the repository's root, found here once so a
test names files of the checkout (docs/, notebooks/) without counting folders up from where it lives."""

from __future__ import annotations

from pathlib import Path

__all__ = ["CHECKOUT"]

CHECKOUT = Path(__file__).resolve().parents[2]
