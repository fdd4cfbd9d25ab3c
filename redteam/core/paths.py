"""Where the harness keeps its files: the cache (detections, embeddings, reconstructions, trained
inversions, benchmark copies)."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """REDTEAM_CACHE, else $XDG_CACHE_HOME/redteam, else ~/.cache/redteam."""
    env = os.environ.get("REDTEAM_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "redteam"


def ensure_writable_dir(path: Path, role: str, fix: str) -> Path:
    """Create `path` (and its parents) if needed and prove a file can be written in it.

    Raises:
        UsageError: `path` is an existing file.
        InputError: it cannot be created (a parent is a file, no permission) or is not writable; the message
            names the folder, its role and the OS's reason.
    """
    import tempfile

    from redteam.core.errors import InputError, UsageError

    if path.exists() and not path.is_dir():
        raise UsageError(f"{role} {path} is an existing file, not a folder", fix=fix)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".redteam-write-check-"):
            pass
    except OSError as error:
        reason = "a parent is a file" if isinstance(error, (NotADirectoryError, FileExistsError)) else (error.strerror or str(error))
        raise InputError(f"{role} {path} cannot be written ({reason})", fix=fix) from error
    return path


def check_creatable_dir(path: Path, role: str, fix: str) -> Path:
    """Check, creating nothing, that `path` is a folder that exists or can be made and written: used before
    a run whose output must not appear when the run stops early (a usage or input error).

    Raises:
        UsageError: `path` is an existing file.
        InputError: a parent is a file, or the nearest existing folder cannot be written (as `ensure_writable_dir`).
    """
    from redteam.core.errors import InputError, UsageError

    if path.exists() and not path.is_dir():
        raise UsageError(f"{role} {path} is an existing file, not a folder", fix=fix)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{role} {path} cannot be written (a parent is a file)", fix=fix)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{role} {path} cannot be written (permission denied in {existing})", fix=fix)
    return path


def ensure_writable_file(path: Path, role: str, fix: str) -> Path:
    """Check that `path` can be written as a file: not an existing folder, in a folder that can be written
    (created if needed), before any work is done for it.

    Raises:
        UsageError: `path` is an existing folder.
        InputError: its folder cannot be created or written (as `ensure_writable_dir`).
    """
    from redteam.core.errors import UsageError

    if path.is_dir():
        raise UsageError(f"{role} {path} is an existing folder, not a file", fix=fix)
    ensure_writable_dir(path.parent, f"folder of the {role}", fix)
    return path
