"""The explorer: surfaces, descent with the real torch optimizers, the JSON API and the page in a
real browser (Debian's Chromium driven by Playwright)."""

from __future__ import annotations

import math
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import uvicorn
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from lrkit.cli.app import main
from lrkit.explore import OPTIMIZERS, descend, descend_many, optimizer_limit, range_test
from lrkit.explore.app import create_app
from lrkit.landscapes import SURFACES, get_surface, list_surfaces, stability_limit
from lrkit.suggest import suggest

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


# --- surfaces -------------------------------------------------------------------------------


@given(
    name=st.sampled_from(list_surfaces()),
    u=st.floats(0, 1),
    v=st.floats(0, 1),
)
def test_gradient_matches_finite_differences(name: str, u: float, v: float) -> None:
    surface = get_surface(name)
    x = surface.x_range[0] + u * (surface.x_range[1] - surface.x_range[0])
    y = surface.y_range[0] + v * (surface.y_range[1] - surface.y_range[0])
    h = 1e-6
    numeric = (
        (surface.value(x + h, y) - surface.value(x - h, y)) / (2 * h),
        (surface.value(x, y + h) - surface.value(x, y - h)) / (2 * h),
    )
    exact = surface.gradient(x, y)
    for got, want in zip(exact, numeric, strict=True):
        assert float(got) == pytest.approx(float(want), rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("name", list_surfaces())
def test_minimum_is_a_stationary_point_below_the_start(name: str) -> None:
    surface = get_surface(name)
    gx, gy = surface.gradient(*surface.minimum)
    assert math.hypot(float(gx), float(gy)) < 1e-3
    assert surface.value(*surface.minimum) < surface.value(*surface.start)
    _, _, grid = surface.grid(200)
    assert float(surface.value(*surface.minimum)) <= grid.min() + 1e-6


def test_stability_limit_only_where_curvature_is_constant() -> None:
    assert stability_limit(get_surface("bowl")) == pytest.approx(2 / 2.5)
    assert stability_limit(get_surface("bowl"), momentum=0.9) == pytest.approx(2 * 1.9 / 2.5)
    assert stability_limit(get_surface("valley")) == pytest.approx(2 / 20)
    assert stability_limit(get_surface("rosenbrock")) is None
    assert stability_limit(get_surface("wells")) is None
    with pytest.raises(ValueError, match="momentum must be in"):
        stability_limit(get_surface("bowl"), momentum=1.0)


def test_unknown_surface_names_the_choices() -> None:
    with pytest.raises(ValueError, match="surface must be one of 'bowl'.*got 'hill'"):
        get_surface("hill")


# --- descent with the real optimizers ----------------------------------------------------------


@pytest.mark.parametrize("surface_name", ["bowl", "valley"])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov"])
def test_torch_optimizers_are_stable_exactly_below_the_limit(surface_name: str, optimizer: str) -> None:
    surface = get_surface(surface_name)
    limit = optimizer_limit(surface, optimizer)
    below = descend(surface, optimizer, 0.95 * limit, steps=600)
    above = descend(surface, optimizer, 1.05 * limit, steps=600)
    assert not below.diverged and below.loss[-1] < 1e-6 * below.loss[0]
    assert above.diverged and above.loss[-1] > 100 * above.loss[0]


def test_descent_is_what_torch_optim_does() -> None:
    surface = get_surface("rosenbrock")
    path = descend(surface, "adam", 0.05, steps=30, start=(-1.0, 1.5))
    point = torch.tensor([-1.0, 1.5], dtype=torch.float64, requires_grad=True)
    adam = torch.optim.Adam([point], lr=0.05)
    for _ in range(30):
        loss = (1 - point[0]) ** 2 + 100 * (point[1] - point[0] ** 2) ** 2
        adam.zero_grad()
        loss.backward()
        adam.step()
    x, y = point.detach().tolist()
    assert path.x[-1] == pytest.approx(x, rel=1e-10)
    assert path.y[-1] == pytest.approx(y, rel=1e-10)


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_every_optimizer_descends_at_a_sensible_rate_and_crawls_at_a_tiny_one(optimizer: str) -> None:
    surface = get_surface("bowl")
    good = descend(surface, optimizer, 0.1, steps=300)
    tiny = descend(surface, optimizer, 1e-5, steps=300)
    assert good.loss[-1] < 0.05 * good.loss[0]
    assert tiny.loss[-1] > 0.8 * tiny.loss[0]
    assert len(good.x) == len(good.loss) + 1


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_several_lrs_at_once_are_each_exactly_the_path_alone(optimizer: str) -> None:
    wells = get_surface("wells")
    together = descend_many(wells, optimizer, [3.0, 1e-4, 0.3], steps=150, start=(1.0, -2.0))
    for path in together:
        alone = descend(wells, optimizer, path.lr, steps=150, start=(1.0, -2.0))
        assert np.array_equal(path.x, alone.x) and np.array_equal(path.loss, alone.loss)
        assert path.diverged_at == alone.diverged_at


def test_a_schedule_scales_the_lr_to_its_peak() -> None:
    path = descend(get_surface("bowl"), "sgd", 0.5, steps=10, schedule=lambda step: 10.0 - step)
    assert path.step_lr[0] == pytest.approx(0.5)
    assert path.step_lr[-1] == pytest.approx(0.05)


def test_descent_refuses_bad_arguments() -> None:
    bowl = get_surface("bowl")
    with pytest.raises(ValueError, match="lr must be > 0, got 0"):
        descend(bowl, "sgd", 0)
    with pytest.raises(ValueError, match="optimizer must be one of .*got 'lion'"):
        descend(bowl, "lion", 0.1)
    with pytest.raises(ValueError, match="steps must be <= 2000, got 2001"):
        descend(bowl, "sgd", 0.1, steps=2001)
    with pytest.raises(ValueError, match="start must be two numbers"):
        descend(bowl, "sgd", 0.1, start=(1.0,))


@pytest.mark.parametrize("surface_name", ["bowl", "valley"])
def test_range_test_on_a_quadratic_suggests_a_rate_near_the_stability_limit(surface_name: str) -> None:
    surface = get_surface(surface_name)
    trace = range_test(surface, "sgd", min_lr=1e-4, max_lr=10, steps=100)
    assert np.all(np.diff(trace.lr) > 0) and trace.lr[0] == pytest.approx(1e-4)
    assert trace.events and trace.events[0].kind == "stopped"
    limit = stability_limit(surface)
    assert trace.lr[-1] > limit  # the loss blows up only past the limit
    assert trace.meta["surface"] == surface_name
    assert limit / 10 < suggest(trace).lr < 2 * limit  # the right decade: a blow-up grows with a lag


# --- the JSON API ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_app())


def test_api_lists_surfaces_and_optimizers(client: TestClient) -> None:
    options = client.get("/api/options").json()
    assert [s["name"] for s in options["surfaces"]] == list(SURFACES)
    assert [o["name"] for o in options["optimizers"]] == list(OPTIMIZERS)


def test_api_surface_has_contours_and_limits(client: TestClient) -> None:
    data = client.get("/api/surface/bowl").json()
    assert len(data["z"]) == len(data["y"]) and len(data["z"][0]) == len(data["x"])
    assert data["limits"]["sgd"] == pytest.approx(0.8)
    assert data["limits"]["adam"] is None


def test_api_paths_show_three_behaviours_side_by_side(client: TestClient) -> None:
    response = client.post("/api/paths", json={"surface": "bowl", "optimizer": "sgd", "lrs": [1.0, 1e-5, 0.3]})
    assert response.status_code == 200
    high, low, good = response.json()["paths"]
    assert high["diverged_at"] is not None
    assert low["diverged_at"] is None and low["loss"][-1] > 0.95 * low["loss"][0]
    assert good["diverged_at"] is None and good["loss"][-1] < 1e-6


def test_api_range_test_marks_the_suggestion_and_the_limit(client: TestClient) -> None:
    data = client.post("/api/range-test", json={"surface": "bowl", "optimizer": "sgd"}).json()
    assert len(data["lr"]) == len(data["loss"]) > 10
    assert data["limit"] == pytest.approx(0.8)
    suggestion = data["suggestion"]
    assert suggestion["low"] <= suggestion["lr"] <= suggestion["high"]
    assert data["limit"] / 10 < suggestion["lr"] < 2 * data["limit"]


def test_api_paths_follow_an_lrkit_schedule_scaled_to_the_slider(client: TestClient) -> None:
    body = {"lrs": [0.5], "steps": 100, "schedule": "warmup(10) >> cosine(peak=2, steps=90)"}
    step_lr = client.post("/api/paths", json=body).json()["paths"][0]["step_lr"]
    assert step_lr[0] == 0.0 and max(step_lr) == pytest.approx(0.5)
    assert int(np.argmax(step_lr)) == 10 and step_lr[-1] < 0.01


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/api/paths", {"lrs": [0]}, "lr must be > 0, got 0"),
        ("/api/paths", {"lrs": [-1e-3]}, "lr must be > 0"),
        ("/api/paths", {"lrs": [1], "surface": "hill"}, "surface must be one of"),
        ("/api/paths", {"lrs": [1], "optimizer": "lion"}, "optimizer must be one of"),
        ("/api/paths", {"lrs": [1], "steps": 10**6}, "steps must be <= 2000"),
        ("/api/paths", {"lrs": [1], "steps": 0}, "steps must be >= 1"),
        ("/api/paths", {"lrs": "fast"}, "lrs must be a list"),
        ("/api/paths", {"lrs": [1] * 7}, "lrs must be a list of 1 to 6"),
        ("/api/paths", {"lrs": ["1"]}, "lr must be a number"),
        ("/api/paths", {"lrs": [1], "start": [0]}, "start must be two numbers"),
        ("/api/paths", {"lrs": [1], "schedule": "bogus("}, "schedule: spec 'bogus(' is malformed"),
        ("/api/paths", {"lrs": [1], "schedule": "__import__('os')"}, "unknown schedule '__import__'"),
        ("/api/paths", {"lrs": [1], "schedule": "constant(0)"}, "positive peak"),
        ("/api/paths", [1, 2], "must be a JSON object"),
        ("/api/range-test", {"min_lr": 1, "max_lr": 0.1}, "min_lr must be < max_lr"),
        ("/api/range-test", {"min_lr": -1}, "min_lr must be > 0"),
    ],
)
def test_api_refuses_bad_requests_with_a_message(client: TestClient, path: str, body: object, message: str) -> None:
    response = client.post(path, json=body)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_api_refuses_malformed_json_and_unknown_surfaces(client: TestClient) -> None:
    response = client.post("/api/paths", content=b"{not json")
    assert response.status_code == 400 and "JSON" in response.json()["error"]
    response = client.post("/api/paths", content=b'{"lrs": [1e999]}')
    assert response.status_code == 400 and "finite" in response.json()["error"]
    assert client.get("/api/surface/hill").status_code == 400


def test_page_and_plotly_are_served_from_the_package(client: TestClient) -> None:
    html = client.get("/").text
    assert '<script src="/static/plotly.min.js">' in html
    assert "http://" not in html and "https://" not in html
    script = client.get("/static/plotly.min.js")
    assert script.status_code == 200 and len(script.content) > 1_000_000


def test_cli_refuses_a_port_in_use(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(["explore", "--no-browser", "--port", str(port)])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"lrkit: error: cannot listen on 127.0.0.1:{port}") and "\n" not in err


def test_cli_serves_the_page_and_prints_its_address() -> None:
    command = [sys.executable, "-m", "lrkit", "explore", "--no-browser", "--port", "0"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        address = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert address, line + server.stderr.read()
        with urllib.request.urlopen(address.group(0), timeout=30) as response:
            assert response.status == 200 and b"lrkit explorer" in response.read()
    finally:
        server.terminate()
        server.wait(10)


def test_cli_refuses_a_bad_port(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explore", "--no-browser", "--port", "70000"]) == 2
    assert "70000" in capsys.readouterr().err


# --- the page in a real browser ----------------------------------------------------------------


@pytest.fixture(scope="module")
def server_url():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _move_slider(page, log10_lr: float) -> None:
    """Drag the LR slider to 10**log10_lr and wait for the paths computed at that LR."""
    page.evaluate(
        "(v) => { const s = document.getElementById('lr'); s.value = v; s.dispatchEvent(new Event('input')); }",
        log10_lr,
    )
    page.wait_for_function(
        "(want) => window.explorer.last && Math.abs(window.explorer.last.paths[0].lr - want) / want < 1e-9",
        arg=10**log10_lr,
    )


def test_explorer_page_in_chromium(server_url: str, browser) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server_url)
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)
    assert page.locator("#path .main-svg").count() > 0

    _move_slider(page, -0.5)
    good = page.evaluate("document.getElementById('path').data.at(-1).x.slice()")
    assert "diverged" not in page.inner_text("#status")
    assert page.is_visible("#limit-mark") and "0.8" in page.inner_text("#limit-mark")

    _move_slider(page, 0.1)
    high = page.evaluate("document.getElementById('path').data.at(-1).x.slice()")
    assert high != good
    assert "diverged" in page.inner_text("#status")
    assert page.evaluate("window.explorer.last.paths[0].diverged_at") is not None
    page.screenshot(path=str(ARTIFACTS / "explore-diverging.png"))

    page.check("#compare")
    page.wait_for_function("window.explorer.last.paths.length === 3")
    page.click("#run-range-test")
    page.wait_for_function("window.explorer.range !== null")
    assert page.locator("#range .main-svg").count() > 0
    page.screenshot(path=str(ARTIFACTS / "explore-compare.png"), full_page=True)
    assert errors == []
    page.close()
