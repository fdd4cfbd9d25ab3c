"""The inputs stage: read the originals and the gallery once, check them, find their faces, align and
embed them, and build the identification gallery.

Each image is decoded once here and dropped as soon as its faces are embedded (later stages decode it
again when they need it), so memory does not grow with the number of images. Every problem is an input
issue with its file and its effect (README, "Input layout").
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from metrics.recognizers import Recognizer
from redteam.cache import content_key
from redteam.core.errors import InputError
from redteam.core.geometry import FaceGeometry
from redteam.core.results import MIN_COMPETITOR_FACE, UNREAD_ISSUES, FaceRecord
from redteam.datasets import LINK_OUTSIDE, Dataset
from redteam.engine.context import RunContext
from redteam.engine.embedding import Embedder, Gallery, Known
from redteam.engine.gallery_entries import GalleryEntry, same_photo_columns
from redteam.engine.handles import ImageHandle
from redteam.images import VIDEO_SUFFIXES


@dataclass(frozen=True)
class Inputs:
    """The faces of a run.

    Attributes:
        audited: the faces attacked (every original's face, or the configured probes).
        originals: every original's face (all of them are in the gallery).
        gallery: originals plus distractors, aligned and embedded per recognizer.
        paths: image label -> its file, to read it again.
        unreadable: originals that could not be read (no method can PASS: the set was not audited in full).
        embedding_stats: per recognizer, gallery embeddings reused from the cache and computed.
        duplicates: an original counted once -> the original it is a byte-identical copy of (an observed
            folder's counterpart of the copy is still audited for leaks, against the first's faces).
    """

    audited: list[FaceRecord]
    originals: list[FaceRecord]
    gallery: Gallery
    paths: dict[str, Path]
    unreadable: list[str]
    embedding_stats: dict[str, int]
    duplicates: dict[str, str] = field(default_factory=dict)


#: Bump when what an alignment record holds changes.
ALIGNMENT_VERSION = "alignment/1"


def _alignment_key(image: ImageHandle, geometry: FaceGeometry, embedder: Embedder) -> str:
    return content_key(ALIGNMENT_VERSION, image.digest, json.dumps(geometry.to_json(), sort_keys=True), embedder.fingerprint)


def _as_tuples(value: object) -> Hashable:
    """A JSON alignment back as the nested tuples `Recognizer.locate` returns; ValueError if it holds
    anything but finite numbers."""
    if isinstance(value, list):
        return tuple(_as_tuples(v) for v in value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"not an alignment: {value!r}")
    return value


def _face_chip(ctx: RunContext, image: ImageHandle, geometry: FaceGeometry, embedder: Embedder) -> tuple[Hashable, np.ndarray | Known]:
    """A face's alignment on its original and its chip, or, when both are in the cache (an alignment
    record under the image's pixel digest, the face's box and the recognizer's fingerprint, and the
    embedding it names), the alignment and that embedding: a re-run neither decodes the original nor
    runs the landmark model for it."""
    key = _alignment_key(image, geometry, embedder)
    record = ctx.cache.get_json("alignments", key)
    if isinstance(record, dict) and isinstance(record.get("chip"), str):
        try:
            alignment = _as_tuples(record.get("alignment"))
        except ValueError:
            ctx.log(f"alignment cache entry {key[:12]} is malformed: recomputed")
        else:
            embedding = embedder.cached(record["chip"])
            if embedding is not None:
                return alignment, Known(embedding)
    recognizer = embedder.recognizer
    with ctx.clock.measure("inference"):
        alignment = recognizer.locate(image.pixels, geometry)
    chip = recognizer.crop(image.pixels, alignment)
    ctx.cache.put_json("alignments", key, {"alignment": alignment, "chip": embedder.key(chip)})
    return alignment, chip


#: In a photo of an identity folder, the largest face is the named person when its box has at least this
#: many times the area of the next largest; otherwise which face is the person is unknown.
DOMINANT_AREA = 2.0


def face_identities(geometries: list[FaceGeometry], identity: str | None, identities_known: bool) -> list[str | None]:
    """Who each face of one original shows. One face: the photo's identity. Several faces in an identity
    folder: the folder names one person, taken to be the dominant face (its box at least DOMINANT_AREA
    times the area of every other); the other faces, or all of them when none dominates, are unlabelled
    (None). Several faces in a flat folder: each is its own person (`identity#index`)."""
    if len(geometries) == 1:
        return [identity]
    if not identities_known:
        return [f"{identity}#{index}" for index in range(len(geometries))]
    areas = [g.width * g.height for g in geometries]
    order = sorted(range(len(areas)), key=areas.__getitem__, reverse=True)
    dominant = order[0] if areas[order[0]] >= DOMINANT_AREA * areas[order[1]] else None
    return [identity if index == dominant else None for index in range(len(geometries))]


#: Bump when what a plausibility record holds, or the rule behind it, changes.
PLAUSIBILITY_VERSION = "plausibility/1"


def _plausible_faces(ctx: RunContext, image: ImageHandle, label: str, geometries: list[FaceGeometry]) -> list[tuple[int, FaceGeometry]]:
    """The detections taken as faces, with their index in the detector's list (`redteam.plausibility`;
    cached per image and box, so a re-run does not decode the original for it). Each rejected one is an
    `implausible_face` input issue; the policy's `keep_implausible_faces` keeps them all."""
    from redteam.plausibility import SURE_SCORE, Plausibility, plausibility

    kept = []
    keep_all = ctx.policy.keep_implausible_faces
    for index, geometry in enumerate(geometries):
        verdict = Plausibility(True)
        if geometry.score < SURE_SCORE:
            key = content_key(PLAUSIBILITY_VERSION, image.digest, json.dumps(geometry.to_json(), sort_keys=True))
            try:
                verdict = Plausibility.from_json(ctx.cache.get_json("plausibility", key))
            except ValueError:
                with ctx.clock.measure("inference"):
                    verdict = plausibility(image.pixels, geometry)
                ctx.cache.put_json("plausibility", key, verdict.to_json())
        if verdict.plausible or keep_all:
            kept.append((index, geometry))
        if not verdict.plausible:
            action = "audited (the policy keeps implausible faces)" if keep_all else "skipped"
            ctx.issue("implausible_face", f"{label}#{index}", None, "not taken as a face: " + "; ".join(verdict.reasons), action)
    return kept


@dataclass
class _Collected:
    """What reading the originals and distractors accumulates: per recognizer its embedder, the faces'
    chips and alignments; the images' paths, the first label of each content hash, and the duplicates."""

    embedders: dict[str, Embedder]
    chips: dict[str, list[np.ndarray | Known]]
    alignments: dict[str, dict[str, object]]
    seen: dict[str, str] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)
    duplicates: dict[str, str] = field(default_factory=dict)


def _faces_of(ctx: RunContext, dataset: Dataset, role: str, overrides: dict[str, str], collected: _Collected) -> list[FaceRecord]:
    """The faces of one dataset (originals or distractors), embedded into `collected`."""
    embedders, seen, chips, alignments = collected.embedders, collected.seen, collected.chips, collected.alignments
    paths, duplicates = collected.paths, collected.duplicates
    faces: list[FaceRecord] = []
    for ignored in dataset.ignored:
        video = ignored.lower().endswith(VIDEO_SUFFIXES)
        detail, fix = (
            ("a video, not an image", "audit videos with `redteam audit-video ORIGINAL --anonymized NAME=REDACTED`")
            if video
            else ("not a supported image type", None)
        )
        ctx.issue("unsupported_file", f"{role}:{ignored}" if role != "originals" else ignored, None, detail, "skipped", fix)
    for linked in dataset.outside:
        ctx.issue("link_outside", f"{role}:{linked}" if role != "originals" else linked, None, LINK_OUTSIDE, "skipped")
    entries = dataset.entries
    for done, entry in enumerate(entries, start=1):
        ctx.progress(f"reading and embedding {role}", done, len(entries))
        label = entry.rel if role == "originals" else f"{role}:{entry.rel}"
        image = ctx.open(entry.path, label, None)
        if image is None:
            continue
        first = seen.setdefault(image.sha256, label)
        if first != label:
            ctx.issue("duplicate", label, None, f"byte-identical to {first}: counted once", "skipped")
            if role == "originals":
                duplicates[label] = first
            continue
        ctx.input_hashes[label] = image.sha256
        geometries = ctx.detect(lambda: image.pixels, image.sha256)  # noqa: B023 - called here, within this iteration
        if not geometries:
            minimum = ctx.config.detector.min_face_size
            ctx.issue("no_face", label, None, f"no face detected on the original (faces under {minimum} px are below the detector's minimum)", "skipped")
            continue
        kept = _plausible_faces(ctx, image, label, geometries)
        if not kept:
            ctx.issue("no_face", label, None, "every detection on the original was rejected as implausible (see implausible_face)", "skipped")
            continue
        identity: str | None = overrides.get(entry.rel, entry.identity)
        if role != "originals":
            identity = f"{role}:{identity}"  # distractors never merge with the originals' people by name
        if len(kept) > 1:
            ctx.issue("multi_face", label, None, f"{len(kept)} faces: each audited", "audited")
        paths[label] = entry.path
        labels = face_identities([geometry for _, geometry in kept], identity, dataset.identities_known)
        for (index, geometry), face_identity in zip(kept, labels, strict=True):
            face = FaceRecord(f"{label}#{index}", label, index, face_identity, geometry, role == "originals")
            faces.append(face)
            for name, embedder in embedders.items():
                alignments[name][face.face_id], chip = _face_chip(ctx, image, geometry, embedder)
                chips[name].append(chip)
    return faces


def warm_faces(ctx: RunContext, recognizers: dict[str, Recognizer], dataset: Dataset, role: str, overrides: dict[str, str]) -> None:
    """The stage `collect` runs on `dataset` (read, detect, check, align, embed), for its cache entries
    only: a worker does this on a chunk of the originals, and `collect` then finds every result cached
    (`redteam.engine.worker_pool`)."""
    embedders = {name: Embedder(recognizer, ctx.cache, ctx.clock, ctx.config.batch_size) for name, recognizer in recognizers.items()}
    collected = _Collected(embedders, {name: [] for name in recognizers}, {name: {} for name in recognizers})
    _faces_of(ctx, dataset, role, overrides, collected)
    for name, embedder in embedders.items():
        embedder(collected.chips[name])


def leading_faces(ctx: RunContext, originals: Dataset, enough: Callable[[list[FaceRecord], dict[str, Path]], bool]) -> tuple[list[FaceRecord], dict[str, Path]]:
    """The faces of the first originals (not embedded) and their paths, image by image in order until
    `enough(faces, paths)`: what `collect` finds for those images (the same detection, checks and
    duplicates), for a worker that needs only them (an operator fit)."""
    collected = _Collected({}, {}, {})
    faces: list[FaceRecord] = []
    for entry in originals.entries:
        one = replace(originals, entries=(entry,), ignored=(), outside=())
        faces += _faces_of(ctx, one, "originals", dict(ctx.config.identity_overrides), collected)
        if faces and enough(faces, collected.paths):
            break
    return faces, collected.paths


def collect(ctx: RunContext, recognizers: dict[str, Recognizer]) -> Inputs:
    """Read originals (and `--gallery` distractors), embed their faces, and build the gallery."""
    config = ctx.config
    embedders = {name: Embedder(recognizer, ctx.cache, ctx.clock, config.batch_size) for name, recognizer in recognizers.items()}
    collected = _Collected(embedders, {name: [] for name in recognizers}, {name: {} for name in recognizers})
    chips, alignments, paths, duplicates = collected.chips, collected.alignments, collected.paths, collected.duplicates
    originals = _faces_of(ctx, ctx.listing(config.originals, "originals"), "originals", dict(config.identity_overrides), collected)
    distractors: list[FaceRecord] = []
    if config.gallery is not None:
        distractors = _faces_of(ctx, ctx.listing(config.gallery, "gallery"), "gallery", {}, collected)
    if not originals:
        raise InputError(
            f"no face was detected in any original under {config.originals}",
            fix="check the images, or lower the detector threshold with --min-face-score",
        )
    faces = originals + distractors
    audited = originals
    if config.probes is not None:  # attack a sample; every original stays in the gallery with its identity
        wanted = set(config.probes)
        audited = [face for face in originals if face.image in wanted]
        if not audited:
            raise InputError("none of the probe files has a detected face", fix="list relative paths of originals with faces")
    ctx.log(f"{len(audited)} faces attacked; gallery of {len(faces)} faces")
    embeddings, same_photo, stats = {}, {}, {}
    for name, recognizer in recognizers.items():
        embedder = embedders[name]
        embeddings[name] = embedder(chips[name])
        chips[name] = []
        stats[f"{name}_original_embeddings_reused"] = embedder.hits
        stats[f"{name}_original_embeddings_computed"] = embedder.computed
        ctx.log(f"{name}: original embeddings reused from cache {embedder.hits}, computed {embedder.computed}")
        same_photo[name], pairs = same_photo_columns(recognizer, embeddings[name])
        for i, j, distance in pairs:
            a, b = faces[i], faces[j]
            people = "the same person" if a.identity == b.identity else f"labelled {a.identity} and {b.identity}"
            ctx.issue(
                "near_duplicate",
                a.image,
                None,
                f"{a.face_id} and {b.face_id} ({people}) are the same photo to {name} (distance {distance:.3f}, "
                f"threshold {recognizer.threshold.value}): neither counts as a competitor or as another photo of the other",
                "audited",
            )
    gallery = Gallery(faces, [GalleryEntry(face.face_id, face.identity, face.competes) for face in faces], embeddings, same_photo, alignments)  # type: ignore[arg-type]
    for face in faces:
        if face.identity is None and face.in_run:
            size = f"{min(face.geometry.width, face.geometry.height):.0f} px"
            role = (
                f"competes in other probes' rankings ({size} >= {MIN_COMPETITOR_FACE} px)"
                if face.competes
                else f"does not compete in other probes' rankings ({size} < {MIN_COMPETITOR_FACE} px: a hub for degraded probes)"
            )
            ctx.issue("unlabelled_face", face.face_id, None, f"not the named person of its photo: audited as nobody's face; {role}", "audited")
    unreadable = [i.path for i in ctx.issues if i.kind in UNREAD_ISSUES and i.method is None and not i.path.startswith("gallery:")]
    return Inputs(audited, originals, gallery, paths, unreadable, stats, duplicates)
