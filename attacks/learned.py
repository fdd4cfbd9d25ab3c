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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from attacks.base import Applicability, Attack, MethodInfo
from redteam.core.atomic import write_atomically, write_text_atomically
from redteam.core.errors import InputError, ModelUnavailableError
from redteam.core.provenance import cached_sha256, sha256_file
from redteam.core.tiers import ThreatTier

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
    """Where the inversion network for a canonical method spec is saved and looked up."""
    key = hashlib.sha256(spec.encode()).hexdigest()[:16]
    return (folder or checkpoint_dir()) / f"unet-{key}.pt"


def preprocess(window: torch.Tensor, method: MethodInfo) -> torch.Tensor:
    """What the network sees: for a mosaic or downsampling, the Lanczos-resampled cell grid (the
    network learns what interpolation cannot undo); otherwise, or when the grid cannot be placed (no
    face geometry and no grid showing), the anonymized window itself."""
    from attacks.base import AttackNotApplicable
    from attacks.interpolation import LanczosUpscale

    if method.stage(*LanczosUpscale.targets) is not None:
        try:
            return LanczosUpscale().reconstruct(window, method=method, generator=torch.Generator())
        except AttackNotApplicable:
            return window
    return window


@dataclass(frozen=True)
class TrainingPairs:
    anonymized: torch.Tensor  # N x 3 x S x S
    clean: torch.Tensor
    files: tuple[tuple[str, str], ...]  # (relative path, sha256)


def make_pairs(faces_dir: Path, spec: str, *, seed: int, log: Callable[[str], None]) -> TrainingPairs:
    """Face windows of the corpus, clean and anonymized with the exact method, at TRAINING_SIZE."""
    from redteam.anonymizers import FaceSet, build_method
    from redteam.cache import Cache, content_key
    from redteam.core.geometry import FaceGeometry, attack_window
    from redteam.core.paths import default_cache_dir
    from redteam.core.seeds import image_seed
    from redteam.core.tensors import to_tensor
    from redteam.datasets import discover_images
    from redteam.faces import FaceDetector
    from redteam.images import load_image

    method = build_method(spec)
    detector = FaceDetector()
    cache = Cache(default_cache_dir())
    loaded = []
    for entry in discover_images(faces_dir, role="training faces").entries:
        try:
            image = load_image(entry.path)
        except InputError as error:
            log(f"skipped {entry.rel}: {error.message}")
            continue
        key = content_key(image.sha256, detector.cache_key)  # the audit's detection cache: one detection per corpus file
        cached = cache.get_json("detections", key)
        if cached is not None:
            faces = [FaceGeometry.from_json(face) for face in cached]
        else:
            faces = detector.detect(image.pixels)
            cache.put_json("detections", key, [face.to_json() for face in faces])
        if faces:
            loaded.append((entry.rel, image, faces))
    if not loaded:
        raise InputError(f"no face found in the training corpus {faces_dir}", fix="give a folder of face photos")
    if method.needs_fit:
        method.fit(FaceSet(images=tuple(i.pixels for _, i, _ in loaded), faces=tuple(tuple(f) for _, _, f in loaded)))
    clean, anonymized = [], []
    for rel, image, faces in loaded:
        output = method.apply(image.pixels, faces, torch.Generator().manual_seed(image_seed(seed, rel)))
        for face in faces:
            x0, y0, x1, y1 = attack_window(image.pixels.shape, face, method)
            info = MethodInfo("train", method, face, (x0, y0), image.pixels.shape)
            window = preprocess(to_tensor(output[y0:y1, x0:x1]), info)
            for source, bucket in ((to_tensor(image.pixels[y0:y1, x0:x1]), clean), (window, anonymized)):
                bucket.append(F.interpolate(source, size=(TRAINING_SIZE, TRAINING_SIZE), mode="bicubic", align_corners=False, antialias=True)[0].clamp(0, 1))
    return TrainingPairs(torch.stack(anonymized), torch.stack(clean), tuple((rel, image.sha256) for rel, image, _ in loaded))


def train_inversion(
    faces_dir: Path,
    spec: str,
    *,
    minutes: float = 3.0,
    max_steps: int | None = None,
    seed: int = 0,
    device: torch.device = torch.device("cpu"),
    out: Path | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> Path:
    """Train the U-Net on (method(x), x) pairs from `faces_dir` for `minutes` (or `max_steps`); save it."""
    from redteam.anonymizers import build_method
    from redteam.core.provenance import environment

    canonical = build_method(spec).spec
    torch.manual_seed(seed)
    pairs = make_pairs(faces_dir, canonical, seed=seed, log=log)
    model = TinyUNet().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(seed)
    count = pairs.clean.shape[0]
    log(f"training on {count} face windows from {len(pairs.files)} images of {faces_dir}")
    losses: list[float] = []
    began, step = time.perf_counter(), 0
    while (max_steps is None or step < max_steps) and time.perf_counter() - began < minutes * 60.0:
        index = torch.randint(count, (min(16, count),), generator=generator)
        x, y = pairs.anonymized[index], pairs.clean[index]
        if torch.rand(1, generator=generator).item() < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        size = int(torch.randint(64, TRAINING_SIZE + 1, (1,), generator=generator))
        top, left = (int(v) for v in torch.randint(TRAINING_SIZE - size + 1, (2,), generator=generator))
        x, y = x[..., top : top + size, left : left + size].to(device), y[..., top : top + size, left : left + size].to(device)
        loss = F.l1_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        step += 1
        if step % 100 == 0:
            log(f"step {step}: L1 {np.mean(losses[-100:]):.4f}")
    target = out or checkpoint_path(canonical)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    write_atomically(target, lambda path: torch.save(state, path))
    record = {
        "schema": "redteam-inversion/2", "spec": canonical, "architecture": "TinyUNet(width=24)", "training_size": TRAINING_SIZE,
        "input": "Lanczos-resampled cell grid for mosaic/downsampling stages, else the anonymized window",
        "steps": step, "seconds": round(time.perf_counter() - began, 1), "seed": seed, "corpus": str(faces_dir.resolve()),
        "corpus_files": [{"file": rel, "sha256": digest} for rel, digest in pairs.files], "face_windows": count,
        "loss_first_100": float(np.mean(losses[:100])) if losses else None, "loss_last_100": float(np.mean(losses[-100:])) if losses else None,
        "environment": environment(), "checkpoint_sha256": sha256_file(target),
    }
    write_text_atomically(target.with_suffix(".json"), json.dumps(record, indent=2) + "\n")
    log(f"saved {target} after {step} steps")
    return target


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
            "checkpoint": str(path), "sha256": cached_sha256(path), "corpus_files": str(len(record.get("corpus_files", []))),
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
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
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
