"""Remake docs/img/explore.png and docs/img/report.png (the README's screenshots).

Run from the repository root: ``.venv/bin/python docs/img/screenshots.py``. Needs Debian's
chromium (``scripts/system-deps.sh``); trains the logistic-regression task for the report.
"""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

from lrkit.explore.app import create_app
from lrkit.report import write_report
from lrkit.tasks import get_task, train
from lrkit.torch.finder import find_task_lr

HERE = Path(__file__).resolve().parent
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def explorer(browser) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(), log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    page = browser.new_page(viewport={"width": 1260, "height": 1060})
    page.goto(f"http://127.0.0.1:{sock.getsockname()[1]}/")
    page.wait_for_selector("body[data-ready='1']")
    page.select_option("#surface", "valley")
    page.wait_for_function("window.explorer.surface.name === 'valley' && window.explorer.last.surface === 'valley'")
    page.evaluate("() => { const s = document.getElementById('lr'); s.value = -1.3; }")
    page.fill("#lrs", "0.11, 1e-5")
    page.check("#compare")
    page.wait_for_function("window.explorer.last.paths.length === 3")
    page.click("#run-range-test")
    page.wait_for_function("window.explorer.range !== null")
    page.wait_for_timeout(500)
    page.screenshot(path=str(HERE / "explore.png"), full_page=True)
    server.should_exit = True


def report(browser) -> None:
    task = get_task("digits-mlp")
    finder = find_task_lr(task, seed=0)
    chosen = train(task, finder.lr, seed=0)
    default = train(task, task.default_lr, seed=0)
    with tempfile.TemporaryDirectory() as folder:
        path = write_report(
            Path(folder) / "report.html",
            runs={f"found lr {finder.lr:.3g}": chosen},
            finder=finder,
            baseline=default,
            price_per_gpu_hour=2.5,
            title="lrkit report: digits-mlp",
        )
        page = browser.new_page(viewport={"width": 1000, "height": 1500})
        page.goto(path.as_uri())
        page.wait_for_load_state("load")
        page.screenshot(path=str(HERE / "report.png"))


def main() -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        explorer(browser)
        report(browser)
        browser.close()


if __name__ == "__main__":
    main()
