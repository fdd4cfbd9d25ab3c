"""Cache entries that cannot be read back are misses (recomputed), reported, and never trusted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from redteam.cache import Cache


@pytest.mark.parametrize("damage", [b"", b"\x93NUMPY", b"not an array at all"])
def test_a_damaged_array_entry_is_a_miss_that_is_logged_and_removed(tmp_path: Path, damage: bytes) -> None:
    """Issue 22: a .npy emptied to 0 bytes between two runs raised numpy's EOFError out of `get_array`
    (click turned it into "Aborted." and exit 1, with no report)."""
    lines: list[str] = []
    cache = Cache(tmp_path)
    cache.log = lines.append
    cache.put_array("embeddings", "ab" * 32, np.ones(3, np.float32))
    path = tmp_path / "embeddings" / "ab" / f"{'ab' * 32}.npy"
    path.write_bytes(damage)
    assert cache.get_array("embeddings", "ab" * 32) is None
    assert len(lines) == 1 and str(path) in lines[0] and "unreadable" in lines[0]
    assert not path.exists() and cache.bad_entries == 1
    assert cache.get_array("embeddings", "ab" * 32) is None and len(lines) == 1  # gone: an ordinary miss now
    cache.put_array("embeddings", "ab" * 32, np.ones(3, np.float32))  # recomputed and written again
    assert np.array_equal(cache.get_array("embeddings", "ab" * 32), np.ones(3, np.float32))


def test_damaged_json_and_bytes_entries_are_misses_too(tmp_path: Path) -> None:
    lines: list[str] = []
    cache = Cache(tmp_path)
    cache.log = lines.append
    cache.put_json("detections", "cd" * 32, [1, 2])
    (tmp_path / "detections" / "cd" / f"{'cd' * 32}.json").write_bytes(b"\xff\xfe{")
    assert cache.get_json("detections", "cd" * 32) is None and len(lines) == 1
    assert cache.get_json("detections", "ef" * 32) is None and cache.get_bytes("probe_crops", "ef" * 32) is None and len(lines) == 1  # absent: no report
