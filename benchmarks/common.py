"""What the benchmarks share: photos rescaled so their face has a fixed width (so a method's parameters
are fractions of the face), kept outside the repository."""

from __future__ import annotations

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
