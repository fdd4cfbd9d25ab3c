"""The whole-image re-encoding a tool applied (a JPEG save), fitted far from the faces, and the
differences it leaves."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np

from redteam.engine.identification.evidence import Pair


def _jpeg(pixels: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))


def _difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=2)


def _outside_change(pair: Pair) -> float:
    """The mean change (grey levels) far from the faces: a whole-image operator changes it a lot."""
    outside = _outside(pair, 1.5)
    if not outside.any():
        return 0.0
    step = max(1, int(math.sqrt(outside.size / 250_000)))  # a sample of the pixels is enough for a mean
    return float(_difference(pair.original[::step, ::step], pair.anonymized[::step, ::step])[outside[::step, ::step]].mean())


def _outside(pair: Pair, grow: float = 1.0) -> np.ndarray:
    mask = np.ones(pair.original.shape[:2], dtype=bool)
    for face in pair.faces:
        x0, y0, x1, y1 = face.box
        dx, dy = grow * (x1 - x0), grow * (y1 - y0)
        mask[max(0, int(y0 - dy)) : max(0, int(math.ceil(y1 + dy))), max(0, int(x0 - dx)) : max(0, int(math.ceil(x1 + dx)))] = False
    return mask


def _outside_patches(pairs: Sequence[Pair], grow: float) -> tuple[list[tuple[np.ndarray, np.ndarray, tuple[bool, float]]], list[float]]:
    """16-pixel-aligned 64 x 64 (original, anonymized, (changed, busyness)) patches outside every face box
    grown by `grow`, and per pair the share of such outside pixels the tool changed."""
    patches, changes = [], []
    for pair in pairs:
        outside = _outside(pair, grow)
        step = max(1, int(math.sqrt(outside.size / 250_000)))
        if outside.any():
            sample = _difference(pair.original[::step, ::step], pair.anonymized[::step, ::step])[outside[::step, ::step]]
            changes.append(float(np.mean(sample > 0)))
        height, width = outside.shape
        for y in range(0, height - 63, 48):
            for x in range(0, width - 63, 48):
                y0, x0 = y // 16 * 16, x // 16 * 16
                if y0 + 64 <= height and x0 + 64 <= width and outside[y0 : y0 + 64, x0 : x0 + 64].all():
                    before, after = pair.original[y0 : y0 + 64, x0 : x0 + 64], pair.anonymized[y0 : y0 + 64, x0 : x0 + 64]
                    changed = bool(np.any(before[8:-8, 8:-8] != after[8:-8, 8:-8]))
                    patches.append((before, after, (changed, float(before.std()))))
    return patches, changes


def _codec_quality(pairs: Sequence[Pair]) -> tuple[int | None, float, float]:
    """(JPEG quality, its residual, the outside's typical change) of a whole-image re-encoding, fitted on
    16-pixel-aligned patches far from the faces (there the tool's output is the original re-encoded);
    quality None when the outside is untouched or JPEG does not explain it."""
    patches: list[tuple[np.ndarray, np.ndarray, tuple[bool, float]]] = []
    changes: list[float] = []
    for grow in (1.0, 0.6):  # far from the faces; nearer where large faces leave no patch that far
        patches, changes = _outside_patches(pairs, grow)
        if patches:
            break
    share = float(np.median(changes)) if changes else 0.0
    if share < 0.05 or not patches:
        return None, math.nan, share
    # The busiest patches the tool changed: a photo that was a JPEG of about the same quality re-encodes
    # to itself in most blocks, and those say nothing about the quality.
    patches = sorted(patches, key=lambda p: (not p[2][0], -p[2][1]))[:8]

    def residual(quality: int) -> float:
        return float(np.mean([np.abs(_jpeg(o, quality).astype(np.int16) - a.astype(np.int16))[8:-8, 8:-8].mean() for o, a, _ in patches]))

    # Every quality is tried: the residual is not smooth in it (0 at the tool's quality, higher one step away).
    quality, value = min(((q, residual(q)) for q in range(5, 101)), key=lambda item: (item[1], -item[0]))
    unexplained = float(np.mean([np.abs(o.astype(np.int16) - a.astype(np.int16))[8:-8, 8:-8].mean() for o, a, _ in patches]))
    if value <= 0.6 and value < 0.5 * unexplained:
        return int(quality), value, share
    return None, value, share
