"""Trajectory format v1: write/read, validation errors, crash safety, size, image store, fork."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from r1v4_nb.images import Image, Provenance
from r1v4_nb.records import NoteStep, Observation, ToolCall, ToolStep
from r1v4_nb.trajectory import (
    End,
    Header,
    Trajectory,
    TrajectoryError,
    TrajectoryWriter,
    fork,
    images_dir,
    input_image,
    read,
    write,
)
from tests.support import CHECKOUT
from tests.support.trajectory import ANSWER, QUESTION, make_png, model, sample_steps, write_sample


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return write_sample(tmp_path / "runs" / "run.jsonl")


def portable(steps: list) -> list[dict]:
    """Steps as JSON with each image path reduced to its file name (stores differ, names do not)."""
    out = []
    for s in steps:
        d = s.to_json()
        for im in d.get("observation", {}).get("images", []):
            im["path"] = Path(im["path"]).name
        out.append(d)
    return out


def lines(p: Path) -> list[bytes]:
    return p.read_bytes().splitlines(keepends=True)


def test_write_then_read_gives_the_same_steps(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    photo, steps = sample_steps(tmp_path)
    header = Header(QUESTION, [photo], mode="deepresearch")
    with TrajectoryWriter(path, header) as w:
        written = [w.write(s) for s in steps]
        w.finish(End("answered", ANSWER, 1.0, {"completion_tokens": 9}))
    traj = read(path)
    assert traj.warnings == []
    assert [s.to_json(tmp_path) for s in traj.steps] == [s.to_json(tmp_path) for s in written]
    assert [s.to_json() for s in traj.steps][0]["text"] == steps[0].text
    assert traj.header.question == QUESTION and traj.header.id == header.id
    assert traj.end is not None and traj.end.answer == ANSWER and traj.answer == ANSWER
    assert traj.steps[3].observation.data == {"results": [{"url": "https://example.org/a"}]}
    crop = traj.steps[1].observation.images[0]
    assert crop.provenance.to_json() == {"kind": "code", "step": 1, "source": photo.sha256, "box": [0, 0, 8, 8],
                                         "name": "crop.png"}
    # lines refer to images by relative path inside <stem>.images/, never inline
    text = path.read_text(encoding="utf-8")
    assert "base64" not in text and '"path": "run.images/' in text


def test_written_steps_point_into_the_store_and_the_originals_are_untouched(tmp_path: Path) -> None:
    photo, steps = sample_steps(tmp_path)
    original = steps[1].observation.images[0].path
    with TrajectoryWriter(tmp_path / "r.jsonl", Header("q", [photo])) as w:
        stored = [w.write(s) for s in steps]
    assert stored[1].observation.images[0].path.parent == images_dir(tmp_path / "r.jsonl")
    assert steps[1].observation.images[0].path == original


def test_writer_refuses_a_step_out_of_order(tmp_path: Path) -> None:
    with TrajectoryWriter(tmp_path / "r.jsonl", Header("q")) as w:
        with pytest.raises(ValueError, match="step index 1"):
            w.write(NoteStep(1, "skipped step 0"))


def test_truncated_last_line_is_a_warning_and_the_prefix_loads(run: Path) -> None:
    data = lines(run)
    cut = b"".join(data[:5]) + data[5][: len(data[5]) // 2]
    run.write_bytes(cut)
    traj = read(run)
    assert len(traj.steps) == 4 and traj.end is None
    assert len(traj.warnings) == 1
    assert f"{run}:6:" in traj.warnings[0] and "truncated" in traj.warnings[0]


def test_a_kill_inside_a_multibyte_character_is_a_truncation(run: Path) -> None:
    data = lines(run)
    tail = data[4]  # the image_search result: "Café Zürich"
    cut_at = tail.index("é".encode()) + 1  # half of the two bytes of é
    run.write_bytes(b"".join(data[:4]) + tail[:cut_at])
    traj = read(run)
    assert len(traj.steps) == 3 and "truncated" in traj.warnings[0]


def _break(run: Path, how: str) -> tuple[int, str]:
    """Damage `run` in one way; returns the line the error must name and a phrase it must contain."""
    data = lines(run)
    if how == "garbled middle line":
        data[2] = b'{"type": "tool", "index": 1, "call": \n'
        run.write_bytes(b"".join(data))
        return 3, "not valid JSON"
    if how == "missing image":
        next(images_dir(run).glob(f"{read(run).steps[3].observation.images[1].sha256}.*")).unlink()
        return 5, "missing"
    if how in ("unknown format", "newer version"):
        head = json.loads(data[0])
        head.update({"format": "other-trajectory"} if how == "unknown format" else {"version": 2})
        data[0] = (json.dumps(head) + "\n").encode()
        run.write_bytes(b"".join(data))
        return 1, "not a r1v4-trajectory file" if how == "unknown format" else "newer"
    if how == "wrong step index":
        rec = json.loads(data[3])
        rec["index"] = 7
        data[3] = (json.dumps(rec) + "\n").encode()
        run.write_bytes(b"".join(data))
        return 4, "step index 7, expected 2"
    if how == "empty file":
        run.write_bytes(b"")
        return 1, "empty"
    if how == "non-UTF-8":
        data[1] = data[1][:20] + b"\xff\xfe" + data[1][20:]
        run.write_bytes(b"".join(data))
        return 2, "not UTF-8"
    if how == "wrong field type":
        rec = json.loads(data[1])
        rec["segments"] = [{"kind": "think", "text": 5}]
        data[1] = (json.dumps(rec) + "\n").encode()
        run.write_bytes(b"".join(data))
        return 2, "malformed model step"
    if how == "line after the end":
        run.write_bytes(b"".join(data) + data[1])
        return len(data) + 1, "after the end"
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["garbled middle line", "missing image", "unknown format", "newer version",
                                 "wrong step index", "empty file", "non-UTF-8", "wrong field type",
                                 "line after the end"])
def test_malformed_files_raise_naming_file_line_and_problem(run: Path, how: str) -> None:
    line, phrase = _break(run, how)
    with pytest.raises(TrajectoryError) as err:
        read(run)
    message = str(err.value)
    assert message.startswith(f"{run}:{line}: "), message
    assert phrase in message
    assert "\n" not in message


def test_a_file_that_is_not_there(tmp_path: Path) -> None:
    with pytest.raises(TrajectoryError, match="no such trajectory file"):
        read(tmp_path / "nope.jsonl")


CHILD = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[2])
    from tests.support.trajectory import sample_steps
    from r1v4_nb.trajectory import Header, TrajectoryWriter
    from pathlib import Path
    path = Path(sys.argv[1])
    photo, steps = sample_steps(path.parent)
    w = TrajectoryWriter(path, Header("killed mid-run", [photo]))
    for s in steps[:4]:
        w.write(s)
        print("wrote", s.index, flush=True)
    w._fh.write('{"type": "model", "index": 4, "text": "half a li')  # a step in flight...
    w._fh.flush()
    print("in flight", flush=True)
    time.sleep(60)  # ...when the kill comes
""")


def test_a_writer_killed_mid_run_leaves_a_readable_prefix(tmp_path: Path) -> None:
    path = tmp_path / "killed.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(CHECKOUT)],
                            stdout=subprocess.PIPE, text=True)
    try:
        seen = [proc.stdout.readline().strip() for _ in range(5)]
        assert seen[-1] == "in flight", seen
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    traj = read(path)
    assert [s.index for s in traj.steps] == [0, 1, 2, 3]
    assert traj.end is None and "truncated" in traj.warnings[0]
    assert len(traj.steps[3].observation.images) == 2


def _run_of(path: Path, pairs: int, photo: Image, crop: Image) -> int:
    with TrajectoryWriter(path, Header("q", [photo])) as w:
        for k in range(pairs):
            m = model(2 * k, '<think>\nLook again.\n</think>\n<tool_call>{"name": "code", "arguments": '
                             '{"code": "print(1)"}}</tool_call>')
            w.write(m)
            w.write(ToolStep(2 * k + 1, m.calls[0], Observation("1", [crop])))
    return path.stat().st_size


def test_file_size_grows_linearly_with_the_steps(tmp_path: Path) -> None:
    """The context is rebuilt by the dialect, not stored per step: 8x the steps is about 8x the bytes."""
    photo = input_image(make_png(tmp_path / "p.png", (1, 2, 3)))
    crop = Image.from_file(make_png(tmp_path / "c.png", (3, 2, 1)), Provenance("code", 1))
    header_only = _run_of(tmp_path / "h.jsonl", 0, photo, crop)
    small = _run_of(tmp_path / "s.jsonl", 10, photo, crop) - header_only
    big = _run_of(tmp_path / "b.jsonl", 80, photo, crop) - header_only
    assert 7.5 < big / small < 8.5
    longest = max(len(line) for line in lines(tmp_path / "b.jsonl")[1:])
    first_pair = max(len(line) for line in lines(tmp_path / "b.jsonl")[1:3])
    assert longest < first_pair + 20  # a late step's line is no longer than an early one's


def test_images_are_stored_once_by_hash(tmp_path: Path) -> None:
    photo = input_image(make_png(tmp_path / "p.png", (9, 9, 9)))
    copies = [make_png(tmp_path / f"copy{k}.png", (5, 6, 7)) for k in range(3)]  # same pixels, 3 files
    path = tmp_path / "r.jsonl"
    with TrajectoryWriter(path, Header("q", [photo, input_image(tmp_path / "p.png")])) as w:
        for k, c in enumerate(copies):
            w.write(ToolStep(k, ToolCall("code", {"code": "x"}), Observation("x", [Image.from_file(c)])))
    files = sorted(p.name for p in images_dir(path).iterdir())
    assert len(files) == 2
    traj = read(path)
    paths = {im.path for s in traj.tool_steps for im in s.observation.images}
    assert len(paths) == 1 and next(iter(paths)).name in files
    assert len(traj.all_images()) == 2


def test_a_renamed_trajectory_finds_its_renamed_image_folder(run: Path) -> None:
    new = run.with_name("renamed.jsonl")
    run.rename(new)
    images_dir(run).rename(images_dir(new))
    traj = read(new)
    assert all(im.path.is_file() and im.path.parent == images_dir(new) for im in traj.all_images())


def test_write_is_atomic_and_leaves_the_trajectory_alone(run: Path, tmp_path: Path) -> None:
    traj = read(run)
    before = [im.path for im in traj.all_images()]
    out = write(tmp_path / "copy" / "c.jsonl", traj)
    assert [im.path for im in traj.all_images()] == before
    copy = read(out)
    assert portable(copy.steps) == portable(traj.steps)
    assert [p.name for p in out.parent.iterdir() if p.name.endswith(".tmp")] == []
    assert {p.name for p in images_dir(out).iterdir()} == {p.name for p in images_dir(run).iterdir()}


def test_fork_keeps_the_prefix_records_the_parent_and_leaves_the_source(run: Path) -> None:
    source = read(run)
    before = run.read_bytes()
    edited = NoteStep(0, "A person edited this step.", "edit")
    writer, written = fork(source, 2, run.with_name("branch.jsonl"), [edited])
    writer.finish(End("cancelled"))
    branch = read(writer.path)
    assert run.read_bytes() == before
    assert branch.header.parent == {"id": source.header.id, "path": str(run.resolve()), "step": 2}
    assert [s.type for s in branch.steps] == ["model", "tool", "note"]
    assert branch.steps[2].index == 2 and branch.steps[2].text == edited.text
    assert portable(branch.steps[:2]) == portable(source.steps[:2])
    assert [s.type for s in written] == ["model", "tool", "note"]
    with pytest.raises(TrajectoryError, match="cannot fork at step 99"):
        fork(source, 99, run.with_name("x.jsonl"))


def test_context_is_rebuilt_by_the_dialect(run: Path) -> None:
    traj = read(run)
    ctx = traj.context_at(2)
    assert ctx[0] == {"role": "system", "content": [{"type": "text", "text": "You are a test."}]}
    assert ctx[1]["content"][-1] == {"type": "text", "text": QUESTION}
    assert [m["role"] for m in ctx[2:]] == ["assistant", "tool"]  # each turn and each result its own message
    assert ctx[2]["content"].startswith(traj.steps[0].text)
    assert "crop.png" in ctx[3]["content"][0]["text"] and ctx[3]["content"][1]["type"] == "image"
    assert "Search for the sign" not in str(ctx)  # step 2 itself is not in its own context
    assert isinstance(traj, Trajectory)


def test_the_example_in_the_format_spec_reads(tmp_path: Path) -> None:
    doc = (CHECKOUT / "docs" / "trajectory-format.md").read_text(encoding="utf-8")
    block = doc.split("## Example", 1)[1].split("```json\n", 1)[1].split("```", 1)[0]
    decoder, records, pos = json.JSONDecoder(), [], 0
    while block[pos:].strip():
        rec, end = decoder.raw_decode(block, pos + len(block[pos:]) - len(block[pos:].lstrip()))
        records.append(rec)
        pos = end
    path = tmp_path / "run.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    traj = read(path, check_images=False)
    assert [s.type for s in traj.steps] == ["model", "tool", "model"] and traj.answer == "OPEN"
    assert traj.steps[0].calls[0].arguments == traj.steps[1].call.arguments
