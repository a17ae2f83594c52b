"""Options several commands share, declared once so that each means the same everywhere."""

from __future__ import annotations

from typing import Any

import click

SEED = click.IntRange(0, 2**32 - 1)  # what numpy, torch and Optuna all accept


def seed_option(help: str) -> Any:
    """``--seed``, 0 by default."""
    return click.option("--seed", type=SEED, default=0, show_default=True, help=help)


def out_folder_option(default: str) -> Any:
    """``--out``, the folder a command writes its files into."""
    return click.option(
        "--out", default=default, show_default=True, type=click.Path(file_okay=False), help="Output folder."
    )


def json_option(what: str) -> Any:
    """``--json``; ``what`` names what it prints, e.g. "the suggestion"."""
    return click.option(
        "--json", "as_json", is_flag=True,
        help=f"Print {what} as one JSON object on stdout; everything else goes to stderr.",
    )


# the largest learning rate a run can take: a float32 model (every built-in task's) cannot hold a
# rate above ~3.4e38, and torch's optimizers fail on one with a RuntimeError in the middle of a run
MAX_LR = 1e38


def lr_limit(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """Refuse a learning rate above ``MAX_LR`` before any training (an option's callback)."""
    if value is not None and value > MAX_LR:
        raise click.BadParameter(f"{value:g} is above {MAX_LR:g}, the largest learning rate lrkit trains with", ctx, param)
    return value


def lr_option(flag: str, default: float, help: str) -> Any:
    """An option taking a learning rate (``--min-lr``): a number > 0, refused above ``MAX_LR``."""
    return click.option(
        flag,
        default=default,
        show_default=True,
        type=click.FloatRange(min=0, min_open=True),
        callback=lr_limit,
        help=help,
    )
