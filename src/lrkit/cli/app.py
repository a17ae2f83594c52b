"""The ``lrkit`` entry point: a click group whose commands load lazily, and one-line errors.

Bad input anywhere (a click usage error, a ``ValueError``/``TypeError`` from the API, a file that
cannot be read or written) prints ``lrkit: error: ...`` on stderr and exits 2, without a traceback.
An error raised inside the user's own code (an ``--entry`` function, its model or loss) is theirs
to debug: it keeps its traceback and exits 1. Set ``LRKIT_DEBUG=1`` to see every traceback.
"""

from __future__ import annotations

import csv
import importlib
import os
import re
import sys
import sysconfig
import traceback
from pathlib import Path

import click

import lrkit
from lrkit import __version__

# command name -> module that defines a click command named ``command``
COMMANDS: dict[str, str] = {
    "demo": "lrkit.cli.demo",
    "explore": "lrkit.cli.explore",
    "report": "lrkit.cli.report",
    "find": "lrkit.cli.find",
    "diagnose": "lrkit.cli.diagnose",
    "sweep": "lrkit.cli.sweep",
    "schedule": "lrkit.cli.schedule",
    "tasks": "lrkit.cli.tasks",
}


# a module an optional feature imports -> the extra that installs it
EXTRAS: dict[str, str] = {
    "optuna": "sweep", "psycopg2": "sweep", "optuna_dashboard": "dashboard", "jax": "optax",
    "optax": "optax", "keras": "keras", "lightning": "lightning", "transformers": "hf",
    "accelerate": "hf", "tbparse": "logs", "tensorboard": "logs", "sentence_transformers": "minilm",
    "starlette": "explore", "uvicorn": "explore", "plotly": "explore",
}


class LazyGroup(click.Group):
    """Imports a command's module only when that command runs, so ``lrkit --help`` stays fast."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module = COMMANDS.get(name)
        return None if module is None else importlib.import_module(module).command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lrkit")
def cli() -> None:
    """lrkit: find, schedule, watch and adapt the learning rate."""


# what an interrupted command keeps, said after "interrupted"
RESUMABLE = {
    "sweep": "; run the same command again to resume the sweep (the interrupted trial runs again, with its LR)"
}


# what input too large or too deeply nested to handle raises, past the checks (a CSV field over the
# csv module's limit, a step too big for an integer array, JSON nested thousands deep, an array too
# big for memory): bad input too, said in one line
OUT_OF_RANGE = (csv.Error, OverflowError, RecursionError, MemoryError)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code (0 ok, 1 failure, 2 bad input, 130 interrupted)."""
    given = sys.argv[1:] if argv is None else argv
    try:
        result = cli.main(args=argv, prog_name="lrkit", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.UsageError as error:
        return _fail(error.format_message())
    except click.ClickException as error:
        return _fail(error.format_message(), error.exit_code)
    except (click.Abort, KeyboardInterrupt):
        resume = RESUMABLE.get(given[0], "") if given else ""
        print(f"lrkit: interrupted{resume}", file=sys.stderr)
        return 130
    except Exception as error:
        if os.environ.get("LRKIT_DEBUG"):
            raise
        user_file = _user_code(error)
        if user_file is not None:
            traceback.print_exception(error)
            print(f"lrkit: error: raised in your code ({user_file}): {type(error).__name__}", file=sys.stderr)
            return 1
        missing = (error.name or "").partition(".")[0] if isinstance(error, ModuleNotFoundError) else ""
        if missing in EXTRAS:  # an optional feature on a core install: say which extra brings it
            command = f"lrkit {given[0]}" if given and given[0] in COMMANDS else "this"
            return _fail(
                f"{command} needs {missing}, which lrkit's core install leaves out: pip install 'lrkit[{EXTRAS[missing]}]'"
            )
        # bad input, or input too big or too deep to hold: a log, a spec, a count
        if isinstance(error, (ValueError, TypeError, OSError, *OUT_OF_RANGE)):
            return _fail(_as_options(str(error) or type(error).__name__, given))
        raise


_LIBRARY_ROOTS = tuple(
    Path(path).resolve()
    for path in {Path(lrkit.__file__).parent, *(sysconfig.get_paths()[key] for key in ("stdlib", "purelib", "platlib"))}
)


def _user_code(error: BaseException) -> str | None:
    """The deepest file of the traceback outside lrkit, the standard library and installed
    packages (the user's own code), or None when the error never passed through such a file.

    A relative name is a compiled extension's source (Cython names ``numpy/random/_mt19937.pyx``),
    never a module of the user's: those are imported by absolute path."""
    found = None
    if isinstance(error, SyntaxError) and error.filename and os.path.isabs(error.filename):
        path = Path(error.filename).resolve()  # the user's module does not parse: no frame of it ran
        if not any(path.is_relative_to(root) for root in _LIBRARY_ROOTS):
            return f"{error.filename}, line {error.lineno}"
    for frame in traceback.extract_tb(error.__traceback__):
        if frame.filename.startswith("<") or not os.path.isabs(frame.filename):
            continue
        path = Path(frame.filename).resolve()
        if not any(path.is_relative_to(root) for root in _LIBRARY_ROOTS):
            found = f"{frame.filename}, line {frame.lineno}"
    return found


def _as_options(message: str, argv: list[str]) -> str:
    """The API's message in the command line's words: ``min_lr`` becomes ``--min-lr`` where the
    command has that option (snake_case names only: they are never prose)."""
    command = cli.get_command(click.Context(cli), argv[0]) if argv and argv[0] in COMMANDS else None
    for param in getattr(command, "params", ()):
        flags = [opt for opt in param.opts if opt.startswith("--")]
        if "_" in (param.name or "") and flags:
            # not inside a path or a file name the message quotes (``runs/target_loss/log.csv``)
            message = re.sub(rf"(?<![\w\-/\\.]){param.name}(?![\w/\\]|\.\w)", max(flags, key=len), message)
    return message


def _fail(message: str, code: int = 2) -> int:
    line = " ".join(message.split())
    print(f"lrkit: error: {line}", file=sys.stderr)
    return code


def run() -> None:
    sys.exit(main())
