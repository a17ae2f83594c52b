"""One cell of a log as a value: a number, a wall-clock time or a step's duration, else its text."""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone
from typing import Any

# a cell as the readers give it to a Table: text is kept so that only a column that is read fails on it
Cell = float | str | timedelta | None

# a duration as fastai writes an epoch's time, ``MM:SS`` (``H:MM:SS`` past an hour), or as Python's
# ``str(timedelta)`` does; an hour of two digits is left to be a time of day, no duration
DURATION_TEXT = re.compile(r"(?:(\d):)?(\d\d):(\d\d(?:\.\d+)?)")


def number(cell: Any) -> float | str | None:
    """A cell as a float; empty is missing (None), 'nan'/'inf' are values, other text stays text."""
    if cell is None:
        return None
    if isinstance(cell, (int, float)):
        return float(cell)
    text = str(cell).strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return text


def clock_value(cell: Any) -> float | timedelta | None:
    """A wall-clock cell in seconds: a number, or an ISO-8601 time (one without a zone read as UTC),
    or a duration written ``[H:]MM:SS`` (a timedelta); empty is missing (None) and anything else NaN,
    which leaves the clock out instead of failing."""
    text = number(cell)
    if not isinstance(text, str):
        return text
    duration = DURATION_TEXT.fullmatch(text)
    if duration:
        hours, minutes, seconds = duration.groups()
        return timedelta(hours=int(hours or 0), minutes=int(minutes), seconds=float(seconds))
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return math.nan
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def cell_text(value: float | str | timedelta) -> str:
    """A cell as text again: a whole number without its ``.0``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
