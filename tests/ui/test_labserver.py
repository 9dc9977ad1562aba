"""The JupyterLab extension (extensions/) and its server extension (r1v4_nb/ui/labserver.py).

First the server side on its own (path confinement, the runs list, incremental cards), then the whole thing
in a real JupyterLab driven by Debian's chromium (the harness in tests/support/lab.py), started with a token
so that unauthenticated requests can be tried. Screenshots go to test-artifacts/lab-*.png.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest

from r1v4_nb.agent import Agent
from r1v4_nb.images import Image, Provenance
from r1v4_nb.models.replay import DEMO_TRAJECTORY, ScriptedModel
from r1v4_nb.trajectory import End, Header, TrajectoryWriter, fork, new_id, read, run_file, run_name, write
from r1v4_nb.ui import labserver
from r1v4_nb.ui.labserver import PathRefused, list_runs, render_since, resolve_under
from tests.support import CHECKOUT
from tests.support.lab import ARTIFACTS, CHROMIUM, chromium_page, running_lab

ROOT = CHECKOUT


# -- the server side, without a server ------------------------------------------------------------------

def test_paths_outside_the_root_are_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "runs").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.jsonl").write_text("secret\n")
    (root / "runs" / "ok.jsonl").write_text("x\n")
    (root / "runs" / "out.jsonl").symlink_to(outside / "secret.jsonl")
    (root / "runs" / "outdir").symlink_to(outside, target_is_directory=True)
    (root / "inside.jsonl").symlink_to(root / "runs" / "ok.jsonl")
    assert resolve_under(root, "runs/ok.jsonl") == (root / "runs" / "ok.jsonl").resolve()
    assert resolve_under(root, "inside.jsonl") == (root / "runs" / "ok.jsonl").resolve()  # a link that stays in
    for bad in ("/etc/passwd", str(outside / "secret.jsonl"), "../outside/secret.jsonl", "runs/../../outside/x",
                "runs/out.jsonl", "runs/outdir/secret.jsonl", "..\\outside\\secret.jsonl", "C:\\x.jsonl", "",
                "runs/ok.jsonl\x00"):
        with pytest.raises(PathRefused):
            resolve_under(root, bad)


def _run(path: Path, end: End | None, steps: int = 1, parent: dict | None = None, question: str = "q?") -> Path:
    src = read(DEMO_TRAJECTORY)
    header = replace(src.header, id=new_id() + path.stem[:4], question=question, parent=parent)
    w = TrajectoryWriter(path, header)
    for s in src.steps[:steps]:
        w.write(s)
    if end is not None:
        w.finish(end)
    else:
        w.close()
    return path


def test_runs_list_reads_status_steps_and_forks(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    answered = _run(runs / "a.r1v4.jsonl", End("answered", "1897"), 3)
    budget = _run(runs / "sub" / "b.jsonl", End("budget"), 2)  # an older name, a subfolder
    live = _run(runs / "c.r1v4.jsonl", None, 1)
    stale = _run(runs / "d.r1v4.jsonl", None, 2)
    os.utime(stale, (time.time() - 3600, time.time() - 3600))  # crashed an hour ago
    parent = read(answered).header
    child = _run(runs / "e.r1v4.jsonl", End("cancelled"), 1, parent={"id": parent.id, "path": str(answered),
                                                                      "step": 1})
    (runs / "notes.jsonl").write_text('{"not": "a trajectory"}\n')
    _run(tmp_path / "elsewhere" / "x.r1v4.jsonl", End("answered", "no"))  # not in a runs/ folder
    _run(tmp_path / "project" / "runs" / "deep.r1v4.jsonl", End("error"))  # runs/ folders at any depth
    _run(tmp_path / ".hidden" / "runs" / "h.r1v4.jsonl", End("answered"))
    rows = {r.path: r for r in list_runs(tmp_path)}
    assert set(rows) == {"runs/a.r1v4.jsonl", "runs/sub/b.jsonl", "runs/c.r1v4.jsonl", "runs/d.r1v4.jsonl",
                         "runs/e.r1v4.jsonl", "project/runs/deep.r1v4.jsonl"}
    assert {p: (r.status, r.steps) for p, r in rows.items()} == {
        "runs/a.r1v4.jsonl": ("answered", 3), "runs/sub/b.jsonl": ("budget", 2), "runs/c.r1v4.jsonl": ("running", 1),
        "runs/d.r1v4.jsonl": ("unfinished", 2), "runs/e.r1v4.jsonl": ("cancelled", 1),
        "project/runs/deep.r1v4.jsonl": ("error", 1)}
    a = rows["runs/a.r1v4.jsonl"]
    assert (a.answer, a.model, a.mode, a.question) == ("1897", "hand-written demonstration", "general", "q?")
    assert rows["runs/e.r1v4.jsonl"].parent == {"id": a.id, "step": 1}
    assert rows["runs/c.r1v4.jsonl"].answer is None and budget.exists() and live.exists() and child.exists()
    with live.open("a") as fh:  # a step being written: half a line is not a step yet
        fh.write('{"type": "model", "index": 1, "te')
    assert run_summary_of(tmp_path, "runs/c.r1v4.jsonl").steps == 1


def run_summary_of(root: Path, rel: str) -> labserver.RunSummary:
    return {r.path: r for r in list_runs(root)}[rel]


def test_cards_arrive_incrementally_and_none_is_lost(tmp_path: Path) -> None:
    """Polling a file as it grows yields, appended together, exactly the cards of the finished run."""
    src = read(DEMO_TRAJECTORY)
    path = tmp_path / "runs" / "live.r1v4.jsonl"
    w = TrajectoryWriter(path, replace(src.header, id=new_id()))
    got: list[str] = []
    polls = []
    for step in [*src.steps, None]:
        data = render_since(path, tmp_path, len(got))
        got.extend(data["cards"])
        polls.append((data["count"], data["done"], data["status"]))
        if step is None:
            w.finish(src.end)
        else:
            w.write(step)
    data = render_since(path, tmp_path, len(got))
    got.extend(data["cards"])
    assert polls == [(1, False, "running"), (2, False, "running"), (3, False, "running"), (4, False, "running")]
    assert data["done"] and data["status"] == "answered" and data["count"] == 5
    final = render_since(path, tmp_path, 0)
    assert got == final["cards"]  # the same HTML a full render gives, card for card
    assert "1897" in got[-1] and "r1v4-crop" in "".join(got)
    assert "file: runs/live.r1v4.jsonl" in got[0] and str(tmp_path) not in "".join(got)  # the root stays private
    assert render_since(path, tmp_path, 99)["cards"] == []


def test_images_outside_the_root_are_not_read(tmp_path: Path) -> None:
    from PIL import Image as PILImage

    outside = tmp_path / "outside"
    outside.mkdir()
    PILImage.new("RGB", (20, 20), (255, 0, 0)).save(outside / "secret.png")
    root = tmp_path / "root"
    secret = Image.from_file(outside / "secret.png", Provenance("input", name="secret.png"))
    path = root / "runs" / "r.r1v4.jsonl"
    w = TrajectoryWriter(path, Header(question="q", images=[secret]))
    w.finish(End("answered", "a"))
    record = json.loads(path.read_text().splitlines()[0])
    record["images"][0]["path"] = str(outside / "secret.png")  # a crafted file pointing out of the root
    lines = path.read_text().splitlines()
    path.write_text(json.dumps(record) + "\n" + "\n".join(lines[1:]) + "\n")
    for f in (root / "runs" / "r.r1v4.images").iterdir():
        f.unlink()
    cards = "".join(render_since(path, root, 0)["cards"])
    assert "data:image" not in cards and "(image missing)" in cards
    with pytest.raises(PathRefused):
        labserver.image_file(path, root, secret.sha256)


def test_new_runs_are_named_r1v4_jsonl(tmp_path: Path) -> None:
    agent = Agent(ScriptedModel(["<answer>yes</answer>"]), tools=[], runs_dir=tmp_path)
    result = agent.ask("q?")
    assert result.path.name.endswith(".r1v4.jsonl") and result.path.parent == tmp_path
    assert run_file(tmp_path, "x") == tmp_path / "x.r1v4.jsonl"
    assert run_name("a/b.r1v4.jsonl") == "b" and run_name("b.jsonl") == "b"
    fork_events = list(Agent(ScriptedModel(["<answer>no</answer>"]), tools=[]).fork(result.path, 0))
    forked = Path(fork_events[0].path)
    assert forked.name.startswith(f"{run_name(result.path)}.fork0-") and forked.name.endswith(".r1v4.jsonl")


def test_the_committed_bundle_is_built_from_the_current_sources() -> None:
    """r1v4_nb/labextension is what pip installs; it must match extensions/ (else: make extension)."""
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "labextension.py"), "check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    meta = json.loads((ROOT / "r1v4_nb" / "labextension" / "package.json").read_text())
    assert meta["name"] == "r1v4-nb" and meta["jupyterlab"]["_build"]["load"].startswith("static/remoteEntry.")
    assert (ROOT / "r1v4_nb" / "labextension" / meta["jupyterlab"]["_build"]["load"]).is_file()
    ignored = subprocess.run(["git", "check-ignore", "-q", "extensions/node_modules/x"], cwd=ROOT)
    assert ignored.returncode == 0  # node_modules stays out of git


def test_extensions_are_installed_and_enabled() -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    lab = subprocess.run([sys.executable, "-m", "jupyterlab.labextensions", "list"], capture_output=True,
                         text=True, env=env)
    line = next((ln for ln in (lab.stdout + lab.stderr).splitlines() if "r1v4-nb" in ln), "")
    assert "enabled" in line and "OK" in line, lab.stdout + lab.stderr
    server = subprocess.run([sys.executable, "-m", "jupyter_server.extension.serverextension", "list"],
                            capture_output=True, text=True, env=env)
    assert any("r1v4_nb" in ln and "enabled" in ln for ln in (server.stdout + server.stderr).splitlines()), \
        server.stdout + server.stderr


# -- in JupyterLab and Chromium -------------------------------------------------------------------------

TOKEN = "r1v4-test-token"
WRITER = """
import sys, time
from dataclasses import replace
from pathlib import Path
from r1v4_nb.trajectory import TrajectoryWriter, new_id, read
src, out, ctl = read(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
w = TrajectoryWriter(out, replace(src.header, id=new_id(), question="Live: " + src.header.question))
def wait(name):
    while not (ctl / name).exists():
        time.sleep(0.05)
for s in src.steps:
    wait(f"go-{s.index}")
    w.write(s)
wait("go-end")
w.finish(src.end)
"""
SVG_CSS = ('<svg onload="alert(11)"><script>alert(12)</script><a href="javascript:alert(13)"><text>x</text></a>'
           '</svg><math><mi xlink:href="javascript:alert(14)">m</mi></math>'
           '<style>*{display:none!important}</style><div style="background:url(javascript:alert(15))">css</div>'
           '<iframe srcdoc="<script>alert(16)</script>"></iframe><object data="javascript:alert(17)"></object>')


def _get(url: str, token: str | None = TOKEN) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()
    except urllib.error.URLError:
        return 0, {}, b""  # not listening (yet)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    import nbformat

    from tests.ui.test_ui import hostile_run

    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: run 'make browser' (apt-get install chromium)")
    base = tmp_path_factory.mktemp("labext")
    folder = base / "root"
    runs = folder / "runs"
    demo = write(runs / "demo.r1v4.jsonl", read(DEMO_TRAJECTORY))
    source = read(demo)
    w, _ = fork(source, 2, runs / "demo-branch.r1v4.jsonl")
    w.finish(End("cancelled", None, 0.2))
    _run(runs / "20260101-000000-abcdef12.jsonl", End("budget"), 2, question="An older run, named by its id")
    _run(runs / "broke.r1v4.jsonl", End("error", error="the model server went away"), 1, question="It broke")
    stale = _run(runs / "stale.r1v4.jsonl", None, 2, question="A run that crashed an hour ago")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    hostile = hostile_run(base / "h")
    traj = read(hostile)
    traj.header.question = "Hostile: " + SVG_CSS + traj.header.question
    write(runs / "hostile.r1v4.jsonl", traj)
    _run(folder / "imported" / "plain.jsonl", End("answered", "1897"), 3, question="A run under a plain name")
    outside = base / "outside"
    _run(outside / "secret.r1v4.jsonl", End("answered", "the secret"), 1, question="SECRET outside the root")
    (runs / "link.r1v4.jsonl").symlink_to(outside / "secret.r1v4.jsonl")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# runs")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder / "analysis.ipynb")
    with running_lab(folder, base, token=TOKEN) as lab:
        yield {"url": lab["url"], "folder": folder, "base": base, "runs": runs, "env": lab["env"]}


@pytest.fixture(scope="module")
def page(lab):
    with chromium_page(1400, 950) as pg:
        pg.goto(f"{lab['url']}/lab?reset&token={TOKEN}")
        pg.wait_for_selector(".jp-DirListing-item", timeout=90_000)
        yield pg


def _shot(page, name: str) -> None:

    page.screenshot(path=str(ARTIFACTS / name), full_page=False)


VIEWER = ".r1v4-viewer-doc:not(.lm-mod-hidden)"


def _in_frame(page, js: str):
    """Evaluate `js` (an expression over `doc`, the shown viewer's frame document) from the Lab page."""
    return page.evaluate(f"() => {{ const f = document.querySelector('{VIEWER} iframe.r1v4-viewer-frame');"
                         f" const doc = f && f.contentDocument; if (!doc || !doc.querySelector('.r1v4-run'))"
                         f" return null; return ({js}); }}")


def _wait_frame(page, js: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not _in_frame(page, f"!!({js})"):
        if time.monotonic() > deadline:
            raise AssertionError(f"viewer never showed: {js}; state: "
                                 f"{page.locator(VIEWER + ' .r1v4-viewer-bar').all_inner_texts()}")
        page.wait_for_timeout(200)


def _file_browser(page) -> None:
    """The file browser shown, at the root (a click on the sidebar's current tab would close it)."""
    tab = page.locator(".jp-SideBar .lm-TabBar-tab[data-id='filebrowser']")
    if "lm-mod-current" not in (tab.get_attribute("class") or ""):
        tab.click()
    page.locator(".jp-BreadCrumbs-home").click()


def _runs_panel(page):
    tab = page.locator(".jp-SideBar .lm-TabBar-tab[title='r1v4 runs']")
    if "lm-mod-current" not in (tab.get_attribute("class") or ""):
        tab.click()
    panel = page.locator("#r1v4-runs")
    panel.locator(".r1v4-runs-refresh").click()
    return panel


@pytest.mark.browser
@pytest.mark.slow
def test_double_click_opens_the_viewer_without_a_kernel(page, lab):
    assert page.locator(".jp-SideBar .lm-TabBar-tab[title='r1v4 runs']").count() == 1  # the extension loaded
    page.locator(".jp-DirListing-itemText span", has_text="runs").first.dblclick()
    page.locator(".jp-DirListing-itemText span:text-is('demo.r1v4.jsonl')").dblclick()
    page.wait_for_selector(f"{VIEWER} iframe.r1v4-viewer-frame", timeout=60_000)
    _wait_frame(page, "doc.querySelector('.r1v4-final')")
    assert _in_frame(page, "doc.querySelector('.r1v4-final pre').textContent") == "1897"
    assert _in_frame(page, "doc.querySelectorAll('img.r1v4-thumb').length") >= 3  # input, crop source, crop
    assert _in_frame(page, "doc.querySelectorAll('.r1v4-crop .r1v4-box').length") == 1
    assert _in_frame(page, "doc.querySelector('img.r1v4-thumb').src.startsWith('data:image/')")
    assert "answered" in page.locator(f"{VIEWER} .r1v4-viewer-state").inner_text()
    assert "r1v4 Trajectory" in page.locator(".lm-TabBar-tab.lm-mod-current .lm-TabBar-tabLabel").first.inner_text() \
        or page.locator(".lm-DockPanel .lm-TabBar-tab.lm-mod-current").first.inner_text().startswith("demo.r1v4")
    _shot(page, "lab-viewer.png")
    page.locator(f"{VIEWER} iframe").content_frame.locator("img.r1v4-thumb").first.click()
    page.wait_for_selector(f"{VIEWER} .r1v4-zoom img", timeout=30_000)  # full size, fetched by hash
    assert page.evaluate(f"() => document.querySelector('{VIEWER} .r1v4-zoom img').naturalWidth") > 320
    page.locator(f"{VIEWER} .r1v4-zoom").click()
    for api in ("kernels", "sessions"):
        status, _, body = _get(f"{lab['url']}/api/{api}")
        assert status == 200 and json.loads(body) == [], (api, body)  # no kernel was started


@pytest.mark.browser
@pytest.mark.slow
def test_a_run_being_written_appears_step_by_step(page, lab):
    ctl = lab["base"] / "ctl"
    ctl.mkdir()
    out = lab["runs"] / "live.r1v4.jsonl"
    script = lab["base"] / "writer.py"
    script.write_text(WRITER)
    proc = subprocess.Popen([sys.executable, str(script), str(DEMO_TRAJECTORY), str(out), str(ctl)], env=lab["env"])
    try:
        deadline = time.monotonic() + 60
        while not (out.is_file() and out.read_text().endswith("\n")):
            assert time.monotonic() < deadline and proc.poll() is None, "the writer did not start"
            time.sleep(0.1)
        panel = _runs_panel(page)
        row = panel.locator(".r1v4-runs-row[data-path='runs/live.r1v4.jsonl']")
        row.wait_for(timeout=30_000)
        assert row.get_attribute("data-status") == "running"
        row.click()
        _wait_frame(page, "doc.querySelector('.r1v4-question')")
        _wait_frame(page, "doc.querySelectorAll('.r1v4-run > .r1v4-card').length === 1")
        assert "running" in _in_frame(page, "doc.querySelector('.r1v4-status').textContent")
        _in_frame(page, "doc.querySelector('.r1v4-question').dataset.mark = 'first'")
        for k, kind in enumerate(("r1v4-model", "r1v4-tool", "r1v4-model")):
            (ctl / f"go-{k}").touch()
            _wait_frame(page, f"doc.querySelectorAll('.r1v4-run > .r1v4-card').length === {k + 2}")
            assert _in_frame(page, f"doc.querySelectorAll('.r1v4-run > .r1v4-card')[{k + 1}].classList"
                                   f".contains('{kind}')")
            assert "following" in page.locator(f"{VIEWER} .r1v4-viewer-state").inner_text()
            if k == 1:
                _shot(page, "lab-live-follow.png")
        assert not _in_frame(page, "!!doc.querySelector('.r1v4-end')")
        (ctl / "go-end").touch()
        _wait_frame(page, "doc.querySelector('.r1v4-final')")
        assert _in_frame(page, "doc.querySelector('.r1v4-final pre').textContent") == "1897"
        assert _in_frame(page, "doc.querySelector('.r1v4-status').textContent") == "answered"
        # appended, not redrawn: the first card is the same element the test marked before any step landed
        assert _in_frame(page, "doc.querySelector('.r1v4-question').dataset.mark") == "first"
        assert _in_frame(page, "doc.querySelectorAll('.r1v4-run > .r1v4-card').length") == 5
        assert _in_frame(page, "doc.querySelectorAll('.r1v4-tool img.r1v4-thumb').length") >= 1
        page.wait_for_function(f"() => document.querySelector('{VIEWER} .r1v4-viewer-state')"
                               ".textContent.startsWith('answered')", timeout=30_000)
        _shot(page, "lab-live-answered.png")
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.browser
@pytest.mark.slow
def test_runs_panel_lists_sorts_filters_and_opens(page, lab):
    panel = _runs_panel(page)
    panel.locator(".r1v4-runs-row[data-path='runs/demo.r1v4.jsonl']").wait_for(timeout=30_000)
    rows = panel.locator(".r1v4-runs-row")
    shown = {r.get_attribute("data-path"): r.get_attribute("data-status") for r in rows.all()}
    assert shown == {"runs/demo.r1v4.jsonl": "answered", "runs/demo-branch.r1v4.jsonl": "cancelled",
                     "runs/20260101-000000-abcdef12.jsonl": "budget", "runs/broke.r1v4.jsonl": "error",
                     "runs/hostile.r1v4.jsonl": "answered", "runs/live.r1v4.jsonl": "answered",
                     "runs/stale.r1v4.jsonl": "unfinished"}  # and not the link out of the root
    order = [r.get_attribute("data-path") for r in rows.all()]
    assert order[order.index("runs/demo.r1v4.jsonl") + 1] == "runs/demo-branch.r1v4.jsonl"  # beside its parent
    branch = panel.locator(".r1v4-runs-row[data-path='runs/demo-branch.r1v4.jsonl']")
    assert "r1v4-fork" in branch.get_attribute("class") and "fork at step 2" in branch.inner_text()
    demo = panel.locator(".r1v4-runs-row[data-path='runs/demo.r1v4.jsonl']")
    assert "1897" in demo.inner_text() and "3 steps" in demo.inner_text() and "general" in demo.inner_text()
    assert "hand-written demonstration" in demo.inner_text()
    _shot(page, "lab-runs-panel.png")
    panel.locator(".r1v4-runs-sort").select_option("steps")
    steps = [int(r.locator(".r1v4-runs-meta").inner_text().split(" steps")[0].split()[-1])
             for r in rows.all() if "r1v4-fork" not in (r.get_attribute("class") or "")]
    assert steps == sorted(steps, reverse=True)
    panel.locator(".r1v4-runs-status-filter").select_option("error")
    assert [r.get_attribute("data-path") for r in rows.all()] == ["runs/broke.r1v4.jsonl"]
    panel.locator(".r1v4-runs-status-filter").select_option("")
    panel.locator(".r1v4-runs-filter").fill("older run")
    assert [r.get_attribute("data-path") for r in rows.all()] == ["runs/20260101-000000-abcdef12.jsonl"]
    rows.first.click()  # an old-style name opens in the viewer too
    _wait_frame(page, "doc.querySelector('.r1v4-end') && doc.querySelector('.r1v4-status').textContent === 'budget'")
    panel.locator(".r1v4-runs-filter").fill("crashed")
    rows.first.click()  # no end record and no growth: shown, and not followed
    page.wait_for_function(f"() => document.querySelector('{VIEWER} .r1v4-viewer-state')?.textContent"
                           ".startsWith('stopped following: the file has not grown')", timeout=30_000)
    assert _in_frame(page, "doc.querySelectorAll('.r1v4-run > .r1v4-card').length") == 3
    panel.locator(".r1v4-runs-filter").fill("")


@pytest.mark.browser
@pytest.mark.slow
def test_hostile_run_executes_no_script(page, lab):
    panel = _runs_panel(page)
    panel.locator(".r1v4-runs-row[data-path='runs/hostile.r1v4.jsonl']").click()
    _wait_frame(page, "doc.querySelector('.r1v4-final') && doc.title.includes('Hostile')")
    sandbox = page.locator(f"{VIEWER} iframe.r1v4-viewer-frame").get_attribute("sandbox")
    assert "allow-scripts" not in sandbox.split()
    assert _in_frame(page, "doc.querySelectorAll('script, svg, math, iframe, object, embed').length") == 0
    assert _in_frame(page, "doc.querySelectorAll('style').length") == 1  # the renderer's own
    assert _in_frame(page, "[...doc.querySelectorAll('*')].filter(e => [...e.attributes].some(a => "
                           "a.name.startsWith('on') || /javascript:/i.test(a.value))).length") == 0
    assert "<svg onload" in _in_frame(page, "doc.querySelector('.r1v4-question').textContent")  # shown as text
    assert _in_frame(page, "doc.querySelector('.r1v4-run').offsetHeight") > 100  # the CSS payload hid nothing
    # the second wall: even markup that got past the renderer could not run in this frame
    _in_frame(page, "(() => { const s = doc.createElement('script'); s.textContent = 'parent.r1v4Pwned = 1';"
                    " doc.body.append(s); doc.body.insertAdjacentHTML('beforeend', '<img src=\"data:,x\" "
                    "onerror=\"parent.r1v4Pwned = 2\"><svg onload=\"parent.r1v4Pwned = 3\"></svg>'); return 1 })()")
    page.wait_for_timeout(1500)
    assert page.evaluate("() => window.r1v4Pwned === undefined")
    page.locator(f"{VIEWER} iframe").content_frame.locator(".r1v4-results").scroll_into_view_if_needed()
    _shot(page, "lab-hostile.png")
    assert page.dialogs == []


@pytest.mark.browser
@pytest.mark.slow
def test_open_with_shows_any_jsonl_in_the_viewer(page, lab):
    _file_browser(page)
    page.locator(".jp-DirListing-itemText span:text-is('imported')").dblclick()
    page.locator(".jp-DirListing-itemText span:text-is('plain.jsonl')").click(button="right")
    active = ".lm-Menu:last-of-type .lm-Menu-item.lm-mod-active .lm-Menu-itemLabel"
    for _ in range(4):  # the keyboard, as a person without a mouse would: down to Open With, into its submenu
        page.keyboard.press("ArrowDown")
        if page.locator(active).all_inner_texts() == ["Open With"]:
            break
    page.keyboard.press("ArrowRight")
    for _ in range(8):
        if page.locator(active).all_inner_texts() == ["r1v4 Trajectory Viewer"]:
            break
        page.keyboard.press("ArrowDown")
    _shot(page, "lab-open-with.png")
    page.keyboard.press("Enter")
    _wait_frame(page, "doc.title.startsWith('A run under a plain name') && doc.querySelector('.r1v4-final')")
    assert _in_frame(page, "doc.querySelectorAll('.r1v4-run > .r1v4-card').length") == 5


@pytest.mark.browser
@pytest.mark.slow
def test_replay_button_inserts_a_cell_into_the_active_notebook(page, lab):
    _file_browser(page)
    page.locator(".jp-DirListing-itemText span:text-is('analysis.ipynb')").dblclick()
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    page.locator(".jp-Notebook .jp-Cell").first.click()
    panel = _runs_panel(page)
    panel.locator(".r1v4-runs-row[data-path='runs/demo.r1v4.jsonl'] .r1v4-runs-replay").click()
    page.wait_for_function("() => [...document.querySelectorAll('.jp-Notebook .jp-Cell .cm-content')]"
                           ".some(c => c.textContent === '%r1v4 replay runs/demo.r1v4.jsonl')", timeout=30_000)
    assert page.locator(".jp-Notebook .jp-Cell").count() == 2
    _shot(page, "lab-replay-cell.png")


@pytest.mark.browser
@pytest.mark.slow
def test_server_refuses_outside_paths_and_unauthenticated_requests(lab):
    url = lab["url"]
    sha = read(lab["runs"] / "demo.r1v4.jsonl").header.images[0].sha256
    q = urllib.parse.quote
    for endpoint in ("runs", f"trajectory?path={q('runs/demo.r1v4.jsonl')}",
                     f"image?path={q('runs/demo.r1v4.jsonl')}&sha={sha}"):
        status, _, body = _get(f"{url}/r1v4/{endpoint}", token=None)
        assert status == 403 and b"1897" not in body, (endpoint, status)
        assert _get(f"{url}/r1v4/{endpoint}", token="wrong")[0] == 403
        assert _get(f"{url}/r1v4/{endpoint}")[0] == 200
    status, headers, body = _get(f"{url}/r1v4/trajectory?path={q('runs/demo.r1v4.jsonl')}")
    assert "sandbox" in headers["Content-Security-Policy"] and headers["Content-Type"].startswith("text/html")
    assert b"1897" in body and b"<script" not in body
    status, headers, body = _get(f"{url}/r1v4/image?path={q('runs/demo.r1v4.jsonl')}&sha={sha}")
    assert headers["Content-Type"] == "image/png" and body.startswith(b"\x89PNG")
    secret = lab["base"] / "outside" / "secret.r1v4.jsonl"
    for bad in (str(secret), "../outside/secret.r1v4.jsonl", "runs/../../outside/secret.r1v4.jsonl",
                "runs/link.r1v4.jsonl", "/etc/passwd"):
        for endpoint in (f"trajectory?path={q(bad)}", f"trajectory?since=0&path={q(bad)}",
                         f"image?sha={'0' * 64}&path={q(bad)}"):
            status, _, body = _get(f"{url}/r1v4/{endpoint}")
            assert status == 403 and b"SECRET" not in body and b"root:x:0" not in body, (bad, status, body[:200])
    assert _get(f"{url}/r1v4/image?path={q('runs/demo.r1v4.jsonl')}&sha={'0' * 64}")[0] == 404
    assert _get(f"{url}/r1v4/trajectory?path=runs/nope.r1v4.jsonl")[0] == 404
    listed = json.loads(_get(f"{url}/r1v4/runs")[2])
    assert all("SECRET" not in r["question"] for r in listed)
    assert {"runs/demo.r1v4.jsonl", "runs/hostile.r1v4.jsonl"} <= {r["path"] for r in listed}
    assert "runs/link.r1v4.jsonl" not in {r["path"] for r in listed}  # a symlink out of the root is not listed
