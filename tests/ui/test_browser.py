"""The notebook experience in a real browser: JupyterLab (headless, loopback) driven by Playwright with
Debian's chromium. One JupyterLab start for the module; screenshots go to test-artifacts/."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from tests.support.lab import ARTIFACTS, CHROMIUM, chromium_page, running_lab

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TUTORIALS = ("02-thinking-with-images.ipynb", "03-deepsearch.ipynb", "05-small-sft.ipynb")


def _notebook(folder: Path, hostile: Path, demo: Path, photo: Path) -> Path:
    # long enough (over three minutes of streaming) that a cancel held up by a loaded machine still lands first
    slow_turn = "<think>" + "Looking at every part of the picture carefully. " * 600 + "</think><answer>late</answer>"
    cells = [
        "%load_ext r1v4_nb",
        "from r1v4_nb.ui import api\n"
        "from r1v4_nb.models.replay import ReplayModel, ScriptedModel, demo_model\n"
        f"api.SESSION.runs_dir = __import__('pathlib').Path({str(folder / 'runs')!r})",
        f"%r1v4 open {demo}",
        f"%r1v4 open {hostile}",
        f"api.SESSION.model = ReplayModel.from_file({str(demo)!r}, delay_s=0.01)",
        f"%%r1v4 ask --image {photo}\nWhat year is written on the small plaque next to the bakery door?",
        f"api.SESSION.model = ScriptedModel([{slow_turn!r}], chunk=3, delay_s=0.02)\napi.tools('disable', 'code')",
        f"%%r1v4 ask --image {photo}\nDescribe the picture.",
        # the debugger; with no model loaded a fork continues with the replay of the recorded turns
        f"api.SESSION.model = None\n%r1v4 replay {hostile}",
    ]
    return _write(folder / "browser.ipynb", cells)


def _write(path: Path, cells: list[str]) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def _first_hour(folder: Path, hostile: Path, photo: Path, tiny: Path) -> Path:
    """The faults a new user met in the first hour (issue 14), one cell each, in a second notebook."""
    from PIL import Image as PILImage

    from r1v4_nb.train.synthetic import make_dataset, make_task

    PILImage.new("RGB", (120, 60), (240, 230, 200)).save(folder / "label.png")
    with PILImage.open(photo) as im:
        width, height = im.size
    edge = ("<think>The plaque is at the corner.</think><tool_call>" + json.dumps({"name": "code", "arguments": {
        "code": f"c = image_1.crop(({width - 60}, {height - 50}, {width + 200}, {height + 150}))\n"
                "c.save('edge.png')\nprint('edge.png', c.size)"}}) + "</tool_call>")
    slow = "<think>" + "Looking at every part of the picture carefully. " * 60 + "</think><answer>late</answer>"
    make_dataset(folder / "data", n=2)
    gold = make_task(folder / "held", 0).header.meta["gold"]
    cells = [
        "%load_ext r1v4_nb",
        "from pathlib import Path\nfrom r1v4_nb.ui import api\n"
        "from r1v4_nb.models.replay import ReplayModel, ScriptedModel, demo_model\n"
        f"api.SESSION.runs_dir = Path({str(folder / 'runs2')!r})\n"
        f"api.SESSION.model = ScriptedModel([{slow!r}], chunk=3, delay_s=0.05)\napi.tools('disable', 'code')",
        # item 5: a --wait run: no Stop button (the kernel could not hear it), and a clock that moves
        f"%%r1v4 ask --image {photo} --wait\nDescribe the picture.",
        # item 1: the bundled demonstration is a recording: another question is refused, or replayed under a banner
        "api.SESSION.model = demo_model()\n_ = api.tools('reset')",
        f"%%r1v4 ask --image {folder / 'label.png'}\nWhat is written on the label?",
        f"%%r1v4 ask --image {folder / 'label.png'} --recording --wait\nWhat is written on the label?",
        # item 4: the debugger of the last run, and two runs compared step by step
        "%r1v4 replay last",
        "from r1v4_nb.trajectory import read\nfrom r1v4_nb.ui.debugger import Debugger, compare\n"
        f"branch = Debugger(read({str(hostile)!r})).fork(7, 'The page says 1901.', wait=True, replay=True)\n"
        f"compare({str(hostile)!r}, branch.path, ('Original', 'Branch'))",
        # item 5: help, status as a table, a train cell whose data matches nothing, a real (tiny) train run
        "%r1v4 help\n%r1v4 train --help",
        f"%%r1v4 train\nmodel = {tiny}\ndata = {folder}/nothing-*.jsonl",
        f"%%r1v4 train --wait\nmodel = {tiny}\ndata = {folder / 'data'}\noutput_dir = {folder / 'sft'}\n"
        "max_steps = 2\ntargets = attention",
        # item 6: live code tool, a crop past the picture's edge
        f"api.SESSION.model = ScriptedModel([{edge!r}, '<answer>edge</answer>'])",
        f"%%r1v4 ask --image {photo} --wait\nWhat is in the corner?",
        # item 2: the tiny model says what it is
        "%r1v4 load tiny-dense\n%r1v4 status",
        # the before / after view of a training run (two scripted models stand in for base and tuned)
        "from r1v4_nb.train.compare import before_after\nfrom r1v4_nb.train.synthetic import make_task\n"
        "from r1v4_nb.ui.train_panel import before_after_view\n"
        f"tasks = [make_task(Path({str(folder / 'held')!r}), 0)]\n"
        "pairs = before_after(ScriptedModel(['<answer>grey</answer>']), "
        f"ScriptedModel(['<answer>{gold}</answer>']), tasks, tools=lambda: [], runs_dir=Path({str(folder / 'ba')!r}))\n"
        "before_after_view(pairs)",
    ]
    return _write(folder / "first-hour.ipynb", cells)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: run 'make browser' (apt-get install chromium)")
    from r1v4_nb.models.loader import tiny_model_path
    from r1v4_nb.models.replay import DEMO_TRAJECTORY
    from r1v4_nb.trajectory import read
    from tests.ui.test_ui import hostile_run

    folder = tmp_path_factory.mktemp("lab")
    hostile = hostile_run(folder)
    photo = folder / "street.png"  # the user's name for the picture; the store names it by hash
    shutil.copy(read(DEMO_TRAJECTORY).header.images[0].path, photo)
    for name in TUTORIALS:  # the tutorials as committed, to open as a reader would
        shutil.copy(ARTIFACTS.parent / "notebooks" / name, folder / name)
    nb = _notebook(folder, hostile, DEMO_TRAJECTORY, photo)
    second = _first_hour(folder, hostile, photo, tiny_model_path(False))
    with running_lab(folder, folder) as lab:
        yield {"url": lab["url"], "notebook": nb, "second": second, "folder": folder, "hostile": hostile}


@pytest.fixture(scope="module")
def page(lab):
    with chromium_page(1300, 1000) as pg:
        _open_and_run_all(pg, f"{lab['url']}/lab/tree/{lab['notebook'].name}?reset")
        yield pg


def _open(pg, url: str) -> None:
    pg.goto(url)
    pg.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    # Run All before the kernel is connected runs nothing, and the toolbar's indicator reads "idle" before
    # the kernel even starts: wait for the status bar to name a kernel that is idle.
    pg.wait_for_function("() => { const t = document.querySelector('.jp-StatusBar-Widget')?.innerText || '';"
                         " return t.includes('| Idle') && !t.includes('No Kernel'); }", timeout=60_000)


def _open_and_run_all(pg, url: str) -> None:
    _open(pg, url)
    pg.locator(".jp-Notebook .jp-Cell").first.click()
    _menu(pg, "Run", "Run All Cells")


def _menu(pg, menu: str, item: str) -> None:
    pg.click(f".lm-MenuBar-itemLabel:text-is('{menu}')", timeout=10_000)
    pg.click(f".lm-Menu-itemLabel:text-is('{item}')", timeout=10_000)


def _shot(page, name: str) -> Path:
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=False)
    return path


def test_recorded_runs_render_cards_images_and_answer(page):
    views = page.locator(".r1v4-widget")
    views.nth(1).locator(".r1v4-end").wait_for(timeout=90_000)
    demo = views.nth(0)
    demo.locator(".r1v4-final").wait_for(timeout=30_000)
    assert demo.locator(".r1v4-final pre").inner_text() == "1897"
    assert demo.locator(".r1v4-crop .r1v4-box").count() == 1
    assert demo.locator("img.r1v4-thumb").count() >= 3  # input, the crop's source, the crop
    assert demo.locator(".r1v4-code r-k").count() >= 1  # highlighted code
    demo.scroll_into_view_if_needed()
    _shot(page, "browser-recorded-run.png")
    hostile = views.nth(1)
    assert hostile.locator(".r1v4-results li").count() == 2
    assert hostile.locator(".r1v4-match img").count() == 1
    assert "<script>" in hostile.locator(".r1v4-page b").inner_text()  # shown as text, not run
    hostile.locator(".r1v4-results").scroll_into_view_if_needed()
    _shot(page, "browser-hostile-run.png")
    assert page.dialogs == []


def test_live_run_streams_to_an_answer(page):
    live = page.locator(".r1v4-widget").nth(2)
    live.locator(".r1v4-final").wait_for(timeout=90_000)
    assert live.locator(".r1v4-final pre").inner_text() == "1897"
    assert live.locator(".r1v4-st-answered").count() == 1
    assert live.locator(".r1v4-card.r1v4-tool img.r1v4-thumb").count() >= 1
    assert live.locator(".r1v4-question figcaption").inner_text().startswith("street.png")  # not the hash
    assert "street.png" in live.locator(".r1v4-crop .r1v4-src img").get_attribute("title")
    live.scroll_into_view_if_needed()
    _shot(page, "browser-live-answered.png")


def test_stop_button_cancels_the_live_run(page):
    live = page.locator(".r1v4-widget").nth(3)
    live.locator(".r1v4-k-think .r1v4-body").wait_for(timeout=90_000)
    page.wait_for_timeout(1500)
    streamed = len(live.locator(".r1v4-k-think .r1v4-body").inner_text())
    heads = page.locator(".r1v4-head").all_inner_texts()
    assert heads and not any("- tok/s" in h for h in heads)  # a rate is shown once known, never a dash
    assert streamed > 0
    live.scroll_into_view_if_needed()
    _shot(page, "browser-live-streaming.png")
    live.locator(".r1v4-stop").click()
    live.locator(".r1v4-st-cancelled").wait_for(timeout=90_000)
    assert live.locator(".r1v4-stop").count() == 0
    _shot(page, "browser-live-stopped.png")
    page.wait_for_timeout(1000)
    saved = page.evaluate("() => document.querySelectorAll('[data-r1v4-snapshot]').length")
    assert saved >= 2  # the static snapshots of both asks arrived (hidden while the widgets are live)
    assert page.dialogs == []


def _step_shown(dbg) -> str:
    """The title of the card the debugger shows as the selected step's output."""
    return dbg.locator(".r1v4-dbg-produced .r1v4-card-title").first.inner_text()


def test_debugger_steps_through_a_recorded_run(page, lab):
    dbg = page.locator(".r1v4-dbg").first
    dbg.locator(".r1v4-dbg-produced .r1v4-card").wait_for(timeout=60_000)
    context, produced = dbg.locator(".r1v4-dbg-context"), dbg.locator(".r1v4-dbg-produced")
    assert _step_shown(dbg).startswith("Step 0")
    assert "When was the cafe founded?" in context.inner_text()  # the question, as the model saw it
    assert context.locator("img.r1v4-thumb").count() == 1  # the input image
    dbg.locator(".r1v4-dbg-next").click()
    page.wait_for_function("() => document.querySelector('.r1v4-dbg-produced .r1v4-card-title')"
                           ".innerText.startsWith('Step 1')")
    assert produced.locator(".r1v4-crop .r1v4-box").count() == 1  # the crop beside its source
    code = context.locator("pre.r1v4-code").first  # the model's code call, shown as code, not escaped JSON
    assert "im.save('crop.png')" in code.inner_text() and "\\n" not in code.inner_text()
    assert str(lab["hostile"]) in dbg.locator(".r1v4-dbg-static .r1v4-path").inner_text()
    assert dbg.locator(".r1v4-dbg-editor textarea").input_value().startswith("crop.png")
    dbg.scroll_into_view_if_needed()
    _shot(page, "browser-debugger-step.png")
    dbg.locator(".r1v4-dbg-next").click()
    dbg.locator(".r1v4-dbg-next").click()
    page.wait_for_function("() => document.querySelector('.r1v4-dbg-produced .r1v4-card-title')"
                           ".innerText.startsWith('Step 3')")
    assert produced.locator(".r1v4-results li").count() == 2  # the search result card
    assert context.locator("img.r1v4-thumb").count() == 2  # the input image and the crop the model saw
    dbg.locator(".r1v4-dbg-prev").click()
    page.wait_for_function("() => document.querySelector('.r1v4-dbg-produced .r1v4-card-title')"
                           ".innerText.startsWith('Step 2')")
    track = dbg.locator(".r1v4-dbg-slider .noUi-target")
    box = track.bounding_box()
    page.mouse.click(box["x"] + box["width"] - 2, box["y"] + box["height"] / 2)  # the end of the slider
    page.wait_for_function("() => document.querySelector('.r1v4-dbg-produced .r1v4-card-title')"
                           ".innerText.startsWith('Step 8')")
    assert produced.locator(".r1v4-answer").count() == 1
    assert dbg.locator(".r1v4-dbg-steps select").input_value().startswith("8:")
    jump = dbg.locator(".r1v4-dbg-jump input")
    jump.fill("5")
    jump.press("Enter")
    page.wait_for_function("() => document.querySelector('.r1v4-dbg-produced .r1v4-card-title')"
                           ".innerText.startsWith('Step 5')")
    assert produced.locator(".r1v4-match img").count() == 1
    context.locator(".r1v4-ctx").last.scroll_into_view_if_needed()
    _shot(page, "browser-debugger-context.png")
    assert page.dialogs == []


def test_debugger_forks_a_branch_beside_the_original(page, lab):
    from r1v4_nb.trajectory import read

    dbg = page.locator(".r1v4-dbg").first
    jump = dbg.locator(".r1v4-dbg-jump input")
    jump.fill("7")
    jump.press("Enter")
    page.wait_for_function("() => document.querySelector('.r1v4-dbg-produced .r1v4-card-title')"
                           ".innerText.startsWith('Step 7')")
    editor = dbg.locator(".r1v4-dbg-editor textarea")
    assert editor.input_value() == "page text"
    editor.fill("The page says the cafe opened in 1901.")
    assert "Fork at step 7" in dbg.locator(".r1v4-dbg-forkpanel").inner_text()
    dbg.locator(".r1v4-dbg-fork").scroll_into_view_if_needed()
    _shot(page, "browser-debugger-fork-editor.png")
    warning = dbg.locator(".r1v4-dbg-replaywarn")  # said before the edit: a replay goes on as it was recorded
    assert warning.is_visible() and "does not change what it does next" in warning.inner_text()
    dbg.locator(".r1v4-dbg-fork").click()
    branches = dbg.locator(".r1v4-dbg-branches")
    diverge = branches.locator(".r1v4-cmp-diverge")
    diverge.wait_for(timeout=60_000)  # the branch ended: the two runs compared step by step
    assert diverge.inner_text() == "The runs diverge here, at step 7"
    same = branches.locator(".r1v4-cmp-same summary")
    assert same.first.inner_text().startswith("Steps 0 to 6 are the same in both runs")
    assert branches.locator(".r1v4-cmp-same .r1v4-card").first.is_visible() is False  # folded
    diffs = branches.locator(".r1v4-cmp-diff")
    assert diffs.count() == 2
    assert "opened in 1901" in diffs.nth(1).inner_text() and "opened in 1901" not in diffs.nth(0).inner_text()
    left, right = diffs.nth(0).bounding_box(), diffs.nth(1).bounding_box()
    assert left["x"] + left["width"] <= right["x"] + 1  # side by side, not stacked
    forks = list((lab["folder"] / "runs").glob("*-fork7-*.jsonl"))
    assert len(forks) == 1
    parent = read(forks[0]).header.parent
    assert parent["step"] == 7 and parent["id"] == read(lab["hostile"]).header.id
    assert forks[0].name in dbg.locator(".r1v4-dbg-status").inner_text()
    assert str(forks[0]) in branches.locator(".r1v4-cmp-col").nth(1).inner_text()  # the branch's file
    assert diffs.nth(1).locator(".r1v4-edited").count() == 1 and diffs.nth(0).locator(".r1v4-edited").count() == 0
    diverge.scroll_into_view_if_needed()
    _shot(page, "browser-debugger-branch.png")
    assert page.dialogs == []


def _cell(page, n: int):
    return page.locator(".jp-Notebook .jp-Cell").nth(n)


def _save_shutdown_reopen(page, url: str, path: Path) -> None:
    """Save the notebook, shut its kernel down and open it again, as a user would the next day."""
    before = path.stat().st_mtime_ns
    page.locator(".jp-Notebook").first.click(position={"x": 5, "y": 5})
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 30
    while path.stat().st_mtime_ns == before and time.monotonic() < deadline:
        page.wait_for_timeout(300)
    assert path.stat().st_mtime_ns != before, "the notebook was not saved"
    _menu(page, "Kernel", "Shut Down Kernel")
    page.wait_for_timeout(2000)
    _open(page, url)
    # a fresh kernel has none of the old widget models: wait until every widget output has given up
    page.wait_for_function("() => [...document.querySelectorAll('.jp-OutputArea-output')]"
                           ".every(e => e.textContent !== 'Loading widget...')", timeout=60_000)
    page.wait_for_timeout(1500)


def _dead_widget_lines(page) -> tuple[int, list[int]]:
    """(widget outputs that lost their model, the cells in which a reader can see one).

    Each cell is scrolled into view first: JupyterLab draws only the cells near the viewport.
    """
    dead, seen = 0, []
    cells = page.locator(".jp-Notebook .jp-Cell")
    for n in range(cells.count()):
        cells.nth(n).scroll_into_view_if_needed()
        page.wait_for_timeout(150)
        found, visible = cells.nth(n).evaluate("""c => {
            const dead = [...c.querySelectorAll('.jp-OutputArea-output.jupyter-widgets')]
                .filter(e => e.textContent.startsWith('Error displaying widget'));
            return [dead.length, dead.filter(e => e.checkVisibility()).length];
        }""")
        dead += found
        if visible:
            seen.append(n)
    return dead, seen


def test_saved_notebook_shows_the_run_without_a_kernel(page, lab):
    url = f"{lab['url']}/lab/tree/{lab['notebook'].name}"
    _save_shutdown_reopen(page, url, lab["notebook"])
    nb = json.loads(lab["notebook"].read_text())
    html = [o["data"]["text/html"] for c in nb["cells"] for o in c.get("outputs", [])
            if "text/html" in o.get("data", {})]
    joined = "".join("".join(h) if isinstance(h, list) else h for h in html)
    assert "data-r1v4-snapshot" in joined and "Final answer" in joined and "cancelled" in joined
    shutil.copy(lab["notebook"], ARTIFACTS / "browser-saved.ipynb")
    dead, seen = _dead_widget_lines(page)
    assert dead >= 5 and seen == []  # the models are gone, and no "model not found" line is shown for them
    shown = page.locator("[data-r1v4-snapshot]:visible")
    assert shown.count() >= 5  # the four run views and the debugger, drawn from their static copies
    page.locator("[data-r1v4-snapshot] .r1v4-final pre:text-is('1897')").first.wait_for(timeout=30_000)
    page.locator("[data-r1v4-snapshot]").last.scroll_into_view_if_needed()
    _shot(page, "browser-reopened-debugger.png")


# -- the first hour (issue 14): a second notebook ------------------------------------------------------------

@pytest.fixture(scope="module")
def page2(page, lab):
    _open_and_run_all(page, f"{lab['url']}/lab/tree/{lab['second'].name}?reset")
    return page


def test_a_wait_run_shows_no_stop_and_its_clock_moves(page2):
    view = _cell(page2, 2).locator(".r1v4-widget")
    clock = view.locator(".r1v4-clock b")
    clock.wait_for(timeout=120_000)
    assert view.locator(".r1v4-stop").count() == 0 and "interrupt the kernel" in view.locator(".r1v4-head").inner_text()
    first = clock.inner_text()
    cell = _cell(page2, 2).element_handle()
    page2.wait_for_function("([c, t]) => { const b = c.querySelector('.r1v4-clock b'); return b && b.textContent !== t; }",
                            arg=[cell, first], timeout=60_000)
    view.scroll_into_view_if_needed()
    _shot(page2, "browser-wait-run.png")
    view.locator(".r1v4-end").wait_for(timeout=180_000)
    assert view.locator(".r1v4-stop").count() == 0


def test_a_recording_does_not_answer_another_question(page2):
    refused = _cell(page2, 4).locator(".jp-OutputArea")
    refused.locator("text=is a recording").wait_for(timeout=120_000)
    refused.scroll_into_view_if_needed()
    line = refused.inner_text().strip()
    assert len(line.splitlines()) == 1 and "%r1v4 load MODEL" in line and "--recording" in line
    assert refused.locator(".r1v4-widget").count() == 0
    view = _cell(page2, 5).locator(".r1v4-widget")
    view.locator(".r1v4-end").wait_for(timeout=120_000)
    view.scroll_into_view_if_needed()
    banner = view.locator(".r1v4-recording")
    assert "What is written on the label?" in banner.inner_text() and "not an answer to yours" in banner.inner_text()
    assert view.locator(".r1v4-final.r1v4-recorded").count() == 1 and "Final answer" not in view.inner_text()
    assert "label.png" in banner.inner_text()
    banner.scroll_into_view_if_needed()
    _shot(page2, "browser-recording-banner.png")


def test_replay_last_and_a_step_by_step_comparison(page2, lab):
    dbg = _cell(page2, 6).locator(".r1v4-dbg")
    dbg.wait_for(timeout=120_000)
    dbg.scroll_into_view_if_needed()
    path = dbg.locator(".r1v4-dbg-static .r1v4-path").inner_text()
    assert str(lab["folder"] / "runs2") in path and path.endswith(".jsonl")
    cmp = _cell(page2, 7).locator(".r1v4-compare")
    cmp.wait_for(timeout=120_000)
    cmp.scroll_into_view_if_needed()
    _shot(page2, "browser-compare.png")
    assert cmp.locator(".r1v4-cmp-diverge").inner_text() == "The runs diverge here, at step 7"
    assert cmp.locator(".r1v4-cmp-same").count() == 2 and cmp.locator(".r1v4-cmp-diff").count() == 2
    box = cmp.bounding_box()
    assert box["height"] < 1600  # 11 steps: seven folded, two side by side, one folded, the ends
    cmp.scroll_into_view_if_needed()
    _shot(page2, "browser-compare.png")


def test_help_status_and_the_train_controls(page2):
    help_out = _cell(page2, 8).locator(".jp-OutputArea")
    help_out.locator("text=SUBCOMMAND --help explains one").wait_for(timeout=120_000)
    help_out.scroll_into_view_if_needed()
    text = help_out.inner_text()
    assert "replay" in text and "the step-through debugger" in text and "usage: %r1v4 train" in text
    failed = _cell(page2, 9).locator(".jp-OutputArea")
    failed.locator("text=no trajectories at").wait_for(timeout=60_000)
    failed.scroll_into_view_if_needed()
    assert failed.locator("button").count() == 0  # no panel, no Stop button that does nothing
    panel = _cell(page2, 10).locator(".r1v4-train-panel")
    panel.locator("text=done after 2 steps").wait_for(timeout=300_000)
    assert not panel.locator("button:has-text('Stop')").is_visible()
    status = _cell(page2, 13).locator(".r1v4-table")
    status.wait_for(timeout=300_000)
    status.scroll_into_view_if_needed()
    status.locator("td:has-text('random weights, for tests')").wait_for(timeout=60_000)  # the model's row
    assert "{" not in status.inner_text()
    load_out = _cell(page2, 13).locator(".jp-OutputArea")
    assert load_out.locator("[data-mime-type='application/vnd.jupyter.stderr']").count() == 0  # not pink
    load_out.locator("text=loaded: tiny-dense (random weights, for tests)").wait_for(timeout=60_000)
    status.scroll_into_view_if_needed()
    _shot(page2, "browser-status-table.png")
    panel.scroll_into_view_if_needed()
    _shot(page2, "browser-train-panel.png")


def test_a_crop_past_the_edge_is_clamped_and_drawn_inside_its_source(page2):
    view = _cell(page2, 12).locator(".r1v4-widget")
    view.locator(".r1v4-end").wait_for(timeout=180_000)
    tool = view.locator(".r1v4-card.r1v4-tool")
    tool.scroll_into_view_if_needed()
    assert "reaches past the edge" in tool.inner_text() and "clamped to" in tool.inner_text()
    src, box = tool.locator(".r1v4-src img").bounding_box(), tool.locator(".r1v4-box").bounding_box()
    assert box["x"] + box["width"] <= src["x"] + src["width"] + 3 and box["y"] + box["height"] <= src["y"] + src["height"] + 3
    tool.scroll_into_view_if_needed()
    _shot(page2, "browser-crop-clamped.png")


def test_every_view_reads_after_save_shutdown_reopen(page2, lab):
    _cell(page2, 14).locator(".r1v4-compare").wait_for(timeout=300_000)  # the last cell ran
    page2.wait_for_function("() => (document.querySelector('.jp-StatusBar-Widget')?.innerText || '')"
                            ".includes('| Idle')", timeout=120_000)
    url = f"{lab['url']}/lab/tree/{lab['second'].name}"
    _save_shutdown_reopen(page2, url, lab["second"])
    dead, seen = _dead_widget_lines(page2)
    assert dead >= 5 and seen == []
    for n, what in ((2, ".r1v4-end"), (5, ".r1v4-recording"), (6, ".r1v4-path"), (7, ".r1v4-cmp-diverge"),
                    (10, "svg[aria-label='loss curve']"), (12, ".r1v4-box"), (14, ".r1v4-cmp-col")):
        found = _cell(page2, n).locator(what).first
        found.scroll_into_view_if_needed()
        assert found.is_visible(), (n, what)
    _cell(page2, 10).scroll_into_view_if_needed()
    _shot(page2, "browser-reopened-train.png")
    _cell(page2, 14).scroll_into_view_if_needed()
    _shot(page2, "browser-reopened-before-after.png")
    assert page2.dialogs == []


@pytest.mark.parametrize("name", TUTORIALS)
def test_the_tutorials_as_committed_open_with_their_card_views(page2, lab, name):
    _open(page2, f"{lab['url']}/lab/tree/{name}?reset")
    dead, seen = _dead_widget_lines(page2)
    page2.locator(".r1v4-card").first.scroll_into_view_if_needed()
    _shot(page2, f"browser-tutorial-{name[:2]}.png")
    assert dead == 0 and seen == []  # saved without widget outputs: nothing to say "model not found"
    cards = page2.locator(".r1v4-card")
    assert cards.count() >= 5
    if name.startswith("05"):
        heads = page2.locator(".r1v4-cmp-col")
        heads.first.scroll_into_view_if_needed()
        assert heads.nth(0).inner_text().startswith("Base model") and heads.nth(1).inner_text().startswith("Tuned")
        grid = page2.locator(".r1v4-cmp").first.bounding_box()
        area = page2.locator(".jp-Notebook").first.bounding_box()
        assert grid["x"] + grid["width"] <= area["x"] + area["width"]  # both columns fit in the page
        heads.first.scroll_into_view_if_needed()
    else:
        page2.locator(".r1v4-card.r1v4-tool").first.scroll_into_view_if_needed()  # untrusted: classes kept, styles not
    _shot(page2, f"browser-tutorial-{name[:2]}.png")
