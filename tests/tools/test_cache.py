import json
import subprocess
import sys
from pathlib import Path

import pytest

from r1v4_nb.errors import UsageError
from r1v4_nb.tools.base import ToolContext
from r1v4_nb.tools.cache import NotCached, ToolCache, cache_key, normalise_text


def test_modes_read_write_read_only_off(tmp_path):
    path = tmp_path / "c.sqlite"
    rw = ToolCache(path)
    calls = []
    value = rw.fetch("text_search", "offline:x", {"query": "a"}, lambda: calls.append(1) or {"results": [1]})
    again = rw.fetch("text_search", "offline:x", {"query": "a"}, lambda: calls.append(1) or {"results": [2]})
    assert value == again == {"results": [1]} and calls == [1] and (rw.hits, rw.misses) == (1, 1)
    ro = ToolCache(path, "read-only")
    assert ro.fetch("text_search", "offline:x", {"query": "a"}, lambda: {"results": [3]}) == {"results": [1]}
    with pytest.raises(NotCached, match="offline, not cached: text_search via offline:x"):
        ro.fetch("text_search", "offline:x", {"query": "b"}, lambda: {"results": [3]})
    ro.put("text_search", "offline:x", {"query": "b"}, {"results": [4]})  # read-only never writes
    assert len(rw) == 1
    off = ToolCache(tmp_path / "never.sqlite", "off")
    assert off.fetch("t", "b", {}, lambda: {"v": 1}) == {"v": 1} and off.get("t", "b", {}) is None
    assert not (tmp_path / "never.sqlite").exists()
    with pytest.raises(UsageError, match="unknown cache mode"):
        ToolCache(path, "sometimes")


def test_missing_file_in_read_only_mode_is_a_miss_not_a_crash(tmp_path):
    with pytest.raises(NotCached):
        ToolCache(tmp_path / "absent.sqlite", "ro").fetch("t", "b", {"q": 1}, lambda: {})


def test_keys_depend_on_tool_backend_and_arguments_only():
    assert cache_key("a", "b", {"x": 1, "y": 2}) == cache_key("a", "b", {"y": 2, "x": 1})
    assert len({cache_key("a", "b", {"x": 1}), cache_key("a", "c", {"x": 1}), cache_key("z", "b", {"x": 1})}) == 3
    assert normalise_text("  Brass   ASTROLABE ") == "brass astrolabe"


def test_blobs_are_stored_once_by_hash(tmp_path):
    c = ToolCache(tmp_path / "c.sqlite")
    a, b = c.put_blob(b"png-bytes"), c.put_blob(b"png-bytes")
    assert a == b and c.blob(a).read_bytes() == b"png-bytes" and len(list(c.blob_dir.iterdir())) == 1


WRITER = """
import sys
from r1v4_nb.tools.cache import ToolCache
c = ToolCache(sys.argv[1])
for i in range(150):
    c.put("text_search", "offline:x", {"query": f"{sys.argv[2]}-{i}"}, {"results": [sys.argv[2], i]})
    c.get("text_search", "offline:x", {"query": f"shared-{i % 10}"})
    c.put("text_search", "offline:x", {"query": f"shared-{i % 10}"}, {"results": ["shared", i % 10]})
print("ok")
"""


def test_concurrent_writers_in_separate_processes(tmp_path):
    path = tmp_path / "shared.sqlite"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"w{n}"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for n in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [o[1][-500:] for o in outs]
    c = ToolCache(path, "read-only")
    assert len(c) == 4 * 150 + 10
    assert c.get("text_search", "offline:x", {"query": "w3-149"}) == {"results": ["w3", 149]}


@pytest.mark.slow
def test_a_run_redone_with_the_read_only_cache_gives_the_same_observations(tmp_path, small_world):
    from r1v4_nb.images import Image
    from r1v4_nb.tools.image_search import ImageSearchTool
    from r1v4_nb.tools.search import TextSearchTool
    from r1v4_nb.tools.web import WebVisitTool

    world = small_world
    q = next(q for q in world.load_questions() if q["image"])
    calls = [("text_search", {"queries": ["founded lake town", "brass bell"]}),
             ("image_search", {"image_paths": ["photo.png"]}),
             ("web_visit", {"urls": [q["hops"][0]], "goal": "founded"})]

    def run(mode):
        cache = ToolCache(tmp_path / "tools.sqlite", mode)
        tools = {"text_search": TextSearchTool(corpus=world.corpus, cache=cache),
                 "image_search": ImageSearchTool(index=world.image_index, cache=cache),
                 "web_visit": WebVisitTool(mirror=world.mirror, cache=cache)}
        ctx = ToolContext("t", tmp_path / mode, question=q["question"])
        ctx.workdir.mkdir()
        ctx.register_image(Image.from_file(world.root / q["image"]), "photo.png")
        out = [json.dumps(tools[n].run(a, ctx).to_json(), sort_keys=True) for n, a in calls]
        return out, cache

    first, _ = run("read-write")
    replay, cache = run("read-only")
    assert replay == first and cache.misses == 0 and cache.hits >= 4
    obs = TextSearchTool(corpus=world.corpus, cache=cache).run({"queries": ["never asked"]}, ToolContext("t", tmp_path))
    assert "offline, not cached" in obs.text and obs.error


def test_image_paths_of_cached_thumbnails_survive_the_workdir(tmp_path):
    from r1v4_nb.tools.cache import open_cache

    c = open_cache(tmp_path / "c.sqlite")
    assert c.mode == "read-write" and Path(c.path).parent == tmp_path
    with pytest.raises(UsageError, match="conflicts"):
        open_cache(c, "read-only")


def test_a_file_that_is_not_a_database_is_a_usage_error(tmp_path):
    bad = tmp_path / "c.sqlite"
    bad.write_text("not a database, just text " * 100)
    with pytest.raises(UsageError, match="cannot use the tool cache .*c.sqlite"):
        ToolCache(bad).get("text_search", "offline", {"query": "x"})
    p = subprocess.run([sys.executable, "-m", "r1v4_nb.cli", "tool", "text_search", "x", "--cache", str(bad)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr


def test_an_existing_empty_file_is_not_turned_into_a_database(tmp_path):
    empty = tmp_path / "notes.txt"
    empty.write_bytes(b"")
    with pytest.raises(UsageError, match="exists and is an empty file"):
        ToolCache(empty).get("text_search", "offline", {"query": "x"})
    p = subprocess.run([sys.executable, "-m", "r1v4_nb.cli", "tool", "text_search", "x", "--cache", str(empty)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "empty file" in p.stderr
    assert empty.read_bytes() == b""  # left as it was
