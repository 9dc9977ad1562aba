"""`r1v4-nb parse` through a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.dialect import TRANSCRIPT


def parse(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "r1v4_nb.cli", "parse", *args], input=stdin,
                          capture_output=True, timeout=60)


def test_parse_file_prints_segments_and_calls(tmp_path):
    path = tmp_path / "run.txt"
    path.write_text(TRANSCRIPT + '<tool_call>{"name": "code", "arguments": [1]}</tool_call>', encoding="utf-8")
    done = parse(str(path), "--chunk", "3")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["dialect"] == "r1v4" and out["calls"] == 5 and out["errors"] == 1
    calls = [s["call"] for s in out["segments"] if "call" in s]
    assert [c["name"] for c in calls] == ["code", "image_search", "text_search", "web_visit", "code"]
    assert calls[2]["arguments"]["queries"][1] == "洛尔萨克 新桥 建筑师"
    assert "must be a JSON object, got list" in calls[-1]["error"]
    assert out["segments"][-2] == {"kind": "answer", "text": "Émile Garnier"}


def test_parse_stdin_with_another_dialect():
    done = parse("--dialect", "fenced", "-", stdin=b"<code>\n```python\nprint(1)\n```\n</code>")
    assert done.returncode == 0, done.stderr
    seg = json.loads(done.stdout)["segments"][0]
    assert seg["kind"] == "code" and seg["call"]["arguments"] == {"code": "print(1)"}


def test_user_mistakes_are_one_line_and_exit_2(tmp_path):
    (tmp_path / "a-file").write_text("x")
    for args in (["--dialect", "nope", "-"], [str(tmp_path / "missing.txt")], ["--chunk", "-1", "-"],
                 [str(tmp_path / "a-file" / "below-a-file.txt")]):
        done = parse(*args, stdin=b"")
        assert done.returncode == 2, args
        assert done.stderr.decode().count("\n") == 1 and "Traceback" not in done.stderr.decode()
