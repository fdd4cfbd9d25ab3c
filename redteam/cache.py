"""Content-addressed cache for expensive results (detections, embeddings, attacked probes).

Keys combine a content hash with the model/version fingerprint, so a changed model never reuses a
stale result, and a killed run resumes where it stopped. Writes are atomic (temp file + rename).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from redteam.core.atomic import write_bytes_atomically
from redteam.core.paths import default_cache_dir

__all__ = ["Cache", "content_key", "default_cache_dir"]

T = TypeVar("T")


def content_key(*parts: str | bytes) -> str:
    """SHA-256 over the parts (NUL-separated); a string that carries undecodable bytes of a file name (lone
    surrogates) is hashed with those bytes, never refused."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8", "surrogateescape") if isinstance(part, str) else part)
        digest.update(b"\x00")
    return digest.hexdigest()


def _npy_bytes(value: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, value, allow_pickle=False)
    return buffer.getvalue()


class Cache:
    """A folder of JSON and .npy entries; `Cache(None)` is a disabled cache that stores nothing.

    An entry that exists but cannot be read back (emptied, truncated, not JSON, not an array, unreadable)
    is a miss, never trusted: it is removed, reported through `log` (set by the run), and the caller
    recomputes it and writes it again.

    Attributes:
        log: where a bad entry is reported ("cache entry ... is unreadable: removed, ..."); None: not reported.
    """

    def __init__(self, root: Path | None, log: Callable[[str], None] | None = None) -> None:
        self.root = root
        self.log = log
        self.bad_entries = 0

    def _path(self, kind: str, key: str, suffix: str) -> Path:
        if self.root is None:
            raise RuntimeError("cache disabled")
        return self.root / kind / key[:2] / f"{key}{suffix}"

    def _read(self, path: Path, parse: Callable[[Path], T]) -> T | None:
        """`parse(path)`, or None when the entry is absent or cannot be read back (then reported)."""
        try:
            return parse(path)
        except FileNotFoundError:
            return None
        except Exception as error:  # noqa: BLE001 - whatever a damaged entry raises (OSError, ValueError, EOFError, ...), it is a miss
            self.bad_entries += 1
            try:
                path.unlink()  # entries are replaced atomically: a damaged one is not being written, it is garbage
            except OSError:
                pass
            if self.log is not None:
                self.log(f"cache entry {path} is unreadable ({type(error).__name__}: {error}): removed, and recomputed where it is needed")
            return None

    def get_json(self, kind: str, key: str) -> Any | None:
        if self.root is None:
            return None
        return self._read(self._path(kind, key, ".json"), lambda path: json.loads(path.read_text()))

    def put_json(self, kind: str, key: str, value: Any) -> None:
        if self.root is not None:
            data = json.dumps(value).encode()
            write_bytes_atomically(self._path(kind, key, ".json"), data)

    def has(self, kind: str, key: str, suffix: str = ".bin") -> bool:
        """Whether an entry exists (without reading it): `put_bytes` (".bin"), `put_array` (".npy") or `put_json` (".json")."""
        return self.root is not None and self._path(kind, key, suffix).is_file()

    def get_bytes(self, kind: str, key: str) -> bytes | None:
        if self.root is None:
            return None
        return self._read(self._path(kind, key, ".bin"), lambda path: path.read_bytes())

    def put_bytes(self, kind: str, key: str, value: bytes) -> None:
        if self.root is not None:
            write_bytes_atomically(self._path(kind, key, ".bin"), value)

    def get_array(self, kind: str, key: str) -> np.ndarray | None:
        if self.root is None:
            return None
        return self._read(self._path(kind, key, ".npy"), lambda path: np.load(path, allow_pickle=False))

    def put_array(self, kind: str, key: str, value: np.ndarray) -> None:
        if self.root is not None:
            write_bytes_atomically(self._path(kind, key, ".npy"), _npy_bytes(value))
