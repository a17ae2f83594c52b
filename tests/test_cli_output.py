"""Output paths are checked before a command works, and the checks create nothing."""

from __future__ import annotations

import click
import pytest

from lrkit.cli.output import figure_file, writable_file, writable_folder


def test_a_missing_folder_passes_the_check_without_being_created(tmp_path):
    folder = tmp_path / "a" / "b"
    assert writable_folder(folder) == folder
    assert not (tmp_path / "a").exists()


def test_an_existing_folder_passes_and_keeps_only_its_files(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    assert writable_folder(tmp_path) == tmp_path
    assert [child.name for child in tmp_path.iterdir()] == ["keep.txt"]


def test_a_folder_under_a_file_names_the_option_the_path_and_the_blocker(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(click.UsageError) as raised:
        writable_folder(blocker / "sub", "--out")
    assert raised.value.format_message() == (
        f"--out {str(blocker / 'sub')!r} cannot be written: {str(blocker)!r}: Not a directory"
    )


def test_a_file_is_checked_in_its_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert writable_file(tmp_path / "new" / "y.csv", "--csv") == tmp_path / "new" / "y.csv"
    assert not (tmp_path / "new").exists()
    with pytest.raises(click.UsageError, match=r"^--csv '.*/file/y\.csv' cannot be written: .*Not a directory"):
        writable_file(blocker / "y.csv", "--csv")


@pytest.mark.parametrize("name", ["curve.png", "curve.PDF", "curve.svg"])
def test_a_figure_file_may_have_any_extension_matplotlib_writes(tmp_path, name):
    assert figure_file(tmp_path / name) == tmp_path / name


@pytest.mark.parametrize(("name", "got"), [("curve.xyz", "got '.xyz'"), ("curve", "got no extension")])
def test_a_figure_file_with_an_unknown_extension_names_the_option_and_the_formats(tmp_path, name, got):
    with pytest.raises(click.UsageError) as raised:
        figure_file(tmp_path / name, "--plot")
    message = raised.value.format_message()
    assert message.startswith(f"--plot {str(tmp_path / name)!r}: the extension must name an image format (")
    assert ".pdf" in message and ".png" in message and ".svg" in message and message.endswith(got)
