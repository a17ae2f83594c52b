"""Odd and bad input on the command line: one line on stderr, exit 2, nothing half-written, and
with ``--json`` nothing on stdout; an error in the user's own code keeps its traceback and exits 1.

Found by fuzzing every command (an acceptance round); each test failed before its fix.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lrkit.cli.app import main
from lrkit.schedules import Schedule, parse


def one_line_error(capsys, *, json: bool = True) -> str:
    """The single ``lrkit: error:`` line of a refused command; stdout stays empty (for ``--json``)."""
    captured = capsys.readouterr()
    if json:
        assert captured.out == ""
    assert captured.err.startswith("lrkit: error: ") and captured.err.count("\n") == 1, captured.err
    assert "Traceback" not in captured.err
    return captured.err


def leftovers(folder: Path) -> list[str]:
    """Temp files the atomic writes would leave behind after a failure."""
    return [name for _, _, files in os.walk(folder) for name in files if name.endswith(".tmp")]


# --- schedule specs ---------------------------------------------------------------------------------


@given(
    wrapper=st.sampled_from([("-", ""), ("+", ""), ("(", ")"), ("[", "]"), ("scale(", ", 2)")]),
    depth=st.integers(min_value=1, max_value=4000),
    inside=st.sampled_from(["1", "constant(1)", "constant(-1)"]),
)
def test_a_spec_nested_any_depth_parses_or_says_why(wrapper: tuple[str, str], depth: int, inside: str):
    """``constant(------...1)`` (a few hundred signs) raised RecursionError from ``ast.parse``."""
    opening, closing = wrapper
    for spec in (opening * depth + inside + closing * depth, f"constant({opening * depth}1{closing * depth})"):
        try:
            result = parse(spec)
        except (ValueError, TypeError):  # what the CLI says in one line (a wrong argument is a TypeError)
            pass
        else:
            assert isinstance(result, Schedule)


@given(name=st.sampled_from(["peak", "steps", "end"]), first=st.integers(1, 9), second=st.integers(1, 9))
def test_a_keyword_given_twice_in_a_spec_is_refused(name: str, first: int, second: int):
    """``constant(peak=1, peak=2)`` parsed silently as peak=2 (``ast.parse`` keeps both)."""
    spec = f"cosine(peak=1, steps=10, {name}={first}, {name}={second})"
    with pytest.raises(ValueError, match=f"{name}= twice"):
        parse(spec)


@given(comment=st.text(alphabet="abc #()'", max_size=8), gap=st.sampled_from(["", " ", "  "]))
def test_a_comment_at_the_end_of_a_spec_is_named(comment: str, gap: str):
    """``constant(1) # note`` said "'(' was never closed": the comment hid the bracket lrkit adds."""
    spec = f"cosine(peak=1e-3, steps=10){gap}#{comment}"
    with pytest.raises(ValueError, match=r"a comment \('#' at column \d+\) cannot end a spec"):
        parse(spec)


def test_schedule_deep_spec_and_huge_steps_are_one_line(capsys):
    """A RecursionError (specs) and a MemoryError (``--steps 10**12``) came out as tracebacks."""
    assert main(["schedule", "constant(" + "-" * 3000 + "1)", "--steps", "5", "--json"]) == 2
    one_line_error(capsys)
    assert main(["schedule", "warmup(1) >> " * 700 + "constant(1)", "--steps", "5", "--json"]) == 2
    one_line_error(capsys)
    assert main(["schedule", "constant(1)", "--steps", str(10**12), "--json"]) == 2
    assert "--steps" in one_line_error(capsys)


# --- logs ---------------------------------------------------------------------------------------------


LOGS = {
    "field.csv": b"step,loss\n1," + b"9" * 200_000 + b"\n",  # over the csv module's field limit
    "steps.csv": b"step,loss\n" + b"".join(f"{10**30 + i},{1 / (i + 1)}\n".encode() for i in range(20)),
    "deep.jsonl": b"[" * 50_000 + b"]" * 50_000 + b"\n",
}


@pytest.mark.parametrize("name", sorted(LOGS))
@pytest.mark.parametrize("command", ["diagnose", "report"])
def test_a_log_too_big_or_too_deep_to_read_is_one_line(name: str, command: str, tmp_path: Path, capsys):
    """csv.Error, OverflowError and RecursionError from reading a log came out as tracebacks."""
    log = tmp_path / name
    log.write_bytes(LOGS[name])
    extra = ["--out", str(tmp_path / "out" / "report.html")] if command == "report" else []
    assert main([command, str(log), *extra, "--json"]) == 2
    err = one_line_error(capsys)
    if command == "diagnose":
        assert str(log) in err
    assert not (tmp_path / "out").exists()


# --- paths ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["schedule", "constant(1)", "--steps", "3", "--csv", ""], "--csv"),
        (["schedule", "constant(1)", "--steps", "3", "--plot", ""], "--plot"),
        (["diagnose", "LOG", "--plot", ""], "--plot"),
        (["find", "--task", "cancer-logreg", "--steps", "5", "--out", ""], "--out"),
        (["find", "--task", "cancer-logreg", "--steps", "5", "--out", "  "], "--out"),
        (["demo", "--task", "cancer-logreg", "--no-find", "--out", ""], "--out"),
        (["report", "LOG", "--out", ""], "--out"),
    ],
)
def test_an_empty_path_is_refused_not_the_current_folder(args: list[str], option: str, tmp_path: Path, monkeypatch, capsys):
    """``--out "$DIR"`` with DIR unset ran the command and wrote into the current folder (or failed
    late with 'Device or resource busy'); ``diagnose --plot ''`` silently drew nothing."""
    log = tmp_path / "log.csv"
    log.write_text("step,loss\n" + "".join(f"{i},{2 / (1 + i)}\n" for i in range(40)))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = [str(log) if arg == "LOG" else arg for arg in args]
    assert main([*argv, *(["--json"] if args[0] != "demo" else [])]) == 2
    err = one_line_error(capsys, json=args[0] != "demo")
    assert f"{option} must name a" in err
    assert os.listdir(work) == []


@pytest.mark.parametrize("command", ["schedule", "diagnose"])
def test_a_pgf_figure_without_latex_is_refused_before_the_work(command: str, tmp_path: Path, monkeypatch, capsys):
    """``--plot x.pgf`` is a format matplotlib lists, but it measures text with xelatex: without it
    the command did its work, then failed with a RuntimeError traceback."""
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: None)  # no LaTeX here
    log = tmp_path / "log.csv"
    log.write_text("step,loss\n" + "".join(f"{i},{2 / (1 + i)}\n" for i in range(40)))
    first = ["schedule", "constant(1)", "--steps", "5"] if command == "schedule" else ["diagnose", str(log)]
    assert main([*first, "--plot", str(tmp_path / "figure.pgf"), "--json"]) == 2
    assert "--plot" in one_line_error(capsys) and not (tmp_path / "figure.pgf").exists()
    assert not leftovers(tmp_path)


@given(folder=st.sampled_from(["target_loss", "price_per_gpu_hour", "step_column", "time_column"]), file=st.sampled_from(["run.csv", "target_loss.csv"]))
def test_a_path_in_a_message_is_never_rewritten_as_an_option(folder: str, file: str):
    """``lrkit report runs/target_loss/run.csv`` said "runs/--target-loss/run.csv: the file is
    empty": option names were swapped into the API's message inside the quoted path too."""
    import contextlib
    import io
    import tempfile

    with tempfile.TemporaryDirectory() as root:
        log = Path(root) / folder / file
        log.parent.mkdir()
        log.write_text("")
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            assert main(["report", str(log), "--out", str(Path(root) / "report.html")]) == 2
    assert err.getvalue() == f"lrkit: error: {log}: the file is empty\n"


# --- --entry ------------------------------------------------------------------------------------------


@given(
    entry=st.text(alphabet="ab:./-_ 1é\\", max_size=12).filter(
        lambda text: not all(part.isidentifier() for part in (*text.partition(":")[0].split("."), text.partition(":")[2]))
    )
)
def test_a_malformed_entry_is_refused_naming_entry(entry: str):
    """``--entry ../x:f`` said "the 'package' argument is required to perform a relative import"."""
    import contextlib
    import io
    import tempfile

    err = io.StringIO()
    with tempfile.TemporaryDirectory() as folder:
        out_folder = Path(folder) / "out"
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()) as out:
            assert main(["find", "--entry", entry, "--out", str(out_folder), "--json"]) == 2
        assert not out_folder.exists()
    assert out.getvalue() == ""
    assert err.getvalue().startswith("lrkit: error: --entry") and err.getvalue().count("\n") == 1


def test_a_syntax_error_in_the_users_module_is_theirs(tmp_path: Path, monkeypatch, capsys):
    """It came out as a bare SyntaxError traceback, without lrkit's closing line."""
    module = "lrkit_fuzz_syntax_error"
    (tmp_path / f"{module}.py").write_text("def setup(:\n    pass\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, module, raising=False)
    assert main(["find", "--entry", f"{module}:setup", "--out", "out", "--json"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "SyntaxError" in captured.err and "Traceback" in captured.err
    assert captured.err.splitlines()[-1] == (
        f"lrkit: error: raised in your code ({tmp_path / module}.py, line 1): SyntaxError"
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["find", "sweep"])
def test_an_async_entry_is_refused_before_it_is_called(command: str, tmp_path: Path, monkeypatch, capsys):
    """It was called: its coroutine was refused as the wrong return value, never awaited, and
    Python's "coroutine ... was never awaited" warning followed on stderr."""
    module = f"lrkit_fuzz_async_{command}"
    (tmp_path / f"{module}.py").write_text("async def setup(lr=None, report=None):\n    return 1.0\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, module, raising=False)
    lrs = ["--min-lr", "1e-3", "--max-lr", "1"] if command == "sweep" else []
    assert main([command, "--entry", f"{module}:setup", *lrs, "--out", "out", "--json"]) == 2
    assert "setup is an async function" in one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_sweep_json_keeps_what_the_users_module_prints_on_import_off_stdout(tmp_path: Path, monkeypatch, capsys):
    """``lrkit sweep --entry chatty:obj --json | jq`` broke: the module was imported before stdout
    was sent to stderr, so its import-time print came first on stdout (find did it right)."""
    import json

    pytest.importorskip("optuna")
    module = "lrkit_fuzz_chatty_sweep"
    (tmp_path / f"{module}.py").write_text("print('importing chatty')\ndef obj(lr, report):\n    return (lr - 0.01) ** 2\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, module, raising=False)
    args = ["--entry", f"{module}:obj", "--min-lr", "1e-3", "--max-lr", "1", "--trials", "1", "--out", "out", "--json"]
    assert main(["sweep", *args]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["finished"] == 1
    assert "importing chatty" in captured.err


# --- numbers ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["find", "--task", "cancer-logreg", "--steps", "5", "--max-lr", "1e308"],
        ["find", "--task", "cancer-logreg", "--steps", "5", "--min-lr", "1e-300", "--max-lr", "1e300"],
        ["sweep", "--task", "cancer-logreg", "--trials", "1", "--min-lr", "1e300", "--max-lr", "1e308"],
    ],
)
def test_a_learning_rate_no_float32_model_can_take_is_refused_before_training(args: list[str], tmp_path: Path, capsys):
    """torch's SGD failed mid-run with RuntimeError: value cannot be converted to type float without overflow."""
    assert main([*args, "--out", str(tmp_path / "out"), "--json"]) == 2
    err = one_line_error(capsys)
    assert "above 1e+38" in err and ("--max-lr" in err or "--min-lr" in err)
    assert not (tmp_path / "out").exists()


# --- sweep storage ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content", [b"x", b"garbage\n", b'{"a": 1}\n', b"[1]\n", b"null\n", b"\xff\xfe\x00binary"]
)
def test_a_file_that_is_not_a_journal_is_refused_in_one_line(content: bytes, tmp_path: Path, capsys):
    """Optuna failed on it with AssertionError, KeyError or TypeError (tracebacks, or a bare message)."""
    pytest.importorskip("optuna")
    journal = tmp_path / "sweep.journal"
    journal.write_bytes(content)
    out = tmp_path / "out"
    assert main(["sweep", "--task", "cancer-logreg", "--trials", "1", "--storage", str(journal), "--out", str(out), "--json"]) == 2
    assert "is not an Optuna journal file" in one_line_error(capsys)
    assert journal.read_bytes() == content and not out.exists()


@pytest.mark.parametrize(("args", "says"), [(["--storage", ""], "storage"), (["--study", ""], "study"), (["--storage", "."], "--storage")])
def test_sweep_refuses_an_empty_storage_or_study_name(args: list[str], says: str, tmp_path: Path, monkeypatch, capsys):
    """An empty --storage or --study fell back to the default silently (and ran the sweep)."""
    pytest.importorskip("optuna")
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "--task", "cancer-logreg", "--trials", "1", *args, "--out", "out", "--json"]) == 2
    assert says in one_line_error(capsys)
    assert not (tmp_path / "out").exists() and not leftovers(tmp_path)


# --- links and addresses --------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["loop", "missing"])
@pytest.mark.parametrize("below", ["", "sub"])
def test_an_output_folder_behind_a_broken_link_fails_before_any_work(target: str, below: str, tmp_path: Path, capsys):
    """``--out LINK`` (a symlink loop or a link to nothing) passed the check, trained, then failed
    with "[Errno 17] File exists: 'LINK'", naming no option."""
    link = tmp_path / "link"
    if target == "loop":
        (tmp_path / "other").symlink_to(link)
        link.symlink_to(tmp_path / "other")
    else:
        link.symlink_to(tmp_path / "nowhere" / "dir")
    out = link / below if below else link
    assert main(["find", "--task", "cancer-logreg", "--steps", "5", "--out", str(out), "--json"]) == 2
    err = one_line_error(capsys)
    assert err.startswith(f"lrkit: error: --out {str(out)!r} cannot be written") and "symbolic link" in err
    assert not leftovers(tmp_path)


def test_explore_refuses_an_empty_host(monkeypatch, capsys):
    """``--host ""`` (an unset variable) listened on every interface, at http://:8765/."""
    uvicorn = pytest.importorskip("uvicorn")

    def serve(*args, **kwargs):
        raise AssertionError("the server started")

    monkeypatch.setattr(uvicorn.Server, "run", serve)
    assert main(["explore", "--host", "", "--port", "0", "--no-browser"]) == 2
    assert "--host" in one_line_error(capsys, json=False)


def test_sweep_refuses_more_workers_than_the_machine_can_run(tmp_path: Path, monkeypatch, capsys):
    """``--workers 100000`` (a typo) started hundreds of worker processes and brought the machine
    to a load of 480 before it could be stopped."""
    pytest.importorskip("optuna")
    import lrkit.sweeps.search

    def run_plan(*args, **kwargs):
        raise AssertionError("the workers started")

    monkeypatch.setattr(lrkit.sweeps.search, "run_plan", run_plan)
    out = tmp_path / "out"
    assert main(["sweep", "--task", "cancer-logreg", "--trials", "2", "--workers", "100000", "--out", str(out), "--json"]) == 2
    assert "--workers 100000 is more than" in one_line_error(capsys)
    assert not out.exists()


def test_report_refuses_to_write_its_page_over_a_log_it_reads(tmp_path: Path, capsys):
    log = tmp_path / "run.csv"
    log.write_text("step,loss\n" + "".join(f"{step},{1 / (1 + step)}\n" for step in range(50)))
    before = log.read_text()
    assert main(["report", str(log), "--out", str(log)]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "a log it reads" in error
    assert log.read_text() == before


@pytest.mark.parametrize("name", ["metrics.csv.gz", "metrics.gz", "history.jsonl.gz"])
def test_a_gzipped_log_is_read_through_gzip_and_a_damaged_one_is_named(tmp_path: Path, name: str, capsys):
    import gzip

    from lrkit.logs import read_log

    rows = [{"step": step, "loss": 1 / (1 + step)} for step in range(40)]
    if "jsonl" in name:
        text = "".join(f'{{"step": {row["step"]}, "loss": {row["loss"]}}}\n' for row in rows)
    else:
        text = "step,loss\r\n" + "".join(f"{row['step']},{row['loss']}\r\n" for row in rows)
    path = tmp_path / name
    path.write_bytes(gzip.compress(text.encode()))
    trace = read_log(path)
    assert trace.loss.tolist() == [row["loss"] for row in rows]
    path.write_bytes(gzip.compress(text.encode())[:30])
    assert main(["diagnose", str(path)]) == 2
    assert capsys.readouterr().err.strip() == f"lrkit: error: {path}: a damaged gzip file (Compressed file ended before the end-of-stream marker was reached)"


def test_diagnose_reads_a_log_piped_in_and_names_the_stream_in_errors(tmp_path: Path):
    import subprocess

    lrkit = [sys.executable, "-m", "lrkit"]
    log = "step,loss\n" + "".join(f"{step},{1 / (1 + 0.05 * step)}\n" for step in range(200))
    piped = subprocess.run([*lrkit, "diagnose", "-", "--json"], input=log, capture_output=True, text=True, check=True)
    (tmp_path / "run.csv").write_text(log)
    named = subprocess.run([*lrkit, "diagnose", str(tmp_path / "run.csv"), "--json"], capture_output=True, text=True)
    import json

    assert json.loads(piped.stdout) == {**json.loads(named.stdout), "file": "<stdin>"}
    failed = subprocess.run([*lrkit, "diagnose", "-"], input="a,b\n1,2\n", capture_output=True, text=True)
    assert failed.returncode == 2 and failed.stderr.startswith("lrkit: error: <stdin>: no loss column")
