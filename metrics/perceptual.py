"""Perceptual similarity of a reconstruction to its original face crop.

References:
    Wang, Bovik, Sheikh and Simoncelli, "Image Quality Assessment: From Error Visibility to
    Structural Similarity" (SSIM), IEEE TIP 2004; Zhang, Isola, Efros, Shechtman and Wang, "The
    Unreasonable Effectiveness of Deep Features as a Perceptual Metric" (LPIPS), CVPR 2018.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import torch

from metrics.recognizers.base import Availability, file_availability
from redteam.core.errors import ModelUnavailableError
from redteam.core.weights import get_model_file, load_plain_checkpoint

#: torchvision AlexNet `features` index -> LPIPS slice holding it (lpips/pretrained_networks.py).
_ALEX_SLICES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 2, 5: 3, 6: 3, 7: 3, 8: 4, 9: 4, 10: 5, 11: 5}


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


def _as_numpy(batch: torch.Tensor, dtype: torch.dtype = torch.float64) -> np.ndarray:
    return batch.detach().cpu().to(dtype).permute(0, 2, 3, 1).contiguous().numpy()


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM of two N x 3 x H x W batches in [0, 1] -> Tensor[N] (1 = identical).

    In float32 (scikit-image keeps the input's precision): 1.7x faster than float64 on 160 px crops, and
    within 1e-9 of it, far below the 4 decimals a report shows."""
    from skimage.metrics import structural_similarity  # imports scipy.stats (0.9 s): only when a crop is compared

    xs, ys = _as_numpy(x, torch.float32), _as_numpy(y, torch.float32)
    values = [structural_similarity(a, b, channel_axis=2, data_range=1.0) for a, b in zip(xs, ys, strict=True)]
    return torch.tensor(values, dtype=torch.float32)


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of two N x 3 x H x W batches in [0, 1] -> Tensor[N] (inf if identical)."""
    from skimage.metrics import peak_signal_noise_ratio

    xs, ys = _as_numpy(x), _as_numpy(y)
    values = []
    for a, b in zip(xs, ys, strict=True):
        values.append(float("inf") if np.array_equal(a, b) else peak_signal_noise_ratio(a, b, data_range=1.0))
    return torch.tensor(values, dtype=torch.float32)


class LPIPSMetric:
    """LPIPS v0.1 with the AlexNet trunk (lower = more similar).

    The linear layers ship inside `lpips`; the AlexNet trunk is torchvision's ImageNet file, resolved
    from TORCH_HOME and verified by its published hash prefix. A model may be injected for tests.
    """

    name = "lpips"

    def __init__(self, *, device: str | torch.device = "cpu", model: torch.nn.Module | None = None) -> None:
        self.device = torch.device(device)
        self._model = model
        self.trunk_sha256: str | None = "injected" if model is not None else None

    @staticmethod
    def availability() -> Availability:
        return file_availability("alexnet_trunk")

    def _load(self) -> torch.nn.Module:
        if self._model is None:
            import lpips

            entry = get_model_file("alexnet_trunk")
            path = entry.require()
            digest = entry.verify(path)
            with contextlib.redirect_stdout(io.StringIO()):
                model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
            load_alexnet_trunk(model, load_plain_checkpoint(path), str(path))
            self.trunk_sha256 = digest
            self._model = model
        return self._model.eval().to(self.device)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS distance of two N x 3 x H x W batches in [0, 1] -> Tensor[N]."""
        model = self._load()
        with torch.no_grad():
            out = model(x.to(self.device) * 2.0 - 1.0, y.to(self.device) * 2.0 - 1.0)
        return out.reshape(-1).float().cpu()
