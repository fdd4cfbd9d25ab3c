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
