"""Denoising and JPEG deblocking of anonymized faces (blind, classical).

References:
    Buades, Coll and Morel, "A non-local algorithm for image denoising", CVPR 2005; Donoho and
    Johnstone, Biometrika 1994 (noise estimation used by scikit-image's `estimate_sigma`); Rudin, Osher
    and Fatemi, Physica D 1992 (TV smoothing of blocking artefacts).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from attacks.base import Attack, MethodInfo
from redteam.core.tiers import ThreatTier


def _per_image(images: torch.Tensor, restore) -> torch.Tensor:  # noqa: ANN001 - a numpy -> numpy callable
    out = []
    for image in images:
        window = image.permute(1, 2, 0).double().numpy()
        out.append(torch.from_numpy(np.clip(restore(window), 0.0, 1.0)).permute(2, 0, 1).float())
    return torch.stack(out)


def face_patch(window: np.ndarray, method: MethodInfo) -> np.ndarray:
    """The face box inside the window when known, else the window's central half."""
    height, width = window.shape[:2]
    if method.face is not None:
        x0, y0, x1, y1 = (int(round(v)) for v in method.face.box)
        x0, x1 = max(0, x0 - method.origin[0]), min(width, x1 - method.origin[0])
        y0, y1 = max(0, y0 - method.origin[1]), min(height, y1 - method.origin[1])
        if x1 - x0 >= 8 and y1 - y0 >= 8:
            return window[y0:y1, x0:x1]
    return window[height // 4 : height - height // 4, width // 4 : width - width // 4]


class NonLocalMeansDenoise(Attack):
    """Non-local means denoising with a blindly estimated noise level.

    References:
        Buades, Coll and Morel, CVPR 2005; scikit-image `denoise_nl_means`, `estimate_sigma`.
    """

    name = "denoise"
    version = "3"  # 2: a flat face is left as it is, not denoised with a NaN sigma; 3: the face patch of a shrunk window is the face
    tier = ThreatTier.RECONSTRUCTION
    works_at_any_scale = True

    def reconstruct(self, images: torch.Tensor, *, method: MethodInfo, generator: torch.Generator) -> torch.Tensor:
        from skimage.restoration import denoise_nl_means, estimate_sigma  # imported here: it pulls in scipy.signal

        def restore(window: np.ndarray) -> np.ndarray:
            # Estimate the noise on the face itself: the clean context around it would pull the
            # median-based estimate towards zero. The estimate ignores zero wavelet coefficients, so a
            # flat patch (a solid box) has none left and gives NaN: no measurable noise, nothing to remove
            # (NaN would reach the denoiser's weights and blur the window instead).
            patch = face_patch(window, method)
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # numpy's "Mean of empty slice" for that NaN
                sigma = float(np.mean(estimate_sigma(patch, channel_axis=2)))
            if not np.isfinite(sigma) or sigma <= 1e-4:
                return window
            return denoise_nl_means(window, h=0.8 * sigma, sigma=sigma, patch_size=5, patch_distance=6, channel_axis=2, fast_mode=True)

        return _per_image(images, restore)


class JpegDeblock(Attack):
    """Smooth JPEG blocking artefacts with light total-variation denoising.

    References:
        Rudin, Osher and Fatemi, Physica D 1992; scikit-image `denoise_tv_chambolle`.
    """

    name = "jpeg_deblock"
    tier = ThreatTier.RECONSTRUCTION
    works_at_any_scale = True

    def reconstruct(self, images: torch.Tensor, *, method: MethodInfo, generator: torch.Generator) -> torch.Tensor:
        from skimage.restoration import denoise_tv_chambolle  # imported here: it pulls in scipy.signal

        return _per_image(images, lambda window: denoise_tv_chambolle(window, weight=0.04, channel_axis=2))
