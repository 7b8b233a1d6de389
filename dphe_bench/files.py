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
    Raises DestinationError naming ``what`` and the path when the folder cannot be made or written.
    """
    path = Path(path)
    reason = _unwritable_folder(path)
    if reason:
        raise DestinationError(f"{what} {path} cannot be written: {reason}")
    return path


def prepare_file(path: str | Path, what: str) -> Path:
    """Check that file ``path`` can be (re)written atomically: its folder is made and writable, and the path is
    not a folder. Raises DestinationError naming ``what`` and the path."""
    path = Path(path)
    if path.is_dir():
        raise DestinationError(f"{what} {path} is a folder, not a file")
    reason = _unwritable_folder(path.parent)
    if reason:
        raise DestinationError(f"{what} {path} cannot be written: its folder {path.parent}: {reason}")
    return path


def _unwritable_folder(path: Path) -> str | None:
    """None if ``path`` exists (made now if missing) and takes a new file, else the reason it does not."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=path, prefix=".write-probe-")
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Create ``path`` by calling ``write(binary_file)`` on a temporary file in the same folder, then renaming it.

    The folder is created when missing. On any error the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_atomically(path, lambda file: file.write(text.encode("utf-8")))
