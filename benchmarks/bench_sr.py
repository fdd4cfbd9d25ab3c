"""Real-ESRGAN (`sr`) at the resolution that matters (issue 24): its cost per face for faces of any size,
and whether restoring on the capped window changes what the recognizers decide.

    python benchmarks/bench_sr.py [--photos 8] [--widths 120,300,600,1000] [--out benchmarks/results]

CelebA research photos (read in place) are rescaled so their face is WIDTH pixels wide, anonymized with a
mosaic of face width / 12 (this project's `mosaic`), and attacked with `sr` through the audit's own
reconstruction loop (`redteam.attack_runner.AttackRunner`) twice:

- capped: the engine's rule (`sr` sees the face at most its `scale_cap` x the largest chip, 1 x 160 px, and
  restores only the face's neighbourhood);
- uncapped: the face's neighbourhood at full resolution (before issue 24 the whole window was restored at
  full resolution, which costs more still).

Per width it records the seconds per face of each, and dlib's verdict on each reconstruction (verified
against the original: distance < 0.6) with the mean distance; the two must agree within the noise (the
faces verified by one and not the other are listed). Writes sr-<date>.md into --out.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CELEBA = ROOT.parent / "shared" / "faces" / "research" / "celeba"
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import write_results  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--widths", default="120,300,600,1000", help="face widths in pixels")
    parser.add_argument("--uncapped-up-to", type=int, default=1000, help="largest width also run uncapped (it is slow)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from PIL import Image

    from attacks import MethodInfo, build_attack
    from metrics.recognizers.dlib_resnet import DlibRecognizer
    from redteam.anonymizers import build_method
    from redteam.attack_runner import AttackRunner
    from redteam.faces import FaceDetector
    from redteam.images import load_image

    torch.set_num_threads(2)
    attack = build_attack("sr")
    ok, reason = attack.applicable(MethodInfo("m", None))
    if not ok:
        raise SystemExit(f"sr is not available here: {reason}")
    detector, dlib = FaceDetector(), DlibRecognizer()
    capped, uncapped = AttackRunner(), AttackRunner(largest_chip=100_000)
    attack.reconstruct(  # the model loaded once before any timing
        torch.zeros((1, 3, 64, 64)), method=MethodInfo("m", None), generator=torch.Generator()
    )
    people = sorted(p for p in CELEBA.iterdir() if p.is_dir())
    photos = [sorted(p.glob("*.jpg"))[0] for p in people[:: max(1, len(people) // args.photos)]][: args.photos]
    widths = [int(w) for w in args.widths.split(",")]
    rows, started = [], time.perf_counter()
    for width in widths:
        seconds = {"capped": [], "uncapped": []}
        verified = {"capped": [], "uncapped": []}
        distances = {"capped": [], "uncapped": []}
        for path in photos:
            base = load_image(path).pixels
            faces = detector.detect(base)
            if not faces:
                continue
            face = max(faces, key=lambda f: f.width)
            scale = width / face.width
            image = Image.fromarray(base).resize((round(base.shape[1] * scale), round(base.shape[0] * scale)), Image.Resampling.LANCZOS)
            original = np.asarray(image)
            found = detector.detect(original)
            if not found:
                continue
            face = max(found, key=lambda f: f.width)
            method = build_method(f"mosaic:block={max(2, round(face.width / 12))}")
            anonymized = method.apply(original, [face], torch.Generator().manual_seed(0))
            own = dlib.embed(torch.from_numpy(dlib.crop(original, dlib.locate(original, face))).permute(2, 0, 1)[None].float() / 255.0)
            for label, runner in (("capped", capped), ("uncapped", uncapped)):
                if label == "uncapped" and width > args.uncapped_up_to:
                    continue
                began = time.perf_counter()
                restored, refused = runner.reconstruct(attack, MethodInfo("m", method), anonymized, [face], torch.Generator().manual_seed(0))
                seconds[label].append(time.perf_counter() - began)
                chip = dlib.crop(restored, dlib.locate(original, face))
                probe = dlib.embed(torch.from_numpy(np.ascontiguousarray(chip)).permute(2, 0, 1)[None].float() / 255.0)
                distance = float(dlib.distances(probe, own)[0, 0])
                distances[label].append(distance)
                verified[label].append(distance < dlib.threshold.value)
            print(f"  width {width}: {path.parent.name}/{path.name} done", flush=True)
        rows.append((width, seconds, verified, distances))
    total = time.perf_counter() - started
    lines = [
        f"# sr (Real-ESRGAN x4plus) at the resolution that matters ({date.today().isoformat()})",
        "",
        f"`python benchmarks/bench_sr.py --photos {args.photos} --widths {args.widths} --uncapped-up-to {args.uncapped_up_to}` on this "
        f"machine's 2 CPU cores (torch 2 threads); total {total / 60:.1f} min. One face per CelebA photo, "
        f"rescaled to the face width, mosaic of face width / 12, `sr` through `AttackRunner` capped (face at most {attack.scale_cap:g} x "
        "the largest chip, 160 px, its neighbourhood only) and uncapped (the neighbourhood at full resolution). The model is loaded "
        "before timing. dlib verifies each reconstruction against the original (distance < 0.6).",
        "",
        "| face width (px) | faces | s/face capped (mean / max) | s/face uncapped (mean / max) | verified capped | verified uncapped | "
        "mean distance capped / uncapped | faces whose verdict differs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for width, seconds, verified, distances in rows:
        n = len(seconds["capped"])

        def stat(values: list[float]) -> str:
            return f"{np.mean(values):.2f} / {np.max(values):.2f}" if values else "not run"

        both = min(len(verified["capped"]), len(verified["uncapped"]))
        differ = sum(a != b for a, b in zip(verified["capped"][:both], verified["uncapped"][:both], strict=True))
        unc = f"{sum(verified['uncapped'])}/{len(verified['uncapped'])}" if verified["uncapped"] else "not run"
        dist = f"{np.mean(distances['capped']):.3f} / " + (f"{np.mean(distances['uncapped']):.3f}" if distances["uncapped"] else "-")
        lines.append(
            f"| {width} | {n} | {stat(seconds['capped'])} | {stat(seconds['uncapped'])} | {sum(verified['capped'])}/{n} | {unc} | {dist} | "
            f"{differ if both else '-'} of {both} |"
        )
    target = args.out / f"sr-{date.today().isoformat()}.md"
    write_results(target, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
