"""Atomic file writes: a crash, an error or Ctrl-C never leaves half a file behind."""

from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import InputError


def check_can_write(path: str | os.PathLike) -> None:
    """Fail before the work, not after it: ``path``'s folder must exist or be creatable, and be
    writable (as far as permissions tell; the write itself stays the final word)."""
    folder = Path(path).absolute().parent
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise InputError(f"{path}: cannot be written: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{path}: cannot be written: no write permission in {existing}; write somewhere else")
    # Permissions say nothing for root (containers, CI) or on read-only and virtual file
    # systems (/proc): a file made and removed again is the honest test.
    try:
        new_temp_beside(existing / Path(path).name).unlink()
    except OSError as exc:
        raise InputError(f"{path}: cannot be written in {existing} ({exc.strerror or exc}); write somewhere else") from None


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds.

    The temporary name keeps the suffix so encoders and muxers pick the right format, and it
    lives in the same folder so ``os.replace`` is an atomic rename, never a copy.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = new_temp_beside(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot write here ({exc.strerror or exc}); check the folder's "
                         "permissions and free space, or write somewhere else") from None
    try:
        yield Path(tmp)
        try:
            replace_keeping_mode(tmp, path)
        except OSError as exc:
            raise InputError(f"{path}: cannot write ({exc.strerror or exc})") from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def replace_keeping_mode(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Rename ``tmp`` over ``path``: a file replaced keeps its mode (a private result stays
    private); a new one has the umask's already (``new_temp_beside``)."""
    if os.path.exists(path):
        os.chmod(tmp, os.stat(path).st_mode & 0o777)
    os.replace(tmp, path)


def new_temp_beside(path: str | os.PathLike) -> Path:
    """A new empty file with a unique hidden name beside ``path`` (its suffix kept, for encoders
    and muxers), created with mode 0666 and O_EXCL: the operating system applies the umask in
    force now (``mkstemp`` makes 0600 files, and reading the umask means setting it, which races
    with the caller's other threads), and a file another run is writing is never clobbered."""
    path = Path(path)
    while True:
        tmp = path.parent / f".{path.stem}.tmp-{secrets.token_hex(4)}{path.suffix}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue
