"""The engine's throughput, memory and overhead, as ratios measured in one run.

    python benchmarks/bench_engine.py [--faces 200] [--methods 10] [--large 2000] [--runs 3] [--workers 2]

1. Against the naive script (`naive_pairs.py`: HOG detection and a dlib descriptor on both images of
   every pair): `redteam audit ORIGINALS --anonymized m=DIR x 10 --attack none --no-identify` with a cold
   cache, on `--faces` CelebA photos x `--methods` observed folders, run in turn with the script: once in
   one process (`--workers 1`) and once with `--workers N` (default: one per core; the script is
   single-threaded, as dlib is).
2. Warm re-run: the `--workers N` audit again with the cache of its cold run.
3. Memory: peak RSS of a naive-tier audit of `--large` UTKFace faces against one of `--faces`.
4. Classical attacks: every model-free attack that applies, per face and method, on 20 photos under a
   blur, a mosaic and a box (what `--attacks auto` runs when no model file is installed).
5. Overhead: the one-process cold audit's end-to-end seconds over its model-inference seconds
   (summary.json timings; with workers, inference seconds add up over processes, so that run is not used).
6. Instruments: the same overhead with dlib and FaceNet (LPIPS is on in every run), the one-process cold
   audit run again with `--recognizer dlib --recognizer facenet` (needs FaceNet's weights: `redteam models`).

Each figure is the median of `--runs` runs (wall seconds, peak RSS of the whole process by the OS's own
accounting). Writes `engine-<date>.md` into `--out`. Reads ../shared/faces/research; copies nothing
into the repository (its work folder is under $REDTEAM_CACHE/bench).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import measured, redteam, subset, write_results  # noqa: E402

RESEARCH = ROOT.parent / "shared" / "faces" / "research"
SPECS = (
    "gaussian_blur:sigma=2", "gaussian_blur:sigma=4", "gaussian_blur:sigma=8", "mosaic:block=8", "mosaic:block=12",
    "mosaic:block=16", "pixelate:pitch=10", "jpeg:quality=20", "noise:sigma=0.05", "box",
)  # fmt: skip
#: The attacks `--attacks auto` runs when no model file is installed (the demo's selection).
CLASSICAL = ("none", "parrot", "bicubic", "lanczos", "blind_deconv", "denoise", "jpeg_deblock", "wiener", "richardson_lucy", "tv_deconv")


def observed_folders(originals: Path, work: Path, faces: int, specs: tuple[str, ...]) -> list[Path]:
    """One folder per spec, as a user's redaction tool writes them (a PNG per original, mirroring the tree,
    no record): faces are detected once per original and every spec applied to them (what `redteam
    anonymize` does per spec, without detecting again for each)."""
    import numpy as np
    import torch
    from PIL import Image

    from redteam.anonymizers import build_method
    from redteam.core.seeds import image_seed
    from redteam.datasets import discover_images
    from redteam.faces import FaceDetector
    from redteam.images import load_image

    folders = [work / f"observed-{faces}-{index}" for index in range(len(specs))]
    for folder in folders:  # a record left by an interrupted `redteam anonymize` would make the folder declared
        if (folder / "redteam-anonymize.json").is_file():
            (folder / "redteam-anonymize.json").rename(folder.with_suffix(".record.json"))
    todo = [(folder, build_method(spec)) for folder, spec in zip(folders, specs, strict=True) if not (folder / ".complete").is_file()]
    if not todo:
        return folders
    detector = FaceDetector()
    for entry in discover_images(originals, role="originals").entries:
        image = load_image(entry.path)
        found = detector.detect(image.pixels)
        for folder, method in todo:
            out = folder / Path(entry.rel).with_suffix(".png")
            out.parent.mkdir(parents=True, exist_ok=True)
            generator = torch.Generator().manual_seed(image_seed(0, entry.rel))
            Image.fromarray(method.apply(image.pixels, found, generator) if found else np.array(image.pixels)).save(out)
    for folder, _ in todo:
        (folder / ".complete").write_text("ok\n")
    return folders


PARTS = ("speed", "memory", "classical", "instruments")


def _part_of(key: str) -> str:
    if key.startswith("instruments"):
        return "instruments"
    if key.startswith("rss_") or key.startswith("seconds_"):
        return "memory"
    if key.startswith("classical"):
        return "classical"
    return "speed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=200)
    parser.add_argument("--methods", type=int, default=10)
    parser.add_argument("--large", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes for the parallel cold and warm runs")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--prepare-only", action="store_true", help="write the observed folders and subsets, then stop")
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help="which measurements to run now; the others are taken from the last run recorded in --out (engine-<date>.json), each with its command",
    )
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    from redteam.core.paths import default_cache_dir

    work = default_cache_dir() / "bench" / "engine"
    work.mkdir(parents=True, exist_ok=True)
    log = work / "log.txt"
    originals = subset(RESEARCH / "celeba", work / f"celeba-{args.faces}", args.faces, "*.jpg")
    folders = observed_folders(originals, work, args.faces, SPECS[: args.methods])
    small = subset(RESEARCH / "utkface", work / f"utkface-{args.faces}", args.faces, "*.jpg")
    large = subset(RESEARCH / "utkface", work / f"utkface-{args.large}", args.large, "*.jpg")
    attacked = subset(RESEARCH / "celeba", work / "celeba-20", 20, "*.jpg")
    if args.prepare_only:
        print(f"prepared {len(folders)} observed folders of {args.faces} photos under {work}")
        return
    anonymized = [a for i, folder in enumerate(folders) for a in ("--anonymized", f"m{i}={folder}")]
    rows: dict[str, list[float]] = {}
    parts = set(args.parts.split(","))
    stamp = date.today().isoformat()
    record_path = args.out / f"engine-{stamp}.json"
    recorded = json.loads(record_path.read_text()) if record_path.is_file() else {}
    command = " ".join(["python benchmarks/bench_engine.py", *sys.argv[1:]])

    def audit(cache: Path, out: Path, *extra: object) -> list[str]:
        return redteam("audit", originals, *anonymized, "--attack", "none", "--no-identify", "--recognizer", "dlib", "--cache-dir", cache, "--out", out, *extra)

    naive = [sys.executable, str(ROOT / "benchmarks" / "naive_pairs.py"), str(originals), *map(str, folders)]
    timings = {}
    for run in range(args.runs if "speed" in parts else 0):
        with tempfile.TemporaryDirectory(dir=work) as folder:
            parallel = ("--workers", args.workers)
            single, _ = measured(audit(Path(folder) / "cache1", Path(folder) / "single", "--workers", 1), log)
            cold, cold_rss = measured(audit(Path(folder) / "cache", Path(folder) / "cold", *parallel), log)
            warm, _ = measured(audit(Path(folder) / "cache", Path(folder) / "warm", *parallel), log)
            script, _ = measured(naive, log)
            timings = json.loads((Path(folder) / "single" / "summary.json").read_text())["timings_seconds"]
        rows.setdefault("single", []).append(single)
        rows.setdefault("cold", []).append(cold)
        rows.setdefault("warm", []).append(warm)
        rows.setdefault("script", []).append(script)
        rows.setdefault("speedup_single", []).append(script / single)
        rows.setdefault("speedup", []).append(script / cold)
        rows.setdefault("warm_ratio", []).append(warm / cold)
        rows.setdefault("overhead", []).append(timings["total"] / max(timings.get("inference", 0.0), 1e-9))
        rows.setdefault("cold_rss", []).append(cold_rss)
        print(
            f"run {run + 1}: one process {single:.1f} s, {args.workers} workers cold {cold:.1f} s, warm {warm:.1f} s, naive script {script:.1f} s", flush=True
        )

    for label, folder in (("rss_small", small), ("rss_large", large)) if "memory" in parts else ():
        with tempfile.TemporaryDirectory(dir=work) as scratch:
            seconds, peak = measured(
                redteam(
                    "audit",
                    folder,
                    "--method",
                    "px=mosaic:block=12",
                    "--attack",
                    "none",
                    "--recognizer",
                    "dlib",
                    "--cache-dir",
                    Path(scratch) / "c",
                    "--out",
                    Path(scratch) / "o",
                ),
                log,
            )
        rows[label] = [peak]
        rows[label.replace("rss", "seconds")] = [seconds]
        print(f"{label}: {peak:.0f} MB in {seconds:.0f} s", flush=True)

    if "classical" in parts:
        with tempfile.TemporaryDirectory(dir=work) as scratch:
            started = time.perf_counter()
            methods = ("--method", "blur=gaussian_blur:sigma=6", "--method", "px=mosaic:block=12", "--method", "box=box")
            attacks = [a for name in CLASSICAL for a in ("--attack", name)]
            audit_command = redteam(
                "audit", attacked, *methods, *attacks, "--recognizer", "dlib", "--cache-dir", Path(scratch) / "c", "--out", Path(scratch) / "o"
            )
            subprocess.run(audit_command, stdout=subprocess.DEVNULL, stderr=log.open("a"), check=False)
            summary = json.loads((Path(scratch) / "o" / "summary.json").read_text())
            rows["classical_wall"] = [time.perf_counter() - started]
        rows["classical_faces"] = [summary["sample"]["faces"]]
        for method, seconds in summary["attack_seconds"].items():
            rows[f"classical:{method}"] = [sum(seconds.values()) / max(1, summary["sample"]["faces"])]
    if "instruments" in parts:
        with tempfile.TemporaryDirectory(dir=work) as folder:
            command_line = audit(Path(folder) / "cache", Path(folder) / "out", "--workers", 1, "--recognizer", "facenet")
            rows["instruments_wall"] = [measured(command_line, log)[0]]
            seconds = json.loads((Path(folder) / "out" / "summary.json").read_text())["timings_seconds"]
        rows["instruments_overhead"] = [seconds["total"] / max(seconds.get("inference", 0.0), 1e-9)]
        print(f"dlib + facenet + lpips, one process: {rows['instruments_wall'][0]:.1f} s, overhead {rows['instruments_overhead'][0]:.2f}", flush=True)
    for part in PARTS:
        if part in parts:
            recorded[part] = {"command": command, "rows": {k: v for k, v in rows.items() if _part_of(k) == part}}
        elif part in recorded:
            rows.update(recorded[part]["rows"])
    args.out.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(recorded, indent=2) + "\n")
    missing = [part for part in PARTS if part not in recorded]
    if missing:
        print(f"recorded {sorted(parts)} in {record_path}; still to run: {', '.join(missing)}")
        return
    median = {key: statistics.median(values) for key, values in rows.items()}
    per_method = {key.split(":", 1)[1]: value for key, value in median.items() if key.startswith("classical:")}
    faces, wall = int(median["classical_faces"]), median["classical_wall"]
    lines = [
        f"# Engine benchmark ({date.today().isoformat()}, 2 CPU cores)",
        "",
        f"Medians of the runs of each part; {args.faces * args.methods} pairs. Commands: "
        + "; ".join(f"{part}: `{recorded[part]['command']}`" for part in PARTS)
        + ".",
        "",
        "| figure | measured | target |",
        "|---|---|---|",
        f"| naive tier, {args.faces} CelebA photos x {args.methods} observed folders, cold cache, one process | {median['single']:.1f} s | |",
        f"| the same, `--workers {args.workers}` | {median['cold']:.1f} s | |",
        f"| the naive per-pair script on the same pairs (one process) | {median['script']:.1f} s | |",
        f"| speed-up over the script, one process (script / audit, per run) | {median['speedup_single']:.2f}x | |",
        f"| speed-up over the script, `--workers {args.workers}` | {median['speedup']:.2f}x | >= 8x (issue 24) |",
        f"| warm re-run / cold run (`--workers {args.workers}`, same command) | {median['warm_ratio']:.3f} ({median['warm']:.1f} s) | <= 0.08 (issue 24) |",
        f"| end-to-end / model inference (one-process cold run, dlib alone) | {median['overhead']:.2f} | <= 1.3 (issue 24) |",
        f"| end-to-end / model inference (one-process cold run, dlib + FaceNet + LPIPS; {median['instruments_wall']:.1f} s) "
        f"| {median['instruments_overhead']:.2f} | <= 1.15 (issue 24) |",
        f"| peak RSS, {args.large} faces / {args.faces} faces | {median['rss_large']:.0f} MB / {median['rss_small']:.0f} MB "
        f"= {median['rss_large'] / median['rss_small']:.2f} | <= 1.2 |",
        "| classical attacks (`--attacks auto`, model-free), s per face per method | "
        + ", ".join(f"{m} {s:.2f}" for m, s in sorted(per_method.items()))
        + f" (worst {max(per_method.values()):.2f}; {faces} faces, {wall:.0f} s in all) | <= 5 |",
    ]
    write_results(args.out / f"engine-{stamp}.md", lines)


if __name__ == "__main__":
    main()
