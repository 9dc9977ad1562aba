"""paths.py: the cache root, and the offline tools' default data coming from one provider."""

from __future__ import annotations

import subprocess
import sys

import pytest

from r1v4_nb import paths
from r1v4_nb.tools.base import ToolContext
from r1v4_nb.tools.cache import ToolCache
from r1v4_nb.tools.image_search import ImageSearchTool
from r1v4_nb.tools.search import TextSearchTool
from r1v4_nb.tools.web import WebVisitTool


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("R1V4_CACHE", str(tmp_path / "c"))
    assert paths.cache_root() == tmp_path / "c"
    monkeypatch.delenv("R1V4_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert paths.cache_root() == tmp_path / ".cache" / "r1v4-nb"


def test_importing_any_module_makes_the_demo_world_the_provider():
    code = ("import r1v4_nb.tools.search, r1v4_nb.paths as p, r1v4_nb.world as w; "
            "print(p._provider is w.ensure_world)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


@pytest.fixture
def provided(small_world, monkeypatch):
    """The small test world as the provider, counting the calls."""
    calls: list[int] = []

    def provider():
        calls.append(1)
        return small_world

    monkeypatch.setattr(paths, "_provider", None)
    paths.provide_offline_data(provider)
    return small_world, calls


def test_default_tools_read_the_provided_data(provided, tmp_path):
    world, calls = provided
    cache = ToolCache(tmp_path / "cache.sqlite", mode="off")
    ctx = ToolContext("t", tmp_path / "work")
    entity = world.load_entities()[0]
    found = TextSearchTool(cache=cache).run({"queries": [entity["title"]]}, ctx)
    assert entity["url"] in found.text
    page = WebVisitTool(cache=cache).run({"urls": [entity["url"]]}, ctx)
    assert not page.error and entity["title"] in page.text
    assert ImageSearchTool(cache=cache).index().path == world.image_index
    assert len(calls) == 3  # each tool asked once; the world itself was not rebuilt



def test_write_once_keeps_the_first_file_and_leaves_no_temporary(tmp_path):
    import threading

    target = tmp_path / "ab" / "same-name.bin"
    threads = [threading.Thread(target=paths.write_once, args=(target, b"x" * 100_000)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert target.read_bytes() == b"x" * 100_000
    assert paths.write_once(target, b"other bytes") == target and target.read_bytes() == b"x" * 100_000
    assert [p.name for p in target.parent.iterdir()] == ["same-name.bin"]
