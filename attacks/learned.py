"""Learned inversion (adaptive tier): a small U-Net trained on pairs (method(x), x) made with the exact
method from a face corpus the attacker holds, never from the audited originals.

`redteam attack train --method SPEC --faces DIR` trains it and saves the weights with a training record
(spec, corpus file hashes, steps, losses, seed, versions) under the cache, keyed by the method's
canonical spec, where the `learned` attack finds it. The audit refuses a checkpoint whose corpus shares
a file with the audited originals.

References:
    McPherson, Shokri and Shmatikov, "Defeating Image Obfuscation with Deep Learning", 2016 (networks
    trained on obfuscated faces); Ronneberger, Fischer and Brox, "U-Net", MICCAI 2015.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from attacks.base import Applicability, Attack, MethodInfo
from redteam.core.errors import InputError, ModelUnavailableError
from redteam.core.provenance import cached_sha256
from redteam.core.tiers import ThreatTier
from redteam.core.weights import load_plain_checkpoint

TRAINING_SIZE = 96


class TinyUNet(nn.Module):
    """Three-level U-Net predicting a residual correction of the anonymized face (input + output in [0, 1])."""

    def __init__(self, width: int = 24) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(inplace=True))

        self.down1, self.down2, self.down3 = block(3, width), block(width, 2 * width), block(2 * width, 4 * width)
        self.up2, self.up1 = block(6 * width, 2 * width), block(3 * width, width)
        self.head = nn.Conv2d(width, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d1 = self.down1(x)
        d2 = self.down2(F.avg_pool2d(d1, 2))
        d3 = self.down3(F.avg_pool2d(d2, 2))
        u2 = self.up2(torch.cat([F.interpolate(d3, size=d2.shape[-2:], mode="bilinear", align_corners=False), d2], dim=1))
        u1 = self.up1(torch.cat([F.interpolate(u2, size=d1.shape[-2:], mode="bilinear", align_corners=False), d1], dim=1))
        return (x + self.head(u1)).clamp(0.0, 1.0)


def checkpoint_dir() -> Path:
    from redteam.core.paths import default_cache_dir

    return default_cache_dir() / "inversion"


def checkpoint_path(spec: str, folder: Path | None = None) -> Path:
    """Where the inversion network for a canonical method spec is saved and looked up: a safetensors
    file (tensors only, nothing to unpickle), its training record beside it (`.json`)."""
    key = hashlib.sha256(spec.encode()).hexdigest()[:16]
    return (folder or checkpoint_dir()) / f"unet-{key}.safetensors"


def load_inversion_weights(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of a trained inversion: safetensors (what `redteam attack train` writes, whatever the
    file is named); a plain PyTorch checkpoint is read with restricted unpickling (a pickle payload is
    refused, nothing in it run)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(9)
    except OSError as error:
        raise InputError(f"{path}: cannot be read ({error.strerror})", fix="retrain with `redteam attack train`") from error
    if head[8:9] != b"{":  # a safetensors file opens with its header's length, then the JSON header
        return load_plain_checkpoint(path)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise InputError(f"{path}: not a readable safetensors checkpoint ({error})", fix="retrain with `redteam attack train`") from error


def preprocess(window: torch.Tensor, method: MethodInfo) -> torch.Tensor:
    """What the network sees: for a mosaic or downsampling, the Lanczos-resampled cell grid (the
    network learns what interpolation cannot undo); otherwise, or when the grid cannot be placed (no
    face geometry and no grid showing), the anonymized window itself."""
    from attacks.base import AttackNotApplicable
    from attacks.interpolation import LanczosUpscale

    if method.stage_of("cells") is not None:
        try:
            return LanczosUpscale().reconstruct(window, method=method, generator=torch.Generator())
        except AttackNotApplicable:
            return window
    return window


class LearnedInversion(Attack):
    """A U-Net trained on pairs made with the exact method (`redteam attack train`), on the attacker's faces.

    References:
        McPherson, Shokri and Shmatikov 2016; Ronneberger, Fischer and Brox, MICCAI 2015.
    """

    name = "learned"
    tier = ThreatTier.ADAPTIVE
    needs_known_method = True

    def __init__(self, **values: object) -> None:
        super().__init__(**values)
        self._models: dict[str, TinyUNet] = {}

    def applicable(self, method: MethodInfo) -> Applicability:
        if method.reference is None:
            return Applicability(False, f"needs a known method; '{method.name}' is an observed folder without a spec")
        path = checkpoint_path(method.reference.spec)
        if not path.is_file():
            return Applicability(
                False,
                f"no trained inversion for '{method.reference.spec}': run `redteam attack train --method \"{method.reference.spec}\" --faces DIR`",
                model_missing=True,
            )
        record = self._record(path)
        if record.get("checkpoint_sha256") != cached_sha256(path):
            return Applicability(False, f"{path} does not match the SHA-256 in its training record; retrain with `redteam attack train`", model_missing=True)
        overlap = {f["sha256"] for f in record.get("corpus_files", [])} & method.audited_hashes
        if overlap:
            return Applicability(False, f"{path} was trained on {len(overlap)} of the audited originals; train on other faces", model_missing=True)
        return Applicability(True)

    def provenance(self, method: MethodInfo) -> dict[str, str]:
        if method.reference is None:
            return {}
        path = checkpoint_path(method.reference.spec)
        record = self._record(path)
        return {
            "checkpoint": str(path),
            "sha256": cached_sha256(path),
            "corpus_files": str(len(record.get("corpus_files", []))),
            "steps": str(record.get("steps", "?")),
        }

    @staticmethod
    def _record(path: Path) -> dict:
        try:
            return json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ModelUnavailableError(f"{path}: training record missing or unreadable ({error})", fix="retrain with `redteam attack train`") from error

    def _model(self, spec: str) -> TinyUNet:
        if spec not in self._models:
            path = checkpoint_path(spec)
            model = TinyUNet()
            model.load_state_dict(load_inversion_weights(path))
            self._models[spec] = model.eval()
        return self._models[spec]

    def reconstruct(self, images: torch.Tensor, *, method: MethodInfo, generator: torch.Generator) -> torch.Tensor:
        if method.reference is None:
            raise ModelUnavailableError("the learned inversion needs a known method", fix="declare the method")
        model = self._model(method.reference.spec)
        height, width = images.shape[-2:]
        images = preprocess(images.float(), method)
        small = F.interpolate(images, size=(TRAINING_SIZE, TRAINING_SIZE), mode="bicubic", align_corners=False, antialias=True)
        with torch.no_grad():
            restored_small = model(small.clamp(0.0, 1.0))
        # apply the learned correction at full resolution
        correction = F.interpolate(restored_small - small, size=(height, width), mode="bicubic", align_corners=False)
        return (images + correction).clamp(0.0, 1.0)
