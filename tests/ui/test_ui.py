"""Kernel-side tests of the Jupyter layer: magics, the run view's state and patches, the debugger and fork,
the HTML export, and sanitisation of hostile payloads. The browser side is tests/ui/test_browser.py."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from bs4 import BeautifulSoup

from r1v4_nb.agent import Agent
from r1v4_nb.dialects import get_dialect
from r1v4_nb.errors import UsageError
from r1v4_nb.images import Image, Provenance
from r1v4_nb.models.replay import ReplayModel, ScriptedModel
from r1v4_nb.records import ModelStep, Observation, ToolCall, ToolStep
from r1v4_nb.tools.replay import replay_tools
from r1v4_nb.trajectory import End, Header, TrajectoryWriter, input_image, read
from r1v4_nb.ui import api
from r1v4_nb.ui.cards import RunState
from r1v4_nb.ui.cardtypes import ModelCard, ToolCard
from r1v4_nb.ui.debugger import Debugger
from r1v4_nb.ui.render import CSS, DEAD_WIDGET_CSS, export_page, render_run
from r1v4_nb.ui.widget import RunView, _coalesce
from tests.support import CHECKOUT

XSS_SCRIPT = "<script>alert('x')</script>"
XSS_IMG = '<img src=x onerror="alert(1)">'
XSS_LINK = "javascript:alert(document.cookie)"
XSS_CSS = "<style>body{display:none}</style>"


def _png(path: Path, color: tuple[int, int, int], size: tuple[int, int]) -> Path:
    from PIL import Image as PILImage

    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.new("RGB", size, color).save(path, format="PNG")
    return path


def _call(name: str, arguments: dict[str, Any], think: str) -> str:
    return f"<think>{think}</think><tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


def _model(index: int, text: str) -> ModelStep:
    step = ModelStep(index, text, get_dialect("r1v4").parse(text), tokens_in=50, tokens_out=10, elapsed_s=0.1)
    for n, call in enumerate(step.calls):
        call.id = f"call_{index}_{n}"
    return step


def hostile_run(folder: Path) -> Path:
    """A deep-research run whose model text, code output, search results and page carry hostile HTML."""
    photo = input_image(_png(folder / "src" / "photo.png", (200, 40, 40), (400, 300)))
    crop = Image.from_file(_png(folder / "src" / "crop.png", (40, 200, 40), (80, 60)),
                           Provenance("code", 1, source=photo.sha256, box=[100, 50, 180, 110], name="crop.png"))
    thumb = Image.from_file(_png(folder / "src" / "thumb.png", (40, 40, 200), (30, 30)), Provenance("search", 5))
    steps: list[Any] = [_model(0, _call("code", {"code": "im = image_1.crop((100, 50, 180, 110))\n"
                                                  "im.save('crop.png')\nprint('crop.png')"},
                                        f"Crop the sign. {XSS_SCRIPT}"))]
    steps.append(ToolStep(1, steps[0].calls[0], Observation(f"crop.png\n{XSS_IMG}", [crop])))
    steps.append(_model(2, _call("text_search", {"queries": ["sign cafe"]}, "Search the web.")))
    steps.append(ToolStep(3, steps[2].calls[0], Observation("1. result", data={"queries": [{
        "query": "sign cafe", "results": [
            {"title": f"Cafe {XSS_IMG}", "url": XSS_LINK, "snippet": f"{XSS_SCRIPT}{XSS_CSS} the snippet"},
            {"title": "Good result", "url": "https://example.org/cafe", "snippet": "Cafe Zurich since 1897"}]}]})))
    steps.append(_model(4, _call("image_search", {"image_paths": ["crop.png"]}, "Reverse search the crop.")))
    steps.append(ToolStep(5, steps[4].calls[0], Observation("1 match", [thumb], data={"matches": [
        {"title": f"Match {XSS_SCRIPT}", "url": "https://example.org/match", "similarity": 0.87, "thumbnail": 0},
        {"title": "No thumb", "url": XSS_LINK, "similarity": 0.5, "thumbnail": None}]})))
    steps.append(_model(6, _call("web_visit", {"urls": ["https://example.org/cafe"]}, "Read the page.")))
    steps.append(ToolStep(7, steps[6].calls[0], Observation("page text", data={"pages": [
        {"url": "https://example.org/cafe", "title": f"{XSS_SCRIPT}Cafe page",
         "text": f'<iframe src="{XSS_LINK}"></iframe> Founded 1897.', "links": ["https://example.org/"]}]})))
    steps.append(_model(8, f"<think>It says 1897. {XSS_CSS}</think><answer><a href=\"{XSS_LINK}\">1897</a></answer>"))
    header = Header(question="When was the cafe founded?", images=[photo], model={"name": "recorded"},
                    mode="deepresearch", tools=[{"name": n, "settings": {}} for n in
                                                ("code", "text_search", "image_search", "web_visit")])
    path = folder / "runs" / "hostile.jsonl"
    w = TrajectoryWriter(path, header)
    for s in steps:
        w.write(s)
    w.finish(End("answered", f'<a href="{XSS_LINK}">1897</a>', 1.5, {"prompt_tokens": 250, "completion_tokens": 50}))
    return path


@pytest.fixture()
def recorded(tmp_path: Path) -> Path:
    return hostile_run(tmp_path)


@pytest.fixture()
def session(tmp_path: Path):
    """A fresh notebook session whose runs go under tmp_path."""
    old = api.SESSION
    api.SESSION = api.Session(runs_dir=tmp_path / "nbruns")
    yield api.SESSION
    api.SESSION = old


@pytest.fixture(scope="module")
def shell():
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "r1v4_nb")
    return ip


class RecordingView(RunView):
    """A RunView that keeps every message it sends to the front end."""

    def __init__(self, *a: Any, **kw: Any):
        self.sent: list[dict[str, Any]] = []
        super().__init__(*a, **kw)

    def send(self, content: Any, buffers: Any = None) -> None:
        self.sent.append(content)


# -- the extension and the magics ------------------------------------------------------------------------

def test_import_stays_light():
    code = ("import sys, r1v4_nb; heavy = [m for m in ('torch', 'IPython', 'ipywidgets', 'anywidget') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_load_unload_reload_extension(shell):
    assert "r1v4" in shell.magics_manager.magics["line"]
    assert "r1v4" in shell.magics_manager.magics["cell"]
    shell.run_line_magic("unload_ext", "r1v4_nb")
    assert "r1v4" not in shell.magics_manager.magics["line"]
    shell.run_line_magic("load_ext", "r1v4_nb")
    shell.run_line_magic("reload_ext", "r1v4_nb")
    assert "r1v4" in shell.magics_manager.magics["cell"]


@pytest.mark.parametrize("line,cell,message", [
    ("frobnicate", None, "unknown subcommand 'frobnicate'"),
    ("ask --mode chaos", "Q?", "invalid choice: 'chaos'"),
    ("ask --image no-such-file.png", "Q?", "'no-such-file.png' is not a file"),
    ("ask", "   ", "write the question in the cell body"),
    ("ask --max-steps 0", "Q?", "--max-steps must be at least 1"),
    ("replay missing.jsonl", None, "no such trajectory file"),
    ("open missing.jsonl", None, "no such trajectory file"),
    ("tools enable telepathy", None, "unknown tool 'telepathy'"),
    ("tools set code timeout_s", None, "not key=value"),
    ('ask --image "unclosed', "Q?", "check the quotes"),
])
def test_user_errors_are_one_line(shell, session, capsys, line, cell, message):
    if cell is None:
        shell.run_line_magic("r1v4", line)
    else:
        shell.run_cell_magic("r1v4", line, cell)
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_tools_and_status_magics(shell, session, capsys):
    shell.run_line_magic("r1v4", "tools disable code")
    shell.run_line_magic("r1v4", "tools enable web_visit")
    shell.run_line_magic("r1v4", "tools set web_visit budget=3000 --json")
    out = capsys.readouterr().out
    shown = json.loads(out[out.rindex('{\n  "available"'):])
    assert shown["by_mode"]["general"] == ["web_visit"]
    assert shown["settings"] == {"web_visit": {"budget": 3000}}
    shell.run_line_magic("r1v4", "status --json")
    status = json.loads(capsys.readouterr().out)
    assert status["tools"]["general"] == ["web_visit"] and status["memory"]["process_rss_mb"] > 0
    assert "path" in status["cache"]
    shell.run_line_magic("r1v4", "tools reset")
    assert api.SESSION.tools.names("general") == ["code"]


def test_status_and_tools_are_tables_not_json(shell, session, capsys):
    from IPython.display import display as real_display

    shown: list[dict[str, str]] = []
    import IPython.display

    IPython.display.display = lambda obj, raw=False, **kw: shown.append(obj)
    try:
        shell.run_line_magic("r1v4", "status")
        shell.run_line_magic("r1v4", "tools")
    finally:
        IPython.display.display = real_display
    assert capsys.readouterr().out == ""  # no raw JSON printed
    status, tools = shown
    table = BeautifulSoup(status["text/html"], "html.parser")
    rows = {th.text: th.find_next("td").text for th in table.select("th")}
    assert rows["tools (general)"] == "code" and "entries" in rows["tool cache"]
    assert "{" not in status["text/plain"] and "tools (deepresearch)" in status["text/plain"]
    rows = {th.text: th.find_next("td").text for th in BeautifulSoup(tools["text/html"], "html.parser").select("th")}
    assert rows["code"] == "on in general, deepresearch" and rows["source"].startswith("auto")


def test_help_lists_every_subcommand_with_a_description(shell, capsys):
    shell.run_line_magic("r1v4", "help")
    out = capsys.readouterr().out
    from r1v4_nb.ui.magics import SUBCOMMANDS

    for name in SUBCOMMANDS:
        line = next(x for x in out.splitlines() if x.strip().startswith(name + " "))
        assert len(line.split(None, 1)[1]) > 10, line
    for name in SUBCOMMANDS:
        if name == "help":
            continue
        shell.run_line_magic("r1v4", f"{name} --help")  # `%r1v4 train --help` too, though train is a cell magic
        captured = capsys.readouterr()
        assert captured.out.startswith(f"usage: %r1v4 {name}"), (name, captured)
        assert captured.err == ""
    shell.run_line_magic("r1v4", "train --help")
    assert "data = runs/*.jsonl" in capsys.readouterr().out


def test_failed_train_checks_the_data_before_the_model_and_leaves_no_stop(shell, session, tmp_path, capsys):
    shell.run_cell_magic("r1v4", "train", f"model = {tmp_path / 'no-such-model'}\ndata = {tmp_path}/none-*.jsonl\n")
    err = capsys.readouterr().err
    assert "no trajectories at" in err and "none-*.jsonl" in err and len(err.strip().splitlines()) == 1
    assert "_r1v4_train_job" not in shell.user_ns  # nothing started, no panel with a Stop button


def test_ask_magic_runs_a_replay_model(shell, session, recorded, capsys):
    from PIL import Image as PILImage

    session.model = ReplayModel.from_file(recorded)
    shell.user_ns["photo"] = PILImage.open(read(recorded).header.images[0].path)  # the recorded picture, in a variable
    shell.run_cell_magic("r1v4", "ask --image photo --wait --max-steps 8", "When was the cafe founded?")
    assert capsys.readouterr().err == ""
    run = session.last
    assert run.reason == "answered" and "1897" in run.answer
    traj = run.trajectory
    assert traj.header.mode == "deepresearch"  # taken from the replayed run
    assert len(traj.steps) == 9 and traj.header.images[0].provenance.name == "photo.png"  # the variable's name
    assert [c.type for c in run.view.state.cards] == ["question"] + ["model", "tool"] * 4 + ["model", "end"]
    html = BeautifulSoup(run.view.snapshot_html(), "html.parser")
    assert "Recording" in html.select_one(".r1v4-recording").text  # replayed, and the view says so
    assert html.select_one(".r1v4-final.r1v4-recorded") is not None
    shell.run_line_magic("r1v4", "open last")
    shell.run_line_magic("r1v4", "replay last")
    assert capsys.readouterr().err == ""


def test_a_recording_never_answers_another_question(shell, session, recorded, capsys, tmp_path):
    session.model = ReplayModel.from_file(recorded)
    shell.user_ns["label"] = __import__("PIL.Image", fromlist=["Image"]).new("RGB", (64, 48), (9, 9, 9))
    image = read(recorded).header.images[0].path
    for line, cell in (("ask --image label --wait", "When was the cafe founded?"),
                       (f"ask --image {image} --wait", "What is written on the label?"),
                       (f"ask --image {image} --wait --mode general", "When was the cafe founded?")):
        shell.run_cell_magic("r1v4", line, cell)
        err = capsys.readouterr().err
        assert "is a recording" in err and "%r1v4 load MODEL" in err and len(err.strip().splitlines()) == 1
    assert session.runs == []
    shell.run_cell_magic("r1v4", "ask --image label --wait --recording", "What is written on the label?")
    assert capsys.readouterr().err == ""
    run = session.last
    traj = run.trajectory
    assert traj.header.question == "When was the cafe founded?"  # the recording's question, not the user's
    assert traj.header.meta["recording"] == {"asked": "What is written on the label?", "asked_images": ["label.png"]}
    html = BeautifulSoup(run.view.snapshot_html(), "html.parser")
    banner = html.select_one(".r1v4-recording").text
    assert "What is written on the label?" in banner and "not an answer to yours" in banner
    assert html.select_one(".r1v4-final").get("class") == ["r1v4-final", "r1v4-recorded"]
    assert "Final answer" not in html.text and "Recorded answer" in html.text


def test_the_default_demo_replays_the_recording_of_the_mode_asked(session, capsys):
    from r1v4_nb.models.replay import DEMO_TRAJECTORIES

    deep = read(DEMO_TRAJECTORIES["deepresearch"]).header
    api.load("demo")
    run = api.ask(deep.question, [deep.images[0].path], mode="deepresearch", wait=True, display=False)
    assert run.reason == "answered" and run.answer == deep_answer(DEMO_TRAJECTORIES["deepresearch"])
    assert session.model.source == str(DEMO_TRAJECTORIES["deepresearch"])
    with pytest.raises(UsageError, match="is a recording"):
        api.ask(deep.question, [deep.images[0].path], mode="general", wait=True, display=False)
    with pytest.raises(UsageError, match="none in plan mode"):
        api.ask(deep.question, [deep.images[0].path], mode="plan", wait=True, display=False)


def deep_answer(path: Path) -> str | None:
    return read(path).answer


def test_load_magic_uses_the_loader(shell, session, recorded, capsys):
    shell.run_line_magic("r1v4", f"load replay:{recorded}")
    assert "loaded:" in capsys.readouterr().out
    assert session.model.describe()["backend"] == "replay"
    question, image = "When was the cafe founded?", read(recorded).header.images[0].path
    run = api.ask(question, [image], wait=True, display=False)
    assert run.reason == "answered"
    second = api.ask(question, [image], wait=True, display=False)
    assert second.reason == "answered"  # the replay model starts from its first turn again


def test_resolve_image_variants(session, tmp_path):
    import numpy as np
    from PIL import Image as PILImage

    path = _png(tmp_path / "a.png", (1, 2, 3), (5, 4))
    assert api.resolve_image(str(path)) == path
    ns = {"pic": PILImage.new("RGB", (7, 3)), "arr": np.zeros((4, 6, 3), dtype=np.uint8), "n": 3}
    assert api.resolve_image("pic", ns).width == 7
    assert api.resolve_image("arr", ns).width == 6
    with pytest.raises(UsageError, match="cannot use a int"):
        api.resolve_image("n", ns)


# -- the run view --------------------------------------------------------------------------------------

def test_widget_state_after_a_recorded_run_shows_every_step(recorded):
    traj = read(recorded)
    view = RecordingView.from_trajectory(traj)
    reset = view.sent[0]["reset"]
    cards = reset[1]
    assert len(cards) == len(traj.steps) + 2  # question, every step, end
    html = "".join(cards)
    for s in traj.steps:
        assert f"Step {s.index}</span>" in html
    soup = BeautifulSoup(html, "html.parser")
    assert soup.select_one(".r1v4-crop .r1v4-box") is not None  # the crop drawn on its source
    assert [a["href"] for a in soup.select(".r1v4-results a")] == ["https://example.org/cafe"]
    assert soup.select_one(".r1v4-match .r1v4-sim").text == "0.87"
    assert soup.select_one(".r1v4-page b").text == f"{XSS_SCRIPT}Cafe page"
    assert soup.select_one(".r1v4-final pre").text == f'<a href="{XSS_LINK}">1897</a>'
    assert "answered" in reset[0] and ">9</b> steps" in reset[0]


def test_full_resolution_on_demand(recorded):
    view = RecordingView.from_trajectory(read(recorded))
    sha = read(recorded).header.images[0].sha256
    view._handle_custom_msg({"op": "full", "sha": sha}, [])
    assert view.sent[-1]["full"] == sha and view.sent[-1]["url"].startswith("data:image/")
    view._handle_custom_msg({"op": "hello"}, [])
    assert "reset" in view.sent[-1]


def test_live_patches_rebuild_the_streamed_text(tmp_path):
    turns = ['<think>Look closer at the sign.</think><tool_call>{"name": "code", "arguments": {"code": '
             '"x = 1\\nprint(\\"a\\\\tb\\")"}}</tool_call>', "<think>Done.</think><answer>42</answer>"]
    agent = Agent(ScriptedModel(turns, chunk=3), tools=replay_tools(_fake_code_traj()), runs_dir=tmp_path)
    photo = _png(tmp_path / "p.png", (5, 5, 5), (20, 20))
    view = RecordingView(interval=0.0)
    for ev in agent.run("Q?", [photo]):
        view.apply(ev)
    view.finish()
    appended: dict[tuple[int, int], str] = {}
    for msg in view.sent[1:]:
        for op in msg["ops"]:
            if op[0] == "a":
                appended[(op[1], op[2])] = appended.get((op[1], op[2]), "") + op[3]
    assert appended[(1, 0)] == "Look closer at the sign."
    assert appended[(1, 1)] == 'x = 1\nprint("a\\tb")'  # the code of the call, decoded as it streamed
    assert view.state.status == "answered"


def _fake_code_traj() -> Any:
    class T:
        header = Header(question="", tools=[{"name": "code"}])
        tool_steps: list[Any] = []

    return T()


def test_patches_are_batched_and_superseded():
    pending: list[Any] = []
    for ch in "hello":
        pending = _coalesce(pending, ["a", 1, 0, ch])
    assert pending == [["a", 1, 0, "hello"]]
    pending = _coalesce(pending, ["h", "x"])
    pending = _coalesce(pending, ["h", "y"])
    pending = _coalesce(pending, ["c", 1, "<div>card</div>"])
    assert pending == [["h", "y"], ["c", 1, "<div>card</div>"]]


def test_stop_button_message_cancels_the_run(tmp_path):
    from r1v4_nb.ui.runner import LiveRun

    slow = ScriptedModel(["<think>" + "word " * 400 + "</think><answer>1</answer>"], chunk=2, delay_s=0.005)
    agent = Agent(slow, tools=[], runs_dir=tmp_path)
    run = LiveRun(agent, agent.run("Q?", [_png(tmp_path / "p.png", (1, 1, 1), (8, 8))]), RecordingView())
    run.start()
    while not run.view.state.streamed:
        run._done.wait(0.01)
    run.view._handle_custom_msg({"op": "stop"}, [])  # what the front end sends when Stop is clicked
    run.wait(30)
    assert run.reason == "cancelled" and read(run.path).end.reason == "cancelled"
    assert "Stop</button>" not in run.view.state.header_html(live=True)


def test_plan_is_a_numbered_list(tmp_path):
    plan = [{"description": "Find the person in the photo", "tool_name": "image_search",
             "parameters": {"image_path": "image_1"}},
            {"description": "Look up [Person from Step 1]'s birthplace", "tool_name": "text_search",
             "parameters": {"query": "[Person from Step 1] birthplace"}},
            {"description": "Check the answer", "tool_name": "none", "parameters": {}}]
    agent = Agent(ScriptedModel([json.dumps(plan)]), tools=[], mode="plan", runs_dir=tmp_path)
    state = RunState()
    for ev in agent.run("Where was this person born?", [_png(tmp_path / "p.png", (1, 1, 1), (8, 8))]):
        state.apply(ev)
    soup = BeautifulSoup(render_run(state), "html.parser")
    items = soup.select("ol.r1v4-plan > li")
    assert len(items) == 3 and items[1].select_one(".r1v4-ph").text == "[Person from Step 1]"
    assert [b.text for b in soup.select(".r1v4-tool-badge")] == ["image_search", "text_search", "none"]


# -- sanitisation --------------------------------------------------------------------------------------

ALLOWED_TAGS = {"div", "span", "pre", "b", "code", "details", "summary", "img", "a", "figure", "figcaption",
                "ul", "ol", "li", "button", "style", "html", "head", "body", "meta", "title",
                "r-k", "r-s", "r-c", "r-m", "r-b", "r-f"}


def assert_inert(html: str) -> None:
    soup = BeautifulSoup(html, "html.parser")
    for tag in soup.find_all(True):
        assert tag.name in ALLOWED_TAGS, tag.name
        for attr, value in tag.attrs.items():
            assert not attr.lower().startswith("on"), (tag.name, attr)
            if attr == "href":
                assert value.startswith(("https://", "http://")), value
            if attr == "src":
                assert value.startswith("data:image/"), value[:40]
        if tag.name == "style":
            assert tag.string.strip() in (CSS.strip(), DEAD_WIDGET_CSS)  # only our own styles
    assert "javascript:" not in " ".join(str(v) for t in soup.find_all(True) for v in t.attrs.values())


def test_hostile_payloads_are_inert_everywhere(recorded):
    traj = read(recorded)
    state = RunState.from_trajectory(traj)
    assert_inert(render_run(state, mark="k"))
    assert_inert(export_page(state))
    view = RecordingView.from_trajectory(traj)
    assert_inert("".join(view.sent[0]["reset"][1]) + view.sent[0]["reset"][0])
    dbg = Debugger(traj)
    for k in range(len(traj.steps)):
        dbg.select(k)
        assert_inert(dbg.context.value)
        assert_inert(dbg.produced.value)


def test_hostile_stream_patches_are_inert(tmp_path):
    turns = [f"<think>{XSS_SCRIPT}{XSS_IMG}</think><answer>{XSS_CSS}</answer>"]
    agent = Agent(ScriptedModel(turns, chunk=5), tools=[], runs_dir=tmp_path)
    view = RecordingView(interval=0.0)
    for ev in agent.run("Q?", [_png(tmp_path / "p.png", (1, 1, 1), (8, 8))]):
        view.apply(ev)
    for msg in view.sent[1:]:
        for op in msg["ops"]:
            if op[0] in "cfh":
                assert_inert(op[-1])
            elif op[0] == "s" and op[3] is not None:
                assert_inert(op[3])
    assert_inert(view.snapshot_html())


# -- debugger, fork, export ----------------------------------------------------------------------------

def test_debugger_navigation_and_context(recorded, session):
    traj = read(recorded)
    dbg = Debugger(traj)
    assert len(dbg.step_list.options) == len(traj.steps) and dbg.slider.max == len(traj.steps) - 1
    dbg.next_button.click()
    assert dbg.index == 1 and dbg.slider.value == 1 and dbg.step_list.value == 1
    dbg.jump.value = 6
    assert dbg.index == 6 and 'class="r1v4-card r1v4-model"' in dbg.produced.value
    ctx = BeautifulSoup(dbg.context.value, "html.parser")
    assert "When was the cafe founded?" in ctx.text
    assert ctx.select("img.r1v4-thumb")  # the input image, and the crop the model saw
    dbg.prev_button.click()
    assert dbg.index == 5 and dbg.editor.value == "1 match"
    dbg.slider.value = 99 if dbg.slider.max >= 99 else dbg.slider.max
    assert dbg.index == len(traj.steps) - 1


def test_fork_edits_an_observation_into_a_valid_branch(recorded, session):
    traj = read(recorded)
    dbg = Debugger(traj)
    run = dbg.fork(7, "The page says the cafe opened in 1901.", wait=True)
    branch = read(run.path)
    assert branch.header.parent["id"] == traj.header.id and branch.header.parent["step"] == 7
    assert [_no_paths(s.to_json()) for s in branch.steps[:7]] == [_no_paths(s.to_json()) for s in traj.steps[:7]]
    assert branch.steps[7].observation.text == "The page says the cafe opened in 1901."
    assert branch.end is not None and branch.answer is not None
    assert len(dbg.branch_box.children) == 2  # the title and the side-by-side comparison


def _no_paths(d: Any) -> Any:
    """A step's JSON without image file paths (a branch keeps its own copies of the images)."""
    if isinstance(d, dict):
        return {k: _no_paths(v) for k, v in d.items() if k != "path"}
    if isinstance(d, list):
        return [_no_paths(v) for v in d]
    return d


def test_fork_edits_the_model_text(recorded, session):
    dbg = Debugger(read(recorded))
    dbg.select(6)
    dbg.editor.value = "<think>Changed my mind.</think><answer>1901</answer>"
    dbg.fork_button.click()
    run = dbg.branches[-1].wait(30)
    branch = read(run.path)
    assert branch.steps[6].answer == "1901" and branch.header.parent["step"] == 6
    assert branch.end is not None
    assert "branch" in dbg.fork_status.value


def test_export_html_cli(recorded, tmp_path, capsys):
    from r1v4_nb.cli import main

    out = tmp_path / "run.html"
    assert main(["export-html", str(recorded), "-o", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["html"] == str(out)
    page = out.read_text()
    assert "<script" not in page and "Final answer" in page
    assert_inert(page)
    assert main(["export-html", str(tmp_path / "nope.jsonl")]) == 2
    assert "no such trajectory file" in capsys.readouterr().err


def test_debugger_context_names_images_and_marks_tags(recorded, session):
    dbg = Debugger(read(recorded))
    dbg.select(3)
    ctx = BeautifulSoup(dbg.context.value, "html.parser")
    captions = [f.text for f in ctx.select("figcaption")]
    assert captions == ["photo.png 400x300", "crop.png 80x60"]  # the given names, not the stored hash names
    assert "<tool_call>" in [t.text for t in ctx.select(".r1v4-tag")]
    assert "before step 3" in ctx.select_one(".r1v4-pane-title").text
    assert [label for label, _ in dbg.step_list.options][:2] == ["0: model calls code", "1: tool code"]
    assert "Fork at step 3" in dbg.fork_title.value and dbg.fork_button.description == "Fork at step 3 and continue"


def test_branch_view_shows_kept_steps_and_marks_the_edit(recorded, session):
    traj = read(recorded)
    dbg = Debugger(traj)
    run = dbg.fork(7, "The page says the cafe opened in 1901.", wait=True)
    live = BeautifulSoup(run.view.snapshot_html(), "html.parser")
    assert len(live.select(".r1v4-card.r1v4-tool")) == 4  # all the branch's tool steps, not only the new ones
    edited = live.select(".r1v4-edited")
    assert len(edited) == 1 and "opened in 1901" in edited[0].text
    saved = BeautifulSoup(render_run(RunState.from_trajectory(read(run.path))), "html.parser")
    assert [e.text for e in saved.select(".r1v4-edited")] == [e.text for e in edited]


def test_header_shows_a_rate_only_once_known():
    state = RunState()
    assert "tok/s" not in state.header_html(live=True)
    state.tokens_out, state.elapsed = 100, 2.0
    assert "<b>50.0</b> tok/s" in state.header_html()


def test_compare_collapses_identical_steps_and_marks_the_divergence(recorded, session):
    from r1v4_nb.ui.debugger import compare

    traj = read(recorded)
    run = Debugger(traj).fork(7, "The page says the cafe opened in 1901.", wait=True)
    cmp = compare(traj, run.path, ("Original", "Branch"))
    soup = BeautifulSoup(cmp._repr_html_(), "html.parser")
    same = soup.select(".r1v4-cmp-same")
    assert "Steps 0 to 6 are the same in both runs (7 steps" in same[0].select_one("summary").text
    assert len(same[0].select(".r1v4-card")) == 7  # each shown once, folded
    assert soup.select_one(".r1v4-cmp-diverge").text == "The runs diverge here, at step 7"
    diffs = soup.select(".r1v4-cmp-diff")
    assert len(diffs) == 2 and "opened in 1901" in diffs[1].text and "opened in 1901" not in diffs[0].text
    assert "Step 8 is the same in both runs" in same[1].text  # the replayed answer: the edit changed nothing
    heads = [h.text for h in soup.select(".r1v4-cmp-col")]
    assert heads[0].startswith("Original") and str(recorded) in heads[0] and str(run.path) in heads[1]
    same_run = BeautifulSoup(compare(traj, traj)._repr_html_(), "html.parser")
    assert same_run.select_one(".r1v4-cmp-diverge") is None and "Every step is the same" in same_run.text


def test_context_shows_code_calls_as_code(recorded, session):
    dbg = Debugger(read(recorded))
    dbg.select(1)
    ctx = BeautifulSoup(dbg.context.value, "html.parser")
    code = ctx.select_one(".r1v4-code")
    assert code is not None and "im = image_1.crop((100, 50, 180, 110))\nim.save('crop.png')" in code.text
    assert "\\n" not in code.text
    assert str(recorded) in dbg.header.value  # the file the debugger shows


def test_fork_of_a_replay_says_it_continues_with_the_recording(recorded, session):
    dbg = Debugger(read(recorded))
    assert "r1v4-dbg-replaywarn" in dbg.fork_title.value and "does not change" in dbg.fork_title.value
    assert [v for _, v in dbg.continue_with.options] == ["replay"]
    session.model = ScriptedModel(["<answer>live</answer>"], name="a live model")
    from r1v4_nb.ui.debugger import OPEN

    for d in OPEN:
        d.refresh_models()
    assert dbg.continue_with.value == "model" and "r1v4-dbg-replaywarn" not in dbg.fork_title.value
    run = dbg.fork(7, "edited", wait=True, replay=dbg.continue_with.value == "replay")
    assert run.answer == "live"


def test_a_wait_run_has_no_stop_button_and_the_clock_runs_in_the_view(session, recorded):
    view = RunView(stoppable=False)
    view.state.status = "running"
    head = view.state.header_html(live=True)
    assert "r1v4-stop" not in head and "interrupt the kernel" in head
    live = RunView()
    live.state.status = "running"
    soup = BeautifulSoup(live.state.header_html(live=True), "html.parser")
    assert soup.select_one(".r1v4-stop") is not None and float(soup.select_one(".r1v4-clock")["data-s"]) >= 0


def test_a_cancelled_turn_does_not_claim_an_empty_context():
    from r1v4_nb.ui.render import render_footer

    cancelled = ModelStep(0, "", tokens_out=12, tokens_in=0, elapsed_s=0.4, finish_reason="cancelled")
    foot = render_footer(ModelCard(0, False, step=cancelled))
    assert "in context" not in foot and "finish: cancelled" in foot
    assert "40 in context" in render_footer(ModelCard(0, False, step=ModelStep(0, "", tokens_out=1, tokens_in=40)))


def test_a_box_past_the_edge_is_drawn_clipped_to_its_source(tmp_path):
    from r1v4_nb.ui.render import _figure

    src = Image.from_file(_png(tmp_path / "s.png", (1, 1, 1), (100, 50)), Provenance("input", name="s.png"))
    crop = replace(src, width=10, height=10, provenance=Provenance("code", source=src.sha256, box=[80, 40, 130, 90]))
    style = BeautifulSoup(_figure(crop, {src.sha256: src}), "html.parser").select_one(".r1v4-box")["style"]
    parts = dict(p.split(":") for p in style.split(";"))
    assert parts == {"left": "80.00%", "top": "80.00%", "width": "20.00%", "height": "20.00%"}


def test_an_image_in_a_python_variable_is_captioned_with_its_name(session, shell):
    from PIL import Image as PILImage

    shell.user_ns["street"] = PILImage.new("RGB", (20, 10), (3, 4, 5))
    resolved = api.resolve_image(shell.user_ns["street"], None, api._image_names([shell.user_ns["street"]], None)[0])
    assert resolved.provenance.name == "street.png"


def test_thumbnails_are_kept_on_disk_by_hash_for_the_next_process(tmp_path, monkeypatch):
    from r1v4_nb.ui import render

    monkeypatch.setenv("R1V4_CACHE", str(tmp_path / "cache"))
    im = input_image(_png(tmp_path / "src" / "wide.png", (10, 120, 200), (900, 300)))
    monkeypatch.setattr(render, "_thumbs", {})
    url = render.thumbnail_url(im, 160)
    kept = list((tmp_path / "cache" / "thumbs").rglob(f"{im.sha256}-160.*"))
    assert url.startswith("data:image/jpeg;base64,") and len(kept) == 1
    monkeypatch.setattr(render, "_thumbs", {})  # a new process: nothing in memory
    decoded: list[str] = []

    def no_decoding(self):
        decoded.append(self.sha256)
        raise OSError("the image file is gone")

    monkeypatch.setattr(Image, "open", no_decoding)
    assert render.thumbnail_url(im, 160) == url and decoded == []
    assert render.thumbnail_url(im, 80) == "" and decoded == [im.sha256]  # another size is not on disk


def test_finished_cards_render_once_and_a_replay_renders_nothing_before_its_view(tmp_path, monkeypatch):
    from r1v4_nb.ui import render

    monkeypatch.setenv("R1V4_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(render, "_cards", type(render._cards)())
    path = hostile_run(tmp_path)
    calls: list[int] = []
    inner = render._render_card
    monkeypatch.setattr(render, "_render_card", lambda card, c, images: calls.append(c) or inner(card, c, images))
    state = RunState.from_trajectory(read(path))
    assert calls == []  # no listener yet: nothing rendered for nobody
    first = render_run(state)
    rendered = len(calls)
    assert rendered == len(state.cards)
    assert render_run(state) == first and len(calls) == rendered  # the finished cards' HTML is reused
    # a card whose image is not known yet is not served from the cache once the image is there
    im = input_image(_png(tmp_path / "src" / "four.png", (1, 2, 3), (4, 4)))
    call = ToolCall("code", {})
    made = replace(im, sha256="a" * 64, provenance=Provenance("code"))
    card = ToolCard(99, call, ToolStep(99, call, Observation("x", [made]), elapsed_s=0.1))
    empty = render.render_card(card, 7, {})
    with_image = render.render_card(card, 7, {"a" * 64: im})
    assert "data:image" not in empty and "data:image" in with_image


def test_the_tutorials_in_git_reopen_cleanly():
    """No widget output (its model died with the kernel that ran it) and no saved widget state; each run view
    is there as its static copy (02 and 03 show their runs as cards)."""
    folder = CHECKOUT / "notebooks"
    for path in sorted(folder.glob("0[1-5]-*.ipynb")):  # the tutorials this project saves with build_notebooks
        nb = json.loads(path.read_text())
        assert "widgets" not in nb["metadata"], path.name
        outputs = [o for c in nb["cells"] for o in c.get("outputs", [])]
        assert not [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})], path.name
    for name in ("02-thinking-with-images.ipynb", "03-deepsearch.ipynb"):
        nb = json.loads((folder / name).read_text())
        html = "".join("".join(o["data"]["text/html"]) for c in nb["cells"] for o in c.get("outputs", [])
                       if "text/html" in o.get("data", {}))
        assert "data-r1v4-snapshot" in html and html.count('class="r1v4-card r1v4-tool"') >= 3, name
