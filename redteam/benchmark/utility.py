"""Utility beside privacy: how much of each photo a technique keeps, on the whole image, on the face
region and on everything outside it.

Per (original, anonymized) pair: SSIM (Wang et al. 2004, scikit-image's, on grey levels) and PSNR from
one per-pixel map each, averaged over the whole image, the face region (the union of the original's face
boxes) and the rest; LPIPS (Zhang et al. 2018) of the whole image, of the face region's bounding box, and
of the image with the face region put back from the original (so that only what changed outside the
faces counts), each on copies at most LPIPS_SIDE px a side; and the fraction of pixels changed. Per technique: the mean over pairs, with the count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from redteam.core.geometry import FaceGeometry

COLUMNS = (
    "ssim_image", "ssim_face", "ssim_outside", "psnr_image", "psnr_face", "psnr_outside",
    "lpips_image", "lpips_face", "lpips_outside", "changed_fraction",
)  # fmt: skip


def face_mask(shape: tuple[int, ...], faces: Sequence[FaceGeometry]) -> np.ndarray:
    """True inside any face box (clipped to the image)."""
    mask = np.zeros(shape[:2], dtype=bool)
    height, width = shape[:2]
    for face in faces:
        x0, y0, x1, y1 = face.box
        mask[max(0, int(y0)) : min(height, math.ceil(y1)), max(0, int(x0)) : min(width, math.ceil(x1))] = True
    return mask


def _psnr(squared: np.ndarray) -> float:
    if squared.size == 0:
        return math.nan
    mse = float(squared.mean())
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else math.nan


def pair_utility(original: np.ndarray, anonymized: np.ndarray, faces: Sequence[FaceGeometry], lpips: object | None) -> dict[str, float]:
    """The utility columns of one pair (H x W x 3 uint8 each, same shape); LPIPS columns are NaN without `lpips`."""
    from skimage.color import rgb2gray
    from skimage.metrics import structural_similarity

    mask = face_mask(original.shape, faces)
    _, ssim_map = structural_similarity(rgb2gray(original), rgb2gray(anonymized), data_range=1.0, full=True)
    squared = ((original.astype(np.float64) - anonymized.astype(np.float64)) ** 2).mean(axis=2)
    values = {
        "ssim_image": _mean(ssim_map),
        "ssim_face": _mean(ssim_map[mask]),
        "ssim_outside": _mean(ssim_map[~mask]),
        "psnr_image": _psnr(squared),
        "psnr_face": _psnr(squared[mask]),
        "psnr_outside": _psnr(squared[~mask]),
        "changed_fraction": float(np.any(original != anonymized, axis=2).mean()),
        "lpips_image": math.nan,
        "lpips_face": math.nan,
        "lpips_outside": math.nan,
    }
    if lpips is not None:
        restored = anonymized.copy()
        restored[mask] = original[mask]
        rows, cols = np.nonzero(mask)
        pairs = [(original, anonymized), (original, restored)]
        distances = [float(lpips(_tensor(a), _tensor(b))[0]) for a, b in pairs]  # type: ignore[operator]
        values["lpips_image"], values["lpips_outside"] = distances
        if rows.size:
            y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
            if min(y1 - y0, x1 - x0) >= 16:  # AlexNet's first layers need a few pixels
                values["lpips_face"] = float(lpips(_tensor(original[y0:y1, x0:x1]), _tensor(anonymized[y0:y1, x0:x1]))[0])  # type: ignore[operator]
    return values


#: LPIPS is measured on copies whose longer side is at most this (area resampling), as its authors'
#: evaluation does (64 and 256 px patches): the whole-image distance of a large photo costs no more.
LPIPS_SIDE = 256


def _tensor(pixels: np.ndarray) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)[None].float() / 255.0
    scale = LPIPS_SIDE / max(pixels.shape[:2])
    if scale < 1.0:
        size = (max(16, round(pixels.shape[0] * scale)), max(16, round(pixels.shape[1] * scale)))
        tensor = torch.nn.functional.interpolate(tensor, size=size, mode="area")
    return tensor


@dataclass(frozen=True)
class Utility:
    """A technique's utility: the mean of each column over its pairs (NaN where none was finite), and the pairs."""

    technique: str
    pairs: int
    means: dict[str, float]


def summarise(technique: str, per_pair: Sequence[dict[str, float]]) -> Utility:
    """The means per column; an infinite PSNR (an unchanged region) is capped at 100 dB before averaging."""
    means = {}
    for column in COLUMNS:
        values = [min(v, 100.0) if column.startswith("psnr") else v for pair in per_pair if not math.isnan(v := pair[column])]
        means[column] = float(np.mean(values)) if values else math.nan
    return Utility(technique, len(per_pair), means)
