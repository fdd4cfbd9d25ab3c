"""What a re-run costs when one attack is added: only the new attack's work is done.

    python benchmarks/bench_incremental.py [--faces 20] [--runs 3]

1. `redteam audit` of `--faces` CelebA photos under a Gaussian blur with attacks none and wiener, cold cache.
2. The same audit with one more attack (tv_deconv), on that cache: detections, embeddings and the
   results of none and wiener are reused, only tv_deconv runs (the incremental re-run).
3. The new attack alone: the same audit with tv_deconv only, on a fresh copy of the cache of run 1
   (everything but tv_deconv's results is warm, as in run 2).
Reported: the incremental re-run's wall time over that of the attack alone (target <= 1.2), and over the
new attack's own compute seconds (summary.json `attack_seconds`). Medians of `--runs` runs, whole-process
figures. Writes `incremental-<date>.md` into `--out`. Reads ../shared/faces/research; copies nothing into
the repository (work folder under $REDTEAM_CACHE/bench).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import measured, redteam, subset, write_results  # noqa: E402

RESEARCH = ROOT.parent / "shared" / "faces" / "research"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    from redteam.core.paths import default_cache_dir

    work = default_cache_dir() / "bench" / "incremental"
    work.mkdir(parents=True, exist_ok=True)
    log = work / "log.txt"
    photos = subset(RESEARCH / "celeba", work / f"celeba-{args.faces}", args.faces, "*.jpg")

    def audit(cache: Path, out: Path, *attacks: str) -> list[str]:
        chosen = [a for name in attacks for a in ("--attack", name)]
        return redteam("audit", photos, "--method", "blur=gaussian_blur:sigma=6", *chosen, "--recognizer", "dlib", "--cache-dir", cache, "--out", out)

    rows: dict[str, list[float]] = {}
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(dir=work) as folder:
            scratch = Path(folder)
            first, _ = measured(audit(scratch / "cache", scratch / "first", "none", "wiener"), log)
            shutil.copytree(scratch / "cache", scratch / "cache-alone")
            again, _ = measured(audit(scratch / "cache", scratch / "again", "none", "wiener", "tv_deconv"), log)
            alone, _ = measured(audit(scratch / "cache-alone", scratch / "alone", "tv_deconv"), log)
            summary = json.loads((scratch / "again" / "summary.json").read_text())
            compute = sum(seconds.get("tv_deconv", 0.0) for seconds in summary["attack_seconds"].values())
        for key, value in (("first", first), ("again", again), ("alone", alone), ("compute", compute)):
            rows.setdefault(key, []).append(value)
        rows.setdefault("ratio_alone", []).append(again / alone)
        rows.setdefault("ratio_compute", []).append(again / compute)
        print(f"run {run + 1}: cold {first:.1f} s, re-run with tv_deconv {again:.1f} s, tv_deconv alone {alone:.1f} s (compute {compute:.1f} s)", flush=True)
    median = {key: statistics.median(values) for key, values in rows.items()}
    lines = [
        f"# Incremental re-run ({date.today().isoformat()}, 2 CPU cores)",
        "",
        f"`python benchmarks/bench_incremental.py --faces {args.faces} --runs {args.runs}`; medians of {args.runs} runs, whole-process wall seconds.",
        "",
        "| figure | measured | target |",
        "|---|---|---|",
        f"| first audit (none, wiener), cold cache | {median['first']:.1f} s | |",
        f"| re-run adding tv_deconv, same cache | {median['again']:.1f} s | |",
        f"| tv_deconv alone, same warm cache | {median['alone']:.1f} s | |",
        f"| tv_deconv's own compute (attack_seconds) | {median['compute']:.1f} s | |",
        f"| re-run / attack alone | {median['ratio_alone']:.2f} | <= 1.2 |",
        f"| re-run / the attack's compute seconds | {median['ratio_compute']:.2f} | (process start and model loading included) |",
    ]
    write_results(args.out / f"incremental-{date.today().isoformat()}.md", lines)


if __name__ == "__main__":
    main()
