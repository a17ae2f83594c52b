"""Figures for Traces, range tests, diagnoses, schedules and sweeps (matplotlib, Agg backend).

Every function draws on a given ``ax`` or a new figure and returns the figure; ``save_figure``
writes a PNG atomically.
"""

from lrkit.plots.curves import new_axes, plot_traces, save_figure

__all__ = ["new_axes", "plot_traces", "save_figure"]
