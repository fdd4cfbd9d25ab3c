"""The inputs stage: read the originals and the gallery once, check them, find their faces, align and
embed them, and build the identification gallery.

Each image is decoded once here and dropped as soon as its faces are embedded (later stages decode it
again when they need it), so memory does not grow with the number of images. Every problem is an input
issue with its file and its effect (README, "Input layout").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metrics.recognizers import Recognizer
from redteam.core.errors import InputError
from redteam.core.results import UNREAD_ISSUES, FaceRecord
from redteam.datasets import LINK_OUTSIDE, Dataset, discover_images
from redteam.engine.context import RunContext
from redteam.engine.embedding import Embedder, Gallery
from redteam.engine.scoring import GalleryEntry, same_photo_columns


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
    """

    audited: list[FaceRecord]
    originals: list[FaceRecord]
    gallery: Gallery
    paths: dict[str, Path]
    unreadable: list[str]
    embedding_stats: dict[str, int]


def _faces_of(
    ctx: RunContext,
    dataset: Dataset,
    role: str,
    overrides: dict[str, str],
    recognizers: dict[str, Recognizer],
    seen: dict[str, str],
    chips: dict[str, list[np.ndarray]],
    alignments: dict[str, dict[str, object]],
    paths: dict[str, Path],
) -> list[FaceRecord]:
    faces: list[FaceRecord] = []
    for ignored in dataset.ignored:
        ctx.issue("unsupported_file", f"{role}:{ignored}" if role != "originals" else ignored, None, "not a supported image type", "skipped")
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
            continue
        ctx.input_hashes[label] = image.sha256
        geometries = ctx.detect(lambda: image.pixels, image.sha256)  # noqa: B023 - called here, within this iteration
        if not geometries:
            minimum = ctx.config.detector.min_face_size
            ctx.issue("no_face", label, None, f"no face detected on the original (faces under {minimum} px are below the detector's minimum)", "skipped")
            continue
        identity: str | None = overrides.get(entry.rel, entry.identity)
        if role != "originals":
            identity = f"{role}:{identity}"  # distractors never merge with the originals' people by name
        if len(geometries) > 1:
            ctx.issue("multi_face", label, None, f"{len(geometries)} faces: each audited", "audited")
        paths[label] = entry.path
        for index, geometry in enumerate(geometries):
            face_identity = identity
            if len(geometries) > 1:
                # A folder names one person; which face is that person is unknown in a group photo.
                face_identity = None if dataset.identities_known else f"{identity}#{index}"
            face = FaceRecord(f"{label}#{index}", label, index, face_identity, geometry, role == "originals")
            faces.append(face)
            for name, recognizer in recognizers.items():
                with ctx.clock.measure("inference"):
                    alignment = recognizer.locate(image.pixels, geometry)
                alignments[name][face.face_id] = alignment
                chips[name].append(recognizer.crop(image.pixels, alignment))
    return faces


def collect(ctx: RunContext, recognizers: dict[str, Recognizer]) -> Inputs:
    """Read originals (and `--gallery` distractors), embed their faces, and build the gallery."""
    config = ctx.config
    seen: dict[str, str] = {}
    chips: dict[str, list[np.ndarray]] = {name: [] for name in recognizers}
    alignments: dict[str, dict[str, object]] = {name: {} for name in recognizers}
    paths: dict[str, Path] = {}
    originals = _faces_of(
        ctx, discover_images(config.originals, role="originals"), "originals", dict(config.identity_overrides), recognizers, seen, chips, alignments, paths
    )
    distractors: list[FaceRecord] = []
    if config.gallery is not None:
        distractors = _faces_of(ctx, discover_images(config.gallery, role="gallery"), "gallery", {}, recognizers, seen, chips, alignments, paths)
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
        embedder = Embedder(recognizer, ctx.cache, ctx.clock, config.batch_size)
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
    gallery = Gallery(faces, [GalleryEntry(face.face_id, face.identity) for face in faces], embeddings, same_photo, alignments)  # type: ignore[arg-type]
    unreadable = [i.path for i in ctx.issues if i.kind in UNREAD_ISSUES and i.method is None and not i.path.startswith("gallery:")]
    return Inputs(audited, originals, gallery, paths, unreadable, stats)
