"""`redteam benchmark` end to end on the bundled sample: sweeps, a reference method, the example plugin's
method and attack (through entry points), and an external tool, with every output written; a re-run with
one more setting makes only that setting's folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import plugin_environment

ROOT = Path(__file__).resolve().parents[3]
PLUGIN = ROOT / "examples" / "redteam-example-plugin" / "src"


def example_plugin_environment(tmp_path: Path) -> dict[str, str]:
    """The example plugin importable and registered (the entry points of its pyproject.toml), as
    `pip install` would leave it."""
    project = tomllib.loads((ROOT / "examples" / "redteam-example-plugin" / "pyproject.toml").read_text())["project"]
    groups = {group: dict(listed) for group, listed in project["entry-points"].items()}
    return plugin_environment(tmp_path / "site", project["name"], groups, PLUGIN)


def benchmark(env: dict[str, str], *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "redteam", "benchmark", *map(str, args)], capture_output=True, text=True, env=env, timeout=1200, cwd=ROOT)


@pytest.mark.slow
def test_a_benchmark_ranks_every_technique_and_a_new_setting_costs_only_itself(sample_dir: Path, tmp_path: Path) -> None:
    env = {**example_plugin_environment(tmp_path), "REDTEAM_CACHE": str(tmp_path / "cache")}
    common = ["--method", "box", "--method", "example_posterize", "--tool", f"{sys.executable} examples/my_tool.py {{input}} {{output}}"]
    common += ["--attack", "none", "--attack", "parrot", "--attack", "example_unsharp", "--recognizer", "dlib", "--probes-per-person", "all"]
    done = benchmark(env, sample_dir, "--sweep", "mosaic:block=8,16", *common, "--out", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    for name in (
        "leaderboard.csv",
        "leaderboard.parquet",
        "report.md",
        "report.html",
        "frontier.png",
        "curves.png",
        "strata.csv",
        "minimal_safe.json",
        "reproducibility.json",
    ):
        assert (out / name).is_file(), name
    board = pd.read_csv(out / "leaderboard.csv")
    assert set(board["technique"]) == {"mosaic:block=8", "mosaic:block=16", "box", "example_posterize", "tool1_my_tool"}
    assert (board["rank1_other_n"] > 0).all() and board["rank1_other_high"].is_monotonic_increasing  # ranked by the upper bound
    box = board.set_index("technique").loc["box"]
    assert box["ssim_face"] < box["ssim_outside"] and 0 < box["changed_fraction"] < 1  # the face is gone, the photo is not
    summary = json.loads((out / "audit" / "summary.json").read_text())
    assert "example_unsharp" in {v["attack"] for v in summary["verdicts"]}  # the plugin's attack ran
    assert summary["method_specs"]["tool1_my_tool"]["spec_origin"] == "identified"  # the tool's operator was fitted
    record = json.loads((out / "reproducibility.json").read_text())
    assert len(record["dataset"]["checksum"]) == 64 and record["command"].startswith("redteam benchmark")
    assert json.loads((out / "minimal_safe.json").read_text())[0]["family"] == "mosaic"

    again = benchmark(env, sample_dir, "--sweep", "mosaic:block=8,12,16", *common, "--out", tmp_path / "out2")
    assert again.returncode == 0, again.stderr
    made = [line for line in again.stderr.splitlines() if "folder made" in line]
    assert len(made) == 1 and "mosaic_block_12" in made[0]  # the other folders and the audit's results come from the cache


@pytest.mark.slow
def test_by_default_one_photo_per_person_is_a_probe_and_every_photo_is_in_the_gallery(sample_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, "REDTEAM_CACHE": str(tmp_path / "cache")}
    done = benchmark(env, sample_dir, "--method", "box", "--attack", "none", "--recognizer", "dlib", "--out", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "out" / "reproducibility.json").read_text())
    assert record["dataset"]["photos"] == 5 and record["dataset"]["probes"] == ["barack_obama/obama.jpg"]  # the only person with another photo
    folders = list((tmp_path / "cache" / "benchmark").glob("*/techniques/box-*"))
    made = [path.relative_to(folders[0]).with_suffix("").as_posix() for path in folders[0].rglob("*.png")]
    assert len(folders) == 1 and made == ["barack_obama/obama"]  # only the probe is anonymized
    board = pd.read_csv(tmp_path / "out" / "leaderboard.csv")
    assert board.loc[0, "rank1_other_n"] == 1 and board.loc[0, "rank1_other_chance"] == 0.5  # 2 of the other 4 photos are his: all in the gallery
    refused = benchmark(env, sample_dir, "--method", "box", "--probes-per-person", "0", "--out", tmp_path / "out2")
    assert refused.returncode != 0 and "--probes-per-person must be a positive whole number or all" in refused.stderr
    refused = benchmark(env, sample_dir, "--method", "box", "--utility", "beauty", "--out", tmp_path / "out3")
    assert refused.returncode != 0 and "unknown --utility 'beauty'" in refused.stderr and "lpips_outside" in refused.stderr


@pytest.mark.ray
def test_a_benchmark_on_a_ray_cluster_gives_the_leaderboard_of_one_process(sample_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'face-anon-redteam[ray]'")
    common = [
        "--probes-per-person",
        "all",
        "--sweep",
        "mosaic:block=8,16",
        "--method",
        "box",
        "--attack",
        "none",
        "--attack",
        "bicubic",
        "--recognizer",
        "dlib",
    ]
    boards = []
    for executor, workers in (("local", "1"), ("ray", "2")):
        env = {**os.environ, "REDTEAM_CACHE": str(tmp_path / f"cache-{executor}")}
        done = benchmark(env, sample_dir, *common, "--executor", executor, "--workers", workers, "--out", tmp_path / executor)
        assert done.returncode == 0, done.stderr
        boards.append((tmp_path / executor / "leaderboard.csv").read_text())
    assert boards[0] == boards[1]
