"""kill -9 in the middle of `audit` and of `anonymize`, then run again: no corrupt cache entry or output
file, and the same results as a run that was never interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from reports.table import reproducible_columns

pytestmark = pytest.mark.slow

AUDIT = ("--method", "blur=gaussian_blur:sigma=3", "--method", "px=mosaic:block=10", "--attack", "none", "--attack", "bicubic", "--recognizer", "dlib")


def start(*args: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "redteam", *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def killed_after(seconds: float, *args: object) -> None:
    process = start(*args)
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()


def assert_cache_entries_whole(cache: Path) -> None:
    for path in cache.rglob("*"):
        if path.suffix == ".json":
            json.loads(path.read_text())  # every entry parses: none was left half-written
        elif path.suffix == ".npy":
            np.load(path, allow_pickle=False)
        assert ".tmp" not in path.name, f"a temporary file was left behind: {path}"


def reference_audit(sample_dir: Path, out: Path, cache: Path) -> subprocess.CompletedProcess[bytes]:
    """The audit run alone, uninterrupted, on its own cache: the results every other run must give."""
    done = subprocess.run([sys.executable, "-m", "redteam", "audit", sample_dir, "--out", out, "--cache-dir", cache, *AUDIT], capture_output=True, timeout=900)
    assert done.returncode in (0, 1), done.stderr[-2000:]
    return done


def frame(out: Path) -> pd.DataFrame:
    return reproducible_columns(pd.read_parquet(out / "results.parquet")).sort_values(["method", "attack", "face_id", "recognizer"]).reset_index(drop=True)


@pytest.mark.parametrize("seconds", [4.0, 9.0, 15.0])
def test_an_audit_killed_mid_run_resumes_to_the_same_results(sample_dir: Path, tmp_path: Path, seconds: float) -> None:
    reference = reference_audit(sample_dir, tmp_path / "reference", tmp_path / "c0")
    cache = tmp_path / "cache"
    killed_after(seconds, "audit", sample_dir, "--out", tmp_path / "out", "--cache-dir", cache, *AUDIT)
    assert_cache_entries_whole(cache)
    resumed = subprocess.run(
        [sys.executable, "-m", "redteam", "audit", sample_dir, "--out", tmp_path / "out", "--cache-dir", cache, *AUDIT], capture_output=True, timeout=900
    )
    assert resumed.returncode == reference.returncode, resumed.stderr[-2000:]
    assert_cache_entries_whole(cache)
    pd.testing.assert_frame_equal(frame(tmp_path / "reference"), frame(tmp_path / "out"))


def test_anonymize_killed_mid_run_leaves_only_whole_files_and_finishes_identically(sample_dir: Path, tmp_path: Path) -> None:
    spec = "gaussian_blur:sigma=4 | noise:sigma=0.02"
    done = subprocess.run(
        [sys.executable, "-m", "redteam", "anonymize", sample_dir, tmp_path / "reference", "--method", spec], capture_output=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for seconds in (3.0, 5.0):
        target = tmp_path / f"killed-{seconds}"
        killed_after(seconds, "anonymize", sample_dir, target, "--method", spec)
        for path in target.rglob("*.png") if target.exists() else ():
            Image.open(path).load()  # every file there is a whole image
        assert not [p for p in target.rglob("*") if ".tmp" in p.name] if target.exists() else True
        again = subprocess.run([sys.executable, "-m", "redteam", "anonymize", sample_dir, target, "--method", spec], capture_output=True, timeout=600)
        assert again.returncode == 0, again.stderr[-2000:]
        for path in (tmp_path / "reference").rglob("*.png"):
            assert (target / path.relative_to(tmp_path / "reference")).read_bytes() == path.read_bytes()


def test_two_audits_sharing_one_cache_at_once_both_finish_with_identical_results(sample_dir: Path, tmp_path: Path) -> None:
    """Started together on one empty cache (each writes entries the other may be reading), and a third
    audit on one output folder shared with the second: every run finishes, and the results match a run
    that had the cache to itself."""
    reference = reference_audit(sample_dir, tmp_path / "reference", tmp_path / "alone")
    cache = tmp_path / "shared"
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "redteam", "audit", sample_dir, "--out", tmp_path / out, "--cache-dir", cache, *AUDIT],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for out in ("first", "second", "second")
    ]
    for run in runs:
        _, stderr = run.communicate(timeout=900)
        assert run.returncode == reference.returncode, stderr[-2000:]
    assert_cache_entries_whole(cache)
    for out in ("first", "second"):
        pd.testing.assert_frame_equal(frame(tmp_path / "reference"), frame(tmp_path / out))
