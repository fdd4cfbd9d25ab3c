"""Is a detection in an original really a face? MTCNN at probability 0.95 still finds the odd shoulder, hand
or tuft of hair; audited as a face, such a detection becomes a "riskiest example" or a spurious leak.

A detection is rejected only when three independent signals agree (README, "Input layout"):
1. the detector is not sure: MTCNN probability below `SURE_SCORE`;
2. a second detector of another family does not find it: dlib's CNN face detector (max-margin object
   detection, King 2015; `mmod_human_face_detector.dat`, which ships in face_recognition_models, CC0),
   run on the box grown by half and upsampled to at least `SECOND_SIDE` px, finds no face overlapping it.
   It finds profile faces, which MTCNN scores low and whose landmarks look wrong (dlib's HOG detector
   does not: it rejected a labelled profile face);
3. its five landmarks do not sit as a face's do: the eyes closer than `MIN_EYE_SPAN` of the box width, the
   nose outside the span of the eyes, or the mouth not below the eyes.
On the 853 MTCNN detections in the CelebA research photos this rejects three: a bare shoulder, a hand and a
tuft of hair (checked by eye), and keeps every dominant face, profiles included. A rejected face is listed
as an `implausible_face` input issue with its reasons and is not audited; the policy's
`keep_implausible_faces = true` audits it anyway.

References:
    Zhang et al., "Joint Face Detection and Alignment using Multi-task Cascaded Convolutional Networks",
    IEEE SPL 2016 (MTCNN, its probability and landmarks); King, "Max-Margin Object Detection",
    arXiv:1502.00046, 2015 (dlib's CNN face detector).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from redteam.core.geometry import FaceGeometry, box_iou, enlarged_box

#: MTCNN probabilities at or above this are taken as they are (the other signals are not consulted).
SURE_SCORE = 0.99
#: A face's eyes lie at least this fraction of its box width apart (frontal faces 0.4-0.5 on CelebA).
MIN_EYE_SPAN = 0.35
#: The second detector looks at the box grown by half, upsampled so its longer side is at least this.
SECOND_SIDE = 200
#: A second detection overlapping the box by at least this IoU is the same face.
SECOND_IOU = 0.3


@dataclass(frozen=True)
class Plausibility:
    """Whether a detection is taken as a face, and why not."""

    plausible: bool
    reasons: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {"plausible": self.plausible, "reasons": list(self.reasons)}

    @classmethod
    def from_json(cls, data: Any) -> Plausibility:
        if not isinstance(data, dict) or not isinstance(data.get("plausible"), bool) or not isinstance(data.get("reasons"), list):
            raise ValueError("not a plausibility record")
        return cls(bool(data["plausible"]), tuple(str(r) for r in data["reasons"]))


def landmark_problems(face: FaceGeometry) -> list[str]:
    """What is wrong with a detection's landmarks for a face (empty: nothing)."""
    left_eye, right_eye, nose, left_mouth, right_mouth = (np.asarray(p, dtype=np.float64) for p in face.landmarks)
    axis = right_eye - left_eye
    span = float(np.linalg.norm(axis))
    problems = []
    if span < MIN_EYE_SPAN * face.width:
        problems.append(f"eyes {span / max(face.width, 1e-9):.2f} of the box width apart (< {MIN_EYE_SPAN})")
    if span > 0:
        unit = axis / span
        down = np.array([-unit[1], unit[0]])  # the face's "down", perpendicular to the eye line
        along = float((nose - left_eye) @ unit)
        if not 0.0 <= along <= span:
            problems.append("nose outside the span of the eyes")
        mouth = (left_mouth + right_mouth) / 2.0 - left_eye
        if float(mouth @ down) <= 0.0:
            problems.append("mouth not below the eyes")
    return problems


def second_detector_agrees(pixels: np.ndarray, face: FaceGeometry) -> bool:
    """Whether dlib's CNN face detector finds a face overlapping the box (see the module docstring)."""
    import dlib
    from PIL import Image

    from redteam.core.weights import get_model_file

    height, width = pixels.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in enlarged_box(face.box, 0.5))
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return False
    scale = max(1.0, SECOND_SIDE / max(x1 - x0, y1 - y0))
    window = Image.fromarray(np.ascontiguousarray(pixels[y0:y1, x0:x1]))
    if scale > 1.0:
        window = window.resize((round((x1 - x0) * scale), round((y1 - y0) * scale)), Image.Resampling.BILINEAR)
    box = [(v - o) * scale for v, o in zip(face.box, (x0, y0, x0, y0), strict=True)]
    detector = dlib.cnn_face_detection_model_v1(str(get_model_file("dlib_cnn_detector").require()))
    found = detector(np.asarray(window), 0)
    return any(box_iou(box, (d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom())) >= SECOND_IOU for d in found)


def plausibility(pixels: np.ndarray, face: FaceGeometry) -> Plausibility:
    """Whether a detection on an original is taken as a face (rejected only when all three signals agree)."""
    if face.score >= SURE_SCORE:
        return Plausibility(True)
    problems = landmark_problems(face)
    if not problems or second_detector_agrees(pixels, face):
        return Plausibility(True)
    return Plausibility(False, (f"detector probability {face.score:.3f} < {SURE_SCORE}", "dlib's CNN face detector finds no face there", *problems))
