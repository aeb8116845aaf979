"""Atomic file writes: a crash, an error or Ctrl-C never leaves half a file behind."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import InputError


# mkstemp creates files 0600; a finished file should get the mode any new file gets (0644
# under the usual umask 022), or a web server or a colleague could not read the results.
# Read once: os.umask can only be read by setting it, which would race with other threads.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def check_can_write(path: str | os.PathLike) -> None:
    """Fail before the work, not after it: ``path``'s folder must exist or be creatable, and be
    writable (as far as permissions tell; the write itself stays the final word)."""
    folder = Path(path).absolute().parent
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise InputError(f"{path}: cannot be written: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{path}: cannot be written: no write permission in {existing}; write somewhere else")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds.

    The temporary name keeps the suffix so encoders and muxers pick the right format, and it
    lives in the same folder so ``os.replace`` is an atomic rename, never a copy.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise InputError(f"{path}: cannot write here ({exc.strerror or exc}); check the folder's "
                         "permissions and free space, or write somewhere else") from None
    try:
        yield Path(tmp)
        try:
            # Replacing a file keeps its mode; a new one gets the umask's.
            mode = path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_UMASK
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except OSError as exc:
            raise InputError(f"{path}: cannot write ({exc.strerror or exc})") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
