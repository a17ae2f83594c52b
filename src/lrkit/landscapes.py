"""Two-dimensional loss surfaces that show what the learning rate does, with exact gradients.

A well-conditioned bowl, an ill-conditioned (rotated) valley, Rosenbrock's banana, and a plateau
with several wells. On the quadratic ones gradient descent is stable exactly below
2 / largest curvature (and the known limits with momentum), so the explorer can mark the limit
and the tests can check the real optimizers against it. Pure NumPy: values and gradients work on
scalars and on whole grids.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lrkit import checks

ArrayFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
GradFn = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Surface:
    """A loss surface f(x, y): its value, gradient, drawing box, default start and minimum."""

    name: str
    title: str
    value_fn: ArrayFn
    gradient_fn: GradFn
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    start: tuple[float, float]
    minimum: tuple[float, float]
    hessian: tuple[tuple[float, float], tuple[float, float]] | None = None
    log_scale: bool = False

    def __repr__(self) -> str:
        return f"Surface({self.name!r}: {self.title})"

    def value(self, x: float | np.ndarray, y: float | np.ndarray) -> np.ndarray:
        return self.value_fn(np.asarray(x, dtype=float), np.asarray(y, dtype=float))

    def gradient(self, x: float | np.ndarray, y: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.gradient_fn(np.asarray(x, dtype=float), np.asarray(y, dtype=float))

    @property
    def max_curvature(self) -> float | None:
        """Largest eigenvalue of the (constant) Hessian, for the quadratic surfaces only."""
        if self.hessian is None:
            return None
        return float(np.linalg.eigvalsh(np.array(self.hessian)).max())

    def grid(self, points: int = 120) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """x and y axes over the drawing box and the loss on their grid (rows follow y)."""
        points = checks.integer("points", points, minimum=2)
        xs = np.linspace(*self.x_range, points)
        ys = np.linspace(*self.y_range, points)
        grid_x, grid_y = np.meshgrid(xs, ys)
        return xs, ys, self.value(grid_x, grid_y)


def stability_limit(surface: Surface, *, momentum: float = 0.0, nesterov: bool = False) -> float | None:
    """Largest stable learning rate of (heavy-ball or Nesterov) gradient descent on a quadratic.

    Plain GD: 2/L; heavy ball with momentum b (PyTorch's SGD form): 2(1+b)/L; Nesterov:
    2(1+b)/(L(1+2b)), where L is the largest curvature. None where the Hessian is not constant.
    """
    momentum = checks.in_range("momentum", momentum, 0.0, 1.0, high_open=True)
    curvature = surface.max_curvature
    if curvature is None:
        return None
    if nesterov:
        return 2 * (1 + momentum) / (curvature * (1 + 2 * momentum))
    return 2 * (1 + momentum) / curvature


def _quadratic(hessian: np.ndarray) -> tuple[ArrayFn, GradFn]:
    (a, b), (_, c) = hessian

    def value(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return 0.5 * (a * x * x + 2 * b * x * y + c * y * y)

    def gradient(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return a * x + b * y, b * x + c * y

    return value, gradient


def _rotated(eigenvalues: tuple[float, float], angle: float) -> np.ndarray:
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return rotation @ np.diag(eigenvalues) @ rotation.T


def _rosenbrock_value(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2


def _rosenbrock_gradient(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return -2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)


# wells: (centre x, centre y, depth, width) of Gaussian dips in a plateau at height 1, plus a
# faint bowl (0.01 r^2) so the plateau slopes gently inward instead of being exactly flat.
_WELLS = ((1.5, 1.0, 1.0, 0.8), (-1.6, -0.6, 0.7, 0.6), (-0.4, 2.1, 0.5, 0.45))
_BOWL = 0.01


def _wells_value(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    total = 1.0 + _BOWL * (x * x + y * y)
    for cx, cy, depth, width in _WELLS:
        total = total - depth * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * width * width))
    return total


def _wells_gradient(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gx, gy = 2 * _BOWL * x, 2 * _BOWL * y
    for cx, cy, depth, width in _WELLS:
        dip = depth * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * width * width)) / (width * width)
        gx = gx + dip * (x - cx)
        gy = gy + dip * (y - cy)
    return gx, gy


def _build() -> dict[str, Surface]:
    bowl_h = np.diag([1.5, 2.5])
    valley_h = _rotated((0.2, 20.0), 0.35)
    surfaces = [
        Surface("bowl", "well-conditioned bowl", *_quadratic(bowl_h), (-3.0, 3.0), (-3.0, 3.0),
                (-2.5, 2.0), (0.0, 0.0), tuple(map(tuple, bowl_h.tolist()))),
        Surface("valley", "ill-conditioned valley (condition number 100)", *_quadratic(valley_h),
                (-5.0, 5.0), (-3.0, 3.0), (-4.5, 0.5), (0.0, 0.0), tuple(map(tuple, valley_h.tolist())), log_scale=True),
        Surface("rosenbrock", "Rosenbrock's banana valley", _rosenbrock_value, _rosenbrock_gradient,
                (-2.0, 2.0), (-1.0, 3.0), (-1.5, 2.5), (1.0, 1.0), log_scale=True),
        Surface("wells", "plateau with several local minima", _wells_value, _wells_gradient,
                (-4.0, 4.0), (-4.0, 4.0), (3.2, -3.0), (1.48101, 0.98737)),
    ]
    return {surface.name: surface for surface in surfaces}


SURFACES: dict[str, Surface] = _build()


def list_surfaces() -> list[str]:
    return list(SURFACES)


def get_surface(name: str) -> Surface:
    """The built-in surface called ``name`` (see :func:`list_surfaces`)."""
    return SURFACES[checks.one_of("surface", name, SURFACES)]
