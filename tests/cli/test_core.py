"""`r1v4-nb run | replay | demo` through a real subprocess, as a user would call them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from r1v4_nb.models.replay import DEMO_TRAJECTORY
from r1v4_nb.trajectory import read


def cli(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "r1v4_nb.cli", *args], cwd=cwd, capture_output=True,
                          text=True, input=stdin, env=env, timeout=120)


def test_demo_prints_steps_and_writes_a_trajectory(tmp_path: Path) -> None:
    out = tmp_path / "demo.jsonl"
    r = cli("demo", "--replay", "--replay-tools", "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "hand-written demonstration" in r.stdout
    assert "step 1 · tool code" in r.stdout and "answer: 1897" in r.stdout
    assert "%r1v4 replay" in r.stdout
    traj = read(out)
    assert traj.answer == "1897" and [s.type for s in traj.steps] == ["model", "tool", "model"]


def test_replay_quiet_prints_a_json_summary(tmp_path: Path) -> None:
    r = cli("replay", str(DEMO_TRAJECTORY), "--quiet", "--out", str(tmp_path / "r.jsonl"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary == {"path": str(tmp_path / "r.jsonl"), "answer": "1897", "reason": "answered",
                       "steps": 3, "tool_calls": 1}
    assert read(tmp_path / "r.jsonl").header.meta["replay_of"] == read(DEMO_TRAJECTORY).header.id


def test_user_mistakes_give_one_line_and_exit_2(tmp_path: Path) -> None:
    for args in (["replay", str(tmp_path / "missing.jsonl")], ["nosuchcommand"], ["replay"],
                 ["run", "--model", f"replay:{DEMO_TRAJECTORY}", "--image", str(tmp_path / "none.png"), "q"]):
        r = cli(*args, cwd=tmp_path)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "error" in lines[0] and "Traceback" not in r.stderr, (args, r.stderr)


def test_garbled_trajectory_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    lines = DEMO_TRAJECTORY.read_text().splitlines()
    lines[2] = "{oops"
    bad.write_text("\n".join(lines) + "\n")
    (tmp_path / "bad.images").symlink_to(DEMO_TRAJECTORY.with_name("demo.images"))
    r = cli("replay", str(bad), cwd=tmp_path)
    assert r.returncode == 2 and f"{bad}:3: not valid JSON" in r.stderr


def test_the_live_printer_makes_terminal_escape_sequences_harmless() -> None:
    import io

    from r1v4_nb.cli.printer import Printer
    from r1v4_nb.events import Answered, TokenDelta, ToolFinished
    from r1v4_nb.records import Observation, ToolCall, ToolStep

    hostile = "x\x1b]52;c;ZXZpbA==\x07y\x1b[2J\rz"
    out = io.StringIO()
    printer = Printer(out, color=True)
    printer(TokenDelta(0, "think", hostile))
    printer(ToolFinished(ToolStep(1, ToolCall("web_visit", {"urls": [hostile]}), Observation(text=hostile), 0.1)))
    printer(Answered(2, hostile))
    text = out.getvalue()
    assert "\x07" not in text and "\r" not in text and "\x1b]" not in text and "\x1b[2J" not in text
    assert text.count("x\\x1b]52;c;ZXZpbA==\\x07y\\x1b[2J\\x0dz") == 3


def test_run_without_a_model_says_how_to_give_one(tmp_path: Path) -> None:
    r = cli("run", "What is this?", cwd=tmp_path)
    assert r.returncode == 2 and "no model given" in r.stderr and "r1v4-nb demo" in r.stderr


def test_bad_generation_settings_are_one_line_errors(tmp_path: Path) -> None:
    r = cli("run", "--model", f"replay:{DEMO_TRAJECTORY}", "--temperature", "nan", "q", cwd=tmp_path)
    assert r.returncode == 2 and "temperature must be a number" in r.stderr


def _one_line_exit_2(r: subprocess.CompletedProcess, args: tuple[str, ...]) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, (args, r.returncode, r.stderr[-2000:])
    assert len(lines) == 1 and "error" in lines[0] and "Traceback" not in r.stderr, (args, r.stderr[-2000:])
    return lines[0]


def test_bad_files_and_numbers_give_one_line_and_exit_2(tmp_path: Path) -> None:
    binary = tmp_path / "bin.dat"
    binary.write_bytes(bytes(range(256)) * 8)
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"")
    truncated = tmp_path / "trunc.json"
    truncated.write_text('{"http://a.example/": "p.ht')
    nul = tmp_path / "nul.json"
    nul.write_bytes(b'{"http://a.example/": "p\x00.html"}')
    (tmp_path / "imgs").mkdir()
    empty_cache = tmp_path / "notes.sqlite"
    empty_cache.write_bytes(b"")
    url = "http://a.example/"
    cases = [
        (("import-sharegpt", str(binary), "--out", str(tmp_path / "o")), "not UTF-8"),
        (("train", "--dry-run", str(binary)), "not UTF-8"),
        (("tool", "web_visit", "--mirror", str(empty), url), "not valid JSON"),
        (("tool", "web_visit", "--mirror", str(binary), url), "not UTF-8"),
        (("tool", "web_visit", "--mirror", str(truncated), url), "not valid JSON"),
        (("tool", "web_visit", "--mirror", str(nul), url), "NUL"),
        (("corpus", "images", "--pages", str(binary), "--out", str(tmp_path / "i.sqlite"), str(tmp_path / "imgs")),
         "not UTF-8"),
        (("tool", "web_visit", "--backend", "http", "http://[::1/"), "not a URL"),
        (("serve", "--adapter", "/nonexistent", "tiny", "--port", "0"), "no LoRA adapter"),
        (("tiny-model", "--layers", "0", str(tmp_path / "tm")), "--layers"),
        (("tool", "text_search", "-k", "100000000000", "q"), "-k"),
        (("tool", "web_visit", "--budget", "-100", url), "--budget"),
        (("tool", "code", "--memory-mb", "99999999999", "-"), "--memory-mb"),
        (("parse", "--chunk", "0", "-"), "--chunk"),
        (("tool", "text_search", "--cache", str(empty_cache), "q"), "empty file"),
    ]
    for args, phrase in cases:
        line = _one_line_exit_2(cli(*args, cwd=tmp_path, stdin=""), args)
        assert phrase in line, (args, line)
    assert empty_cache.read_bytes() == b"" and not (tmp_path / "tm").exists()


def test_control_characters_from_arguments_are_escaped(tmp_path: Path) -> None:
    hostile = "a\x1b[31mred\x07\u202eb\nc\rd\x9b"
    for args in (("replay", hostile), ("tool", "text_search", "-k", hostile, "q"), ("parse", "--dialect", hostile, "-"),
                 ("nosuchcommand" + hostile,)):
        r = cli(*args, cwd=tmp_path, stdin="")
        line = _one_line_exit_2(r, args)
        assert not any(ch in r.stderr for ch in "\x1b\x07\u202e\r\x9b"), (args, r.stderr)
        assert "\\x1b" in line and "\\u202e" in line, (args, line)
