"""`r1v4-nb show / validate / export / import-api / import-sharegpt`, run as real subprocesses."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from r1v4_nb.trajectory import read
from tests.support.trajectory import ANSWER, QUESTION, write_sample


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "r1v4_nb.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def one_line_error(proc: subprocess.CompletedProcess[str], phrase: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and phrase in proc.stderr, proc.stderr


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return write_sample(tmp_path / "runs" / "run.jsonl")


def test_show_prints_header_steps_and_answer(run: Path, tmp_path: Path) -> None:
    proc = cli("show", "runs/run.jsonl", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"question: {QUESTION}" in out and f"answer: {ANSWER}" in out
    for k in range(8):
        assert f"── step {k} · " in out
    assert "[tool_call] image_search" in out and "error: refused: a loopback address" in out
    assert "note (budget)" in out and "from code of step 1 box [0, 0, 8, 8]" in out
    summary = json.loads(cli("show", "--json", "runs/run.jsonl", cwd=tmp_path).stdout)
    assert summary["answer"] == ANSWER and len(summary["steps"]) == 8
    assert summary["steps"][3] == {"index": 3, "type": "tool", "tool": "image_search", "error": None,
                                   "images": 2, "elapsed_s": 1.25}


def test_show_makes_terminal_escape_sequences_harmless(tmp_path: Path) -> None:
    from r1v4_nb.records import ModelStep, Observation, Segment, ToolCall, ToolStep
    from r1v4_nb.trajectory import Header, TrajectoryWriter

    hostile = "page \x1b]52;c;ZXZpbA==\x07 text \x1b[2J end"  # sets the clipboard, clears the screen
    with TrajectoryWriter(tmp_path / "t.jsonl", Header(f"q {hostile}")) as w:
        w.write(ModelStep(0, f"<think>{hostile}</think>", [Segment("think", hostile)]))
        w.write(ToolStep(1, ToolCall("web_visit", {"urls": ["u"]}), Observation(text=hostile)))
    proc = cli("show", "t.jsonl", cwd=tmp_path)
    assert proc.returncode == 0 and "\x1b" not in proc.stdout and "\x07" not in proc.stdout
    assert proc.stdout.count("page \\x1b]52;c;ZXZpbA==\\x07 text \\x1b[2J end") == 3


def test_validate_reports_ok_and_then_a_changed_image(run: Path, tmp_path: Path) -> None:
    proc = cli("validate", "runs/run.jsonl", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"ok": True, "steps": 8, "images": 4, "finished": True, "warnings": []}
    victim = next((tmp_path / "runs" / "run.images").iterdir())
    victim.write_bytes(victim.read_bytes() + b"tampered")
    proc = cli("validate", "runs/run.jsonl", cwd=tmp_path)
    one_line_error(proc, "does not match its sha256")
    assert json.loads(proc.stdout)["ok"] is False


def test_validate_a_truncated_run_is_ok_with_a_warning(run: Path, tmp_path: Path) -> None:
    data = run.read_bytes()
    run.write_bytes(data[:-10])
    report = json.loads(cli("validate", str(run), cwd=tmp_path).stdout)
    assert report["ok"] is True and report["finished"] is False and "truncated" in report["warnings"][0]


@pytest.mark.parametrize("content, phrase", [
    (b"", "empty file"),
    (b"not json\n", ":1: not valid JSON"),
    (b'{"type": "header", "format": "r1v4-trajectory", "version": 9}\n', "newer than"),
    (b"\xff\xfe\x00\n", "not UTF-8"),
])
def test_validate_bad_files_one_line_exit_2(tmp_path: Path, content: bytes, phrase: str) -> None:
    (tmp_path / "bad.jsonl").write_bytes(content)
    proc = cli("validate", "bad.jsonl", cwd=tmp_path)
    one_line_error(proc, phrase)
    assert json.loads(proc.stdout) == {"ok": False, "error": proc.stderr.split("error: ", 1)[1].strip()}


def test_export_each_format(run: Path, tmp_path: Path) -> None:
    proc = cli("export", "runs/run.jsonl", "--to", "sharegpt", "-o", "data/train.json", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert json.loads(proc.stdout) == {"path": "data/train.json", "format": "sharegpt", "records": 1}
    (record,) = json.loads((tmp_path / "data" / "train.json").read_text(encoding="utf-8"))
    assert all((tmp_path / "data" / p).is_file() for p in record["images"])
    openai = cli("export", "runs/run.jsonl", "runs/run.jsonl", "--to", "openai", cwd=tmp_path)
    rows = [json.loads(line) for line in openai.stdout.splitlines()]
    assert len(rows) == 2 and rows[0]["messages"][1]["content"][0]["type"] == "image_url"
    hf = json.loads(cli("export", "runs/run.jsonl", "--to", "hf", cwd=tmp_path).stdout)
    assert len(hf["images"]) == 4 and Path(hf["images"][0]).is_file()


def test_export_errors(run: Path, tmp_path: Path) -> None:
    one_line_error(cli("export", "runs/run.jsonl", "--to", "csv", cwd=tmp_path), "invalid choice: 'csv'")
    one_line_error(cli("export", "missing.jsonl", "--to", "hf", cwd=tmp_path), "no such trajectory file")


def test_import_api_writes_a_valid_trajectory(tmp_path: Path) -> None:
    from tests.support.trajectory import make_png

    crop = base64.b64encode(make_png(tmp_path / "c.png", (0, 90, 0)).read_bytes()).decode()
    photo = make_png(tmp_path / "in.png", (90, 0, 0))
    content = ('<think>\nZoom in.\n</think>\n<tool_call>{"name": "code", "arguments": {"code": "zoom()"}}'
               f'</tool_call>\n<observation>{{"result": "data:image/png;base64,{crop}", "type": "code"}}'
               "</observation>\n<think>\nGreen.\n</think>\n<answer>green</answer>")
    (tmp_path / "reply.json").write_text(json.dumps({"choices": [{"message": {"content": content}}]}))
    proc = cli("import-api", "reply.json", "-o", "out/run.jsonl", "--question", "Colour?", "--image", "in.png",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["steps"] == 3 and report["images"] == 2 and report["answer"] == "green"
    assert json.loads(cli("validate", "out/run.jsonl", cwd=tmp_path).stdout)["ok"] is True
    assert photo.is_file()


@pytest.mark.parametrize("content, args, phrase", [
    ("{not json", (), "not JSON"),
    ('{"id": 1}', (), "no chat completion found"),
    ('{"choices": [{"message": {"content": "<answer>x</answer>"}}]}', ("--image", "nope.png"), "image not found"),
])
def test_import_api_bad_input_one_line_exit_2(tmp_path: Path, content: str, args: tuple[str, ...],
                                              phrase: str) -> None:
    (tmp_path / "reply.json").write_text(content)
    one_line_error(cli("import-api", "reply.json", "-o", "o.jsonl", *args, cwd=tmp_path), phrase)


def test_import_api_missing_file(tmp_path: Path) -> None:
    one_line_error(cli("import-api", "absent.json", "-o", "o.jsonl", cwd=tmp_path), "no such file")


def test_import_sharegpt_round_trip(run: Path, tmp_path: Path) -> None:
    cli("export", "runs/run.jsonl", "--to", "sharegpt", "-o", "data/train.json", cwd=tmp_path)
    proc = cli("import-sharegpt", "data/train.json", "-o", "back", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (path,) = json.loads(proc.stdout)["written"]
    again = json.loads(cli("show", "--json", path, cwd=tmp_path).stdout)
    original = json.loads(cli("show", "--json", "runs/run.jsonl", cwd=tmp_path).stdout)
    strip = ("tokens_out", "elapsed_s")
    assert [{k: v for k, v in s.items() if k not in strip} for s in again["steps"]] == [
        {k: v for k, v in s.items() if k not in strip} | ({"reason": "imported"} if s["type"] == "note" else {})
        for s in original["steps"]]
    (tmp_path / "bad.json").write_text('[{"conversations": [{"from": "gpt", "value": "hi"}]}]')
    one_line_error(cli("import-sharegpt", "bad.json", "-o", "back", cwd=tmp_path), "record 0")


@pytest.mark.parametrize("inside_json", [False, True], ids=["plain-text", "json-string"])
def test_import_api_decodes_base64_wrapped_across_lines_whole(tmp_path: Path, inside_json: bool) -> None:
    """R1V4's own parser allows whitespace inside inline base64: the whole image is decoded and the
    payload leaves no pieces in the observation's text (it used to keep a 57-byte truncated PNG)."""
    import textwrap

    from tests.support.trajectory import make_png

    png = make_png(tmp_path / "c.png", (0, 90, 0), (40, 30)).read_bytes()
    wrapped = "\n".join(textwrap.wrap(base64.b64encode(png).decode(), 76))
    if inside_json:
        body = json.dumps({"result": f"saved crop.png data:image/png;base64,{wrapped}\nDone.", "type": "code"})
    else:
        body = f"1. crop.png\ndata:image/png;base64,{wrapped}\n2. Done."
    content = ('<think>\nZoom in.\n</think>\n<tool_call>{"name": "code", "arguments": {"code": "zoom()"}}'
               f"</tool_call>\n<observation>{body}</observation>\n<think>\nGreen.\n</think>\n<answer>green</answer>")
    (tmp_path / "reply.json").write_text(json.dumps({"choices": [{"message": {"content": content}}]}))
    proc = cli("import-api", "reply.json", "-o", "out/run.jsonl", "--question", "Colour?", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    traj = read(tmp_path / "out" / "run.jsonl")
    (image,) = traj.steps[1].observation.images
    assert image.path.read_bytes() == png
    text = traj.steps[1].observation.text
    assert "base64" not in text and "Done." in text and wrapped.splitlines()[1] not in text
    assert json.loads(cli("validate", "out/run.jsonl", cwd=tmp_path).stdout)["ok"] is True


def test_validate_names_the_step_of_an_image_that_does_not_decode(run: Path, tmp_path: Path) -> None:
    """An image whose file matches its hash but is truncated is an error naming its step."""
    import hashlib

    traj = read(run)
    step = traj.tool_steps[0]
    good = step.observation.images[0]
    broken = good.path.read_bytes()[:45]  # inside the pixel data
    sha = hashlib.sha256(broken).hexdigest()
    (good.path.parent / f"{sha}{good.path.suffix}").write_bytes(broken)
    run.write_text(run.read_text(encoding="utf-8").replace(good.sha256, sha), encoding="utf-8")
    proc = cli("validate", "runs/run.jsonl", cwd=tmp_path)
    one_line_error(proc, f"step {step.index}: image")
    assert "does not decode" in proc.stderr and json.loads(proc.stdout)["ok"] is False
