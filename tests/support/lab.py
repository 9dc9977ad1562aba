"""A headless JupyterLab for the browser tests (tests/ui/test_browser.py, tests/ui/test_labserver.py), started once per
module on a free loopback port with its own config and workspaces folders, so no user state leaks in."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support import CHECKOUT

__all__ = ["ARTIFACTS", "CHROMIUM", "LAUNCH_FLAGS", "chromium_page", "free_port", "running_lab"]

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = CHECKOUT / "test-artifacts"
LAUNCH_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status(url: str, token: str) -> int:
    req = urllib.request.Request(f"{url}/api/status", headers={"Authorization": f"token {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0  # not listening yet


@contextmanager
def running_lab(root: Path, state: Path, token: str = "", wait_s: float = 90) -> Iterator[dict]:
    """JupyterLab serving `root`, its config and workspaces under `state`; yields its url and environment.

    An empty token means no authentication (and no XSRF check), as the notebook tests drive it; a token makes
    the server demand it, for tests of what an unauthenticated request gets."""
    news = state / "config" / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)
    (news / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
           "JUPYTER_CONFIG_DIR": str(state / "config"), "JUPYTERLAB_WORKSPACES_DIR": str(state / "ws")}
    auth = ([f"--IdentityProvider.token={token}"] if token else
            ["--IdentityProvider.token=", "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True"])
    port = free_port()
    log = open(state / "lab.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--ServerApp.root_dir={root}", *auth, "--allow-root", f"--LabApp.workspaces_dir={state / 'ws'}"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + wait_s
        while _status(url, token) != 200:
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail(f"JupyterLab did not start; see {state / 'lab.log'}")
            time.sleep(0.5)
        yield {"url": url, "env": env}
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@contextmanager
def chromium_page(width: int, height: int) -> Iterator:
    """A page in Debian's headless chromium. Every dialog but "leave page?" is dismissed and kept in
    `page.dialogs`: an alert() there means a payload ran."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_FLAGS)
        pg = browser.new_page(viewport={"width": width, "height": height})
        pg.dialogs = []
        pg.on("dialog", lambda d: d.accept() if d.type == "beforeunload" else (pg.dialogs.append(d.message),
                                                                                d.dismiss()))
        try:
            yield pg
        finally:
            browser.close()
