"""Atomic file writes: a crash at any moment leaves either the old file or the new one.

The new content goes to a temporary file beside the target, is flushed to disk, and is then
renamed over the target; a rename within one folder is atomic. Used for checkpoints, configs,
downloads and caches alike.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path`, on failure it is removed.

    For writers that want a file name (`torch.save`, `safetensors.torch.save_file`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        yield temporary
        with open(temporary, "rb+") as file:
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator:
    """Yield an open file to write; on success it replaces `path`, on failure it is removed."""
    with atomic_path(path) as temporary, open(temporary, "x" + mode.lstrip("w")) as file:
        yield file


def _fsync_folder(folder: Path) -> None:
    """Make a rename durable: the folder entry is data too."""
    with contextlib.suppress(OSError):  # some filesystems do not allow opening folders
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
