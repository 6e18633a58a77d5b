"""Exports on a disk that cannot take them (pytest-qt, offscreen): File ▸ Export View and the views'
PNG / CSV / JSON exports go through a temporary file renamed into place, so a full disk, a
read-only file system or a file-size limit keeps the old file byte for byte, leaves no partial
file behind, and the message names the cause.

The full and read-only disks are a small tmpfs (needs root to mount: skipped elsewhere); the
file-size limit (RLIMIT_FSIZE, the write fails with EFBIG) runs anywhere."""

import errno
import resource
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import shown_window
from PySide6.QtGui import QColor, QImage

from explorer.saving import png_bytes
from explorer.views.base import AnalysisView

pytestmark = pytest.mark.usefixtures("no_blocking_questions")


@pytest.fixture
def window(qtbot, settings):
    w = shown_window(qtbot, settings)
    yield w
    w.controller.wait(10000)


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KB tmpfs, unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _good_png() -> bytes:
    image = QImage(16, 16, QImage.Format.Format_RGB32)
    image.fill(QColor("orange"))
    return png_bytes(image)


def _fill(folder: Path) -> None:
    """Write into ``folder`` until the disk is full."""
    with open(folder / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as e:
            assert e.errno == errno.ENOSPC


def _only(folder: Path, *names: str) -> None:
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)  # no temporary file left


def test_export_view_on_a_full_disk_keeps_the_old_png_and_says_the_disk_is_full(window, small_disk):
    old = _good_png()
    target = small_disk / "view.png"
    target.write_bytes(old)
    _fill(small_disk)
    assert not window.export_png(target)
    assert target.read_bytes() == old
    _only(small_disk, "view.png", "filler")
    assert "no space left on the device" in window.last_error and str(target) in window.last_error
    (small_disk / "filler").unlink()  # room again: the export now replaces the file
    assert window.export_png(target)
    assert target.read_bytes() != old and target.read_bytes().startswith(b"\x89PNG")
    _only(small_disk, "view.png")


def test_export_view_on_a_read_only_disk_says_so(window, small_disk):
    old = _good_png()
    target = small_disk / "view.png"
    target.write_bytes(old)
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    assert not window.export_png(target)
    assert target.read_bytes() == old
    assert "read-only file system" in window.last_error


def test_export_view_that_outgrows_the_file_size_limit_keeps_the_old_png(window, tmp_path):
    """RLIMIT_FSIZE with SIGXFSZ ignored: a write past the limit fails with EFBIG, as a full disk
    fails a write (the limit is back before anything else runs)."""
    old = _good_png()
    target = tmp_path / "view.png"
    target.write_bytes(old)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))  # the view's PNG is larger
        ok = window.export_png(target)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert not ok
    assert target.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".view.png")) == []
    assert "file too large" in window.last_error


def test_a_views_png_and_data_exports_on_a_full_disk_keep_the_old_files(qtbot, small_disk):
    view = AnalysisView("Counting")  # what every analysis view exports with
    qtbot.addWidget(view)
    view.resize(600, 400)
    old_png, old_csv = _good_png(), b"asked,true\r\n1,1\r\n"
    (small_disk / "view.png").write_bytes(old_png)
    (small_disk / "data.csv").write_bytes(old_csv)
    _fill(small_disk)
    messages = []
    view.errorShown.connect(messages.append)
    assert not view.export_png(small_disk / "view.png")
    assert not view.write_file(small_disk / "data.csv", "asked,true\r\n" + "2,2\r\n" * 100_000)
    assert (small_disk / "view.png").read_bytes() == old_png
    assert (small_disk / "data.csv").read_bytes() == old_csv
    _only(small_disk, "view.png", "data.csv", "filler")
    assert len(messages) == 2 and all("no space left on the device" in m for m in messages)
