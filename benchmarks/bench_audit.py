"""Time the audit: the demo-sized run and a 200-face run (faces re-used from the bundled sample).

Prints faces per second and the share of wall time spent inside model inference (detector,
recognizers, LPIPS) versus the harness around it (I/O, anonymization, crops, metrics, bookkeeping).

    python benchmarks/bench_audit.py            # demo-sized + 200 faces
    python benchmarks/bench_audit.py --faces 50 # a quicker second run

Each re-used face gets a unique +-1 change at its centre, so neither detections nor embeddings are
served from the cache: the numbers are for cold work. A fresh cache folder is used for every run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from redteam.cli import DEMO_METHODS
from redteam.core.config import AuditConfig, MethodSource
from redteam.engine import AuditRun
from redteam.faces import FaceDetector
from redteam.images import load_image


def make_faces(count: int, target: Path) -> Path:
    """`count` distinct images cycling over the sample, one identity folder per sample person."""
    sample = Path(str(resources.files("redteam.data").joinpath("sample")))
    sources = sorted(sample.rglob("*.jpg"))
    detector = FaceDetector()
    boxes = {path: detector.detect(load_image(path).pixels)[0].box for path in sources}
    for index in range(count):
        source = sources[index % len(sources)]
        pixels = np.array(load_image(source).pixels)
        x0, y0, x1, y1 = (int(v) for v in boxes[source])
        cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
        pixels[cy, cx] = np.clip(pixels[cy, cx].astype(int) + (1 + index // len(sources)) % 7 - 3, 0, 255)
        out = target / source.parent.name / f"{source.stem}_{index:04d}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(out)
    return target


def run(label: str, originals: Path, workdir: Path) -> None:
    config = AuditConfig(
        originals=originals,
        out=workdir / f"{label}-report",
        methods=tuple(MethodSource(name, "reference", spec=spec) for name, spec in DEMO_METHODS),
        cache_dir=workdir / f"{label}-cache",
        builtin_policy="demo_policy.toml",
        attacks=("none", "parrot"),  # the naive tiers: this benchmark measures the harness, not the attacks
    )
    start = time.perf_counter()
    result = AuditRun(config).run()
    wall = time.perf_counter() - start
    faces = len(result.faces)
    face_audits = faces * len(config.methods)
    inference = result.timings.get("inference", 0.0)
    print(
        f"{label:>10}: {faces} faces x {len(config.methods)} methods x {len({r.attack for r in result.rows})} attacks "
        f"x {len({r.recognizer for r in result.rows})} recognizer(s) in {wall:.1f} s | "
        f"{faces / wall:.2f} faces/s, {face_audits / wall:.2f} face-method audits/s | "
        f"inference {inference:.1f} s ({inference / wall:.0%}), harness {wall - inference:.1f} s ({1 - inference / wall:.0%}) | "
        f"breakdown {result.timings}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=200, help="size of the large run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        sample = Path(str(resources.files("redteam.data").joinpath("sample")))
        run("demo", sample, workdir)
        run(f"{args.faces}-face", make_faces(args.faces, workdir / "faces"), workdir)


if __name__ == "__main__":
    main()
