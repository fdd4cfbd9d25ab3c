"""The interface of a reference anonymization method, its declared parameters, and its region.

A method transforms a *window* of the image around each face (the face region plus the context its
operation reads, e.g. a blur's radius) and composites the result back through the region's mask
(rectangle or ellipse, optionally feathered inward). Pixels outside the region are never written, so
they stay bit-identical. Output is quantized to 8 bits: quantization is part of the method, as a real
redaction tool writes 8-bit files (Privacy Blur, arXiv 2512.16086, shows rounding itself leaks).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Mapping, Sequence

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


@dataclass(frozen=True)
class FitAxis:
    """One parameter that operator identification searches, per face, and its range.

    Attributes:
        name: the method's parameter.
        low, high: the searched range (clipped to what a face region of the folder allows).
        scale: "log" or "linear" (a float, golden-section search), "int" or "odd" (coarse to fine).
        fraction: the method's parameter that sets this one as a fraction of the region's width (tools
            that scale their strength with the face), or None: the folder's spec then says either the
            value in pixels or the fraction, whichever reproduces every face better.
        unit: "px" when the value is a length in pixels (it scales with the image: a large face is first
            searched on a shrunk copy, then refined at full size), "1" when it does not scale (an angle, a
            fraction), None when unknown or when the operation does not survive shrinking (a JPEG
            quality: its 8 x 8 blocks do not), searched at full size only.
        reach: for a length with a `fraction` twin, the largest value searched as a fraction of the
            region's width (beyond a quarter of the region a Gaussian leaves it flat; a box reaches further).
    """

    name: str
    low: float
    high: float
    scale: Literal["log", "linear", "int", "odd"] = "log"
    fraction: str | None = None
    unit: Literal["px", "1"] | None = None
    reach: float = 0.25


@dataclass(frozen=True)
class FitVariant:
    """A set of fixed parameter values (e.g. ``context=0``) and the axes searched with them."""

    fixed: Mapping[str, Any] = field(default_factory=dict)
    axes: tuple[FitAxis, ...] = ()


@dataclass(frozen=True)
class FitSpace:
    """How operator identification fits a method (`redteam.engine.identify`): the variants it tries and
    the evidence the method can explain ("flat": a constant colour, "cells": a grid of flat cells,
    "smooth": anything else a filter leaves, "any")."""

    variants: tuple[FitVariant, ...]
    evidence: frozenset[str] = frozenset({"smooth"})
    #: Tried only when no other family fits (a costly search, e.g. a motion blur's length and angle).
    fallback: bool = False


@dataclass(frozen=True)
class FaceEvidence:
    """What identification saw of one face's region, for a method's own parameter proposals.

    Attributes:
        width, height: the changed region's box, in pixels.
        face_width: the face box's width (the auditor's detector).
        cells: (columns, rows) of flat cells seen in the anonymized region, or None when no grid shows.
        colour: the median RGB of the anonymized region (a fill's colour).
        pitch: the (x, y) cell width of that grid in pixels, or None.
    """

    width: int
    height: int
    face_width: float
    cells: tuple[int, int] | None = None
    colour: tuple[int, int, int] = (0, 0, 0)
    pitch: tuple[float, float] | None = None

    def resized(self, width: int, height: int) -> FaceEvidence:
        """The same evidence for a region box of another size (its cell counts follow the grid's pitch)."""
        cells = self.cells
        if self.pitch is not None:
            cells = (max(1, round(width / self.pitch[0])), max(1, round(height / self.pitch[1])))
        return FaceEvidence(width, height, self.face_width, cells, self.colour, self.pitch)


#: One face's region given explicitly: its box in the image, a mask over the box (1 inside the shape)
#: and the face it belongs to.
ExplicitRegion = tuple[Box, np.ndarray, FaceGeometry | None]


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
    #: How operator identification searches this method (None: never proposed as a candidate). A plugin
    #: method that declares one is identified like the built-in ones.
    fit_space: ClassVar[FitSpace | None] = None

    @classmethod
    def fit_proposals(cls, variant: FitVariant, evidence: FaceEvidence) -> list[dict[str, Any]] | None:
        """Parameter values to try on one face instead of searching `variant`'s axes (a mosaic's cell count
        read off the grid, a fill's colour), the most likely first, or None to search the axes."""
        return None

    @classmethod
    def fit_summaries(cls, variant: FitVariant, fits: Sequence[tuple[Mapping[str, Any], FaceEvidence]]) -> list[dict[str, Any]]:
        """Parameter sets for a whole folder from the per-face fits of `variant`: by default the median of
        each axis in pixels and, for an axis with a `fraction` twin, the median fraction of the region's
        width (a tool that scales with the face). Identification scores every one on every face."""
        if not fits:
            return []
        if not variant.axes:  # proposed values (a colour): the most common ones
            keys = [tuple(sorted(params.items())) for params, _ in fits]
            return [{**variant.fixed, **dict(key)} for key in sorted(set(keys), key=lambda k: -keys.count(k))[:3]]
        absolute: dict[str, Any] = dict(variant.fixed)
        relative: dict[str, Any] = dict(variant.fixed)
        for axis in variant.axes:
            values = [float(params[axis.name]) for params, _ in fits]
            absolute[axis.name] = axis_value(axis, float(np.median(values)))
            if axis.fraction is not None:
                relative[axis.fraction] = round(float(np.median([v / max(1, e.width) for v, (_, e) in zip(values, fits, strict=True)])), 4)
            else:
                relative[axis.name] = absolute[axis.name]
        summaries = [absolute]
        if relative != absolute and any(axis.fraction for axis in variant.axes):
            summaries.append(relative)
        return summaries

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
        face_list = list(faces)
        regions = self.regions(pixels.shape, face_list)
        matched: list[FaceGeometry | None] = [None] * len(regions)
        if self.values["region"] == "face":
            matched = [f for f in face_list if self._has_region(pixels.shape, f)]
        return self.apply_regions(pixels, [(region, self.region_mask(region, face), face) for region, face in zip(regions, matched, strict=True)], generator)

    def apply_regions(self, pixels: np.ndarray, regions: Sequence[ExplicitRegion], generator: torch.Generator | None = None) -> np.ndarray:
        """`apply` with each face's region given (box, mask over the box, face) instead of derived from the
        face box: operator identification fits a tool's operation inside the region its output shows."""
        out = np.array(pixels, dtype=np.uint8, copy=True)
        height, width = out.shape[:2]
        for region, region_mask, face in regions:
            pad = self.context(region)
            x0, y0, x1, y1 = region
            wx0, wy0, wx1, wy1 = max(0, x0 - pad), max(0, y0 - pad), min(width, x1 + pad), min(height, y1 + pad)
            local = (x0 - wx0, y0 - wy0, x1 - wx0, y1 - wy0)
            target = out[y0:y1, x0:x1]
            full = bool(region_mask.min() >= 1.0)  # the whole box, no feathered edge: copied as it is
            inside = region_mask > 0
            solid = full or bool(np.all(region_mask[inside] >= 1.0))  # no feathered edge: no blending needed
            quantized = self.transform_uint8(out[wy0:wy1, wx0:wx1], local, face, pixels, generator)
            if quantized is not None:
                inner_u8 = quantized[local[1] : local[3], local[0] : local[2]]
                if solid:
                    target[...] = inner_u8 if full else np.where(inside[..., None], inner_u8, target)
                    continue
                inner = inner_u8.astype(np.float64) / 255.0
            else:
                window = out[wy0:wy1, wx0:wx1].astype(np.float64) / 255.0
                inner = self.transform(window, local, face, pixels, generator)[local[1] : local[3], local[0] : local[2]]
                if solid:
                    rounded = np.clip(np.round(inner * 255.0), 0, 255).astype(np.uint8)
                    target[...] = rounded if full else np.where(inside[..., None], rounded, target)
                    continue
            mask = region_mask[..., None]
            original = target.astype(np.float64) / 255.0
            blended = np.clip(np.round((mask * inner + (1.0 - mask) * original) * 255.0), 0, 255).astype(np.uint8)
            target[inside] = blended[inside]
        return out

    def transform_uint8(
        self, window: np.ndarray, region: Box, face: FaceGeometry | None, image: np.ndarray, generator: torch.Generator | None
    ) -> np.ndarray | None:
        """The method's operation on an 8-bit window, for methods that run a library on 8-bit pixels (the
        result is then used as it is); None (the default) means "use `transform`"."""
        return None

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


def strength_variants(name: str, low: float, high: float, scale: Literal["log", "linear", "int", "odd"] = "log", reach: float = 0.25) -> tuple[FitVariant, ...]:
    """The fit of a filter whose strength `name` is a length in pixels or a fraction of the region's width
    (parameter `fraction`), tried with the region's surroundings read (context=1) and cut out (context=0)."""
    axis = FitAxis(name, low, high, scale, fraction="fraction", unit="px", reach=reach)
    return (FitVariant({"context": 0}, (axis,)), FitVariant({"context": 1}, (axis,)))


def axis_value(axis: FitAxis, value: float) -> float | int:
    """`value` as the axis' parameter: an int (odd for "odd"), or a float to 4 significant digits."""
    if axis.scale == "int":
        return int(round(value))
    if axis.scale == "odd":
        return int(round((value - 1) / 2)) * 2 + 1
    return float(f"{value:.4g}")
