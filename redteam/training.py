"""Training of the learned inversion: a small U-Net on pairs (method(x), x) made with the exact method
from a face corpus the attacker holds, never from the audited originals.

Two ways to train it:
    * `train_inversion` (`redteam attack train`): one method spec, for a fixed time budget;
    * `train_until_plateau` (`redteam models train`): a method *family* (``gaussian_blur:sigma=3..24``),
      the parameter given to the network as an input channel, with a held-out validation split, stopped
      when the validation score stops improving (patience) or at the user's wall-clock cap, keeping the
      best weights. Its loss adds an identity term: the distance between the face recognizer's embedding
      of the reconstruction and of the clean face (dlib's ResNet, frozen), which helps identification
      more than pixel L1 alone. The training curve (steps, train and validation losses, validation
      identity distance) is saved in the record so a report can show it.

The `learned` attack (attacks/learned.py) finds the checkpoint under the cache, keyed by the canonical
spec, and refuses one whose corpus shares a file with the audited originals.

References:
    McPherson, Shokri and Shmatikov, "Defeating Image Obfuscation with Deep Learning", 2016; Prechelt,
    "Early Stopping - But When?", Neural Networks: Tricks of the Trade, 1998 (patience on a validation
    split); Johnson, Alahi and Fei-Fei, "Perceptual Losses for Real-Time Style Transfer and
    Super-Resolution", ECCV 2016 (a frozen network's features as the loss).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

from attacks.base import MethodInfo
from attacks.learned import FAMILY_SCHEMA, TRAINING_SIZE, FamilySpec, TinyUNet, checkpoint_path, condition_value, family_checkpoint_path, preprocess
from redteam.core.atomic import write_atomically, write_text_atomically
from redteam.core.errors import InputError
from redteam.core.geometry import FaceGeometry
from redteam.core.provenance import sha256_file
from redteam.images import LoadedImage

Log = Callable[[str], None]


@dataclass(frozen=True)
class CorpusImage:
    """One image of a training corpus with its detected faces."""

    rel: str
    identity: str
    image: LoadedImage
    faces: tuple[FaceGeometry, ...]


def load_corpus(faces_dir: Path, *, log: Log, limit: int | None = None, min_face_size: int | None = None) -> list[CorpusImage]:
    """The images of `faces_dir` with a detected face (detections cached like the audit's: one detection
    per corpus file); unreadable files are skipped with a log line.

    Args:
        min_face_size: search only for faces at least this wide (pixels): much faster on a corpus of
            large faces (MTCNN skips the fine pyramid levels); None: the audit's detector settings.
    """
    from redteam.cache import Cache, content_key
    from redteam.core.config import DetectorSettings
    from redteam.core.paths import default_cache_dir
    from redteam.datasets import discover_images
    from redteam.faces import FaceDetector
    from redteam.images import load_image

    detector = FaceDetector() if min_face_size is None else FaceDetector(DetectorSettings(min_face_size=min_face_size))
    cache = Cache(default_cache_dir())
    loaded = []
    entries = discover_images(faces_dir, role="training faces").entries
    for done, entry in enumerate(entries[:limit], start=1):
        try:
            image = load_image(entry.path)
        except InputError as error:
            log(f"skipped {entry.rel}: {error.message}")
            continue
        key = content_key(image.sha256, detector.cache_key)
        cached = cache.get_json("detections", key)
        if cached is not None:
            faces = [FaceGeometry.from_json(face) for face in cached]
        else:
            faces = detector.detect(image.pixels)
            cache.put_json("detections", key, [face.to_json() for face in faces])
        if faces:
            loaded.append(CorpusImage(entry.rel, entry.identity, image, tuple(faces)))
        if done % 250 == 0:
            log(f"read {done}/{len(entries[:limit])} corpus images")
    if not loaded:
        raise InputError(f"no face found in the training corpus {faces_dir}", fix="give a folder of face photos")
    return loaded


@dataclass(frozen=True)
class TrainingPairs:
    anonymized: torch.Tensor  # N x 3 x S x S
    clean: torch.Tensor
    files: tuple[tuple[str, str], ...]  # (relative path, sha256)


def _resized(window: torch.Tensor, size: int = TRAINING_SIZE) -> torch.Tensor:
    return F.interpolate(window, size=(size, size), mode="bicubic", align_corners=False, antialias=True)[0].clamp(0, 1)


def make_pairs(faces_dir: Path, spec: str, *, seed: int, log: Log) -> TrainingPairs:
    """Face windows of the corpus, clean and anonymized with the exact method, at TRAINING_SIZE."""
    from redteam.anonymizers import FaceSet, build_method
    from redteam.core.geometry import attack_window
    from redteam.core.seeds import image_seed
    from redteam.core.tensors import to_tensor

    method = build_method(spec)
    loaded = load_corpus(faces_dir, log=log)
    if method.needs_fit:
        method.fit(FaceSet(images=tuple(item.image.pixels for item in loaded), faces=tuple(item.faces for item in loaded)))
    clean: list[torch.Tensor] = []
    anonymized: list[torch.Tensor] = []
    for item in loaded:
        image = item.image
        output = method.apply(image.pixels, item.faces, torch.Generator().manual_seed(image_seed(seed, item.rel)))
        for face in item.faces:
            x0, y0, x1, y1 = attack_window(image.pixels.shape, face, method)
            info = MethodInfo("train", method, face, (x0, y0), image.pixels.shape)
            window = preprocess(to_tensor(output[y0:y1, x0:x1]), info)
            clean.append(_resized(to_tensor(image.pixels[y0:y1, x0:x1])))
            anonymized.append(_resized(window))
    return TrainingPairs(torch.stack(anonymized), torch.stack(clean), tuple((item.rel, item.image.sha256) for item in loaded))


def train_inversion(
    faces_dir: Path,
    spec: str,
    *,
    minutes: float = 3.0,
    max_steps: int | None = None,
    seed: int = 0,
    device: torch.device = torch.device("cpu"),
    out: Path | None = None,
    log: Log = lambda message: None,
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
    write_atomically(target, lambda path: save_file(state, str(path)))
    record = {
        "schema": "redteam-inversion/2",
        "spec": canonical,
        "architecture": "TinyUNet(width=24)",
        "training_size": TRAINING_SIZE,
        "input": "Lanczos-resampled cell grid for mosaic/downsampling stages, else the anonymized window",
        "steps": step,
        "seconds": round(time.perf_counter() - began, 1),
        "seed": seed,
        "corpus": str(faces_dir.resolve()),
        "corpus_files": [{"file": rel, "sha256": digest} for rel, digest in pairs.files],
        "face_windows": count,
        "loss_first_100": float(np.mean(losses[:100])) if losses else None,
        "loss_last_100": float(np.mean(losses[-100:])) if losses else None,
        "environment": environment(),
        "checkpoint_sha256": sha256_file(target),
    }
    write_text_atomically(target.with_suffix(".json"), json.dumps(record, indent=2) + "\n")
    log(f"saved {target} after {step} steps")
    return target


# -- training to a plateau ------------------------------------------------------------------------------


@dataclass
class PlateauStopper:
    """Early stopping on a validation score (lower is better): stop after `patience` evaluations in a row
    without an improvement of at least `min_delta` (relative to the best so far).

    Attributes:
        best, best_step: the best score so far and the step it was reached at.
        waited: evaluations since the last improvement.
    """

    patience: int
    min_delta: float = 0.002
    best: float = math.inf
    best_step: int = -1
    waited: int = 0

    def update(self, value: float, step: int) -> bool:
        """Record one evaluation; True when it is a new best (the caller keeps those weights)."""
        if math.isfinite(value) and value < self.best - self.min_delta * abs(self.best if math.isfinite(self.best) else value):
            self.best, self.best_step, self.waited = value, step, 0
            return True
        self.waited += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.waited >= self.patience


#: Weight of the identity term (recognizer embedding distance, about 0.3 to 1.2 for dlib) against pixel L1
#: (about 0.03 to 0.1 on [0, 1] pixels).
IDENTITY_WEIGHT = 0.1
CHIP = 150  # dlib's chip size
CHIP_PADDING = 0.25


def chip_theta(alignment: Hashable, window: tuple[int, int, int, int]) -> torch.Tensor:
    """The 2 x 3 affine map (for `F.affine_grid`, align_corners=False) that cuts dlib's aligned 150 x 150
    chip (`DlibRecognizer.crop`: `dlib.get_face_chip`, padding 0.25) out of `window` (x0, y0, x1, y1)
    resampled to any size: differentiable, so the recognizer's loss reaches the network's pixels."""
    import dlib

    box, points = cast(tuple[tuple[int, int, int, int], tuple[tuple[int, int], ...]], alignment)
    bx0, by0, bx1, by1 = box
    shape = dlib.full_object_detection(dlib.rectangle(bx0, by0, bx1, by1), [dlib.point(x, y) for x, y in points])
    details = dlib.get_face_chip_details(shape, size=CHIP, padding=CHIP_PADDING)
    rect, angle = details.rect, details.angle
    cx, cy = (rect.left() + rect.right()) / 2.0, (rect.top() + rect.bottom()) / 2.0
    sx, sy = (rect.right() - rect.left()) / (CHIP - 1), (rect.bottom() - rect.top()) / (CHIP - 1)
    x0, y0, x1, y1 = window
    width, height = x1 - x0, y1 - y0
    cos, sin = math.cos(angle), math.sin(angle)
    # The chip's grid coordinate u in [-1, 1] is column c = (u + 1) * 75 - 0.5, and dlib maps column c to
    # x = cx + cos * (c - 74.5) * sx - sin * (r - 74.5) * sy = cx + 75 * (cos * sx * u - sin * sy * v); the
    # window's grid coordinate is g = (x - x0 + 0.5) / width * 2 - 1 (checked against dlib.get_face_chip).
    half = CHIP / 2.0
    gx = np.array([cos * sx * half, -sin * sy * half, cx - x0 + 0.5]) * 2.0 / width
    gy = np.array([sin * sx * half, cos * sy * half, cy - y0 + 0.5]) * 2.0 / height
    gx[2] -= 1.0
    gy[2] -= 1.0
    return torch.tensor(np.stack([gx, gy]), dtype=torch.float32)


def cut_chips(windows: torch.Tensor, thetas: torch.Tensor) -> torch.Tensor:
    """N x 3 x 150 x 150 chips (0..255, what dlib's network takes) of N windows in [0, 1]."""
    grid = F.affine_grid(thetas, [len(windows), 3, CHIP, CHIP], align_corners=False)
    return F.grid_sample(windows, grid, mode="bilinear", padding_mode="border", align_corners=False) * 255.0


@dataclass
class IdentityModel:
    """The frozen recognizer of the identity loss: a network from N x 3 x 150 x 150 chips (0..255) to
    embeddings, and how to align a face on its original (`DlibRecognizer.locate`)."""

    network: nn.Module
    locate: Callable[[np.ndarray, FaceGeometry], Hashable]
    crop: Callable[[np.ndarray, Hashable], np.ndarray]
    fingerprint: str

    @classmethod
    def dlib(cls, device: torch.device) -> IdentityModel:
        from metrics.recognizers.dlib_resnet import DlibRecognizer
        from metrics.recognizers.dlib_torch import load_dlib_resnet
        from redteam.core.weights import get_model_file

        recognizer = DlibRecognizer()
        network = load_dlib_resnet(get_model_file("dlib_resnet").require()).to(device)
        for parameter in network.parameters():
            parameter.requires_grad_(False)
        return cls(network, recognizer.locate, recognizer.crop, recognizer.fingerprint)


@dataclass
class FamilyPairs:
    """Training pairs of a family: anonymized (preprocessed) and clean windows at the training size (uint8),
    the strength each was made with, and per face the chip map and the clean chip's embedding."""

    anonymized: torch.Tensor  # N x 3 x S x S uint8
    clean: torch.Tensor  # N x 3 x S x S uint8
    condition: torch.Tensor  # N
    face: torch.Tensor  # N: index into thetas / targets
    thetas: torch.Tensor  # F x 2 x 3
    targets: torch.Tensor | None  # F x D, or None without an identity model
    values: list[float] = field(default_factory=list)

    def batch(self, index: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.anonymized[index].to(device).float() / 255.0
        y = self.clean[index].to(device).float() / 255.0
        return x, y, self.condition[index].to(device), self.face[index]


def _family_pairs(
    items: list[CorpusImage],
    family: FamilySpec,
    *,
    draws: int,
    rng: np.random.Generator,
    identity: IdentityModel | None,
    log: Log,
) -> FamilyPairs:
    from redteam.core.geometry import attack_window
    from redteam.core.tensors import to_tensor

    anonymized, clean, condition, faces, thetas, values = [], [], [], [], [], []
    chips = []
    for done, item in enumerate(items, start=1):
        pixels = item.image.pixels
        alignments = [identity.locate(pixels, face) if identity is not None else None for face in item.faces]
        for draw in range(draws):
            if family.parameter in ("block", "factor"):
                value = float(rng.integers(int(family.low), int(family.high) + 1))
            else:
                value = float(np.exp(rng.uniform(np.log(family.low), np.log(family.high))))
            method = family.method_at(value)
            output = method.apply(pixels, item.faces, torch.Generator().manual_seed(int(rng.integers(2**62))))
            for face, alignment in zip(item.faces, alignments, strict=True):
                x0, y0, x1, y1 = attack_window(pixels.shape, face, method)
                if x1 - x0 < 8 or y1 - y0 < 8:
                    continue
                if draw == 0:
                    thetas.append(chip_theta(alignment, (x0, y0, x1, y1)) if alignment is not None else torch.zeros(2, 3))
                    if identity is not None:
                        chips.append(identity.crop(pixels, alignment))
                info = MethodInfo("train", method, face, (x0, y0), pixels.shape)
                window = preprocess(to_tensor(output[y0:y1, x0:x1]), info)
                anonymized.append((_resized(window) * 255).round().to(torch.uint8))
                clean.append((_resized(to_tensor(pixels[y0:y1, x0:x1])) * 255).round().to(torch.uint8))
                condition.append(condition_value(float(method.values[family.parameter]), x1 - x0))
                values.append(float(method.values[family.parameter]))
                faces.append(len(thetas) - 1)
        if done % 250 == 0:
            log(f"made pairs for {done}/{len(items)} images")
    targets = None
    if identity is not None and chips:
        with torch.no_grad():
            stack = torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float()
            targets = torch.cat([identity.network(part) for part in stack.split(32)])
    return FamilyPairs(
        torch.stack(anonymized),
        torch.stack(clean),
        torch.tensor(condition, dtype=torch.float32),
        torch.tensor(faces, dtype=torch.long),
        torch.stack(thetas),
        targets,
        values,
    )


def _split(items: list[CorpusImage], fraction: float, seed: int) -> tuple[list[CorpusImage], list[CorpusImage]]:
    """(training, validation) by file, deterministic for a seed; at least one image on each side."""
    if len(items) < 2:
        raise InputError(f"the training corpus has {len(items)} usable image(s); a validation split needs at least 2", fix="give more face photos")
    ranked = sorted(items, key=lambda item: hashlib.sha256(f"{seed}:{item.rel}".encode()).hexdigest())
    count = min(len(items) - 1, max(1, round(fraction * len(items))))
    return ranked[count:], ranked[:count]


def _evaluate(model: TinyUNet, pairs: FamilyPairs, identity: IdentityModel | None, device: torch.device) -> dict[str, float]:
    """Validation L1 (network output vs clean window) and identity distance (recognizer embedding of the
    output's chip vs the clean chip's), means over the validation pairs."""
    model.eval()
    l1, distance, count = 0.0, 0.0, len(pairs.anonymized)
    with torch.no_grad():
        for index in torch.arange(count).split(32):
            x, y, condition, face = pairs.batch(index, device)
            output = model(x, condition)
            l1 += float(F.l1_loss(output, y, reduction="none").mean(dim=(1, 2, 3)).sum())
            if identity is not None and pairs.targets is not None:
                embedded = identity.network(cut_chips(output, pairs.thetas[face].to(device)))
                distance += float((embedded - pairs.targets[face].to(device)).norm(dim=1).sum())
    model.train()
    return {"val_l1": l1 / count, "val_identity": distance / count if identity is not None else math.nan}


def _input_scores(pairs: FamilyPairs, identity: IdentityModel | None, device: torch.device) -> dict[str, float]:
    """The validation scores of the anonymized input itself (what the network has to beat)."""

    class _Unchanged(TinyUNet):
        def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
            return x

    return _evaluate(_Unchanged(), pairs, identity, device)


def train_until_plateau(
    corpus: Path,
    family_spec: str,
    *,
    max_minutes: float,
    seed: int = 0,
    log: Log = lambda message: None,
    patience: int = 6,
    eval_every: int = 40,
    identity_weight: float = IDENTITY_WEIGHT,
    draws: int = 3,
    validation_fraction: float = 0.1,
    batch_size: int = 16,
    max_steps: int | None = None,
    corpus_limit: int | None = None,
    min_face_size: int | None = None,
    device: torch.device = torch.device("cpu"),
    out: Path | None = None,
    identity: IdentityModel | None = None,
) -> Path:
    """Train one conditioned U-Net for a method family until its validation split stops improving.

    Args:
        corpus: the attacker's face photos (never the audited originals).
        family_spec: ``NAME:PARAM=LOW..HIGH[,key=value...]``, e.g. ``gaussian_blur:sigma=3..24``.
        max_minutes: wall-clock cap on the training loop (pair making and validation not counted in
            `steps`, but in the record's `seconds`).
        patience: evaluations without improvement (every `eval_every` steps) before stopping.
        identity_weight: weight of the recognizer term (0: pixel L1 only); it needs dlib (or `identity`).
        draws: parameter values drawn per corpus face (log-uniform for lengths, uniform for integer cells).
        corpus_limit: use only the first images of the corpus.
        min_face_size: detect only faces at least this wide (faster on a corpus of large faces).
        identity: the frozen recognizer of the identity loss (default: dlib's ResNet when installed).

    Returns:
        The checkpoint (safetensors; its record beside it as `.json`), where the `learned` attack finds it.
    """
    from redteam.core.provenance import environment

    family = FamilySpec.parse(family_spec)
    if max_minutes <= 0:
        raise InputError(f"max_minutes must be positive, got {max_minutes}", fix="e.g. 20")
    began = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    if identity is None and identity_weight > 0:
        try:
            identity = IdentityModel.dlib(device)
        except Exception as error:  # noqa: BLE001 - no recognizer: pixel loss only, said in the log and the record
            log(f"no identity loss (dlib recognizer unavailable: {error}); training on pixel L1 only")
    if identity_weight <= 0:
        identity = None
    items = load_corpus(corpus, log=log, limit=corpus_limit, min_face_size=min_face_size)
    training_items, validation_items = _split(items, validation_fraction, seed)
    train = _family_pairs(training_items, family, draws=draws, rng=rng, identity=identity, log=log)
    validation = _family_pairs(validation_items, family, draws=max(1, draws // 2 + 1), rng=np.random.default_rng(seed + 1), identity=identity, log=log)
    log(
        f"{family.spec}: {len(train.anonymized)} training and {len(validation.anonymized)} validation pairs from "
        f"{len(training_items)} + {len(validation_items)} images (pairs made in {time.perf_counter() - began:.0f} s)"
    )
    model = TinyUNet(conditioned=True).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    stopper = PlateauStopper(patience)
    baseline = _input_scores(validation, identity, device)
    monitored = "val_identity" if identity is not None else "val_l1"
    curve: list[dict[str, float]] = [
        {"step": 0, "seconds": 0.0, "train_loss": math.nan, "train_l1": math.nan, **_evaluate(model, validation, identity, device)}
    ]
    stopper.update(curve[0][monitored], 0)
    best = {k: v.detach().clone() for k, v in model.state_dict().items()}
    log(f"step 0: {monitored} {curve[0][monitored]:.4f} (the anonymized input itself: {baseline[monitored]:.4f})")
    loop_began, step, stopped = time.perf_counter(), 0, "plateau"
    losses: list[tuple[float, float]] = []
    count = len(train.anonymized)

    def evaluate(best: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One point of the curve (validation scores, mean training losses since the last point); returns
        the weights to keep (these ones when they are a new best)."""
        scores = _evaluate(model, validation, identity, device)
        recent = losses[-(step % eval_every or eval_every) :]
        point = {
            "step": step,
            "seconds": round(time.perf_counter() - loop_began, 1),
            "train_loss": float(np.mean([a for a, _ in recent])),
            "train_l1": float(np.mean([b for _, b in recent])),
            **scores,
        }
        curve.append(point)
        if stopper.update(point[monitored], step):
            best = {k: v.detach().clone() for k, v in model.state_dict().items()}
        log(
            f"step {step}: train {point['train_loss']:.4f} (L1 {point['train_l1']:.4f}), val L1 {scores['val_l1']:.4f}, "
            f"val identity {scores['val_identity']:.4f}; best {stopper.best:.4f} at step {stopper.best_step}"
        )
        return best

    while True:
        if max_steps is not None and step >= max_steps:
            stopped = "max steps"
            break
        if time.perf_counter() - loop_began >= max_minutes * 60.0:
            stopped = "time cap"
            break
        index = torch.randint(count, (min(batch_size, count),), generator=generator)
        x, y, condition, face = train.batch(index, device)
        thetas = train.thetas[face].to(device)
        if torch.rand(1, generator=generator).item() < 0.5:  # a mirrored face; the chip map follows it (the chip itself is unchanged)
            x, y = x.flip(-1), y.flip(-1)
            thetas = thetas * torch.tensor([[-1.0], [1.0]], device=device)
        output = model(x, condition)
        l1 = F.l1_loss(output, y)
        loss = l1
        if identity is not None and train.targets is not None:
            embedded = identity.network(cut_chips(output, thetas))
            loss = l1 + identity_weight * (embedded - train.targets[face].to(device)).norm(dim=1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append((loss.item(), l1.item()))
        step += 1
        if step % eval_every == 0:
            best = evaluate(best)
            if stopper.should_stop:
                break
    if stopped != "plateau" and step % eval_every != 0:  # the steps since the last evaluation count too
        best = evaluate(best)
    target = out or family_checkpoint_path(family)
    state = {k: v.cpu().contiguous() for k, v in best.items()}
    write_atomically(target, lambda path: save_file(state, str(path)))
    record: dict[str, Any] = {
        "schema": FAMILY_SCHEMA,
        "spec": family.spec,
        "family": {"method": family.method, "parameter": family.parameter, "low": family.low, "high": family.high, "fixed": dict(family.fixed)},
        "architecture": "TinyUNet(width=24, conditioned=True)",
        "training_size": TRAINING_SIZE,
        "input": "Lanczos-resampled cell grid for mosaic/downsampling stages, else the anonymized window; plus the strength channel",
        "condition": "log2(parameter * training_size / window width) / 4",
        "loss": {"pixel": "L1", "identity": identity.fingerprint if identity is not None else None, "identity_weight": identity_weight if identity else 0.0},
        "monitored": monitored,
        "patience": patience,
        "eval_every": eval_every,
        "steps": step,
        "best_step": stopper.best_step,
        "best": stopper.best,
        "stopped": stopped,
        "max_minutes": max_minutes,
        "training_seconds": round(time.perf_counter() - loop_began, 1),
        "seconds": round(time.perf_counter() - began, 1),
        "seed": seed,
        "corpus": str(corpus.resolve()),
        "corpus_files": [{"file": item.rel, "sha256": item.image.sha256} for item in items],
        "validation_files": len(validation_items),
        "face_windows": {"training": len(train.anonymized), "validation": len(validation.anonymized)},
        "anonymized_input_scores": baseline,
        "curve": curve,
        "environment": environment(),
        "checkpoint_sha256": sha256_file(target),
    }
    write_text_atomically(target.with_suffix(".json"), json.dumps(record, indent=2, allow_nan=True) + "\n")
    log(f"saved {target}: {stopped} after {step} steps ({record['seconds']:.0f} s), best {monitored} {stopper.best:.4f} at step {stopper.best_step}")
    return target
