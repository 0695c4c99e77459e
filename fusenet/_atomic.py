"""Atomic file writing shared by model saving, the ONNX exporter and the Keras ``.weights.h5`` writer.

The bytes (or whatever a writer function puts at a path) go to a temporary file in the target's
folder, are flushed to disk, and only then ``os.replace``-d over the target: an exception while
writing leaves the previous file untouched and removes the temporary one.
"""

from __future__ import annotations

import os
import tempfile

__all__ = ["atomic_write"]


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(filepath, write_fn, overwrite: bool = True, owner: str = "write") -> str:
    """Call ``write_fn(tmp_path)`` to create a temporary file next to ``filepath``, then move it over
    ``filepath`` atomically. Returns the absolute target path.

    Raises ``IsADirectoryError`` (the target is a folder), ``FileExistsError`` (``overwrite=False`` and
    the target exists) and ``FileNotFoundError`` (the folder does not exist) before writing anything.
    """
    path = os.fspath(filepath)
    if os.path.isdir(path):
        raise IsADirectoryError(f"{owner}: cannot write to {path!r}: it is a directory.")
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"{owner}: {path!r} exists and overwrite=False.")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{owner}: cannot write to {path!r}: the folder {folder!r} does not exist.")
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        write_fn(tmp)
        with open(tmp, "rb+") as f:
            f.flush()
            os.fsync(f.fileno())
        mode = os.stat(path).st_mode & 0o777 if os.path.exists(path) else 0o666 & ~_current_umask()
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    return os.path.abspath(path)
