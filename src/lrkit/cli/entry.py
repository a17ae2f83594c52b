"""``--entry module:function``: the user's own code, imported the way ``python -m`` would find it."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

import click


def load_function(entry: str) -> Callable[..., Any]:
    """The function named by ``module:function``; modules in the current folder are importable."""
    module_name, _, name = entry.partition(":")
    if not module_name or not name:
        raise click.UsageError(f"--entry must look like module:function, got {entry!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise click.UsageError(f"--entry {entry!r}: cannot import {module_name!r}: {error}") from None
    function = getattr(module, name, None)
    if not callable(function):
        raise click.UsageError(f"--entry {entry!r}: {module_name} has no function {name!r}")
    return function
