"""The operations of real redaction tools, reproduced by calling the tools' own libraries.

A security engineer anonymizes with a few lines of Pillow or OpenCV, not with this project's methods, and
each library implements "blur" and "pixelate" its own way:

- Pillow's ``ImageFilter.GaussianBlur(radius)`` is not a Gaussian: it is three passes of an *extended
  box* per axis (Gwosdek et al., SSVM 2011; src/libImaging/BoxBlur.c), a box of 2l+1 pixels plus two
  fractional end taps, rounded to 8 bits after every pass, with the image's edge replicated.
  ``ImageFilter.BoxBlur(radius)`` is one such pass.
- OpenCV's ``GaussianBlur(src, (0, 0), sigma)`` truncates its kernel at ksize = round(6 sigma + 1) | 1 for
  8-bit images (round(8 sigma + 1) | 1 for float ones), reflects the edge without repeating it
  (BORDER_REFLECT_101), and derives sigma = 0.3 ((ksize - 1) / 2 - 1) + 0.8 when only ksize is given.
  ``medianBlur`` replicates the edge.
- A resize mosaic's cells depend on both resamplers: Pillow's BOX, BILINEAR (antialiased: its support
  grows with the scale) or NEAREST down and NEAREST up (pixel centres), OpenCV's INTER_AREA,
  INTER_LINEAR (not antialiased) or INTER_NEAREST down and INTER_NEAREST up (pixel corners).

Each method here calls that library on the region (``context=0``: on the region cut out, as a script
that crops the face does) or on the region with its surroundings (``context=1``: as one that filters the
whole image and pastes the face back), so it reproduces the tool to the bit; its operator is the
library's effective linear filter (or cell-mean matrix), except the median, which is non-linear. Strengths
are in pixels, or with ``fraction`` as a fraction of the region's width (a tool that scales with the face).

References:
    Gwosdek, Grewenig, Bruhn and Weickert, "Theoretical Foundations of Gaussian Convolution by Extended
    Box Filtering", SSVM 2011 (Pillow's GaussianBlur); OpenCV `getGaussianKernel`, `GaussianBlur`,
    `medianBlur`, `resize` documentation; McPherson, Shokri and Shmatikov 2016 (mosaics and blurs fail).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
import torch

from redteam.anonymizers.base import Anonymizer, Box, FaceEvidence, FitAxis, FitSpace, FitVariant, Parameter, strength_variants
from redteam.core.errors import ConfigError
from redteam.core.geometry import FaceGeometry

CONTEXT = Parameter("context", int, 1, "1: filter the region with its surroundings (a tool that filters the whole image); 0: the region cut out", 0, 1)


def _uint8(window: np.ndarray) -> np.ndarray:
    return np.clip(np.round(window * 255.0), 0, 255).astype(np.uint8)


def _region_width(region: Box | None) -> int:
    return 0 if region is None else region[2] - region[0]


def _filter(method: Anonymizer, pixels: np.ndarray, region: Box, operation: Any) -> np.ndarray:
    """`operation` (uint8 H x W x 3 -> uint8) on the region cut out (context=0) or on the whole window."""
    if int(method.values["context"]) == 0:
        x0, y0, x1, y1 = region
        out = pixels.copy()
        out[y0:y1, x0:x1] = operation(np.ascontiguousarray(pixels[y0:y1, x0:x1]))
        return out
    return operation(np.ascontiguousarray(pixels))


class _EightBit(Anonymizer):
    """A method that runs a library on 8-bit pixels: `transform` is its `transform_uint8`."""

    def transform(self, window, region: Box, face: FaceGeometry | None, image, generator) -> np.ndarray:
        return self.transform_uint8(_uint8(window), region, face, image, generator).astype(np.float64) / 255.0

    def transform_uint8(self, window: np.ndarray, region: Box, face: FaceGeometry | None, image: np.ndarray, generator: torch.Generator | None) -> np.ndarray:
        raise NotImplementedError


def _blur_physics(kernel_1d: np.ndarray, padding: str) -> Any:
    from deepinv.physics import Blur

    one = torch.from_numpy(np.asarray(kernel_1d, dtype=np.float64))
    return Blur(filter=torch.outer(one, one)[None, None].float(), padding=padding)


# -- Pillow ------------------------------------------------------------------------------------------


def pillow_box_radius(radius: float, passes: int) -> float:
    """The extended-box radius Pillow uses for a Gaussian of `radius` (its standard deviation) in `passes`
    passes (`_gaussian_blur_radius` in src/libImaging/BoxBlur.c, after Gwosdek et al. 2011)."""
    sigma2 = radius * radius / passes
    length = math.sqrt(12.0 * sigma2 + 1.0)
    whole = math.floor((length - 1.0) / 2.0)
    part = (2 * whole + 1) * (whole * (whole + 1) - 3 * sigma2) / (6 * (sigma2 - (whole + 1) * (whole + 1)))
    return whole + part


def extended_box(radius: float) -> np.ndarray:
    """One pass of Pillow's box blur of (fractional) `radius` as a 1-D kernel: 2l+1 taps of weight
    1/(2r+1) and two end taps sharing the rest (ImagingHorizontalBoxBlur)."""
    whole = int(radius)
    inner = 1.0 / (radius * 2 + 1)
    edge = (1.0 - (2 * whole + 1) * inner) / 2.0
    return np.array([edge] + [inner] * (2 * whole + 1) + [edge])


def pillow_kernel(radius: float, passes: int) -> np.ndarray:
    """Pillow's effective 1-D kernel: `passes` extended boxes convolved."""
    one = extended_box(radius)
    kernel = np.array([1.0])
    for _ in range(passes):
        kernel = np.convolve(kernel, one)
    return kernel


class _PillowBlur(_EightBit):
    linear = True
    operator_kind = "blur"
    operator_note = "Pillow's extended-box passes as one separable linear filter (its 8-bit rounding between passes aside)"
    passes: ClassVar[int]

    def radius(self, region: Box | None = None) -> float:
        fraction = float(self.values["fraction"])
        if fraction > 0 and region is not None:
            return max(0.1, fraction * _region_width(region))
        return float(self.values["radius"])

    def box_radius(self, region: Box | None = None) -> float:
        raise NotImplementedError

    def kernel_1d(self, region: Box | None = None) -> np.ndarray:
        return pillow_kernel(self.box_radius(region), self.passes)

    def context(self, region: Box) -> int:
        return 0 if int(self.values["context"]) == 0 else len(self.kernel_1d(region)) // 2 + 1

    def transform_uint8(self, window: np.ndarray, region: Box, face: FaceGeometry | None, image: np.ndarray, generator: torch.Generator | None) -> np.ndarray:
        from PIL import Image

        operation = self._operation(region)
        return _filter(self, window, region, lambda pixels: np.asarray(Image.fromarray(pixels).filter(operation)))

    def _operation(self, region: Box) -> Any:
        raise NotImplementedError

    def physics(self, window_shape: tuple[int, int]) -> Any:
        return _blur_physics(self.kernel_1d((0, 0, window_shape[1], window_shape[0])), "replicate")


class PilGaussianBlur(_PillowBlur):
    """Pillow's ``ImageFilter.GaussianBlur(radius)``: three extended-box passes per axis, edge replicated.

    References:
        Pillow src/libImaging/BoxBlur.c; Gwosdek et al., SSVM 2011.
    """

    name = "pil_gaussian_blur"
    reference = "Pillow ImageFilter.GaussianBlur (3 extended-box passes, Gwosdek et al. 2011)"
    passes = 3
    parameters = (
        Parameter("radius", float, 4.0, "Pillow's radius (the standard deviation it approximates), in pixels", 0.1, 500.0),
        Parameter("fraction", float, 0.0, "radius = this fraction of the region's width (0: use radius)", 0.0, 1.0),
        CONTEXT,
    )
    fit_space = FitSpace(strength_variants("radius", 0.3, 80.0))

    def box_radius(self, region: Box | None = None) -> float:
        return pillow_box_radius(self.radius(region), 3)

    def _operation(self, region: Box) -> Any:
        from PIL import ImageFilter

        return ImageFilter.GaussianBlur(self.radius(region))


class PilBoxBlur(_PillowBlur):
    """Pillow's ``ImageFilter.BoxBlur(radius)``: one extended-box pass per axis (2 radius + 1 pixels wide,
    fractional radii weigh the end taps), edge replicated.

    References:
        Pillow src/libImaging/BoxBlur.c.
    """

    name = "pil_box_blur"
    reference = "Pillow ImageFilter.BoxBlur (one extended-box pass)"
    passes = 1
    parameters = (
        Parameter("radius", float, 4.0, "box radius in pixels (the box is 2 radius + 1 wide)", 0.1, 500.0),
        Parameter("fraction", float, 0.0, "radius = this fraction of the region's width (0: use radius)", 0.0, 1.0),
        CONTEXT,
    )
    fit_space = FitSpace(strength_variants("radius", 0.5, 200.0, reach=0.35))

    def box_radius(self, region: Box | None = None) -> float:
        return self.radius(region)

    def _operation(self, region: Box) -> Any:
        from PIL import ImageFilter

        return ImageFilter.BoxBlur(self.radius(region))


# -- OpenCV ------------------------------------------------------------------------------------------


def opencv_gaussian(sigma: float, ksize: int) -> tuple[float, int]:
    """(sigma, ksize) as cv2.GaussianBlur settles them for an 8-bit image: ksize = round(6 sigma + 1) | 1
    when 0, sigma = 0.3 ((ksize - 1) / 2 - 1) + 0.8 when 0."""
    if ksize <= 0:
        ksize = int(round(sigma * 3 * 2 + 1)) | 1
    if sigma <= 0:
        sigma = 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8
    return sigma, ksize


class Cv2GaussianBlur(_EightBit):
    """OpenCV's ``cv2.GaussianBlur(src, (ksize, ksize), sigma)`` (BORDER_REFLECT_101).

    ``ksize=0`` lets OpenCV size the kernel from sigma (6 sigma + 1 for 8-bit images); ``sigma=0`` derives
    sigma from ksize, as OpenCV does.

    References:
        OpenCV `getGaussianKernel` and `GaussianBlur` (imgproc/src/smooth.dispatch.cpp).
    """

    name = "cv2_gaussian_blur"
    reference = "OpenCV cv2.GaussianBlur (ksize from sigma, BORDER_REFLECT_101)"
    linear = True
    operator_kind = "blur"
    operator_note = "OpenCV's truncated Gaussian, reflect-101 border"
    parameters = (
        Parameter("sigma", float, 4.0, "standard deviation in pixels (0: from ksize)", 0.0, 500.0),
        Parameter("ksize", int, 0, "kernel side, odd (0: OpenCV's round(6 sigma + 1) | 1)", 0, 2001),
        Parameter("fraction", float, 0.0, "sigma = this fraction of the region's width (0: use sigma)", 0.0, 1.0),
        CONTEXT,
    )
    fit_space = FitSpace(
        (
            *strength_variants("sigma", 0.3, 80.0),
            FitVariant({"context": 0, "sigma": 0.0}, (FitAxis("ksize", 3, 301, "odd", unit="px"),)),
            FitVariant({"context": 1, "sigma": 0.0}, (FitAxis("ksize", 3, 301, "odd", unit="px"),)),
        )
    )

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        ksize, sigma = int(self.values["ksize"]), float(self.values["sigma"])
        if ksize and ksize % 2 == 0:
            raise ConfigError(f"method 'cv2_gaussian_blur': ksize must be odd, got {ksize}", fix="give an odd ksize (OpenCV refuses even ones), or 0")
        if ksize == 0 and sigma <= 0 and float(self.values["fraction"]) <= 0:
            raise ConfigError("method 'cv2_gaussian_blur': give sigma, ksize or fraction", fix="e.g. cv2_gaussian_blur:sigma=6")

    def settled(self, region: Box | None = None) -> tuple[float, int]:
        fraction = float(self.values["fraction"])
        sigma = fraction * _region_width(region) if fraction > 0 and region is not None else float(self.values["sigma"])
        return opencv_gaussian(max(sigma, 0.0), int(self.values["ksize"]))

    def kernel_1d(self, region: Box | None = None) -> np.ndarray:
        import cv2

        sigma, ksize = self.settled(region)
        return cv2.getGaussianKernel(ksize, sigma, cv2.CV_64F)[:, 0]

    def context(self, region: Box) -> int:
        return 0 if int(self.values["context"]) == 0 else self.settled(region)[1] // 2 + 1

    def transform_uint8(self, window: np.ndarray, region: Box, face: FaceGeometry | None, image: np.ndarray, generator: torch.Generator | None) -> np.ndarray:
        import cv2

        sigma, ksize = self.settled(region)
        return _filter(self, window, region, lambda pixels: cv2.GaussianBlur(pixels, (ksize, ksize), sigma))

    def physics(self, window_shape: tuple[int, int]) -> Any:
        return _blur_physics(self.kernel_1d((0, 0, window_shape[1], window_shape[0])), "reflect")


class MedianBlur(_EightBit):
    """OpenCV's ``cv2.medianBlur(src, size)``: each pixel becomes the median of its size x size square
    (edge replicated). Non-linear: no deepinv operator.

    References:
        Tukey, "Exploratory Data Analysis", 1977 (running medians); OpenCV `medianBlur`.
    """

    name = "median_blur"
    reference = "OpenCV cv2.medianBlur"
    operator_kind = "median"
    operator_note = "non-linear (a rank filter): no forward operator for the adaptive attacks"
    parameters = (
        Parameter("size", int, 9, "aperture side in pixels, odd", 3, 1001),
        Parameter("fraction", float, 0.0, "size = this fraction of the region's width, made odd (0: use size)", 0.0, 1.0),
        CONTEXT,
    )
    fit_space = FitSpace(
        (
            FitVariant({"context": 0}, (FitAxis("size", 3, 255, "odd", fraction="fraction", unit="px", reach=0.4),)),
            FitVariant({"context": 1}, (FitAxis("size", 3, 255, "odd", fraction="fraction", unit="px", reach=0.4),)),
        )
    )

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        if int(self.values["size"]) % 2 == 0:
            raise ConfigError(f"method 'median_blur': size must be odd, got {self.values['size']}", fix="give an odd size (OpenCV refuses even ones)")

    def size(self, region: Box | None = None) -> int:
        fraction = float(self.values["fraction"])
        if fraction > 0 and region is not None:
            return max(3, int(fraction * _region_width(region)) | 1)
        return int(self.values["size"])

    def context(self, region: Box) -> int:
        return 0 if int(self.values["context"]) == 0 else self.size(region) // 2 + 1

    def transform_uint8(self, window: np.ndarray, region: Box, face: FaceGeometry | None, image: np.ndarray, generator: torch.Generator | None) -> np.ndarray:
        import cv2

        size = self.size(region)
        return _filter(self, window, region, lambda pixels: cv2.medianBlur(pixels, size))


# -- resize mosaics ----------------------------------------------------------------------------------


class _ResizeMosaic(_EightBit):
    """Resize the region down to a few cells and back up with nearest neighbours, in one library."""

    linear = True
    operator_kind = "cells"
    downs: ClassVar[tuple[str, ...]]

    @classmethod
    def _parameters(cls, downs: tuple[str, ...], default: str) -> tuple[Parameter, ...]:
        return (
            Parameter("cells", int, 0, "cells per side (the region resized to cells x cells); 0: from pitch", 0, 1024),
            Parameter("pitch", float, 16.0, "cell size in pixels when cells=0: the region holds size / pitch cells per axis", 1.0, 1024.0),
            Parameter("rounding", str, "floor", "cells per axis = floor or round of size / pitch", choices=("floor", "round")),
            Parameter("down", str, default, "the downscaling filter", choices=downs),
        )

    def counts(self, width: int, height: int) -> tuple[int, int]:
        """(columns, rows) of cells over a width x height region."""
        cells = int(self.values["cells"])
        if cells > 0:
            return min(cells, width), min(cells, height)
        pitch = float(self.values["pitch"])
        rule = math.floor if self.values["rounding"] == "floor" else round
        return max(1, min(width, int(rule(width / pitch)))), max(1, min(height, int(rule(height / pitch))))

    def _down(self, pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        raise NotImplementedError

    def _up(self, pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        raise NotImplementedError

    def transform_uint8(self, window: np.ndarray, region: Box, face: FaceGeometry | None, image: np.ndarray, generator: torch.Generator | None) -> np.ndarray:
        x0, y0, x1, y1 = region
        area = np.ascontiguousarray(window[y0:y1, x0:x1])
        columns, rows = self.counts(x1 - x0, y1 - y0)
        out = window.copy()
        out[y0:y1, x0:x1] = self._up(self._down(area, (columns, rows)), (x1 - x0, y1 - y0))
        return out

    def cell_pitch(self, region: Box) -> tuple[float, float]:
        width, height = region[2] - region[0], region[3] - region[1]
        columns, rows = self.counts(width, height)
        return width / columns, height / rows

    def _weights(self, size: int, cells: int) -> np.ndarray:
        """cells x size: the library's downscaling of one axis as a matrix (its float path on an identity)."""
        identity = np.eye(size, dtype=np.float32)
        return np.ascontiguousarray(self._down_float(identity, cells).T).astype(np.float64)

    def _down_float(self, identity: np.ndarray, cells: int) -> np.ndarray:
        raise NotImplementedError

    def physics(self, window_shape: tuple[int, int]) -> Any:
        """The cell values of an h x w region as a deepinv LinearPhysics (y: rows x columns cells): the
        library's resampling weights, found by resizing an identity with its float path."""
        from deepinv.physics import LinearPhysics

        height, width = window_shape
        columns, rows = self.counts(width, height)
        row_weights = torch.from_numpy(self._weights(height, rows)).float()
        column_weights = torch.from_numpy(self._weights(width, columns)).float()
        return LinearPhysics(
            A=lambda x, **_: torch.einsum("ry,ncyx,kx->ncrk", row_weights.to(x.device), x, column_weights.to(x.device)),
            A_adjoint=lambda y, **_: torch.einsum("ry,ncrk,kx->ncyx", row_weights.to(y.device), y, column_weights.to(y.device)),
        )

    @classmethod
    def fit_proposals(cls, variant: FitVariant, evidence: FaceEvidence) -> list[dict[str, Any]] | None:
        """The cell counts the anonymized region shows, as a fixed count and as a pitch in pixels (a
        value inside the interval that floor or round maps to the counts seen)."""
        if evidence.cells is None:
            return None
        columns, rows = evidence.cells
        steps = [(d, d) for d in (0, -1, 1)] if columns == rows else [(dc, dr) for dc in (0, -1, 1) for dr in (0, -1, 1)]
        proposals: list[dict[str, Any]] = []
        for nx, ny in ((columns + dc, rows + dr) for dc, dr in steps):
            if nx < 1 or ny < 1:
                continue
            if nx == ny:
                proposals.append({**variant.fixed, "cells": nx})
            for rounding in ("floor", "round"):
                interval = _pitch_interval(evidence.width, evidence.height, nx, ny, rounding)
                if interval is not None:
                    proposals.append({**variant.fixed, "cells": 0, "pitch": round((interval[0] + interval[1]) / 2, 4), "rounding": rounding})
        return proposals

    @classmethod
    def fit_summaries(cls, variant: FitVariant, fits: Sequence[tuple[Mapping[str, Any], FaceEvidence]]) -> list[dict[str, Any]]:
        """A fixed count (the most common), and a pitch inside every face's interval where one exists (else
        the median pitch), for floor and round."""
        if not fits:
            return []
        summaries: list[dict[str, Any]] = []
        counts = [int(p["cells"]) if int(p.get("cells", 0)) > 0 else cls(**_clean(p)).counts(e.width, e.height)[0] for p, e in fits]
        if counts:
            values, frequency = np.unique(counts, return_counts=True)
            summaries.append({**variant.fixed, "cells": int(values[frequency.argmax()])})
        for rounding in ("floor", "round"):
            intervals = []
            for params, evidence in fits:
                nx, ny = cls(**_clean(params)).counts(evidence.width, evidence.height)
                interval = _pitch_interval(evidence.width, evidence.height, nx, ny, rounding)
                if interval is not None:
                    intervals.append(interval)
            if not intervals:
                continue
            low, high = max(i[0] for i in intervals), min(i[1] for i in intervals)
            pitch = (low + high) / 2 if low < high else float(np.median([(i[0] + i[1]) / 2 for i in intervals]))
            summaries.append({**variant.fixed, "cells": 0, "pitch": round(pitch, 4), "rounding": rounding})
        return summaries


def _clean(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if not k.startswith("_")}


def _pitch_interval(width: int, height: int, columns: int, rows: int, rounding: str) -> tuple[float, float] | None:
    """The open range of pitches p for which floor (or round) of width / p and height / p give the counts."""
    if rounding == "floor":
        lows, highs = [width / (columns + 1), height / (rows + 1)], [width / columns, height / rows]
    else:
        lows = [width / (columns + 0.5), height / (rows + 0.5)]
        highs = [width / (columns - 0.5) if columns > 0.5 else math.inf, height / (rows - 0.5) if rows > 0.5 else math.inf]
    low, high = max(lows), min(highs)
    if not low < high or low < 1.0:
        return None
    return low, min(high, 1024.0)


_PIL_FILTERS = {"box": "BOX", "bilinear": "BILINEAR", "nearest": "NEAREST", "bicubic": "BICUBIC", "lanczos": "LANCZOS", "hamming": "HAMMING"}
_CV2_FILTERS = {"area": "INTER_AREA", "linear": "INTER_LINEAR", "nearest": "INTER_NEAREST", "cubic": "INTER_CUBIC", "nearest_exact": "INTER_NEAREST_EXACT"}
_MOSAIC_EVIDENCE = frozenset({"cells"})


class PilMosaic(_ResizeMosaic):
    """A Pillow resize mosaic: ``region.resize((columns, rows), down)`` then ``.resize(size, NEAREST)``.

    ``cells=N`` resizes every region to N x N; otherwise each axis holds floor (or round) of size / pitch
    cells. BILINEAR, BICUBIC and LANCZOS downscaling are antialiased in Pillow (their support grows with
    the scale), BOX averages exactly the pixels a cell covers.

    References:
        Pillow `Image.resize` (src/libImaging/Resample.c); McPherson, Shokri and Shmatikov 2016.
    """

    name = "pil_mosaic"
    reference = "Pillow resize mosaic: Image.resize(cells, BOX|BILINEAR|NEAREST|...) then NEAREST up"
    downs = tuple(_PIL_FILTERS)
    parameters = _ResizeMosaic._parameters(tuple(_PIL_FILTERS), "box")
    fit_space = FitSpace(
        tuple(FitVariant({"down": down}, (FitAxis("pitch", 3.0, 80.0, "log", unit="px"),)) for down in ("box", "bilinear", "nearest", "bicubic")),
        _MOSAIC_EVIDENCE,
    )

    def _down(self, pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        from PIL import Image

        return np.asarray(Image.fromarray(pixels).resize(size, getattr(Image.Resampling, _PIL_FILTERS[str(self.values["down"])])))

    def _up(self, pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        from PIL import Image

        return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.NEAREST))

    def _down_float(self, identity: np.ndarray, cells: int) -> np.ndarray:
        from PIL import Image

        resample = getattr(Image.Resampling, _PIL_FILTERS[str(self.values["down"])])
        return np.asarray(Image.fromarray(identity).resize((cells, identity.shape[0]), resample), dtype=np.float64)


class Cv2Mosaic(_ResizeMosaic):
    """An OpenCV resize mosaic: ``cv2.resize(region, (columns, rows), interpolation=down)`` then
    ``cv2.resize(..., size, interpolation=INTER_NEAREST)``.

    INTER_AREA averages the (fractional) area a cell covers; INTER_LINEAR samples two pixels per axis
    (no antialiasing); INTER_NEAREST keeps one pixel per cell.

    References:
        OpenCV `resize` (imgproc/src/resize.cpp); McPherson, Shokri and Shmatikov 2016.
    """

    name = "cv2_mosaic"
    reference = "OpenCV resize mosaic: cv2.resize(cells, INTER_AREA|INTER_LINEAR|INTER_NEAREST) then INTER_NEAREST up"
    downs = tuple(_CV2_FILTERS)
    parameters = _ResizeMosaic._parameters(tuple(_CV2_FILTERS), "area")
    fit_space = FitSpace(
        tuple(FitVariant({"down": down}, (FitAxis("pitch", 3.0, 80.0, "log", unit="px"),)) for down in ("area", "linear", "nearest")), _MOSAIC_EVIDENCE
    )

    def _down(self, pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        import cv2

        return cv2.resize(pixels, size, interpolation=getattr(cv2, _CV2_FILTERS[str(self.values["down"])]))

    def _up(self, pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        import cv2

        return cv2.resize(pixels, size, interpolation=cv2.INTER_NEAREST)

    def _down_float(self, identity: np.ndarray, cells: int) -> np.ndarray:
        import cv2

        interpolation = getattr(cv2, _CV2_FILTERS[str(self.values["down"])])
        return np.asarray(cv2.resize(identity, (cells, identity.shape[0]), interpolation=interpolation), dtype=np.float64)


TOOL_METHODS: tuple[type[Anonymizer], ...] = (PilGaussianBlur, PilBoxBlur, Cv2GaussianBlur, MedianBlur, PilMosaic, Cv2Mosaic)
