"""The interface of a reference anonymization method, its declared parameters, and its region.

A method transforms a *window* of the image around each face (the face region plus the context its
operation reads, e.g. a blur's radius) and composites the result back through the region's mask
(rectangle or ellipse, optionally feathered inward). Pixels outside the region are never written, so
they stay bit-identical. Output is quantized to 8 bits: quantization is part of the method, as a real
redaction tool writes 8-bit files (Privacy Blur, arXiv 2512.16086, shows rounding itself leaks).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from redteam.core.geometry import Box, FaceGeometry, enlarged_box
from redteam.core.params import Configurable, Parameter

REGION_PARAMETERS: tuple[Parameter, ...] = (
    Parameter("margin", float, 0.2, "grow each face box by this fraction of its size on every side", 0.0, 3.0),
    Parameter("shape", str, "rect", "region shape inside the grown box", choices=("rect", "ellipse")),
    Parameter("feather", float, 0.0, "soften the region's inner edge over this many pixels (0 = hard edge)", 0.0, 200.0),
    Parameter("region", str, "face", "anonymize each face, or the whole image", choices=("face", "image")),
)


@dataclass(frozen=True)
class FaceSet:
    """The faces a set-level method (k-Same) is fitted on: images and their faces' geometry."""

    images: tuple[np.ndarray, ...]
    faces: tuple[tuple[FaceGeometry, ...], ...]


def image_key(pixels: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(str(pixels.shape).encode() + np.ascontiguousarray(pixels).tobytes()).hexdigest()


class Anonymizer(Configurable, ABC):
    """A reference anonymization method: reproducible from its name and parameters.

    Subclasses declare `parameters` (the region parameters are added to every method) and implement
    `transform` on a float window in [0, 1]. `physics` returns the forward operator on a window as a
    deepinv Physics, or None when the method has none (then `operator_note` says why).
    """

    what: ClassVar[str] = "method"
    #: What its operator is, for attacks that choose by capability: "blur" (a convolution: physics() is a
    #: deepinv Blur with its filter), "cells" (cell means), "mask" (a fill), "noise", "jpeg", "replace"
    #: (no operator of the face), or "" (unknown).
    operator_kind: ClassVar[str] = ""
    reference: ClassVar[str]
    region_defaults: ClassVar[dict[str, Any]] = {}
    linear: ClassVar[bool] = False
    operator_note: ClassVar[str] = ""
    needs_fit: ClassVar[bool] = False

    @classmethod
    def all_parameters(cls) -> tuple[Parameter, ...]:
        own = {p.name for p in cls.parameters}
        region = tuple(
            Parameter(p.name, p.kind, cls.region_defaults.get(p.name, p.default), p.help, p.minimum, p.maximum, p.choices)
            for p in REGION_PARAMETERS
            if p.name not in own
        )
        return cls.parameters + region

    @property
    def parameters_json(self) -> list[dict[str, Any]]:
        """Every stage with every parameter value (defaults included), for the reports."""
        return [{"method": stage.name, "parameters": dict(stage.values)} for stage in self.stages]

    @property
    def stages(self) -> tuple[Anonymizer, ...]:
        return (self,)

    # -- geometry ---------------------------------------------------------------------------------
    def context(self, region: Box) -> int:
        """Pixels of surrounding image the operation reads around `region` (0: the region alone)."""
        return 0

    def regions(self, shape: tuple[int, ...], faces: Sequence[FaceGeometry]) -> list[Box]:
        """Integer (x0, y0, x1, y1) regions, clipped to the image: one per face, or the whole image."""
        height, width = shape[:2]
        if self.values["region"] == "image":
            return [(0, 0, width, height)] if faces else []
        regions = []
        for face in faces:
            x0, y0, x1, y1 = enlarged_box(face.box, float(self.values["margin"]))
            region = (
                max(0, int(np.floor(x0))),
                max(0, int(np.floor(y0))),
                min(width, int(np.ceil(x1))),
                min(height, int(np.ceil(y1))),
            )
            if region[2] > region[0] and region[3] > region[1]:
                regions.append(region)
        return regions

    def region_mask(self, region: Box, face: FaceGeometry | None) -> np.ndarray:
        """Mask over the region's box, 1 inside the region's shape, feathered inward, in [0, 1]."""
        x0, y0, x1, y1 = region
        height, width = y1 - y0, x1 - x0
        mask = np.zeros((height, width), dtype=np.float64)
        if self.values["shape"] == "ellipse" and self.values["region"] == "face":
            from skimage.draw import ellipse as draw_ellipse  # scikit-image is imported when a mask is drawn, not by every command

            rows, cols = draw_ellipse(height // 2, width // 2, height // 2, width // 2, shape=(height, width))
            mask[rows, cols] = 1.0
        else:
            mask[:] = 1.0
        return self._feather(mask)

    def _feather(self, mask: np.ndarray) -> np.ndarray:
        feather = float(self.values["feather"])
        if feather <= 0:
            return mask
        from skimage.filters import gaussian

        inside = mask > 0
        padded = np.pad(mask, int(np.ceil(3 * feather)), mode="constant")
        soft = gaussian(padded, sigma=feather, mode="constant")[
            int(np.ceil(3 * feather)) : -int(np.ceil(3 * feather)), int(np.ceil(3 * feather)) : -int(np.ceil(3 * feather))
        ]
        soft = np.clip((soft - 0.5) * 2.0, 0.0, 1.0)  # full strength from the blurred 50% line inward
        return np.where(inside, soft, 0.0)

    # -- the method -------------------------------------------------------------------------------
    def fit(self, faces: FaceSet, generator: torch.Generator | None = None) -> None:  # noqa: B027 - optional hook
        """Set-level methods (k-Same) learn from the whole set here; others need nothing."""

    def apply(self, pixels: np.ndarray, faces: Sequence[FaceGeometry], generator: torch.Generator | None = None) -> np.ndarray:
        """Anonymize every face of an H x W x 3 uint8 image; pixels outside the regions are untouched."""
        out = np.array(pixels, dtype=np.uint8, copy=True)
        height, width = out.shape[:2]
        face_list = list(faces)
        regions = self.regions(out.shape, face_list)
        matched = face_list if self.values["region"] == "face" else [None] * len(regions)
        if self.values["region"] == "face":
            matched = [f for f in face_list if self._has_region(out.shape, f)]
        for region, face in zip(regions, matched, strict=True):
            pad = self.context(region)
            x0, y0, x1, y1 = region
            wx0, wy0, wx1, wy1 = max(0, x0 - pad), max(0, y0 - pad), min(width, x1 + pad), min(height, y1 + pad)
            window = out[wy0:wy1, wx0:wx1].astype(np.float64) / 255.0
            transformed = self.transform(window, (x0 - wx0, y0 - wy0, x1 - wx0, y1 - wy0), face, pixels, generator)
            inner = transformed[y0 - wy0 : y1 - wy0, x0 - wx0 : x1 - wx0]
            mask = self.region_mask(region, face)[..., None]
            original = out[y0:y1, x0:x1].astype(np.float64) / 255.0
            blended = np.clip(np.round((mask * inner + (1.0 - mask) * original) * 255.0), 0, 255).astype(np.uint8)
            target = out[y0:y1, x0:x1]
            inside = mask[..., 0] > 0
            target[inside] = blended[inside]
        return out

    def _has_region(self, shape: tuple[int, ...], face: FaceGeometry) -> bool:
        return bool(self.regions(shape, [face]))

    @abstractmethod
    def transform(
        self,
        window: np.ndarray,
        region: Box,
        face: FaceGeometry | None,
        image: np.ndarray,
        generator: torch.Generator | None,
    ) -> np.ndarray:
        """The method's pixel operation.

        Args:
            window: h x w x 3 float64 in [0, 1]: the region plus `context(region)` pixels around it.
            region: the region's box inside the window.
            face: the face this region belongs to (None for region=image).
            image: the whole uint8 image as given to `apply` (before any region was changed).
            generator: seeded randomness.

        Returns:
            The transformed window, same shape, float in [0, 1] (quantized by `apply`).
        """

    def cell_pitch(self, region: Box) -> tuple[float, float] | None:
        """For an operator of kind "cells": the (x, y) width of its cells over `region`, the grid anchored
        at the region's top-left corner; None for any other method."""
        return None

    def physics(self, window_shape: tuple[int, int]) -> Any:
        """The forward operator on an h x w window as a deepinv Physics, or None (see operator_note)."""
        return None
