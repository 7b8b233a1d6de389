"""Destinations checked before work starts, and atomic writes (a temporary file in the same folder, then a
rename), so that nothing is ever half-written and no finished work is lost to an unwritable destination."""

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from dphe_bench.errors import DestinationError


def prepare_folder(path: str | Path, what: str) -> Path:
    """Create folder ``path`` (with its parents) and check that a file can be written in it.

    Call it before long work. ``what`` names the destination for people (``run.output_dir``, ``--out``).
    Raises DestinationError naming ``what`` and the path when the path is empty or the folder cannot be made
    or written.
    """
    path = _non_empty(path, what)
    reason = _unwritable_folder(path)
    if reason:
        raise DestinationError(f"{what} {path} cannot be written: {reason}")
    return path


def prepare_file(path: str | Path, what: str) -> Path:
    """Check that file ``path`` can be (re)written atomically: its folder is made and writable, and the path is
    not a folder. Raises DestinationError naming ``what`` and the path."""
    path = _non_empty(path, what)
    if path.is_dir():
        raise DestinationError(f"{what} {path} is a folder, not a file")
    reason = _unwritable_folder(path.parent)
    if reason:
        raise DestinationError(f"{what} {path} cannot be written: {reason}")
    return path


def _non_empty(path: str | Path, what: str) -> Path:
    if not str(path).strip():
        raise DestinationError(f"{what} is empty: name a path")
    return Path(path)


def _unwritable_folder(path: Path) -> str | None:
    """None if ``path`` exists (made now if missing) and takes a new file, else the reason it does not."""
    for ancestor in (path, *path.parents):
        if ancestor.exists():
            if not ancestor.is_dir():
                return f"{ancestor} is a file, not a folder"
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"the folder {path} cannot be made ({exc.strerror or exc})"
    try:
        handle, probe = tempfile.mkstemp(dir=path, prefix=".write-probe-")
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        return f"no file can be created in {path} ({exc.strerror or exc})"
    return None


def write_atomically(path: Path, write: Callable[[BinaryIO], object], mode: int | None = None) -> None:
    """Create ``path`` by calling ``write(binary_file)`` on a temporary file in the same folder, then renaming it.

    The file gets permission bits ``mode`` (default: 0666 less the process umask, as ``open`` would give; secrets
    pass 0o600). The folder is created when missing. On any error the temporary file is removed and ``path`` is
    untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(handle, _default_mode() if mode is None else mode)
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_text_atomically(path: Path, text: str, mode: int | None = None) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically, with permission bits as in ``write_atomically``."""
    write_atomically(path, lambda file: file.write(text.encode("utf-8")), mode)


def _default_mode() -> int:
    """0666 less the process umask (reading the umask means setting it: it is put back at once)."""
    umask = os.umask(0o077)
    os.umask(umask)
    return 0o666 & ~umask
