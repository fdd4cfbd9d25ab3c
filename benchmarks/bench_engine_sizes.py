"""The engine in its default configuration (operator identification on) on photos of newsroom sizes.

    python benchmarks/bench_engine_sizes.py [--photos 25] [--sizes 1,4,12] [--workers 2] [--runs 1]

`bench_engine.py` measures a favourable configuration: small CelebA photos and `--no-identify`. This one
measures what a user gets with the defaults. For each size (megapixels):

1. `--photos` CelebA photos (about 3 per identity, 9 identities for 25) are scaled so the photo is 1 MP
   (its face is then about 400 px wide), and, for larger sizes, set into a canvas of that size whose
   background is the photo itself blurred beyond recognition (no second face appears). The face keeps its
   size, as in a wider shot.
2. An ordinary PIL redaction script (`pil_redact`: dlib's HOG boxes grown by 10% a side, then a Gaussian
   blur of radius width/16, a 12-cell mosaic, or a black box) writes three observed folders with no record,
   as a newsroom's tool would.
3. `redteam audit ORIGINALS --anonymized blur=... --anonymized mosaic=... --anonymized box=... --attack none
   --workers N` with a cold cache (identification on: nothing declares the operator), against the naive
   per-pair script (`naive_pairs.py`) on the same pairs.

Records, per size: both wall times and their ratio, and identification's seconds per folder (summary.json
`timings_seconds.identify` over the folders). Writes `engine-sizes-<date>.md` into `--out`. Reads
../shared/faces/research; its photos and folders are made under $REDTEAM_CACHE/bench/engine-sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import measured, redteam, write_results  # noqa: E402

RESEARCH = ROOT.parent / "shared" / "faces" / "research" / "celeba"
REDACTIONS = ("blur", "mosaic", "box")


def chosen_photos(count: int, per_identity: int = 3) -> list[Path]:
    """The first `count` photos taking at most `per_identity` from each identity folder, in name order."""
    photos: list[Path] = []
    for person in sorted(p for p in RESEARCH.iterdir() if p.is_dir()):
        photos += sorted(person.glob("*.jpg"))[:per_identity]
        if len(photos) >= count:
            break
    return photos[:count]


def sized_photo(path: Path, megapixels: float, seed: int):  # noqa: ANN201 (a PIL image)
    """The photo at 1 MP, set into a canvas of `megapixels` whose background is the photo blurred away."""
    import random

    from PIL import Image, ImageFilter

    photo = Image.open(path).convert("RGB")
    scale = (1e6 / (photo.width * photo.height)) ** 0.5
    photo = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.Resampling.LANCZOS)
    if megapixels <= 1.0:
        return photo
    width = round((megapixels * 1e6 * 4 / 3) ** 0.5)
    height = round(megapixels * 1e6 / width)
    background = photo.resize((8, 8), Image.Resampling.BOX).resize((width, height), Image.Resampling.BICUBIC)
    background = background.filter(ImageFilter.GaussianBlur(radius=width / 50))
    place = random.Random(seed)
    background.paste(photo, (place.randrange(width - photo.width), place.randrange(height - photo.height)))
    return background


def pil_redact(image, boxes: list[tuple[int, int, int, int]]) -> dict:  # noqa: ANN001 (PIL images)
    """The three redactions an ordinary PIL script applies to each box (grown by 10% a side)."""
    from PIL import Image, ImageFilter

    outs = {name: image.copy() for name in REDACTIONS}
    for left, top, right, bottom in boxes:
        width, height = right - left, bottom - top
        box = (
            max(0, int(left - 0.1 * width)),
            max(0, int(top - 0.1 * height)),
            min(image.width, int(right + 0.1 * width)),
            min(image.height, int(bottom + 0.1 * height)),
        )
        region = image.crop(box)
        outs["blur"].paste(region.filter(ImageFilter.GaussianBlur(radius=width / 16)), box)
        cell = max(1.0, width / 12)
        small = region.resize((max(1, round(region.width / cell)), max(1, round(region.height / cell))), Image.Resampling.BOX)
        outs["mosaic"].paste(small.resize(region.size, Image.Resampling.NEAREST), box)
        outs["box"].paste((0, 0, 0), box)
    return outs


def prepare(work: Path, photos: list[Path], megapixels: float) -> tuple[Path, list[Path]]:
    """The originals and the three observed folders at one size (made once; `.complete` marks them)."""
    import dlib
    import numpy as np

    root = work / f"{megapixels:g}mp-{len(photos)}"
    originals, folders = root / "originals", [root / name for name in REDACTIONS]
    if (root / ".complete").is_file():
        return originals, folders
    detector = dlib.get_frontal_face_detector()
    for index, path in enumerate(photos):
        rel = Path(path.parent.name) / (path.stem + ".png")
        image = sized_photo(path, megapixels, seed=index)
        (originals / rel).parent.mkdir(parents=True, exist_ok=True)
        image.save(originals / rel)
        # The script detects on a copy at most 1,600 px wide, as a newsroom script would to stay fast.
        shrink = min(1.0, 1600 / image.width)
        small = np.asarray(image.resize((round(image.width * shrink), round(image.height * shrink))))
        boxes = [(round(b.left() / shrink), round(b.top() / shrink), round(b.right() / shrink), round(b.bottom() / shrink)) for b in detector(small, 1)]
        for name, redacted in pil_redact(image, boxes).items():
            (root / name / rel).parent.mkdir(parents=True, exist_ok=True)
            redacted.save(root / name / rel)
    (root / ".complete").write_text("ok\n")
    return originals, folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=25)
    parser.add_argument("--sizes", default="1,4,12", help="megapixels, comma-separated")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    from redteam.core.paths import default_cache_dir

    work = default_cache_dir() / "bench" / "engine-sizes"
    work.mkdir(parents=True, exist_ok=True)
    log = work / "log.txt"
    photos = chosen_photos(args.photos)
    command = " ".join(["python benchmarks/bench_engine_sizes.py", *sys.argv[1:]])
    record_path = args.out / f"engine-sizes-{date.today().isoformat()}.json"
    recorded = json.loads(record_path.read_text()) if record_path.is_file() else {}
    for megapixels in (float(s) for s in args.sizes.split(",")):
        originals, folders = prepare(work, photos, megapixels)
        anonymized = [a for folder in folders for a in ("--anonymized", f"{folder.name}={folder}")]
        audits, scripts, identify, verdicts = [], [], [], {}
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory(dir=work) as scratch:
                out = Path(scratch) / "out"
                audit = redteam(
                    "audit", originals, *anonymized, "--attack", "none", "--workers", args.workers, "--cache-dir", Path(scratch) / "c", "--out", out
                )
                seconds, _ = measured(audit, log)
                summary = json.loads((out / "summary.json").read_text())
            script, _ = measured([sys.executable, str(ROOT / "benchmarks" / "naive_pairs.py"), str(originals), *map(str, folders)], log)
            audits.append(seconds)
            scripts.append(script)
            identify.append(summary["timings_seconds"].get("identify", 0.0) / len(folders))
            verdicts = {m["method"]: [m["verdict"], summary["method_specs"][m["method"]]["spec"], (m["reasons"] or [""])[0]] for m in summary["methods"]}
        recorded[f"{megapixels:g}"] = {
            "command": command,
            "photos": len(photos),
            "pairs": len(photos) * len(folders),
            "audit": statistics.median(audits),
            "script": statistics.median(scripts),
            # Each run times the audit and then the script: the ratio is taken run by run (paired), so a drift
            # of the machine's speed between runs does not move it.
            "speedup": statistics.median(script / audit for audit, script in zip(audits, scripts, strict=True)),
            "identify_per_folder": statistics.median(identify),
            "verdicts": verdicts,
        }
        row = recorded[f"{megapixels:g}"]
        print(
            f"{megapixels:g} MP: audit {row['audit']:.1f} s, naive script {row['script']:.1f} s, identification {row['identify_per_folder']:.1f} s per folder",
            flush=True,
        )
        args.out.mkdir(parents=True, exist_ok=True)
        record_path.write_text(json.dumps(recorded, indent=2) + "\n")
    lines = [
        f"# Engine benchmark, default configuration ({date.today().isoformat()}, 2 CPU cores)",
        "",
        "CelebA photos at each size, 3 observed folders written by an ordinary PIL script (blur, mosaic, box), "
        f"`redteam audit --attack none --workers {args.workers}`, cold cache, identification on. Wall seconds of one run "
        "each (the median when a size was run more than once; the speed-up is then the median of each run's ratio, the audit and "
        "the script timed in turn); the naive script is `benchmarks/naive_pairs.py` on the same pairs.",
        "",
        "| size | photos (pairs) | audit | naive script | speed-up | target | identification per folder | target | verdicts (identified operator) | command |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size, row in sorted(recorded.items(), key=lambda item: float(item[0])):
        found = "; ".join(f"{name}: {values[0]} ({values[1]})" for name, values in row["verdicts"].items())
        speedup = row.get("speedup", row["script"] / row["audit"])  # records before 2026-12-07 kept only the medians
        lines.append(
            f"| {size} MP | {row['photos']} ({row['pairs']}) | {row['audit']:.1f} s | {row['script']:.1f} s | {speedup:.2f}x | >= 5x "
            f"| {row['identify_per_folder']:.1f} s | <= 10 s | {found} | `{row['command']}` |"
        )
    write_results(args.out / f"engine-sizes-{date.today().isoformat()}.md", lines)


if __name__ == "__main__":
    main()
