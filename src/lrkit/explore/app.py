"""The explorer's web app: one HTML page and a small JSON API over the surfaces and ``descend``.

Plotly's JavaScript is served from the installed ``plotly`` package, so the page works offline.
Bad requests (unknown surface or optimizer, LR <= 0, too many steps, malformed JSON) get a 400
with a one-line message; nothing a client sends can make a 500.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import plotly
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from lrkit import checks, schedules
from lrkit.explore.descent import (
    MAX_STEPS,
    OPTIMIZER_TITLES,
    OPTIMIZERS,
    descend,
    descend_many,
    optimizer_limit,
    range_test,
)
from lrkit.landscapes import SURFACES, get_surface
from lrkit.suggest import suggest
from lrkit.trace import Trace

MAX_LRS = 6
GRID_POINTS = 120
# the schedule gives the shape, the LR slider its peak (see ``descend``)
SCHEDULE_EXAMPLES = [
    "constant(1)",
    "step_decay(peak=1, decay_steps=50, decay_ratio=0.5)",
    "exponential(peak=1, decay_ratio=0.98)",
    "cosine(peak=1, steps=200)",
    "warmup_cosine(peak=1, warmup_steps=20, steps=200)",
    "cyclic(min_lr=0.1, max_lr=1, up_steps=25)",
    "one_cycle(peak=1, steps=200)",
]
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


class BadRequest(ValueError):
    """A request the API refuses with a 400."""


async def page(request: Request) -> HTMLResponse:
    return HTMLResponse(resources.files("lrkit.explore").joinpath("page.html").read_text())


async def plotly_js(request: Request) -> FileResponse:
    return FileResponse(PLOTLY_JS, media_type="text/javascript")


async def options(request: Request) -> JSONResponse:
    """What the page can ask for: surfaces, optimizers, schedule examples and the step limit."""
    surfaces = [
        {"name": s.name, "title": s.title, "x_range": s.x_range, "y_range": s.y_range, "start": s.start}
        for s in SURFACES.values()
    ]
    optimizers = [{"name": name, "title": OPTIMIZER_TITLES[name]} for name in OPTIMIZERS]
    return JSONResponse(
        {"surfaces": surfaces, "optimizers": optimizers, "schedules": SCHEDULE_EXAMPLES, "max_steps": MAX_STEPS}
    )


async def surface(request: Request) -> JSONResponse:
    """Contours of one surface, its start and minimum, and each optimizer's stability limit."""
    chosen = get_surface(request.path_params["name"])
    xs, ys, zs = chosen.grid(GRID_POINTS)
    drawn = np.log10(zs - zs.min() + 1e-3) if chosen.log_scale else zs
    return JSONResponse(
        {
            "name": chosen.name,
            "title": chosen.title,
            "x": xs.tolist(),
            "y": ys.tolist(),
            "z": drawn.tolist(),
            "log_scale": chosen.log_scale,
            "x_range": chosen.x_range,
            "y_range": chosen.y_range,
            "start": chosen.start,
            "minimum": chosen.minimum,
            "limits": {name: optimizer_limit(chosen, name) for name in OPTIMIZERS},
        }
    )


async def paths(request: Request) -> JSONResponse:
    """Descent paths for one or more LRs: body {surface, optimizer, lrs, steps, start, schedule}."""
    body = await _body(request)
    chosen = get_surface(body.get("surface", "bowl"))
    optimizer = checks.one_of("optimizer", body.get("optimizer", "sgd"), OPTIMIZERS)
    lrs = body.get("lrs")
    if not isinstance(lrs, list) or not 1 <= len(lrs) <= MAX_LRS:
        raise BadRequest(f"lrs must be a list of 1 to {MAX_LRS} learning rates, got {lrs!r}")
    lrs = [checks.positive("lr", lr) for lr in lrs]
    steps = _steps(body.get("steps", 200))
    start = body.get("start")
    spec = body.get("schedule", SCHEDULE_EXAMPLES[0])
    try:
        schedule = schedules.parse(spec)
    except (ValueError, TypeError) as error:
        raise BadRequest(f"schedule: {error}") from None
    runs = descend_many(chosen, optimizer, lrs, steps=steps, start=start, schedule=schedule)
    return JSONResponse(
        {
            "surface": chosen.name,
            "optimizer": optimizer,
            "schedule": spec,
            "limit": optimizer_limit(chosen, optimizer),
            "paths": [run.to_json() for run in runs],
        }
    )


async def range_test_route(request: Request) -> JSONResponse:
    """An LR range test on the surface: body {surface, optimizer, start, min_lr, max_lr, steps}."""
    body = await _body(request)
    chosen = get_surface(body.get("surface", "bowl"))
    optimizer = checks.one_of("optimizer", body.get("optimizer", "sgd"), OPTIMIZERS)
    trace = range_test(
        chosen,
        optimizer,
        start=body.get("start"),
        min_lr=body.get("min_lr", 1e-5),
        max_lr=body.get("max_lr", 10.0),
        steps=_steps(body.get("steps", 100)),
    )
    return JSONResponse(
        {
            "lr": trace.lr.tolist(),
            "loss": [v if np.isfinite(v) else None for v in trace.loss.tolist()],
            "suggestion": suggestion_json(trace),
            "limit": optimizer_limit(chosen, optimizer),
        }
    )


def suggestion_json(trace: Trace) -> dict[str, Any]:
    """lrkit's suggestion for a range-test Trace, as the page draws it."""
    found = suggest(trace)
    low, high = found.range if found.range else (None, None)
    return {"lr": found.lr, "low": low, "high": high, "max_stable_lr": found.max_stable_lr, "reason": found.reason}


def _steps(value: Any) -> int:
    steps = checks.integer("steps", value, minimum=1)
    if steps > MAX_STEPS:
        raise BadRequest(f"steps must be <= {MAX_STEPS}, got {steps}")
    return steps


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadRequest(f"request body must be a JSON object: {error}") from None
    if not isinstance(body, dict):
        raise BadRequest(f"request body must be a JSON object, got {type(body).__name__}")
    return body


async def _refuse(request: Request, error: Exception) -> Response:
    return JSONResponse({"error": str(error)}, status_code=400)


@asynccontextmanager
async def _warm_up(app: Starlette) -> AsyncIterator[None]:
    """Build one optimizer in the background at start: torch.optim's first use imports a lot,
    and the page should not wait for it before it can even load."""
    threading.Thread(target=descend, args=(get_surface("bowl"), "adam", 0.1), kwargs={"steps": 1}, daemon=True).start()
    yield


def create_app() -> Starlette:
    """The explorer as an ASGI app (serve it with uvicorn, or test it with Starlette's TestClient)."""
    routes = [
        Route("/", page),
        Route("/static/plotly.min.js", plotly_js),
        Route("/api/options", options),
        Route("/api/surface/{name}", surface),
        Route("/api/paths", paths, methods=["POST"]),
        Route("/api/range-test", range_test_route, methods=["POST"]),
    ]
    return Starlette(
        routes=routes, exception_handlers={ValueError: _refuse, TypeError: _refuse}, lifespan=_warm_up
    )
