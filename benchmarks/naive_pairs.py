"""The naive per-pair script the engine is measured against: for every (original, anonymized) pair, HOG
face detection, dlib's 5-point landmarks and its ResNet descriptor on *both* images, then the distance.

    python benchmarks/naive_pairs.py ORIGINALS ANON_DIR [ANON_DIR ...]

Prints the number of pairs and how many the recognizer verifies (distance < 0.6). This is what a user
would write in an afternoon with dlib; `bench_engine.py` times `redteam audit --attack none` against it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import dlib
import face_recognition_models as models
import numpy as np
from PIL import Image

SUFFIXES = {".jpg", ".jpeg", ".png"}


def descriptor(detector, predictor, recognizer, path: Path) -> np.ndarray | None:
    pixels = np.asarray(Image.open(path).convert("RGB"))
    boxes = detector(pixels, 1)
    if not boxes:
        return None
    shape = predictor(pixels, max(boxes, key=lambda b: b.width() * b.height()))
    return np.asarray(recognizer.compute_face_descriptor(pixels, shape))


def main() -> None:
    originals, folders = Path(sys.argv[1]), [Path(a) for a in sys.argv[2:]]
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(models.pose_predictor_five_point_model_location())
    recognizer = dlib.face_recognition_model_v1(models.face_recognition_model_location())
    pairs = verified = 0
    for path in sorted(p for p in originals.rglob("*") if p.suffix.lower() in SUFFIXES):
        rel = path.relative_to(originals)
        for folder in folders:
            counterpart = next((folder / rel.with_suffix(s) for s in (".png", rel.suffix) if (folder / rel.with_suffix(s)).is_file()), None)
            if counterpart is None:
                continue
            a, b = descriptor(detector, predictor, recognizer, path), descriptor(detector, predictor, recognizer, counterpart)
            pairs += 1
            verified += int(a is not None and b is not None and float(np.linalg.norm(a - b)) < 0.6)
    print(f"{pairs} pairs, {verified} verified")


if __name__ == "__main__":
    main()
