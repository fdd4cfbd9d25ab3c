"""Known-operator posterior sampling with a face prior: DiffPIR through deepinv.

The attacker knows the method (its deepinv operator, `Anonymizer.physics`) and holds an unconditional
diffusion model of faces (default google/ddpm-celebahq-256). DiffPIR alternates the prior's denoising
step with a proximal step on ||A x - y||^2, so the reconstruction is a face the prior finds likely that
also reproduces the anonymized pixels under the method's own operator: a mosaic's cell means, a blur,
the kept pixels around a box, a noisy face.

The prior works near its training resolution: a small face region is upsampled by an integer factor s
to about `size` pixels and the operator becomes A o D_s (D_s = mean over s x s cells), so the data term
is exact on the native pixels and the result is averaged back down by s; a region larger than `size`
is sampled at `size` and the operator becomes A o U (U = bilinear upsampling to the native crop).

References:
    Zhu et al., "Denoising Diffusion Models for Plug-and-Play Image Restoration" (DiffPIR), CVPRW 2023,
    as `deepinv.sampling.DiffPIR` (Tachella et al., "DeepInverse", 2023); Ho, Jain and Abbeel, "Denoising
    Diffusion Probabilistic Models", NeurIPS 2020 (the CelebA-HQ 256 prior); Chung et al., "Diffusion
    Posterior Sampling for General Noisy Inverse Problems", ICLR 2023.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from attacks.base import Applicability, Attack, MethodInfo
from attacks.diffusion import missing_extra, unavailable_reason
from redteam.anonymizers.base import Parameter
from redteam.anonymizers.mosaic import box_downsampling
from redteam.core.devices import pick_device
from redteam.core.errors import ModelUnavailableError
from redteam.core.hub import get_pipeline, model_provenance
from redteam.core.tiers import ThreatTier

DEFAULT_PRIOR = "google/ddpm-celebahq-256"
#: Context kept around a same-size operator's region, as a fraction of the region's longer side (16 px at least).
CONTEXT_RING = 0.15
#: Conjugate-gradient iterations of the data step (deepinv solves it iteratively for composed operators).
PROX_ITERATIONS = 15


class PaddedDenoiser(torch.nn.Module):
    """A denoiser D(x, sigma) on any size: pads to the U-Net's multiple (edge pixels) and crops back."""

    def __init__(self, denoiser: torch.nn.Module, multiple: int) -> None:
        super().__init__()
        self.denoiser, self.multiple = denoiser, multiple

    def forward(self, x: torch.Tensor, sigma: Any) -> torch.Tensor:
        height, width = x.shape[-2:]
        pad_h, pad_w = -height % self.multiple, -width % self.multiple
        padded = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else x
        return self.denoiser(padded, sigma)[..., :height, :width]


def unet_multiple(prior: torch.nn.Module) -> int:
    """2 ** (number of down-sampling levels) of the wrapped diffusers U-Net."""
    config = getattr(getattr(prior, "model", None), "config", None)
    levels = len(getattr(config, "block_out_channels", (0,) * 6))
    return 2 ** max(0, levels - 1)


def region_operator(method: MethodInfo, shape: tuple[int, int]) -> Any | None:
    """The method's linear deepinv operator on its region (h x w), or None (no operator, or non-linear)."""
    from deepinv.physics import LinearPhysics

    physics = method.reference.physics(shape) if method.reference is not None else None
    return physics if isinstance(physics, LinearPhysics) else None


@cache
def _window_operator_class() -> type:
    """Defined on first use: importing deepinv costs a second, and `redteam --help` should not pay it."""
    from deepinv.physics import LinearPhysics

    class WindowOperator(LinearPhysics):
        """y = M_id x + M_op A(x restricted to the region): the region and its context as the method left them.

        Pixels outside the region (and inside it where the method's shape left the original, e.g. an
        ellipse's corners) are measured as they are; pixels the method changed at full strength are
        measured through its operator; feathered pixels are not measured.
        """

        def __init__(self, operator: Any, box: tuple[int, int, int, int], identity: torch.Tensor, through: torch.Tensor) -> None:
            super().__init__()
            self.operator, self.box = operator, box
            self.register_buffer("identity", identity)
            self.register_buffer("through", through)

        def A(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:  # noqa: N802 - deepinv's name
            x0, y0, x1, y1 = self.box
            inside = torch.zeros_like(x)
            inside[..., y0:y1, x0:x1] = self.operator.A(x[..., y0:y1, x0:x1])
            return self.identity * x + self.through * inside

        def A_adjoint(self, y: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:  # noqa: N802 - deepinv's name
            x0, y0, x1, y1 = self.box
            out = self.identity * y
            out[..., y0:y1, x0:x1] += self.operator.A_adjoint((self.through * y)[..., y0:y1, x0:x1])
            return out

    return WindowOperator


def window_operator(method: MethodInfo, window: tuple[int, int]) -> tuple[Any, tuple[int, int, int, int]] | None:
    """The operator DiffPIR inverts and the box (in window coordinates) it works on, or None.

    Same-size operators (blur, noise, masks) work on the region plus a ring of kept context
    (`WindowOperator`), so a box fill is inpainted from its surroundings. Shape-changing ones (mosaic, downsample) work on the region,
    cropped to the whole cells the operator measures.
    """
    reference = method.reference
    region = method.region_of(reference.stages[0]) if reference is not None else None
    if reference is None or region is None:
        return None
    height, width = window
    x0, y0, x1, y1 = max(0, region[0]), max(0, region[1]), min(width, region[2]), min(height, region[3])
    shape = (y1 - y0, x1 - x0)
    if min(shape) < 2 or (operator := region_operator(method, shape)) is None:
        return None
    probe = torch.zeros(1, 3, *shape)
    if operator.A(probe).shape == probe.shape:
        ring = max(16, round(CONTEXT_RING * max(shape)))  # kept pixels around the region that condition the sample
        cx0, cy0, cx1, cy1 = max(0, x0 - ring), max(0, y0 - ring), min(width, x1 + ring), min(height, y1 + ring)
        crop = (cy1 - cy0, cx1 - cx0)
        strength = torch.from_numpy(reference.stages[0].region_mask((0, 0, shape[1], shape[0]), method.face)).float()
        identity, through = torch.ones(crop), torch.zeros(crop)
        inner = (x0 - cx0, y0 - cy0, x1 - cx0, y1 - cy0)
        identity[inner[1] : inner[3], inner[0] : inner[2]] = (strength == 0).float()
        through[inner[1] : inner[3], inner[0] : inner[2]] = (strength >= 1).float()
        return _window_operator_class()(operator, inner, identity, through), (cx0, cy0, cx1, cy1)
    covered = operator.A_adjoint(operator.A(probe)).shape[-2:]
    if tuple(covered) != shape:  # a mosaic's partial cells at the right and bottom edge are not in the operator
        shape = (min(shape[0], covered[0]), min(shape[1], covered[1]))
        operator = region_operator(method, shape)
    return operator, (x0, y0, x0 + shape[1], y0 + shape[0])


def prior_resampling(shape: tuple[int, int], size: int) -> tuple[Any | None, tuple[int, int]]:
    """The linear map from the prior's working image to the native crop, and the working shape.

    A crop smaller than `size` is upsampled by the integer factor s nearest to size / side, and the map
    is the mean over s x s cells (exact: the native pixel is the mean of its cells). A larger crop is
    worked on at `size` on its longer side and the map is bilinear upsampling (a band limit at the
    prior's scale), with the adjoint computed by deepinv. None when the crop is used as it is.
    """
    from deepinv.physics import LinearPhysics

    longest = max(shape)
    if longest <= size:
        scale = max(1, round(size / longest))
        return (box_downsampling(scale) if scale > 1 else None), (shape[0] * scale, shape[1] * scale)
    work = (max(2, round(shape[0] * size / longest)), max(2, round(shape[1] * size / longest)))

    def upsample(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return F.interpolate(x, size=shape, mode="bilinear", align_corners=False)

    return LinearPhysics(A=upsample, img_size=(3, *work)), work


def declared_noise(method: MethodInfo) -> float:
    stage = method.stage_of("noise")
    return float(stage.values["sigma"]) if stage is not None else 0.0


class DiffPIRAttack(Attack):
    """DiffPIR posterior sampling with a face diffusion prior and the method's own operator.

    References:
        Zhu et al., "DiffPIR", CVPRW 2023 (deepinv.sampling.DiffPIR); Ho et al., DDPM, NeurIPS 2020
        (google/ddpm-celebahq-256 as the prior, wrapped by deepinv.models.DiffusersDenoiserWrapper).
    """

    name = "diffpir"
    tier = ThreatTier.ADAPTIVE
    needs_known_method = True
    parameters = (
        Parameter("model", str, DEFAULT_PRIOR, "catalog name (`redteam models`), hub id or local folder of an unconditional diffusers DDPM face model"),
        Parameter("steps", int, 50, "diffusion steps (network evaluations)", 2, 1000),
        Parameter("size", int, 256, "the prior's working resolution: the region is resampled to about this on its longer side", 16, 2048),
        Parameter("weight", float, 7.0, "DiffPIR's lambda: how much the prior is trusted against the data (larger = more prior)", 0.01, 1000.0),
        Parameter("zeta", float, 0.3, "DiffPIR's zeta: fraction of fresh noise per step", 0.0, 1.0),
        Parameter("noise", float, 0.02, "measurement noise std assumed beyond the method's own (8-bit rounding)", 0.001, 0.5),
        Parameter("device", str, "auto", "cpu, cuda or auto", choices=("auto", "cpu", "cuda")),
    )

    def _device(self) -> torch.device:
        return pick_device(str(self.values["device"]))

    def _prior(self) -> torch.nn.Module:
        return get_pipeline("prior", str(self.values["model"]), self._device())

    def provenance(self, method: MethodInfo) -> dict[str, str]:
        return model_provenance(str(self.values["model"]))

    def applicable(self, method: MethodInfo) -> Applicability:
        if not method.is_known:
            return Applicability(False, f"needs the method's operator; '{method.name}' is an observed folder without a spec")
        if region_operator(method, (32, 32)) is None:
            if method.reference.physics((32, 32)) is None:  # type: ignore[union-attr]
                note = method.reference.operator_note or "no deepinv operator"  # type: ignore[union-attr]
                return Applicability(False, f"'{method.name}' has no known operator ({note})")
            return Applicability(False, f"'{method.name}' has a non-linear operator; DiffPIR's data step needs a linear one")
        extra = missing_extra("diffusion", ("diffusers",))  # deepinv wraps the diffusers U-Net of the prior
        if extra is not None:
            return Applicability(False, extra, model_missing=True)
        try:
            self._prior()
        except ModelUnavailableError as error:
            return Applicability(False, unavailable_reason(str(self.values["model"]), error), model_missing=True)
        return Applicability(True)

    def reconstruct(self, images: torch.Tensor, *, method: MethodInfo, generator: torch.Generator) -> torch.Tensor:
        from deepinv.optim.data_fidelity import L2
        from deepinv.physics import GaussianNoise
        from deepinv.sampling import DiffPIR

        working = window_operator(method, tuple(images.shape[-2:]))  # type: ignore[arg-type]
        if working is None:
            return images.clone()
        physics, (x0, y0, x1, y1) = working
        reference_stage = method.reference.stages[0]  # type: ignore[union-attr]  # window_operator found it
        device = self._device()
        resample, work_shape = prior_resampling((y1 - y0, x1 - x0), int(self.values["size"]))
        fine = physics * resample if resample is not None else physics
        sigma = float(np.hypot(float(self.values["noise"]), declared_noise(method)))
        fine.noise_model = GaussianNoise(sigma=sigma)
        fine.set_ls_solver("CG", max_iter=PROX_ITERATIONS, tol=1e-4)  # an approximate data step per diffusion step is enough
        fine, physics = fine.to(device), physics.to(device)
        prior = self._prior()
        sampler = DiffPIR(
            model=PaddedDenoiser(prior, unet_multiple(prior)),
            data_fidelity=L2(),
            sigma=sigma,
            max_iter=int(self.values["steps"]),
            zeta=float(self.values["zeta"]),
            lambda_=float(self.values["weight"]),
            device=device,
        )
        changed = torch.from_numpy(method.changed_pixels(reference_stage, tuple(images.shape[-2:])))  # type: ignore[arg-type]
        out = images.clone()
        for index, image in enumerate(images):
            observed = image[None, :, y0:y1, x0:x1].float().to(device)
            measured = physics.A(observed)
            y = measured if measured.shape != observed.shape else observed
            start = F.interpolate(observed, size=work_shape, mode="bilinear", align_corners=False)
            seed = int(torch.randint(1, 2**31 - 1, (1,), generator=generator))
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
                sample = sampler(y, fine, seed=seed, x_init=start)
            restored = (resample.A(sample) if resample is not None else sample).clamp(0.0, 1.0).cpu()[0]
            keep = changed[y0:y1, x0:x1][None]
            out[index, :, y0:y1, x0:x1] = torch.where(keep, restored, image[:, y0:y1, x0:x1])
        return out
