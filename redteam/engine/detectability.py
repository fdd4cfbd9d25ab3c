"""Detectability: whether the face detector still finds each face in a method's output."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from redteam.cache import content_key
from redteam.core.geometry import match_detections
from redteam.core.results import FaceRecord
from redteam.engine.context import RunContext
from redteam.engine.handles import ImageHandle


def detected(ctx: RunContext, outputs: dict[int, ImageHandle], faces: list[FaceRecord]) -> dict[int, dict[str, bool]]:
    """Per method (index -> face id -> flag): whether MTCNN still finds each face (IoU >= 0.5 with its
    original box). It searches the face's neighbourhood (its box grown by half), which is where a match
    can be, rather than the whole image, and only for faces at least half as wide as the original's (a
    box with IoU >= 0.5 has at least half its area, so a side at least 0.71 of it): the detector's
    pyramid skips the scales of smaller faces. Every method's output has the original's size, so the
    neighbourhoods have one size and the detections not in the cache run as one batch."""
    flags: dict[int, dict[str, bool]] = {index: {} for index in outputs}
    if not outputs:
        return flags
    height, width = next(iter(outputs.values())).shape[:2]
    for face in faces:
        x0, y0, x1, y1 = face.geometry.box
        gx, gy = (x1 - x0) / 2, (y1 - y0) / 2
        cx0, cy0 = max(0, int(x0 - gx)), max(0, int(y0 - gy))
        cx1, cy1 = min(width, int(np.ceil(x1 + gx))), min(height, int(np.ceil(y1 + gy)))
        smallest = int(min(x1 - x0, y1 - y0) / 2)
        keys = {index: content_key(handle.digest, f"{cx0},{cy0},{cx1},{cy1}") for index, handle in outputs.items()}
        found = {index: ctx.cached_detection(key, smallest) for index, key in keys.items()}
        missing = [index for index, faces_found in found.items() if faces_found is None]
        if missing:
            crops = [np.ascontiguousarray(outputs[index].pixels[cy0:cy1, cx0:cx1]) for index in missing]
            ctx.load_detector()
            with ctx.clock.measure("inference"):
                results = ctx.detector.detect_batch(crops, smallest)
            for index, fresh in zip(missing, results, strict=True):
                ctx.store_detection(keys[index], fresh, smallest)
                found[index] = fresh
        for index, known in found.items():
            moved = [replace(f, box=(f.box[0] + cx0, f.box[1] + cy0, f.box[2] + cx0, f.box[3] + cy0)) for f in known or []]
            flags[index][face.face_id] = match_detections([face.geometry], moved)[0]
    return flags
