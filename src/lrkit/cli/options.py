"""Options several commands share, declared once so that each means the same everywhere."""

from __future__ import annotations

from typing import Any

import click

SEED = click.IntRange(0, 2**32 - 1)  # what numpy, torch and Optuna all accept


def seed_option(help: str) -> Any:
    """``--seed``, 0 by default."""
    return click.option("--seed", type=SEED, default=0, show_default=True, help=help)


def json_option(what: str) -> Any:
    """``--json``; ``what`` names what it prints, e.g. "the suggestion"."""
    return click.option(
        "--json", "as_json", is_flag=True,
        help=f"Print {what} as one JSON object on stdout; everything else goes to stderr.",
    )
