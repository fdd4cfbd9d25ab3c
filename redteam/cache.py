"""Content-addressed cache for expensive results (detections, embeddings).

Keys combine a content hash with the model/version fingerprint, so a changed model never reuses a
stale result, and a killed run resumes where it stopped. Writes are atomic (temp file + rename).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def default_cache_dir() -> Path:
    """REDTEAM_CACHE, else $XDG_CACHE_HOME/redteam, else ~/.cache/redteam."""
    env = os.environ.get("REDTEAM_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "redteam"


def content_key(*parts: str | bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\x00")
    return digest.hexdigest()


def _atomic_write(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(handle, "wb") as out:
            write(out)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


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
            _atomic_write(self._path(kind, key, ".json"), lambda out: out.write(data))

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
            _atomic_write(self._path(kind, key, ".npy"), lambda out: np.save(out, value, allow_pickle=False))
