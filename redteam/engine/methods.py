"""The methods stage: what each audited method is and what the attacker knows about it.

A reference method is applied on the fly from its spec. An observed folder may declare its method (a
`redteam-anonymize.json` record) or have it identified from its pairs (Kerckhoffs: the attacker knows
the tool); otherwise it is a black box. Set-level methods (k-Same) are fitted on the whole gallery.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from redteam.anonymize import read_declared_spec
from redteam.anonymizers import Anonymizer, FaceSet, build_method
from redteam.cache import content_key
from redteam.core.config import MethodSource
from redteam.core.errors import ConfigError, InputError, UsageError
from redteam.core.geometry import FaceGeometry
from redteam.core.results import FaceRecord, Identification
from redteam.core.seeds import image_seed
from redteam.datasets import Counterparts
from redteam.engine.context import RunContext
from redteam.engine.handles import ImageHandle, open_image
from redteam.engine.identify import MAX_PAIRS, MAX_RESIDUAL, Pair, from_record, identify, to_record
from redteam.engine.identify import code_fingerprint as identify_code_fingerprint
from redteam.images import hidden_content, load_image


@dataclass(frozen=True)
class Method:
    """One audited method: where its images come from, and its operator when known."""

    source: MethodSource
    reference: Anonymizer | None

    @property
    def name(self) -> str:
        return self.source.name


def resolve(ctx: RunContext) -> list[Method]:
    """Validate the configured methods: unique names, parseable specs, existing folders, declared specs."""
    if not ctx.config.methods:
        raise UsageError("no method to audit", fix="give --anonymized NAME=DIR, --method NAME=SPEC or --manifest CSV")
    names = [m.name for m in ctx.config.methods]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UsageError(f"method name(s) used twice: {', '.join(duplicates)}", fix="give each method a unique NAME")
    resolved = []
    for source in ctx.config.methods:
        if source.kind == "reference" and not source.spec:
            raise ConfigError(f"reference method '{source.name}' has no spec", fix="give --method NAME=SPEC")
        if source.kind == "observed" and source.folder is not None and not source.folder.is_dir():
            raise InputError(f"anonymized folder {source.folder} for method '{source.name}' does not exist", fix="check the path")
        if source.kind == "observed" and source.folder is not None:
            declared = read_declared_spec(source.folder)
            if declared is not None:
                ctx.log(f"{source.name}: {source.folder} declares its method: {declared}")
                source = replace(source, spec=declared, spec_origin="declared")
        reference = build_method(source.spec) if source.spec else None
        if reference is not None:
            source = replace(source, spec=reference.spec)  # canonical spec in every report
        resolved.append(Method(source, reference))
    return resolved


def anonymized_path(ctx: RunContext, source: MethodSource, rel: str) -> Path | None:
    """The observed method's file for original `rel` (mirrored folder, listed once per run, or manifest)."""
    if source.folder is not None:
        if source.folder not in ctx.counterparts:
            ctx.counterparts[source.folder] = Counterparts(source.folder)
        return ctx.counterparts[source.folder].find(rel)
    return dict(source.files).get(rel)


def _hidden_content(ctx: RunContext, path: Path) -> tuple[str, ...]:
    """`redteam.images.hidden_content`, kept in the cache under the hash of the file's bytes (finding a PNG's
    EXIF block means decoding it: a warm re-run should not)."""
    from redteam.engine.handles import DECODER_VERSION

    def cached(sha256: str) -> tuple[str, tuple[str, ...] | None]:
        key = content_key(sha256, "hidden-content-v3", DECODER_VERSION)
        entry = ctx.cache.get_json("hidden_content", key)
        return key, tuple(entry) if isinstance(entry, list) and all(isinstance(item, str) for item in entry) else None

    known = ctx.known_sha256(path)  # hashed earlier in this run (identification): the bytes are read only on a miss
    if known is not None and (hit := cached(known)[1]) is not None:
        return hit
    try:
        data, sha256 = ctx.read(path)
    except InputError:
        return ()  # unreadable: reported by the pass
    key, hit = cached(sha256)
    if hit is not None:
        return hit
    found = hidden_content(path, data)
    ctx.cache.put_json("hidden_content", key, list(found))
    return found


def hidden_content_blockers(ctx: RunContext, source: MethodSource, images: Sequence[str]) -> tuple[list[str], set[str]]:
    """Scan an observed method's files for content beyond the audited pixels (EXIF or XMP preview, more
    frames or pages, images in text, pixels under transparency, identifying metadata), and for parts that
    could not be inspected (`redteam.images.hidden_content`: fail closed). Each file is an input issue; any
    of them is a reason this method cannot PASS (the visible pixels are not all that was published).
    Returns the reasons and the images whose files carry such content."""
    if source.kind != "observed":
        return [], set()
    carriers = []
    for rel in images:
        path = anonymized_path(ctx, source, rel)
        found = _hidden_content(ctx, path) if path is not None else ()
        if found:
            carriers.append(rel)
            ctx.issue("hidden_content", rel, source.name, "; ".join(found), "method cannot PASS")
    if not carriers:
        return [], set()
    ctx.log(f"{source.name}: {len(carriers)} anonymized file(s) carry content beyond the audited pixels")
    return [
        f"{len(carriers)} anonymized file(s) carry content beyond the pixels audited (EXIF or XMP preview, extra frames or pages, "
        "an image in a text chunk or comment, pixels under transparency, GPS position, owner or serial number) or could not be "
        f"inspected in full: see input issues, e.g. {', '.join(carriers[:3])}; "
        "strip it (re-encode the pixels only, without metadata) and audit again"
    ], set(carriers)


#: The fix of an observed folder's sub-folder that cannot be listed.
UNREADABLE_FOLDER_FIX = "make the folder readable (e.g. chmod u+rx) and audit again"


def unmatched_files(ctx: RunContext, source: MethodSource, originals: Sequence[str]) -> None:
    """Sub-folders of an observed folder that cannot be listed: input issues, so a file the user expected to
    be audited is never dropped without a word. (Images that mirror no audited original are audited for
    leaks as extra files: `redteam.engine.leaks`.)"""
    if source.folder is None:
        return
    folder = source.folder
    unreadable: list[tuple[str, str]] = []
    ctx.listing(folder, "anonymized", unreadable)
    for rel, reason in unreadable:
        where = folder / rel
        detail = f"folder {where} cannot be read ({reason}): its files are not audited"
        ctx.issue("unreadable", f"{source.name}:{rel}/", source.name, detail, "skipped", UNREADABLE_FOLDER_FIX)
        ctx.log(f"{source.name}: folder {where} cannot be read ({reason}): its files are not audited")


def needs_identification(ctx: RunContext, method: Method) -> bool:
    """Whether the run fits this method's operator: an observed folder that declares none, with `--identify`."""
    return ctx.config.identify and method.source.kind == "observed" and method.reference is None


def fit_pairs(
    ctx: RunContext, method: Method, faces: Sequence[FaceRecord], paths: dict[str, Path]
) -> tuple[str, list[tuple[str, ImageHandle, ImageHandle]], dict[str, tuple[FaceGeometry, ...]]]:
    """The pairs an observed folder's operator is fitted on (its first MAX_PAIRS with a same-size
    counterpart), their faces, and the cache key of the fit on them."""
    by_image: dict[str, list[FaceRecord]] = {}
    for face in faces:
        by_image.setdefault(face.image, []).append(face)
    chosen: list[tuple[str, ImageHandle, ImageHandle]] = []
    for rel in sorted(by_image):
        path = anonymized_path(ctx, method.source, rel)
        if path is None or not path.is_file():
            continue
        try:  # problems are recorded by the audit pass itself
            original = open_image(paths[rel], ctx.cache, ctx.sha256(paths[rel]))
            anonymized = open_image(path, ctx.cache, ctx.sha256(path))
        except InputError:
            continue
        if anonymized.shape == original.shape:
            chosen.append((rel, original, anonymized))
        if len(chosen) >= MAX_PAIRS:
            break
    geometry = {rel: tuple(f.geometry for f in by_image[rel]) for rel, _, _ in chosen}
    key = content_key(
        "identification/1",
        identify_code_fingerprint(),
        json.dumps([[rel, o.digest, a.digest, [g.to_json() for g in geometry[rel]]] for rel, o, a in chosen]),
    )
    return key, chosen, geometry


def identification_cached(ctx: RunContext, method: Method, faces: Sequence[FaceRecord], paths: dict[str, Path]) -> bool:
    """Whether the cache holds the fit `identify_observed` would make for this folder (then it fits nothing)."""
    key, _, _ = fit_pairs(ctx, method, faces, paths)
    return from_record(ctx.cache.get_json("identifications", key)) is not None


def identify_observed(ctx: RunContext, method: Method, faces: Sequence[FaceRecord], paths: dict[str, Path]) -> tuple[Method, Identification]:
    """Fit the operator of an observed folder from its first pairs; a fit within the residual limit makes
    the method count as declared (spec_origin "identified"): the adaptive tier then runs against it."""
    key, chosen, geometry = fit_pairs(ctx, method, faces, paths)
    entry = ctx.cache.get_json("identifications", key)
    result = from_record(entry) if entry is not None else None
    if entry is not None and result is None:
        ctx.log(f"{method.name}: the cached identification {key[:12]} is malformed: fitted again")
    if result is None:  # not fitted on these pairs by this code yet: fitted (decoding the pairs) and stored
        try:
            pairs = [Pair(rel, o.pixels, a.pixels, geometry[rel]) for rel, o, a in chosen]
        except InputError as error:  # a file changed since it was hashed: the pass reports it
            ctx.log(f"{method.name}: not identified: {error.message}")
            pairs = []
        with ctx.clock.measure("identify"):
            try:
                result = identify(pairs)
            except Exception as error:  # noqa: BLE001 - a fit that breaks leaves the folder unknown (fail closed), never the run
                reason = f"the operator fit failed ({type(error).__name__}: {error}): treated as unknown"
                result = Identification(None, math.nan, False, (), (), reason, MAX_RESIDUAL)
                pairs = []  # not cached: the next run fits again
        if len(pairs) == len(chosen):
            ctx.cache.put_json("identifications", key, to_record(result))
    ctx.log(f"{method.name}: {result.reason}")
    if not result.identified or result.spec is None:
        return method, result
    reference = build_method(result.spec)
    return Method(replace(method.source, spec=reference.spec, spec_origin="identified"), reference), result


class _LazyImages(Sequence[np.ndarray]):
    """The gallery's images decoded on access, so fitting a set-level method holds one at a time."""

    def __init__(self, labels: list[str], paths: dict[str, Path]) -> None:
        self.labels, self.paths = labels, paths

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
        return load_image(self.paths[self.labels[index]]).pixels

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[i] for i in range(len(self)))


def fit(ctx: RunContext, method: Method, faces: Sequence[FaceRecord], paths: dict[str, Path]) -> None:
    """Fit a set-level method (k-Same) on every face of the gallery, originals and distractors."""
    if method.reference is None or not method.reference.needs_fit:
        return
    by_image: dict[str, list] = {}
    for face in faces:
        by_image.setdefault(face.image, []).append(face.geometry)
    labels = sorted(by_image)
    face_set = FaceSet(images=_LazyImages(labels, paths), faces=tuple(tuple(by_image[label]) for label in labels))  # type: ignore[arg-type]
    with ctx.clock.measure("anonymize"):
        method.reference.fit(face_set, torch.Generator().manual_seed(image_seed(ctx.config.seed, "fit")))
