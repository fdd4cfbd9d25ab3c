"""Atomic output: the whole content or nothing, with the mode a plain open would give."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from redteam.core.atomic import write_atomically, write_bytes_atomically


def test_bytes_land_whole_in_a_new_folder_with_the_umask_applied(tmp_path: Path) -> None:
    previous = os.umask(0o027)
    try:
        target = write_bytes_atomically(tmp_path / "a" / "b" / "entry.json", b"{}")
    finally:
        os.umask(previous)
    assert target.read_bytes() == b"{}"
    assert target.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in target.parent.iterdir()] == ["entry.json"]


def test_a_failed_write_leaves_the_old_content_and_no_temporary_file(tmp_path: Path) -> None:
    target = write_bytes_atomically(tmp_path / "entry.bin", b"old")

    def fail(path: Path) -> None:
        path.write_bytes(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomically(target, fail)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry.bin"]
    write_bytes_atomically(target, b"new")
    assert target.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["entry.bin"]
