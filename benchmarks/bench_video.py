"""`redteam audit-video` on a 720p clip on this machine: wall time, the verdicts, the leaked interval, and the
multi-frame attack against the single-frame ones on a tracked mosaic.

    python benchmarks/bench_video.py [--seconds 20] [--fps 25] [--size 1280x720] [--face-width 160] [--out benchmarks/results]

The clip is the tests' synthetic pan (`tests/redteam/video/clips.py`) of the three bundled public-domain
faces, at 1280 x 720 and 25 fps, the faces 160 px wide, panning 1 px per frame (so a frame-fixed 16 px grid
samples them at 16 phases) and turning back after 300 px. Three redactions, each encoded with libx264 at
CRF 17 as the original is:
- `mosaic`: a tracked mosaic of 16 px cells on the frame's grid, every frame;
- `blur`: a Gaussian blur of sigma 10 on every face, every frame;
- `missed`: the same blur, except frames 100-104 (4.00-4.16 s), where the redactor lost the faces.

The audit runs with the defaults (every available recognizer, `--attack auto`, `--stride 1`) on a cold
cache, then once more on the warm cache. Writes `video-<date>.md` into `--out`; the clip and the reports
are made under $REDTEAM_CACHE/bench/video.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))
from common import measured, redteam, write_results  # noqa: E402

MISSED = range(100, 105)


def make_clips(work: Path, seconds: float, fps: int, size: tuple[int, int], face_width: int) -> dict[str, Path]:
    from tests.redteam.video.clips import encode, pan_clip, redact

    paths = {name: work / f"{name}.mp4" for name in ("original", "mosaic", "blur", "missed")}
    if all(path.is_file() for path in paths.values()):
        return paths
    clip = pan_clip(size=size, seconds=seconds, fps=fps, face_width=face_width, speed=1, travel=300)
    encode(clip.frames, paths["original"], fps)
    encode(redact(clip, "mosaic", strength=16), paths["mosaic"], fps)
    encode(redact(clip, "blur", strength=10), paths["blur"], fps)
    encode(redact(clip, "blur", missed=MISSED, strength=10), paths["missed"], fps)
    return paths


def rate_table(summary: dict) -> list[str]:
    lines = ["| method | tier | attack | recognizer | verify (tracks) [95% CI] | rank-1 [95% CI] | chance rank-1 |", "|---|---|---|---|---|---|---|"]
    cells: dict[tuple[str, str, str, str], dict[str, dict]] = {}
    for verdict in summary["verdicts"]:
        cells.setdefault((verdict["method"], verdict["tier"], verdict["attack"], verdict["recognizer"]), {})[verdict["metric"]] = verdict

    def shown(v: dict | None) -> str:
        return "-" if v is None or not v["n"] else f"{v['successes']}/{v['n']} [{v['ci_low']:.2f}, {v['ci_high']:.2f}]"

    for (method, tier, attack, recognizer), metrics in sorted(cells.items()):
        chance = metrics.get("rank1", {}).get("chance")
        rates = f"{shown(metrics.get('verify'))} | {shown(metrics.get('rank1'))} | {'-' if chance is None else f'{chance:.2f}'}"
        lines.append(f"| {method} | {tier} | {attack} | {recognizer} | {rates} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--face-width", type=int, default=160)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    base = (
        Path(os.environ.get("REDTEAM_CACHE", Path(tempfile.gettempdir()) / "redteam-cache"))
        / "bench"
        / "video"
        / f"{width}x{height}-{args.seconds:g}s-{args.fps}"
    )
    base.mkdir(parents=True, exist_ok=True)
    clips = make_clips(base, args.seconds, args.fps, (width, height), args.face_width)
    cache, reports, log = base / "cache", base / "reports", base / "bench.log"
    shutil.rmtree(cache, ignore_errors=True)
    command = redteam(
        "audit-video",
        clips["original"],
        *[part for name in ("mosaic", "blur", "missed") for part in ("-a", f"{name}={clips[name]}")],
        "--out",
        reports,
        "--cache-dir",
        cache,
    )
    cold, cold_peak = measured(command, log)
    stages = json.loads((reports / "summary.json").read_text())["timings_seconds"]
    warm, _ = measured(command, log)
    summary = json.loads((reports / "summary.json").read_text())
    video = json.loads((reports / "video.json").read_text())
    original = video["videos"]["original"]
    lines = [
        f"# `redteam audit-video` on a {original['width']} x {original['height']} clip ({date.today().isoformat()})",
        "",
        f"Command: `python benchmarks/bench_video.py --seconds {args.seconds:g} --fps {args.fps} --size {args.size} --face-width {args.face_width}`, on this",
        f"machine ({os.cpu_count()} cores, no GPU), nothing else running.",
        "The audit: `redteam audit-video original.mp4 -a mosaic=... -a blur=... -a missed=...`",
        "with the defaults (every available recognizer, `--attack auto`, `--stride 1`: every frame decoded, tracked and checked).",
        "",
        f"- Clip: {original['frames']} frames, {original['fps']:g} fps, {original['codec']}; {len(video['tracks'])} face tracks "
        f"({', '.join(str(t['sampled_frames']) for t in video['tracks'])} frames each).",
        f"- **Wall time, cold cache: {cold:.0f} s** (peak RSS {cold_peak:.0f} MB); warm re-run: {warm:.1f} s.",
        f"- Stage seconds of the cold run (summary.json): {stages}",
        "",
        "## Verdicts",
        "",
        "| method | verdict | tiers |",
        "|---|---|---|",
    ]
    lines += [f"| {m['method']} | {m['verdict']} | {', '.join(f'{t}: {v}' for t, v in m['tiers'].items())} |" for m in summary["methods"]]
    lines += ["", "## Leaked intervals", ""]
    lines += [
        f"- {i['method']} {i['track']}: {i['start_s']:.2f}-{i['end_s']:.2f} s, frames {i['first_frame']}-{i['last_frame']} "
        f"(min distance {i['min_distance']}, max PSNR {i['max_psnr_db']} dB)"
        for i in video["leaked_intervals"]
    ] or ["- none"]
    lines += [
        "",
        f"Expected: `missed` at {MISSED.start / args.fps:.2f}-{(MISSED.stop - 1) / args.fps:.2f} s (frames {MISSED.start}-{MISSED.stop - 1}) on every track.",
        "",
    ]
    lines += ["## Rates per track (n = tracks; frames of one track are one sample)", ""] + rate_table(summary)
    lines += ["", "## What each attack used (track-1)", ""]
    for method, tracks in video["probes"].items():
        for attack, info in tracks.get("track-1", {}).items():
            lines.append(f"- {method} / {attack}: {info['frames']} frame(s){': ' + info['note'] if info['note'] else ''}")
    write_results(args.out / f"video-{date.today().isoformat()}.md", lines)


if __name__ == "__main__":
    main()
