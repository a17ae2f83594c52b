"""Loss curves against steps, and the helpers every lrkit figure shares."""

from __future__ import annotations

import textwrap
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
# a loss spanning more than this factor gets a log axis: over a decade, so a labelled tick or more
LOG_RATIO = 20
MARKERS = "os^Dv<>P"  # one per run, so that runs whose lines coincide stay apart
MARKS_PER_RUN = 10


def new_axes(
    ax: Axes | None = None, *, size: tuple[float, float] = (8, 4.5)
) -> tuple[Figure, Axes]:
    """The given axes and their figure, or a fresh figure with one axes."""
    if ax is not None:
        return ax.figure, ax
    figure, ax = plt.subplots(figsize=size, layout="constrained")
    return figure, ax


def thinned(
    x: np.ndarray, y: np.ndarray, *, points: int = MAX_POINTS
) -> tuple[np.ndarray, np.ndarray]:
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


def spans_decades(values: np.ndarray) -> bool:
    """Whether the finite ``values`` are all positive and span more than ``LOG_RATIO`` times, so a
    log axis shows them better than a linear one (whose low end would flatten into a line)."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    return bool(len(finite) and finite.min() > 0 and finite.max() / finite.min() > LOG_RATIO)


def mostly_near_zero(values: np.ndarray) -> bool:
    """Whether the largest finite value is positive and over half of them lie below 1% of it: a
    linear axis would draw those as zero (an LR swept or decayed over decades), a log axis shows
    them. A warmup from 0 or a decay to about 0 at the end keeps its linear axis."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    return bool(len(finite) and finite.max() > 0 and np.mean(finite < 0.01 * finite.max()) > 0.5)


def title_lines(text: str, *, width: int = 100) -> str:
    """``text`` broken into lines of at most ``width`` characters, so that a long title (a verdict's
    action, a range test's reason) stays inside the figure instead of running off both sides."""
    return textwrap.fill(text, width=width, break_long_words=False, break_on_hyphens=False)


def figure_format(path: str | Path) -> str:
    """The image format ``path``'s extension names (``png``, ``pdf``, ``svg``, ...), checked against
    what matplotlib can write."""
    suffix = Path(path).suffix.lower()
    formats = FigureCanvasBase.get_supported_filetypes()
    if suffix[1:] not in formats:
        allowed = ", ".join(f".{name}" for name in sorted(formats))
        got = repr(suffix) if suffix else "no extension"
        raise ValueError(
            f"{str(path)!r}: the extension must name an image format ({allowed}), got {got}"
        )
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
    colors: Sequence[str] | None = None,
    ax: Axes | None = None,
    log_loss: bool = True,
    title: str | None = None,
    smooth: int = 1,
) -> Figure:
    """Training loss against step for several runs on one chart (validation loss dashed; a dotted
    line where a run's loss turned non-finite for good: skipped steps it went on from are not marked).

    A run longer than ``MAX_POINTS`` is drawn as its trend (``diagnose``'s smoothed curve) over
    a faint band of its noise (:func:`thinned`), so that long noisy runs do not hide each other.
    With several runs each carries its own marker every tenth of its line, offset from the other
    runs' marks, so two runs whose lines coincide (two close LRs) both show. ``colors``: one per run
    (default: the color cycle), to keep a run's color from one figure to the next.
    ``log_loss``: a log loss axis where the losses drawn are positive and span more than
    ``LOG_RATIO`` times; a loss <= 0 (a negative log-likelihood, say) or a narrow band keeps a
    linear one.
    """
    from lrkit.diagnosis import smooth_curve

    figure, ax = new_axes(ax)
    drawn = [np.empty(0)]  # every loss drawn, for the axis' scale
    labels = labels or [
        str(trace.meta.get("label", trace.meta.get("lr", i))) for i, trace in enumerate(traces)
    ]
    colors = colors or [None] * len(traces)
    for index, (trace, label, color) in enumerate(zip(traces, labels, colors, strict=True)):
        loss = _moving_mean(trace.loss, smooth)
        finite = np.isfinite(loss)
        step, shown = trace.step[finite], loss[finite]
        long = len(shown) > MAX_POINTS
        x, y = smooth_curve(step, shown) if long else (step, shown)
        marks = _marks(index, len(traces), len(x))
        (line,) = ax.plot(x, y, label=label, color=color, linewidth=1.5 if long else 1.2, **marks)
        if long:
            ax.plot(
                *thinned(step, shown), color=line.get_color(), linewidth=0.6, alpha=0.3, zorder=1
            )
        drawn.append(shown)
        if trace.val_loss is not None:
            has_val = np.isfinite(trace.val_loss)
            val_line = thinned(trace.step[has_val], trace.val_loss[has_val])
            ax.plot(*val_line, "--", color=line.get_color(), linewidth=1)
            drawn.append(trace.val_loss[has_val])
        if len(trace) and not np.isfinite(trace.loss[-1]):  # dotted where it stayed non-finite
            kept = np.flatnonzero(np.isfinite(trace.loss))
            diverged = trace.step[int(kept[-1]) + 1 if len(kept) else 0]
            ax.axvline(
                diverged,
                color=line.get_color(),
                linestyle=":",
                linewidth=1,
                label=f"{label}: non-finite from step {diverged}",
            )
    if log_loss and spans_decades(np.concatenate(drawn)):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (train solid, validation dashed)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    return figure


def _marks(index: int, runs: int, points: int) -> dict[str, object]:
    """Run ``index``'s marker style: every tenth of its ``points`` when there are several runs (a
    lone point, too, which a line alone would not show), starting a fraction of that apart per run."""
    if runs < 2 and points > 1:
        return {}
    every = max(1, points // MARKS_PER_RUN)
    return {
        "marker": MARKERS[index % len(MARKERS)],
        "markersize": 5,
        "markevery": (index * every // runs, every),
    }


def _moving_mean(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    head = np.full(window - 1, np.nan)
    return np.concatenate([head, np.convolve(values, kernel, mode="valid")])
