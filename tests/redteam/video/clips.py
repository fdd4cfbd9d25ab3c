"""Test clips made by code: a synthetic pan of the bundled public-domain faces (redteam/data/sample), encoded
with PyAV, and redactions of it (a blur that misses frames, a tracked mosaic whose grid is fixed to the
frame). The faces' true boxes are known per frame, as a redaction tool's tracker would know them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

SAMPLE = Path(__file__).resolve().parents[3] / "redteam" / "data" / "sample"
#: (photo, face box in the photo) of the faces the clips show: found once with MTCNN on the sample.
FACES = (
    ("barack_obama/obama.jpg", None),
    ("joe_biden/biden.jpg", None),
    ("eileen_collins/astronaut.jpg", None),
)


@dataclass(frozen=True)
class Clip:
    """Frames of a clip and where each face is in each frame ((x0, y0, x1, y1) per face per frame)."""

    frames: list[np.ndarray]
    boxes: list[list[tuple[int, int, int, int]]]
    fps: int


def _face_patch(photo: str, face_width: int) -> np.ndarray:
    """The photo's face (MTCNN's box grown by 40%), scaled so that the box is `face_width` px wide."""
    from redteam.faces import FaceDetector

    image = np.asarray(Image.open(SAMPLE / photo).convert("RGB"))
    face = max(FaceDetector().detect(image), key=lambda f: f.width)
    x0, y0, x1, y1 = face.box
    dx, dy = 0.4 * (x1 - x0), 0.4 * (y1 - y0)
    crop = Image.fromarray(image).crop((int(x0 - dx), int(y0 - dy), int(x1 + dx), int(y1 + dy)))
    scale = face_width / (x1 - x0)
    return np.asarray(crop.resize((round(crop.width * scale), round(crop.height * scale)), Image.LANCZOS))


def _there_and_back(step: int, travel: int) -> int:
    """A position moving one unit per step from 0 to `travel` and back, repeatedly."""
    return travel - abs(travel - step % (2 * travel)) if travel > 0 else 0


def pan_clip(
    size: tuple[int, int] = (640, 360), seconds: float = 2.0, fps: int = 10, face_width: int = 96, people: int = 3, speed: int = 3, travel: int = 200
) -> Clip:
    """Faces side by side on a textured background, panning right by `speed` px per frame (and down by
    one px every other frame), so that a frame-fixed grid samples them at a new phase in most frames; the
    pan turns back after `travel` px (a quarter of that down), so long clips keep the faces in frame."""
    width, height = size
    rng = np.random.default_rng(0)
    background = np.clip(rng.normal(110, 25, (height, width, 3)), 0, 255).astype(np.uint8)
    background = np.asarray(Image.fromarray(background).filter(ImageFilter.GaussianBlur(3)))
    patches = [_face_patch(photo, face_width) for photo, _ in FACES[:people]]
    frames, boxes = [], []
    for t in range(round(seconds * fps)):
        frame = background.copy()
        frame_boxes = []
        for number, patch in enumerate(patches):
            h, w = patch.shape[:2]
            x = 20 + number * (width - 60) // people + _there_and_back(speed * t, travel)
            y = (height - h) // 2 + _there_and_back(t // 2, travel // 4)
            frame[y : y + h, x : x + w] = patch[: max(0, min(h, height - y)), : max(0, min(w, width - x))]
            frame_boxes.append((x, y, x + w, y + h))
        frames.append(frame)
        boxes.append(frame_boxes)
    return Clip(frames, boxes, fps)


def mosaic(frame: np.ndarray, box: tuple[int, int, int, int], block: int) -> np.ndarray:
    """Pixelate `box` on the frame's own grid (cells start at multiples of `block`), as an editor's mosaic
    effect on a tracked mask does."""
    out = frame.copy()
    x0, y0, x1, y1 = box
    for gy in range((y0 // block) * block, y1, block):
        for gx in range((x0 // block) * block, x1, block):
            cell = frame[gy : gy + block, gx : gx + block]
            if not cell.size:
                continue  # the box runs past the frame's edge
            out[gy : gy + block, gx : gx + block] = cell.reshape(-1, 3).mean(axis=0).round().astype(np.uint8)
    return out


def blur(frame: np.ndarray, box: tuple[int, int, int, int], sigma: float) -> np.ndarray:
    out = frame.copy()
    x0, y0, x1, y1 = box
    region = Image.fromarray(frame[y0:y1, x0:x1]).filter(ImageFilter.GaussianBlur(sigma))
    out[y0:y1, x0:x1] = np.asarray(region)
    return out


def redact(clip: Clip, how: str, missed: range = range(0), strength: float = 12) -> list[np.ndarray]:
    """Every face of every frame mosaicked (`how="mosaic"`, block `strength`) or blurred (sigma `strength`),
    except in the frames of `missed` (left as they are: the redactor lost the faces there)."""
    out = []
    for t, frame in enumerate(clip.frames):
        for box in clip.boxes[t] if t not in missed else ():
            frame = mosaic(frame, box, int(strength)) if how == "mosaic" else blur(frame, box, strength)
        out.append(frame)
    return out


def encode(frames: list[np.ndarray], path: Path, fps: int, crf: int = 17) -> Path:
    """Write frames as H.264 MP4 (yuv420p) with PyAV."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf)}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
