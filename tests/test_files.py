"""Atomic writes: the whole new file or the old one, with the mode ``open()`` would have given."""

from __future__ import annotations

import os
import stat

import pytest

from lrkit.files import atomic_write, atomic_write_text


@pytest.fixture
def umask():
    """Set the process umask for one test, and put the old one back after it."""
    old = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)], ids=oct)
def test_a_new_file_gets_0o666_less_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    path = atomic_write_text(tmp_path / "new" / "out.csv", "a,b\n")
    assert path.read_text() == "a,b\n"
    assert mode(path) == expected


@pytest.mark.parametrize("existing", [0o640, 0o755, 0o444], ids=oct)
def test_a_replaced_file_keeps_its_mode(tmp_path, umask, existing):
    umask(0o022)
    path = tmp_path / "out.csv"
    path.write_text("old\n")
    path.chmod(existing)
    atomic_write_text(path, "new\n")
    assert path.read_text() == "new\n"
    assert mode(path) == existing


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "out.csv"
    path.write_text("old\n")

    def fail(handle):
        handle.write(b"half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(path, fail)
    assert path.read_text() == "old\n"
    assert [child.name for child in tmp_path.iterdir()] == ["out.csv"]


def test_a_symbolic_link_is_written_through_and_stays_a_link(tmp_path):
    target = tmp_path / "runs" / "report.html"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "latest.html"
    link.symlink_to(target)
    atomic_write_text(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
    dangling = tmp_path / "dangling.csv"
    dangling.symlink_to(tmp_path / "made" / "later.csv")
    atomic_write_text(dangling, "x")
    assert dangling.is_symlink() and (tmp_path / "made" / "later.csv").read_text() == "x"
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(OSError, match="loop"):
        atomic_write_text(loop, "x")


def test_a_durable_write_waits_for_the_disk_and_a_snapshot_to_a_folder_does_not(tmp_path, monkeypatch):
    import torch

    from lrkit import save_checkpoint
    from lrkit.torch.snapshot import Snapshot

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    model = torch.nn.Linear(3, 2)
    save_checkpoint(tmp_path / "state.pt", model)  # what a run resumes from after a crash
    assert len(synced) == 2  # the file and its folder
    synced.clear()
    before = model.weight.detach().clone()
    snapshot = Snapshot.take(model, directory=tmp_path / "snaps")  # lives as long as the run
    assert synced == [] and snapshot.path.exists()
    with torch.no_grad():
        model.weight.add_(1.0)
    snapshot.restore()  # still atomic and whole: restored exactly
    assert torch.equal(model.weight, before)
    synced.clear()
    atomic_write(tmp_path / "quick.bin", lambda handle: handle.write(b"x"), durable=False)
    assert synced == [] and (tmp_path / "quick.bin").read_bytes() == b"x"
