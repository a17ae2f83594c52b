"""Figures for Traces, range tests, diagnoses, schedules and sweeps (matplotlib, Agg backend).

Every function draws on a given ``ax`` or a new figure and returns the figure; ``save_figure``
writes one atomically, in the format its file's extension names.
"""

from lrkit.plots.cost import plot_cost
from lrkit.plots.curves import figure_format, new_axes, plot_traces, save_figure
from lrkit.plots.diagnosis import plot_diagnosis
from lrkit.plots.finder import plot_finder
from lrkit.plots.schedule import plot_schedule
from lrkit.plots.sweep import plot_sweep

__all__ = [
    "figure_format",
    "new_axes",
    "plot_cost",
    "plot_diagnosis",
    "plot_finder",
    "plot_schedule",
    "plot_sweep",
    "plot_traces",
    "save_figure",
]
