"""``lrkit schedule``: the table, the CSV and the plot, and one-line errors."""

import numpy as np

from lrkit import schedules as S
from lrkit.cli.app import main

SPEC = "warmup(50) >> cosine(peak=3e-4, steps=450) >> constant(1e-6)"


def test_prints_first_last_peak_minimum_and_phase_changes(capsys):
    assert main(["schedule", SPEC, "--steps", "600"]) == 0
    out = capsys.readouterr().out
    assert "warmup(50) >> cosine(peak=0.0003, steps=450) >> constant(1e-06)" in out
    for label, step, lr in (("first", 0, "0"), ("peak", 50, "0.0003"), ("last", 599, "1e-06"), ("phase 2 starts", 50, "0.0003"), ("phase 3 starts", 500, "1e-06")):
        line = next(line for line in out.splitlines() if label in line)
        assert str(step) in line and lr in line


def test_writes_csv_and_png(tmp_path, capsys):
    csv, png = tmp_path / "lr.csv", tmp_path / "out" / "lr.png"
    assert main(["schedule", SPEC, "--steps", "600", "--csv", str(csv), "--plot", str(png)]) == 0
    rows = np.loadtxt(csv, delimiter=",", skiprows=1)
    assert rows.shape == (600, 2)
    assert np.array_equal(rows[:, 1], S.parse(SPEC)(np.arange(600)))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_spec_is_one_line_on_stderr_and_exit_2(capsys):
    assert main(["schedule", "cosine(peak=-1, steps=10)", "--steps", "10"]) == 2
    err = capsys.readouterr().err
    assert err == "lrkit: error: cosine: peak must be > 0, got -1\n"
    assert main(["schedule", "cosine(peak=1, steps=10", "--steps", "10"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_bad_steps_exit_2(capsys):
    assert main(["schedule", SPEC, "--steps", "0"]) == 2
    assert "--steps" in capsys.readouterr().err


def test_plot_is_written_in_the_format_its_extension_names(tmp_path, capsys):
    pdf, svg = tmp_path / "lr.pdf", tmp_path / "lr.svg"
    assert main(["schedule", SPEC, "--steps", "600", "--plot", str(pdf)]) == 0
    assert main(["schedule", SPEC, "--steps", "600", "--plot", str(svg)]) == 0
    assert pdf.read_bytes()[:5] == b"%PDF-"
    assert svg.read_bytes().startswith(b"<?xml") and b"<svg" in svg.read_bytes()[:500]


def test_unwritable_csv_or_unknown_plot_format_fails_before_printing_or_writing(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    csv = blocker / "lr.csv"
    assert main(["schedule", SPEC, "--steps", "600", "--csv", str(csv)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"lrkit: error: --csv {str(csv)!r} cannot be written: {str(blocker)!r}: Not a directory\n"
    good_csv = tmp_path / "lr.csv"
    assert main(["schedule", SPEC, "--steps", "600", "--csv", str(good_csv), "--plot", str(tmp_path / "lr.xyz")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith(f"lrkit: error: --plot {str(tmp_path / 'lr.xyz')!r}: the extension must name an image format (")
    assert not good_csv.exists()


def test_accepts_every_kind_including_inverse_time(capsys):
    assert main(["schedule", "inverse_time(peak=0.1, decay_rate=1.0, decay_steps=10)", "--steps", "31"]) == 0
    out = capsys.readouterr().out
    last = next(line for line in out.splitlines() if "last" in line)
    assert "30" in last and "0.025" in last
    assert main(["schedule", "inverse_tim(0.1, 1.0)", "--steps", "5"]) == 2
    assert "inverse_sqrt, inverse_time" in capsys.readouterr().err
