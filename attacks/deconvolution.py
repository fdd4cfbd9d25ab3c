"""Deconvolution of blurred faces: with the declared kernel (adaptive) or a blindly estimated one.

References:
    Wiener, "Extrapolation, Interpolation, and Smoothing of Stationary Time Series", 1949; Richardson,
    JOSA 1972 and Lucy, AJ 1974; Rudin, Osher and Fatemi, Physica D 1992 (total variation), solved by
    proximal gradient descent in deepinv (Tachella et al., "DeepInverse", 2023); Krishnan, Tay and
    Fergus, "Blind deconvolution using a normalized sparsity measure", CVPR 2011 (blind kernel choice).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from attacks.base import Applicability, Attack, AttackNotApplicable, MethodInfo
from redteam.core.tiers import ThreatTier


def known_kernel(method: MethodInfo) -> np.ndarray | None:
    """The declared blur's kernel (k x k float64, odd k, centred) taken from the method's own operator
    (`physics()` on its region), or None when the method has no blur stage."""
    stage = method.stage_of("blur")
    if stage is None:
        return None
    region = method.region_of(stage)
    shape = (region[3] - region[1], region[2] - region[0]) if region is not None else (64, 64)
    return stage.physics(shape).filter[0, 0].double().numpy()


def _pad(window: np.ndarray, kernel: np.ndarray) -> tuple[np.ndarray, int]:
    pad = max(kernel.shape) // 2 + 1
    return np.pad(window, ((pad, pad), (pad, pad), (0, 0)), mode="edge"), pad


def wiener_deconvolve(window: np.ndarray, kernel: np.ndarray, balance: float) -> np.ndarray:
    padded, pad = _pad(window, kernel)
    from skimage.restoration import wiener  # imported here: skimage.restoration pulls in scipy.signal (1 s)

    channels = [wiener(padded[..., c], kernel, balance, clip=False) for c in range(3)]
    return np.clip(np.stack(channels, axis=2)[pad:-pad, pad:-pad], 0.0, 1.0)


def normalized_sparsity(image: np.ndarray) -> float:
    """||grad||_1 / ||grad||_2 (Krishnan et al. 2011): lower for sharp, natural images."""
    gray = image.mean(axis=2)
    gradients = np.concatenate([np.diff(gray, axis=0).ravel(), np.diff(gray, axis=1).ravel()])
    return float(np.abs(gradients).sum() / (np.sqrt((gradients**2).sum()) + 1e-12))


class _Deconvolution(Attack):
    tier = ThreatTier.ADAPTIVE
    needs_known_method = True

    def applicable(self, method: MethodInfo) -> Applicability:
        if not method.is_known:
            return Applicability(False, f"needs the blur kernel; '{method.name}' is an observed folder without a spec")
        if method.stage_of("blur") is None:
            return Applicability(False, f"'{method.name}' has no blur stage")
        return Applicability(True)

    def deconvolve(self, window: np.ndarray, kernel: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def reconstruct(self, images: torch.Tensor, *, method: MethodInfo, generator: torch.Generator) -> torch.Tensor:
        kernel = known_kernel(method)
        out = []
        for image in images:
            window = image.permute(1, 2, 0).double().numpy()
            out.append(torch.from_numpy(self.deconvolve(window, kernel)).permute(2, 0, 1).float())  # type: ignore[arg-type]
        return only_in_region(images, torch.stack(out), method)


def only_in_region(images: torch.Tensor, restored: torch.Tensor, method: MethodInfo) -> torch.Tensor:
    """Keep the restoration inside the blurred region only: deconvolving the untouched context around
    it would only sharpen (and damage) pixels that were never blurred."""
    stage = method.stage_of("blur")
    region = method.region_of(stage) if stage is not None else None
    if region is None:
        return restored
    height, width = images.shape[-2:]
    x0, y0, x1, y1 = max(0, region[0]), max(0, region[1]), min(width, region[2]), min(height, region[3])
    out = images.clone()
    out[..., y0:y1, x0:x1] = restored[..., y0:y1, x0:x1]
    return out


class WienerDeconvolution(_Deconvolution):
    """Wiener deconvolution with the declared blur kernel (balance 0.005).

    References:
        Wiener 1949; scikit-image `restoration.wiener`.
    """

    name = "wiener"
    balance = 0.005

    def deconvolve(self, window: np.ndarray, kernel: np.ndarray) -> np.ndarray:
        return wiener_deconvolve(window, kernel, self.balance)


def valid_blur_fft(kernel: torch.Tensor, shape: tuple[int, int]):
    """The blur as a deepinv LinearPhysics on an extended domain: x is the window grown by the kernel's
    radius, A(x) the blurred window ("valid" convolution, the same pixels a replicate-padded blur reads
    inside the window), computed with FFTs (exact: the circular wrap only touches the cropped border).

    Args:
        kernel: 1 x 1 x kh x kw (odd sizes, centred; not square when the method's region is narrower than
            its kernel and `physics()` truncates it).
        shape: (h, w) of the blurred window (the measurement).
    """
    from deepinv.physics import LinearPhysics

    size_y, size_x = kernel.shape[-2:]
    radius_y, radius_x = size_y // 2, size_x // 2
    height, width = shape[0] + 2 * radius_y, shape[1] + 2 * radius_x
    padded = torch.zeros((height, width), dtype=torch.float32)
    padded[:size_y, :size_x] = kernel[0, 0].float()
    spectrum = torch.fft.rfft2(torch.roll(padded, shifts=(-radius_y, -radius_x), dims=(0, 1)))

    def forward(x: torch.Tensor, **_: object) -> torch.Tensor:
        blurred = torch.fft.irfft2(torch.fft.rfft2(x) * spectrum, s=(height, width))
        return blurred[..., radius_y : height - radius_y, radius_x : width - radius_x]

    def adjoint(y: torch.Tensor, **_: object) -> torch.Tensor:
        full = torch.nn.functional.pad(y, (radius_x, radius_x, radius_y, radius_y))
        return torch.fft.irfft2(torch.fft.rfft2(full) * spectrum.conj(), s=(height, width))

    return LinearPhysics(A=forward, A_adjoint=adjoint)


def _exact_problem(images: torch.Tensor, method: MethodInfo) -> tuple[Any, torch.Tensor, torch.Tensor, tuple[int, int, int, int], tuple[int, int, int, int]]:
    """The inverse problem a known blur poses on one window, exactly: the unknown x covers the blurred
    region grown by the kernel's radius (clipped to the window), the measurement y is the part of the
    region the blur of x fully determines, and the operator is the method's own kernel (from physics())
    as an FFT "valid" convolution. x starts from the window's own pixels (the untouched context is the truth).

    Returns:
        (operator, y, x0, crop box, measured box), boxes as (x0, y0, x1, y1) in window coordinates.
    """
    kernel = torch.from_numpy(known_kernel(method)).float()[None, None]  # type: ignore[arg-type]
    radius_y, radius_x = kernel.shape[-2] // 2, kernel.shape[-1] // 2
    height, width = images.shape[-2:]
    stage = method.stage_of("blur")
    region = method.region_of(stage) if stage is not None else None
    rx0, ry0, rx1, ry1 = region if region is not None else (0, 0, width, height)
    crop = (max(0, rx0 - radius_x), max(0, ry0 - radius_y), min(width, rx1 + radius_x), min(height, ry1 + radius_y))
    measured = (crop[0] + radius_x, crop[1] + radius_y, crop[2] - radius_x, crop[3] - radius_y)
    if measured[2] <= measured[0] or measured[3] <= measured[1]:
        size = f"{kernel.shape[-1]} x {kernel.shape[-2]}"
        raise AttackNotApplicable(f"the blurred region is too close to the image's edge for its {size} px kernel")
    physics = valid_blur_fft(kernel, (measured[3] - measured[1], measured[2] - measured[0]))
    y = images[..., measured[1] : measured[3], measured[0] : measured[2]].float()
    x0 = images[..., crop[1] : crop[3], crop[0] : crop[2]].float()
    return physics, y, x0, crop, measured


def _paste(
    images: torch.Tensor, estimate: torch.Tensor, crop: tuple[int, int, int, int], measured: tuple[int, int, int, int], method: MethodInfo
) -> torch.Tensor:
    """The estimate of the measured box pasted into the window (only inside the blurred region)."""
    out = images.clone()
    mx0, my0, mx1, my1 = measured
    out[..., my0:my1, mx0:mx1] = estimate[..., my0 - crop[1] : my1 - crop[1], mx0 - crop[0] : mx1 - crop[0]].clamp(0.0, 1.0)
    return only_in_region(images, out, method)


class RichardsonLucy(_Deconvolution):
    """Richardson-Lucy deconvolution with the declared blur (30 iterations), on the exact operator.

    References:
        Richardson, JOSA 1972; Lucy, AJ 1974 (multiplicative updates x <- x A^T(y / Ax) / A^T 1).
    """

    name = "richardson_lucy"
    iterations = 30

    def reconstruct(self, images: torch.Tensor, *, method: MethodInfo, generator: torch.Generator) -> torch.Tensor:
        physics, y, x, crop, measured = _exact_problem(images, method)
        y = y.clamp(1e-4, 1.0)
        x = x.clamp(1e-4, 1.0)
        norm = physics.A_adjoint(torch.ones_like(y)).clamp(min=1e-6)
        with torch.no_grad():
            for _ in range(self.iterations):
                x = (x * physics.A_adjoint(y / physics.A(x).clamp(min=1e-6)) / norm).clamp(1e-4, 1.0)
        return _paste(images, x, crop, measured, method)


class TVDeconvolution(_Deconvolution):
    """Total-variation regularised deconvolution with the declared operator (deepinv PGD, 25 iterations).

    The unknown is the blurred region grown by the kernel's radius, so the data term compares exactly the
    published pixels with the blur of what lies around them (no assumed padding); the blur runs as FFTs.

    References:
        Rudin, Osher and Fatemi, Physica D 1992; deepinv `optim_builder("PGD", prior=TVPrior())`.
    """

    name = "tv_deconv"

    def reconstruct(self, images: torch.Tensor, *, method: MethodInfo, generator: torch.Generator) -> torch.Tensor:
        from deepinv.optim import optim_builder
        from deepinv.optim.data_fidelity import L2
        from deepinv.optim.prior import TVPrior

        physics, y, x0, crop, measured = _exact_problem(images, method)
        solver = optim_builder(
            iteration="PGD",
            prior=TVPrior(n_it_max=8),
            data_fidelity=L2(),
            params_algo={"stepsize": 1.0, "lambda": 0.002},
            max_iter=25,
            early_stop=False,
        )
        with torch.no_grad():
            estimate = solver(y, physics, init=x0)
        return _paste(images, estimate, crop, measured, method)


class BlindDeconvolution(Attack):
    """Blind Gaussian deconvolution: Wiener over a sigma grid, keeping the sharpest by normalized sparsity.

    References:
        Krishnan, Tay and Fergus, CVPR 2011 (L1/L2 normalized sparsity selects the kernel); Wiener 1949.
    """

    name = "blind_deconv"
    tier = ThreatTier.RECONSTRUCTION
    works_at_any_scale = True
    sigmas = (0.8, 1.2, 1.6, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)
    balance = 0.01

    def reconstruct(self, images: torch.Tensor, *, method: MethodInfo, generator: torch.Generator) -> torch.Tensor:
        from redteam.anonymizers.blur import gaussian_kernel

        out = []
        for image in images:
            window = image.permute(1, 2, 0).double().numpy()
            candidates = [window] + [wiener_deconvolve(window, gaussian_kernel(s)[0, 0].numpy(), self.balance) for s in self.sigmas]
            best = min(candidates, key=normalized_sparsity)
            out.append(torch.from_numpy(best).permute(2, 0, 1).float())
        return torch.stack(out)
