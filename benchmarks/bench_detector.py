"""The face detector's cost (issue 24, "MTCNN's per-box resampling vectorised"): the project's MTCNN cascade
(`redteam.mtcnn_cascade`, every resampling from one integral image) against facenet-pytorch 2.5.3's own
`MTCNN.detect`, on the same photos, and whether their detections are the same bit for bit.

    python benchmarks/bench_detector.py [--photos 8] [--megapixels 0,1,4,12] [--repeats 2] [--threads 1]

CelebA research photos (read in place) are upscaled (bicubic) to each size; size 0 is the photos as they
are (12 MP exercises the summed-area table that wraps modulo 2^32). Per size and photo the two detectors
run alternately, `--repeats` times each, in one process with the same networks, so a machine whose speed
drifts costs both alike; the paired ratio is the median over photos and repeats of (ours / facenet-pytorch).
Equality is checked on every candidate the cascade returns (boxes, probabilities, landmarks; before the
audit's score threshold). Writes detector-<date>.md into --out.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CELEBA = ROOT.parent / "shared" / "faces" / "research" / "celeba"
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import write_results  # noqa: E402


def _photos(count: int, megapixels: float) -> list[np.ndarray]:
    from PIL import Image

    from redteam.images import load_image

    paths = sorted(CELEBA.rglob("*.jpg"))[:count]
    if len(paths) < count:
        raise SystemExit(f"bench_detector: {count} photos asked, {len(paths)} under {CELEBA} (research faces: see ../shared/faces/README.md)")
    photos = []
    for path in paths:
        pixels = load_image(path).pixels
        scale = max(1.0, (megapixels * 1e6 / (pixels.shape[0] * pixels.shape[1])) ** 0.5)
        size = (round(pixels.shape[1] * scale), round(pixels.shape[0] * scale))
        photos.append(np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BICUBIC)) if scale > 1 else pixels)
    return photos


def _facenet(model, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from PIL import Image

    boxes, scores, marks = model.detect(Image.fromarray(pixels), landmarks=True)
    if boxes is None:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)
    return np.array(boxes.tolist(), np.float32), np.array(list(scores), np.float32), np.array(marks.tolist(), np.float32)


def _timed(call):
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--megapixels", default="0,1,4,12", help="photo sizes (0: the photos as they are)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (an audit worker uses 1)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    import torch

    from redteam.faces import FaceDetector
    from redteam.mtcnn_cascade import run_cascade

    torch.set_num_threads(args.threads)
    detector = FaceDetector()
    model = detector._model()  # the networks both detectors run
    model.min_face_size = detector.settings.min_face_size
    lines = [
        f"# Face detector: the integral-image cascade against facenet-pytorch ({date.today().isoformat()})",
        "",
        f"`python benchmarks/bench_detector.py --photos {args.photos} --megapixels {args.megapixels} --repeats {args.repeats} "
        f"--threads {args.threads}`; CelebA photos upscaled (bicubic); MTCNN min face {detector.settings.min_face_size} px; "
        f"{args.threads} torch thread(s); the two detectors alternated in one process.",
        "",
        "| size | photo | facenet-pytorch s/photo | ours s/photo | paired ratio (median, min-max) | n | candidates | equal bit for bit |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for megapixels in (float(v) for v in args.megapixels.split(",")):
        photos = _photos(args.photos, megapixels)
        theirs, ours, ratios, candidates, equal = [], [], [], 0, 0
        for pixels in photos:
            # one untimed run on each photo: the networks, which both detectors share, meet this size's shapes first
            run_cascade(model, [pixels], detector.settings.min_face_size)
            for _ in range(args.repeats):
                seconds_theirs, expected = _timed(lambda p=pixels: _facenet(model, p))
                seconds_ours, (got,) = _timed(lambda p=pixels: run_cascade(model, [p], detector.settings.min_face_size))
                theirs.append(seconds_theirs)
                ours.append(seconds_ours)
                ratios.append(seconds_ours / seconds_theirs)
            candidates += len(expected[0])
            equal += all(np.array_equal(e, g) for e, g in zip(expected, got, strict=True))
        shape = f"{photos[0].shape[1]} x {photos[0].shape[0]}"
        lines.append(
            f"| {f'{megapixels:g} MP' if megapixels else 'as is'} | {shape} | {statistics.mean(theirs):.3f} | {statistics.mean(ours):.3f} | "
            f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f}) | {len(ratios)} | {candidates} | {equal}/{len(photos)} photos |"
        )
        print(lines[-1], flush=True)
    write_results(args.out / f"detector-{date.today().isoformat()}.md", lines)


if __name__ == "__main__":
    main()
