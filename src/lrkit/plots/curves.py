"""Loss curves against steps, and the helpers every lrkit figure shares."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # lrkit draws files, never windows

import numpy as np  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.backend_bases import FigureCanvasBase  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from lrkit.files import atomic_path  # noqa: E402
from lrkit.trace import Trace  # noqa: E402

# a longer line is drawn through its lowest and highest point in each of ~1000 bins: more bins
# than there are pixels across an 8-inch figure at 120 dpi
MAX_POINTS = 2000


def new_axes(ax: Axes | None = None, *, size: tuple[float, float] = (8, 4.5)) -> tuple[Figure, Axes]:
    """The given axes and their figure, or a fresh figure with one axes."""
    if ax is not None:
        return ax.figure, ax
    figure, ax = plt.subplots(figsize=size, layout="constrained")
    return figure, ax


def thinned(x: np.ndarray, y: np.ndarray, *, points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """``x, y`` with at most ``points`` points, for drawing: a longer line keeps the lowest and the
    highest point of each of ``(points - 2) // 2`` equal bins, in order, so it draws the same band of
    noise, spikes and dips as every point would, at a fraction of the size (a 1M-step log as SVG).
    The first and last points stay, so the line spans the same steps.

    NaN is left out of a bin's extremes; a bin of NaN only stays NaN, a gap in the line.
    """
    x, y = np.asarray(x), np.asarray(y, dtype=float)
    n = len(y)
    if n <= points:
        return x, y
    size = -(-n // ((points - 2) // 2))  # ceil: two points per bin, plus the first and the last
    rows = -(-n // size)
    binned = np.pad(y, (0, rows * size - n), mode="edge").reshape(rows, size)
    missing = np.isnan(binned)
    low = np.where(missing, np.inf, binned).argmin(axis=1)
    high = np.where(missing, -np.inf, binned).argmax(axis=1)
    starts = np.arange(rows) * size
    keep = np.unique(np.minimum(np.concatenate([starts + low, starts + high, [0, n - 1]]), n - 1))
    return x[keep], y[keep]


def figure_format(path: str | Path) -> str:
    """The image format ``path``'s extension names (``png``, ``pdf``, ``svg``, ...), checked against
    what matplotlib can write."""
    suffix = Path(path).suffix.lower()
    formats = FigureCanvasBase.get_supported_filetypes()
    if suffix[1:] not in formats:
        allowed = ", ".join(f".{name}" for name in sorted(formats))
        got = repr(suffix) if suffix else "no extension"
        raise ValueError(f"{str(path)!r}: the extension must name an image format ({allowed}), got {got}")
    return suffix[1:]


def save_figure(figure: Figure, path: str | Path, *, dpi: int = 120) -> Path:
    """Write ``figure`` atomically in the format its extension names (PNG, PDF, SVG, ...) and close it."""
    path = Path(path)
    kind = figure_format(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=kind, dpi=dpi)
    plt.close(figure)
    return path


def plot_traces(
    traces: Sequence[Trace],
    *,
    labels: Sequence[str] | None = None,
    ax: Axes | None = None,
    log_loss: bool = True,
    title: str | None = None,
    smooth: int = 1,
) -> Figure:
    """Training loss against step for several runs on one chart (validation loss dashed; a dotted
    line where a run's loss turned non-finite for good: skipped steps it went on from are not marked).

    A run longer than ``MAX_POINTS`` is drawn as its trend (``diagnose``'s smoothed curve) over
    a faint band of its noise (:func:`thinned`), so that long noisy runs do not hide each other.
    ``log_loss``: a log loss axis, unless there is nothing to draw or a loss drawn is <= 0 (a
    negative log-likelihood, say), which only a linear axis can show.
    """
    from lrkit.diagnosis import smooth_curve

    figure, ax = new_axes(ax)
    lowest = np.inf  # the lowest loss drawn
    labels = labels or [str(trace.meta.get("label", trace.meta.get("lr", i))) for i, trace in enumerate(traces)]
    for trace, label in zip(traces, labels, strict=True):
        loss = _moving_mean(trace.loss, smooth)
        finite = np.isfinite(loss)
        step, shown = trace.step[finite], loss[finite]
        if len(shown) > MAX_POINTS:
            (line,) = ax.plot(*smooth_curve(step, shown), label=label, linewidth=1.5)
            ax.plot(*thinned(step, shown), color=line.get_color(), linewidth=0.6, alpha=0.3, zorder=1)
        else:
            (line,) = ax.plot(step, shown, label=label, linewidth=1.2)
        lowest = min(lowest, shown.min(initial=np.inf))
        if trace.val_loss is not None:
            has_val = np.isfinite(trace.val_loss)
            val_line = thinned(trace.step[has_val], trace.val_loss[has_val])
            ax.plot(*val_line, "--", color=line.get_color(), linewidth=1)
            lowest = min(lowest, trace.val_loss[has_val].min(initial=np.inf))
        if len(trace) and not np.isfinite(trace.loss[-1]):  # diverged: dotted where it stayed non-finite
            kept = np.flatnonzero(np.isfinite(trace.loss))
            diverged = int(kept[-1]) + 1 if len(kept) else 0
            ax.axvline(trace.step[diverged], color=line.get_color(), linestyle=":", linewidth=1)
    if log_loss and 0 < lowest < np.inf:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (train solid, validation dashed)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    return figure


def _moving_mean(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    head = np.full(window - 1, np.nan)
    return np.concatenate([head, np.convolve(values, kernel, mode="valid")])
