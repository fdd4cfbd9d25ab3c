"""Atomic file output: write to a temporary file in the same folder, then rename over the target."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def _temporary(path: Path) -> tuple[int, Path]:
    """A new, empty, exclusively created temporary file beside `path` (its folder made if missing), open for
    writing, with the mode a plain `open` would give (0o666 less the umask, applied by the OS)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        temporary = path.parent / f".{path.name}.{secrets.token_hex(6)}.part"
        try:
            return os.open(temporary, flags, 0o666), temporary
        except FileExistsError:
            continue
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)  # first write into this folder
    raise FileExistsError(f"{path.parent}: no free temporary name for {path.name}")


@contextmanager
def _replacing(path: Path) -> Iterator[tuple[int, Path]]:
    """A temporary file beside `path` (descriptor, path) that replaces `path` when the block ends without
    an error; on any error it is removed and `path` is left as it was."""
    handle, temporary = _temporary(path)
    try:
        yield handle, temporary
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def write_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """Call `write(temporary_path)` and rename the result to `path`; a failure leaves no partial file."""
    with _replacing(path) as (handle, temporary):
        os.close(handle)
        write(temporary)
    return path


def write_bytes_atomically(path: Path, data: bytes) -> Path:
    """`data` as the whole content of `path`, atomically (written through the temporary file's descriptor:
    the cache writes thousands of small entries per run, and each syscall saved counts)."""
    with _replacing(path) as (handle, _), os.fdopen(handle, "wb") as stream:
        stream.write(data)
    return path


def write_text_atomically(path: Path, text: str) -> Path:
    return write_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def copy_atomically(source: Path, target: Path) -> Path:
    import shutil

    return write_atomically(target, lambda temporary: shutil.copyfile(source, temporary))
