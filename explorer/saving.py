"""Writing the user's files: File ▸ Export View, the views' PNG, CSV and JSON exports, the lesson.

Each file is written as checkpoints are (:func:`detr_core.checkpoint.write_atomically`): into a
temporary file in the same folder, then renamed over the target. A full disk, a read-only file
system or a missing permission leaves an existing file as it was and no partial file behind, and
raises :class:`~detr_core.checkpoint.SaveError` whose message names the file and the cause in
words ("cannot save out.png: no space left on the device")."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from PySide6.QtCore import QBuffer, QByteArray, QIODevice
from PySide6.QtGui import QImage, QPixmap

from detr_core.checkpoint import SaveError, check_writable, write_atomically


def png_bytes(picture: QPixmap | QImage, path: str | Path = "") -> bytes:
    """``picture`` encoded as PNG, in memory (for ``path``: named in the error if Qt cannot)."""
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    ok = picture.save(buffer, "PNG")
    buffer.close()
    if not ok or data.isEmpty():
        raise SaveError(f"cannot save {path or 'the picture'}: Qt could not encode it as PNG")
    return bytes(data.data())


def save_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see the module); the path written."""
    path = Path(path)
    check_writable(path)  # a folder, a path under a file: said before anything is written
    return write_atomically(path, lambda f: f.write(data), size_hint=len(data))


def save_png(path: str | Path, picture: QPixmap | QImage) -> Path:
    return save_bytes(path, png_bytes(picture, path))


def save_text(path: str | Path, text: str) -> Path:
    return save_bytes(path, text.encode("utf-8"))


def csv_text(rows: list[dict[str, Any]]) -> str:
    """``rows`` as CSV with a header: every key of any row, in order of first appearance."""
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
