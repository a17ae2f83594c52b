"""The `lrkit` command: help, version, task list, and one-line errors."""

import subprocess
import sys

from lrkit import __version__
from lrkit.cli.app import COMMANDS, main


def test_version_and_help(capsys):
    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out
    assert main(["--help"]) == 0
    printed = capsys.readouterr().out
    for name in COMMANDS:
        assert name in printed


def test_tasks_lists_every_builtin_task(capsys):
    assert main(["tasks"]) == 0
    printed = capsys.readouterr().out
    for name in ("digits-mlp", "digits-cnn", "cancer-logreg", "teacher-student", "charlm", "finetune-digits"):
        assert name in printed


def test_unknown_command_and_option_exit_2_with_one_line(capsys):
    assert main(["nonsense"]) == 2
    assert main(["demo", "--bogus"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.startswith("lrkit: error:") for line in err)


def test_console_script_runs_without_traceback():
    done = subprocess.run(
        [sys.executable, "-m", "lrkit", "demo", "--lrs", "0"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert done.stderr.strip().startswith("lrkit: error:") and "Traceback" not in done.stderr


def test_api_messages_name_the_command_line_options(capsys):
    from lrkit.cli.app import _as_options

    assert main(["sweep", "--task", "cancer-logreg", "--min-lr", "2", "--max-lr", "1"]) == 2
    assert capsys.readouterr().err == "lrkit: error: --min-lr must be < --max-lr, got --min-lr=2.0 >= --max-lr=1.0\n"
    # snake_case names become the command's options; prose words and other commands' names stay
    message = "min_lr=1, price_per_gpu_hour=2; the steps fell; a_min_lr stays"
    assert _as_options(message, ["find"]) == "--min-lr=1, price_per_gpu_hour=2; the steps fell; a_min_lr stays"
    assert _as_options(message, ["report"]).startswith("min_lr=1, --price-per-gpu-hour=2")
    assert _as_options(message, []) == message


def test_a_feature_whose_extra_is_missing_names_the_extra(monkeypatch, capsys):
    """On a core install (``make demo``'s), ``lrkit explore`` said ModuleNotFoundError in a traceback."""
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # importing it now raises ModuleNotFoundError
    assert main(["explore", "--no-browser", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "lrkit: error: lrkit explore needs uvicorn, which lrkit's core install leaves out: "
        "pip install 'lrkit[explore]'\n"
    )


def test_every_extra_named_for_a_module_exists():
    from pathlib import Path

    import tomllib

    from lrkit.cli.app import EXTRAS

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    assert set(EXTRAS.values()) <= set(project["optional-dependencies"])
