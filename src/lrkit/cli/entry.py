"""``--entry module:function``: the user's own code, imported the way ``python -m`` would find it."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any

import click


def load_function(
    entry: str, called_as: tuple[str, ...] = (), keywords: tuple[str, ...] = ()
) -> Callable[..., Any]:
    """The function named by ``module:function``; modules in the current folder are importable.

    ``called_as`` and ``keywords`` name the positional and keyword arguments lrkit will pass; a
    function that cannot take them is refused here, in one line, rather than failing inside the run.
    """
    module_name, _, name = entry.partition(":")
    # names only: ``a:b:c``, ``pkg/mod:f``, ``../x:f`` or ``mod:f `` would otherwise fail inside the
    # import machinery with a message that never names --entry
    if not all(part.isidentifier() for part in (*module_name.split("."), name)):
        raise click.UsageError(
            f"--entry must look like module:function, got {entry!r} (a module importable from the "
            "current folder and a function in it, e.g. train:setup or mypkg.train:setup)"
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise click.UsageError(f"--entry {entry!r}: cannot import {module_name!r}: {error}") from None
    function = getattr(module, name, None)
    if not callable(function):
        raise click.UsageError(f"--entry {entry!r}: {module_name} has no function {name!r}")
    if inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function):
        # calling it would only make a coroutine, never awaited (and Python warns about it on stderr)
        raise click.UsageError(f"--entry {entry!r}: {name} is an async function; lrkit calls a plain function")
    try:
        inspect.signature(function).bind(*called_as, **dict.fromkeys(keywords))
    except TypeError as error:
        call = ", ".join([*called_as, *(f"{keyword}=..." for keyword in keywords)])
        raise click.UsageError(f"--entry {entry!r}: lrkit calls it as {name}({call}), but {error}") from None
    except ValueError:  # no signature to read (some builtins): let the call itself decide
        pass
    return function
