"""An ordinary newsroom redaction script, as `redteam benchmark --tool` runs it: every face dlib's HOG
detector finds is blurred with PIL (radius a sixteenth of the face width, box grown by 10% a side), the
tree mirrored as PNG. It writes no record, so the benchmark identifies its operator.

    python examples/my_tool.py INPUT OUTPUT
"""

from __future__ import annotations

import sys
from pathlib import Path

import dlib
import numpy as np
from PIL import Image, ImageFilter


def main() -> None:
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    detector = dlib.get_frontal_face_detector()
    for path in sorted(p for p in source.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")):
        image = Image.open(path).convert("RGB")
        for box in detector(np.asarray(image), 1):
            width, height = box.width(), box.height()
            area = (
                max(0, int(box.left() - 0.1 * width)),
                max(0, int(box.top() - 0.1 * height)),
                min(image.width, int(box.right() + 0.1 * width)),
                min(image.height, int(box.bottom() + 0.1 * height)),
            )
            image.paste(image.crop(area).filter(ImageFilter.GaussianBlur(radius=width / 16)), area)
        out = target / path.relative_to(source).with_suffix(".png")
        out.parent.mkdir(parents=True, exist_ok=True)
        image.save(out)


if __name__ == "__main__":
    main()
