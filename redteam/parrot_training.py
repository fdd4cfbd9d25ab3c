"""Training of the trained parrot (`redteam models train-parrot`): heads on frozen face recognizers,
trained to tell people apart on faces anonymized with the exact method.

The corpus is the attacker's own labelled photos (`corpus/<identity>/<file>`, e.g. CelebA's research
identities), never the audited originals. Each photo's dominant face is aligned on the clean original (as
the audit aligns every anonymized face), then jittered (scale, shift, mirror) and anonymized with the
method several times, cut into each recognizer's chip and embedded by the frozen recognizer. A head per
recognizer (`attacks.trained_parrot.ParrotHead`) learns, with an additive-margin softmax over the training
identities, an embedding where the same person's anonymized photos lie together. Identities are split:
the held-out people's anonymized photos measure, every few steps, how often the nearest other photo is
the same person's (mean reciprocal rank); training stops when that stops improving (patience) or at the
wall-clock cap, keeping the best head. The record lists every corpus file's SHA-256 and every identity
folder, which the audit checks against the audited originals.

References:
    Wang et al., "Additive Margin Softmax for Face Verification", IEEE SPL 2018; McPherson, Shokri and
    Shmatikov 2016; Hao et al., FG 2020.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file

from attacks.trained_parrot import HIDDEN, PARROT_SCHEMA, ParrotHead, parrot_path
from metrics.recognizers import Recognizer
from redteam.core.atomic import write_atomically, write_text_atomically
from redteam.core.errors import InputError
from redteam.core.geometry import FaceGeometry
from redteam.core.provenance import sha256_file
from redteam.training import CorpusImage, Log, PlateauStopper, load_corpus

#: Additive-margin softmax: scale and margin (Wang et al. 2018 use 30 and 0.35 on large corpora; a few
#: hundred identities train better with a smaller scale).
AM_SCALE = 16.0
AM_MARGIN = 0.25


def jitter(pixels: np.ndarray, face: FaceGeometry, rng: np.random.Generator) -> tuple[np.ndarray, FaceGeometry]:
    """The photo resampled by a random similarity about its face (scale 0.9-1.1, shift up to 5% of the face
    width, mirrored half the time), and the face's geometry in it (mirrored landmarks swap sides)."""
    scale = float(rng.uniform(0.9, 1.1))
    dx, dy = (float(v) for v in rng.uniform(-0.05, 0.05, 2) * face.width)
    mirror = bool(rng.random() < 0.5)
    height, width = pixels.shape[:2]
    cx, cy = (face.box[0] + face.box[2]) / 2.0, (face.box[1] + face.box[3]) / 2.0
    sign = -1.0 if mirror else 1.0

    def forward(x: float, y: float) -> tuple[float, float]:
        if mirror:
            x = 2 * cx - x
        return cx + (x - cx) * scale + dx, cy + (y - cy) * scale + dy

    inverse = (sign / scale, 0.0, cx - sign * (cx + dx) / scale, 0.0, 1.0 / scale, cy - (cy + dy) / scale)
    moved = Image.fromarray(pixels).transform((width, height), Image.Transform.AFFINE, inverse, resample=Image.Resampling.BICUBIC)
    x0, y0 = forward(face.box[0], face.box[1])
    x1, y1 = forward(face.box[2], face.box[3])
    marks = [forward(x, y) for x, y in face.landmarks]
    if mirror:
        x0, x1 = x1, x0
        marks = [marks[1], marks[0], marks[2], marks[4], marks[3]]
    return np.asarray(moved), FaceGeometry((x0, y0, x1, y1), tuple(marks), face.score)


@dataclass(frozen=True)
class ParrotData:
    """Embeddings of anonymized faces: per recognizer N x D, with each row's identity and photo index;
    rows with `first` set are the unjittered versions (what an audit sees)."""

    embeddings: dict[str, torch.Tensor]
    identity: np.ndarray  # N, index into `identities`
    photo: np.ndarray
    first: np.ndarray
    identities: list[str]


def anonymized_embeddings(
    items: Sequence[CorpusImage],
    spec: str,
    recognizers: dict[str, Recognizer],
    *,
    augmentations: int,
    seed: int,
    log: Log,
) -> ParrotData:
    """Each photo's dominant face, jittered `augmentations - 1` times besides the original, anonymized
    with the method and embedded by every recognizer (aligned on the jittered clean photo)."""
    from redteam.anonymizers import build_method
    from redteam.core.seeds import derived_seed

    method = build_method(spec)
    if method.needs_fit:
        raise InputError(f"'{spec}' is fitted on the audited set itself (set-level): no parrot can be trained for it", fix="train for another method")
    rng = np.random.default_rng(seed)
    identities = sorted({item.identity for item in items})
    index = {name: i for i, name in enumerate(identities)}
    chips: dict[str, list[np.ndarray]] = {name: [] for name in recognizers}
    identity, photo, first = [], [], []
    for number, item in enumerate(items):
        face = max(item.faces, key=lambda f: f.width * f.height)
        for copy in range(augmentations):
            pixels, geometry = (item.image.pixels, face) if copy == 0 else jitter(item.image.pixels, face, rng)
            output = method.apply(pixels, [geometry], torch.Generator().manual_seed(derived_seed(seed, "parrot", item.rel, str(copy))))
            for name, recognizer in recognizers.items():
                chips[name].append(recognizer.crop(output, recognizer.locate(pixels, geometry)))
            identity.append(index[item.identity])
            photo.append(number)
            first.append(copy == 0)
        if (number + 1) % 100 == 0:
            log(f"anonymized and aligned {number + 1}/{len(items)} photos")
    embeddings = {}
    for name, recognizer in recognizers.items():
        stack = torch.from_numpy(np.stack(chips[name])).permute(0, 3, 1, 2).float() / 255.0
        embeddings[name] = torch.cat([recognizer.embed(part) for part in stack.split(64)]).float()
        chips[name] = []
    return ParrotData(embeddings, np.array(identity), np.array(photo), np.array(first), identities)


def retrieval_scores(embeddings: torch.Tensor, identity: np.ndarray, photo: np.ndarray) -> dict[str, float]:
    """Leave-one-photo-out retrieval among the given rows: for each row whose person has another photo,
    the rank of the nearest row of the same person (its other photos only). Returns rank-1 and the mean
    reciprocal rank."""
    distances = torch.cdist(embeddings.double(), embeddings.double())
    same_photo = torch.from_numpy(photo[:, None] == photo[None, :])
    distances = distances.masked_fill(same_photo, math.inf)
    same_person = torch.from_numpy(identity[:, None] == identity[None, :]) & ~same_photo
    usable = same_person.any(dim=1)
    if not bool(usable.any()):
        return {"rank1": math.nan, "mrr": math.nan}
    best_same = distances.masked_fill(~same_person, math.inf).min(dim=1).values
    ranks = (distances < best_same[:, None]).sum(dim=1).double() + 1.0
    ranks = ranks[usable]
    return {"rank1": float((ranks == 1).double().mean()), "mrr": float((1.0 / ranks).mean())}


def _split_people(identities: list[str], counts: dict[str, int], fraction: float, seed: int) -> tuple[set[str], set[str]]:
    """(training, validation) identities: people with at least two photos, split by a seeded hash; at
    least two validation people (retrieval needs a competitor) and two training people."""
    usable = sorted((name for name in identities if counts[name] >= 2), key=lambda name: hashlib.sha256(f"{seed}:{name}".encode()).hexdigest())
    if len(usable) < 4:
        raise InputError(
            f"the parrot corpus has {len(usable)} identities with two or more photos; at least 4 are needed",
            fix="give a labelled corpus: one folder per person, several photos each",
        )
    held = min(len(usable) - 2, max(2, round(fraction * len(usable))))
    return set(usable[held:]), set(usable[:held])


def _scale(head: ParrotHead, embeddings: torch.Tensor, identity: np.ndarray, reference: float) -> float:
    """The radius that puts the median distance between different people's projected training faces at
    `reference` (the recognizer's own median on them), so distances keep the recognizer's scale."""
    with torch.no_grad():
        unit = head.direction(embeddings)
    chosen = torch.linspace(0, len(unit) - 1, min(len(unit), 600)).round().long()
    distances = torch.cdist(unit[chosen], unit[chosen])
    different = torch.from_numpy(identity[chosen.numpy()][:, None] != identity[chosen.numpy()][None, :])
    median = float(distances[different].median()) if bool(different.any()) else 1.0
    return reference / max(median, 1e-6)


def _train_head(
    data: ParrotData,
    name: str,
    train_people: set[int],
    validation_people: set[int],
    *,
    max_seconds: float,
    max_steps: int | None,
    patience: int,
    eval_every: int,
    seed: int,
    log: Log,
) -> tuple[ParrotHead, dict[str, Any]]:
    embeddings = data.embeddings[name]
    training = np.isin(data.identity, sorted(train_people))
    validation = np.isin(data.identity, sorted(validation_people)) & data.first
    classes = {person: i for i, person in enumerate(sorted(train_people))}
    rows = torch.from_numpy(np.flatnonzero(training))
    labels = torch.tensor([classes[int(p)] for p in data.identity[training]])
    torch.manual_seed(seed)
    head = ParrotHead(embeddings.shape[1])
    head.centre.copy_(embeddings[rows].mean(dim=0))
    weights = nn.Parameter(F.normalize(torch.randn(len(classes), embeddings.shape[1], generator=torch.Generator().manual_seed(seed)), dim=1))
    optimizer = torch.optim.AdamW([*head.parameters(), weights], lr=1e-3, weight_decay=5e-4)
    generator = torch.Generator().manual_seed(seed)
    valid_x, valid_id, valid_photo = embeddings[torch.from_numpy(np.flatnonzero(validation))], data.identity[validation], data.photo[validation]
    with torch.no_grad():
        base = retrieval_scores(valid_x, valid_id, valid_photo)
    stopper = PlateauStopper(patience, min_delta=0.0)

    def evaluate(step: int, began: float, loss: float) -> dict[str, float]:
        head.eval()
        with torch.no_grad():
            scores = retrieval_scores(head.direction(valid_x), valid_id, valid_photo)
        head.train()
        return {"step": step, "seconds": round(time.perf_counter() - began, 2), "train_loss": loss, "val_rank1": scores["rank1"], "val_mrr": scores["mrr"]}

    began = time.perf_counter()
    curve = [evaluate(0, began, math.nan)]
    stopper.update(1.0 - curve[0]["val_mrr"], 0)
    best = {k: v.clone() for k, v in head.state_dict().items()}
    step, stopped, losses = 0, "plateau", []
    while True:
        if max_steps is not None and step >= max_steps:
            stopped = "max steps"
            break
        if time.perf_counter() - began >= max_seconds:
            stopped = "time cap"
            break
        batch = torch.randint(len(rows), (min(128, len(rows)),), generator=generator)
        x, y = embeddings[rows[batch]], labels[batch]
        cosine = head.direction(x) @ F.normalize(weights, dim=1).t()
        loss = F.cross_entropy(AM_SCALE * (cosine - AM_MARGIN * F.one_hot(y, len(classes))), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
        step += 1
        if step % eval_every == 0:
            point = evaluate(step, began, float(np.mean(losses[-eval_every:])))
            curve.append(point)
            if stopper.update(1.0 - point["val_mrr"], step):
                best = {k: v.clone() for k, v in head.state_dict().items()}
            if step % (eval_every * 5) == 0:
                log(f"{name} step {step}: loss {point['train_loss']:.3f}, held-out rank-1 {point['val_rank1']:.3f}, MRR {point['val_mrr']:.3f}")
            if stopper.should_stop:
                break
    head.load_state_dict(best)
    reference = _median_impostor(embeddings[rows], data.identity[training])
    head.scale.fill_(_scale(head, embeddings[rows], data.identity[training], reference))
    summary = {
        "steps": step,
        "best_step": stopper.best_step,
        "stopped": stopped,
        "seconds": round(time.perf_counter() - began, 1),
        "plain_parrot_validation": base,
        "best_validation": {"rank1": next(p["val_rank1"] for p in curve if p["step"] == stopper.best_step), "mrr": 1.0 - stopper.best},
        "curve": curve,
    }
    return head.eval(), summary


def _median_impostor(embeddings: torch.Tensor, identity: np.ndarray) -> float:
    chosen = torch.linspace(0, len(embeddings) - 1, min(len(embeddings), 600)).round().long()
    distances = torch.cdist(embeddings[chosen].double(), embeddings[chosen].double())
    different = torch.from_numpy(identity[chosen.numpy()][:, None] != identity[chosen.numpy()][None, :])
    return float(distances[different].median()) if bool(different.any()) else 1.0


def _finite(value: Any) -> Any:
    """JSON without NaN: NaN becomes null (in nested lists and dicts too)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def train_parrot(
    corpus: Path,
    spec: str,
    *,
    max_minutes: float = 10.0,
    seed: int = 0,
    log: Log = lambda message: None,
    recognizers: Sequence[str] = ("dlib",),
    augmentations: int = 4,
    validation_fraction: float = 0.15,
    patience: int = 8,
    eval_every: int = 25,
    max_steps: int | None = None,
    exclude: Path | None = None,
    min_face_size: int | None = None,
    out: Path | None = None,
    recognizer_objects: dict[str, Recognizer] | None = None,
) -> Path:
    """Train the parrot's heads for one method on a labelled corpus; save them where `trained_parrot` looks.

    Args:
        corpus: `corpus/<identity>/<photo>`: the attacker's labelled faces (never the audited originals).
        spec: the method, e.g. ``gaussian_blur:sigma=10`` (canonicalised).
        max_minutes: wall-clock cap on the head training (making and embedding the anonymized faces,
            which takes longer, comes before it and is reported in the record's `seconds`).
        recognizers: a head is trained for each (the audit uses the plain parrot for any other).
        augmentations: anonymized versions per photo (the first unjittered).
        exclude: the originals to be audited: their identity folders and files are left out of the corpus
            (e.g. when the corpus and the audited set are two parts of one dataset).
        min_face_size: detect only faces at least this wide (faster on a corpus of large faces).
        recognizer_objects: injected recognizers (tests), else built from the registry.

    Returns:
        The checkpoint (safetensors; its record beside it as `.json`).
    """
    from redteam.anonymizers import build_method
    from redteam.core.provenance import environment
    from redteam.datasets import discover_images

    canonical = build_method(spec).spec
    if max_minutes <= 0:
        raise InputError(f"max_minutes must be positive, got {max_minutes}", fix="e.g. 10")
    began = time.perf_counter()
    dataset = discover_images(corpus, role="parrot corpus")
    if not dataset.identities_known:
        raise InputError(f"the parrot corpus {corpus} has no identity folders", fix="lay it out as corpus/<person>/<photo>, several photos per person")
    listed: dict[str, int] = {}
    for entry in dataset.entries:
        listed[entry.identity] = listed.get(entry.identity, 0) + 1
    _split_people(sorted(listed), listed, validation_fraction, seed)  # too few people: say so before detecting any face
    if recognizer_objects is None:
        from metrics.recognizers import RECOGNIZERS

        recognizer_objects = {name: RECOGNIZERS[name]() for name in recognizers}
    items = [item for item in load_corpus(corpus, log=log, min_face_size=min_face_size) if "/" in item.rel]
    if exclude is not None:
        audited = discover_images(exclude, role="audited originals")
        people, hashes = {e.identity for e in audited.entries}, {sha256_file(e.path) for e in audited.entries}
        kept = [item for item in items if item.identity not in people and item.image.sha256 not in hashes]
        log(f"left out {len(items) - len(kept)} corpus photos of the {len(people)} audited people or files")
        items = kept
    counts: dict[str, int] = {}
    for item in items:
        counts[item.identity] = counts.get(item.identity, 0) + 1
    train_names, validation_names = _split_people(sorted(counts), counts, validation_fraction, seed)
    data = anonymized_embeddings(items, canonical, recognizer_objects, augmentations=augmentations, seed=seed, log=log)
    prepared = time.perf_counter() - began
    log(f"{len(items)} photos of {len(counts)} people anonymized x{augmentations} and embedded in {prepared:.0f} s")
    lookup = {name: i for i, name in enumerate(data.identities)}
    train_people = {lookup[name] for name in train_names}
    validation_people = {lookup[name] for name in validation_names}
    state: dict[str, torch.Tensor] = {}
    heads: dict[str, dict[str, Any]] = {}
    per_head = max_minutes * 60.0 / len(recognizer_objects)
    for name, recognizer in recognizer_objects.items():
        head, summary = _train_head(
            data, name, train_people, validation_people, max_seconds=per_head, max_steps=max_steps, patience=patience, eval_every=eval_every, seed=seed, log=log
        )
        state |= {f"{name}.{key}": value.detach().cpu().contiguous() for key, value in head.state_dict().items()}
        heads[name] = {"fingerprint": recognizer.fingerprint, "dim": int(data.embeddings[name].shape[1]), "hidden": HIDDEN, **summary}
        log(
            f"{name}: held-out rank-1 {summary['best_validation']['rank1']:.3f} (plain parrot {summary['plain_parrot_validation']['rank1']:.3f}) "
            f"after {summary['best_step']} of {summary['steps']} steps ({summary['stopped']})"
        )
    target = out or parrot_path(canonical)
    write_atomically(target, lambda path: save_file(state, str(path)))
    record = {
        "schema": PARROT_SCHEMA,
        "spec": canonical,
        "architecture": f"ParrotHead(dim, hidden={HIDDEN}) on each frozen recognizer's embedding",
        "loss": f"additive-margin softmax (scale {AM_SCALE}, margin {AM_MARGIN}) over the training identities",
        "recognizers": heads,
        "steps": max(h["steps"] for h in heads.values()),
        "seconds": round(time.perf_counter() - began, 1),
        "preparation_seconds": round(prepared, 1),
        "max_minutes": max_minutes,
        "augmentations": augmentations,
        "seed": seed,
        "corpus": str(corpus.resolve()),
        "corpus_files": [{"file": item.rel, "sha256": item.image.sha256} for item in items],
        "identities": sorted(counts),
        "training_identities": len(train_names),
        "validation_identities": sorted(validation_names),
        "environment": environment(),
        "checkpoint_sha256": sha256_file(target),
    }
    write_text_atomically(target.with_suffix(".json"), json.dumps(_finite(record), indent=2) + "\n")
    log(f"saved {target} ({record['seconds']:.0f} s)")
    return target
