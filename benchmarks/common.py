"""What the benchmarks share: photos rescaled so their face has a fixed width (so a method's parameters
are fractions of the face), kept outside the repository."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image


def normalise(source: Path, target: Path, face_width: float = 160.0, *, limit: int | None = None, log: bool = False) -> Path:
    """Copy the photos under `source` (or the first `limit`) rescaled so their largest face is `face_width`
    px wide, as PNG under `target`; photos without a face are left out. Done once: a `.complete` marker
    makes a re-run reuse `target`."""
    from redteam.datasets import discover_images
    from redteam.faces import FaceDetector
    from redteam.images import load_image

    done = target / ".complete"
    if done.is_file():
        return target
    detector = FaceDetector()
    entries = discover_images(source, role="faces").entries[:limit]
    for index, entry in enumerate(entries, start=1):
        out = target / Path(entry.rel).with_suffix(".png")
        if out.is_file():
            continue
        image = load_image(entry.path)
        faces = detector.detect(image.pixels)
        if not faces:
            continue
        scale = face_width / max(f.width for f in faces)
        resized = Image.fromarray(image.pixels).resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
        out.parent.mkdir(parents=True, exist_ok=True)
        resized.save(out)
        if log and index % 200 == 0:
            print(f"  normalised {index}/{len(entries)} of {source.name}", flush=True)
    done.parent.mkdir(parents=True, exist_ok=True)
    done.write_text("ok\n")
    return target


MEASURE = (
    "import resource, subprocess, sys, time; t = time.perf_counter(); r = subprocess.run(sys.argv[1:]); "
    "print('BENCH', time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode)"
)


def measured(command: list[str], log: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one run of `command` in a fresh process."""
    with log.open("a") as handle:
        done = subprocess.run([sys.executable, "-c", MEASURE, *command], stdout=subprocess.PIPE, stderr=handle, text=True, check=False)
    line = next(line for line in done.stdout.splitlines() if line.startswith("BENCH"))
    _, seconds, peak_kb, code = line.split()
    if int(code) not in (0, 1):
        raise RuntimeError(f"{command[:4]} exited {code}; see {log}")
    return float(seconds), float(peak_kb) / 1024.0


def subset(source: Path, target: Path, count: int, pattern: str) -> Path:
    if target.is_dir() and len(list(target.rglob(pattern))) >= count:
        return target
    shutil.rmtree(target, ignore_errors=True)
    for path in sorted(source.rglob(pattern))[:count]:
        out = target / path.relative_to(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, out)
    return target


def redteam(*args: object) -> list[str]:
    return [sys.executable, "-m", "redteam", *map(str, args)]


def write_results(target: Path, lines: list[str]) -> Path:
    """A benchmark's results (Markdown `lines`) as `target`, written atomically, and echoed."""
    from redteam.core.atomic import write_text_atomically

    target.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(target, "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {target}")
    return target
