"""Training of the learned inversion (`redteam attack train`): a small U-Net on pairs (method(x), x) made
with the exact method from a face corpus the attacker holds, never from the audited originals. The
`learned` attack (attacks/learned.py) finds the checkpoint under the cache, keyed by the method's
canonical spec, and refuses one whose corpus shares a file with the audited originals.

References:
    McPherson, Shokri and Shmatikov, "Defeating Image Obfuscation with Deep Learning", 2016.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from attacks.base import MethodInfo
from attacks.learned import TRAINING_SIZE, TinyUNet, checkpoint_path, preprocess
from redteam.core.atomic import write_atomically, write_text_atomically
from redteam.core.errors import InputError
from redteam.core.provenance import sha256_file


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
    clean: list[torch.Tensor] = []
    anonymized: list[torch.Tensor] = []
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
