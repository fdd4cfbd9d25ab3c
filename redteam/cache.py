"""Content-addressed cache for expensive results (detections, embeddings, attacked probes).

Keys combine a content hash with the model/version fingerprint, so a changed model never reuses a
stale result, and a killed run resumes where it stopped. Writes are atomic (temp file + rename).
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from redteam.core.atomic import write_bytes_atomically
from redteam.core.paths import default_cache_dir

__all__ = ["Cache", "content_key", "default_cache_dir"]


def content_key(*parts: str | bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\x00")
    return digest.hexdigest()


def _npy_bytes(value: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, value, allow_pickle=False)
    return buffer.getvalue()


class Cache:
    """A folder of JSON and .npy entries; `Cache(None)` is a disabled cache that stores nothing."""

    def __init__(self, root: Path | None) -> None:
        self.root = root

    def _path(self, kind: str, key: str, suffix: str) -> Path:
        if self.root is None:
            raise RuntimeError("cache disabled")
        return self.root / kind / key[:2] / f"{key}{suffix}"

    def get_json(self, kind: str, key: str) -> Any | None:
        if self.root is None:
            return None
        path = self._path(kind, key, ".json")
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

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
        try:
            return self._path(kind, key, ".bin").read_bytes()
        except OSError:
            return None

    def put_bytes(self, kind: str, key: str, value: bytes) -> None:
        if self.root is not None:
            write_bytes_atomically(self._path(kind, key, ".bin"), value)

    def get_array(self, kind: str, key: str) -> np.ndarray | None:
        if self.root is None:
            return None
        path = self._path(kind, key, ".npy")
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None

    def put_array(self, kind: str, key: str, value: np.ndarray) -> None:
        if self.root is not None:
            write_bytes_atomically(self._path(kind, key, ".npy"), _npy_bytes(value))
