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


def new_axes(ax: Axes | None = None, *, size: tuple[float, float] = (8, 4.5)) -> tuple[Figure, Axes]:
    """The given axes and their figure, or a fresh figure with one axes."""
    if ax is not None:
        return ax.figure, ax
    figure, ax = plt.subplots(figsize=size, layout="constrained")
    return figure, ax


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
    """Training loss against step for several runs on one chart (validation loss dashed).

    ``log_loss``: a log loss axis, unless there is nothing to draw or a loss drawn is <= 0 (a
    negative log-likelihood, say), which only a linear axis can show.
    """
    figure, ax = new_axes(ax)
    lowest = np.inf  # the lowest loss drawn
    labels = labels or [str(trace.meta.get("label", trace.meta.get("lr", i))) for i, trace in enumerate(traces)]
    for trace, label in zip(traces, labels, strict=True):
        loss = _moving_mean(trace.loss, smooth)
        finite = np.isfinite(loss)
        (line,) = ax.plot(trace.step[finite], loss[finite], label=label, linewidth=1.2)
        lowest = min(lowest, loss[finite].min(initial=np.inf))
        if trace.val_loss is not None:
            has_val = np.isfinite(trace.val_loss)
            ax.plot(trace.step[has_val], trace.val_loss[has_val], "--", color=line.get_color(), linewidth=1)
            lowest = min(lowest, trace.val_loss[has_val].min(initial=np.inf))
        if not finite.all():
            first = int(np.argmin(finite))
            ax.axvline(trace.step[first], color=line.get_color(), linestyle=":", linewidth=1)
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
