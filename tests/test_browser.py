"""The notebook experience in a real browser: JupyterLab (headless, loopback) driven by Playwright with
Debian's chromium. One JupyterLab start for the module; screenshots go to test-artifacts/."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
LAUNCH_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _notebook(folder: Path, hostile: Path, demo: Path, photo: Path) -> Path:
    import nbformat

    slow_turn = "<think>" + "Looking at every part of the picture carefully. " * 200 + "</think><answer>late</answer>"
    cells = [
        "%load_ext r1v4_nb",
        "from r1v4_nb.ui import api\n"
        "from r1v4_nb.models.replay import ReplayModel, ScriptedModel\n"
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
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / "browser.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: run 'make browser' (apt-get install chromium)")
    from test_ui import hostile_run

    from r1v4_nb.models.replay import DEMO_TRAJECTORY
    from r1v4_nb.trajectory import read

    folder = tmp_path_factory.mktemp("lab")
    hostile = hostile_run(folder)
    photo = folder / "street.png"  # the user's name for the picture; the store names it by hash
    shutil.copy(read(DEMO_TRAJECTORY).header.images[0].path, photo)
    news = folder / "config" / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)
    (news / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    nb = _notebook(folder, hostile, DEMO_TRAJECTORY, photo)
    port = _free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
           "JUPYTER_CONFIG_DIR": str(folder / "config"), "JUPYTERLAB_WORKSPACES_DIR": str(folder / "ws")}
    log = open(folder / "lab.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--ServerApp.root_dir={folder}", "--IdentityProvider.token=", "--ServerApp.password=",
         "--ServerApp.disable_check_xsrf=True", "--allow-root", f"--LabApp.workspaces_dir={folder / 'ws'}"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=folder)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/status", timeout=2)
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail(f"JupyterLab did not start; see {folder / 'lab.log'}")
            time.sleep(0.5)
    yield {"url": url, "notebook": nb, "folder": folder, "hostile": hostile}
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def page(lab):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_FLAGS)
        pg = browser.new_page(viewport={"width": 1300, "height": 1000})
        pg.dialogs = []  # any alert() would mean a payload ran
        pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))
        pg.goto(f"{lab['url']}/lab/tree/{lab['notebook'].name}?reset")
        pg.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
        # Run All before the kernel is connected runs nothing, and the toolbar's indicator reads "idle" before
        # the kernel even starts: wait for the status bar to name a kernel that is idle.
        pg.wait_for_function("() => { const t = document.querySelector('.jp-StatusBar-Widget')?.innerText || '';"
                             " return t.includes('| Idle') && !t.includes('No Kernel'); }", timeout=60_000)
        pg.locator(".jp-Notebook .jp-Cell").first.click()
        pg.click(".lm-MenuBar-itemLabel:text-is('Run')", timeout=10_000)
        pg.click(".lm-Menu-itemLabel:text-is('Run All Cells')", timeout=10_000)
        yield pg
        browser.close()


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
    live.locator(".r1v4-st-cancelled").wait_for(timeout=30_000)
    assert live.locator(".r1v4-stop").count() == 0
    _shot(page, "browser-live-stopped.png")
    page.wait_for_timeout(1000)
    saved = page.evaluate("() => document.querySelectorAll('[data-r1v4-snapshot]').length")
    assert saved >= 2  # the static snapshots of both asks arrived (hidden while the widgets are live)
    assert page.dialogs == []


def _step_shown(dbg) -> str:
    """The title of the card the debugger shows as the selected step's output."""
    return dbg.locator(".r1v4-dbg-produced .r1v4-card-title").first.inner_text()


def test_debugger_steps_through_a_recorded_run(page):
    dbg = page.locator(".r1v4-dbg")
    dbg.locator(".r1v4-dbg-produced .r1v4-card").wait_for(timeout=60_000)
    context, produced = dbg.locator(".r1v4-dbg-context"), dbg.locator(".r1v4-dbg-produced")
    assert _step_shown(dbg).startswith("Step 0")
    assert "When was the cafe founded?" in context.inner_text()  # the question, as the model saw it
    assert context.locator("img.r1v4-thumb").count() == 1  # the input image
    dbg.locator(".r1v4-dbg-next").click()
    page.wait_for_function("() => document.querySelector('.r1v4-dbg-produced .r1v4-card-title')"
                           ".innerText.startsWith('Step 1')")
    assert produced.locator(".r1v4-crop .r1v4-box").count() == 1  # the crop beside its source
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

    dbg = page.locator(".r1v4-dbg")
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
    dbg.locator(".r1v4-dbg-fork").click()
    branches = dbg.locator(".r1v4-dbg-branches")
    branches.locator(".r1v4-end").nth(1).wait_for(timeout=30_000)
    panes = branches.locator(".r1v4-pane")
    assert panes.count() == 2
    original, branch = panes.nth(0), panes.nth(1)
    assert "branch of" not in original.locator(".r1v4-question").inner_text()
    assert "at step 7" in branch.locator(".r1v4-question").inner_text()
    assert "opened in 1901" in branch.inner_text() and "opened in 1901" not in original.inner_text()
    assert branch.locator(".r1v4-card.r1v4-tool").count() == original.locator(".r1v4-card.r1v4-tool").count()
    left, right = original.bounding_box(), branch.bounding_box()
    assert left["x"] + left["width"] <= right["x"] + 1  # side by side, not stacked
    forks = list((lab["folder"] / "runs").glob("*-fork7-*.jsonl"))
    assert len(forks) == 1
    parent = read(forks[0]).header.parent
    assert parent["step"] == 7 and parent["id"] == read(lab["hostile"]).header.id
    assert forks[0].name in dbg.locator(".r1v4-dbg-status").inner_text()
    assert branch.locator(".r1v4-edited").count() == 1 and original.locator(".r1v4-edited").count() == 0
    branch.locator(".r1v4-edited").scroll_into_view_if_needed()
    _shot(page, "browser-debugger-branch.png")
    assert page.dialogs == []


def test_saved_notebook_shows_the_run_without_a_kernel(page, lab):
    page.keyboard.press("Control+s")
    page.wait_for_timeout(2000)
    nb = json.loads(lab["notebook"].read_text())
    html = [o["data"]["text/html"] for c in nb["cells"] for o in c.get("outputs", [])
            if "text/html" in o.get("data", {})]
    joined = "".join("".join(h) if isinstance(h, list) else h for h in html)
    assert "data-r1v4-snapshot" in joined and "Final answer" in joined and "cancelled" in joined
    shutil.copy(lab["notebook"], ARTIFACTS / "browser-saved.ipynb")
