"""The probes stage: one pass over the images, each decoded once, for every method and attack at once.

For each image: its anonymized version per method (applied on the fly, or read from the observed
folder), whether its faces are still detectable, each attack's reconstruction of each face's window
(pasted back, then cropped with the ORIGINAL's geometry), the recognizers' embeddings of the result
and its image-quality columns. Each (method, image, attack) result is stored in the cache as soon as
it is computed: a killed run resumes from there, and a second run of the same audit computes no
reconstruction at all. Only embeddings, a few numbers per probe and a bounded set of example crops
are kept in memory, so memory does not grow with the images' size or number beyond that.
"""

from __future__ import annotations

import heapq
import io
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from attacks import Attack, AttackNotApplicable, MethodInfo
from attacks.hidden import HiddenContentAttack
from metrics.columns import METRIC_CROP, QUALITY_COLUMNS, LPIPSColumn, QualityColumn
from redteam.cache import Cache, content_key
from redteam.core.errors import InputError
from redteam.core.geometry import Box, attack_window, box_crop, match_detections
from redteam.core.results import ExampleFace, FaceRecord
from redteam.core.seeds import derived_seed, image_seed
from redteam.core.tensors import to_tensor, to_uint8
from redteam.datasets import LINK_OUTSIDE
from redteam.engine import face_operator
from redteam.engine.context import RunContext
from redteam.engine.embedding import Embedder
from redteam.engine.face_operator import FaceOperator
from redteam.engine.handles import ImageHandle, LazyCrops
from redteam.engine.inputs import Inputs
from redteam.engine.methods import UNREADABLE_FOLDER_FIX, Method, anonymized_path
from redteam.engine.models import Models
from redteam.images import hidden_images, load_image

PROBE_VERSION = "probe/1"
#: Attacks marked `works_at_any_scale` see a face at most this many times the largest chip the
#: recognizers (and the quality columns) consume; larger faces are attacked on a shrunk window.
SCALE_CAP = 2.0


#: Prefix of the refusal reason of a face whose attack raised an unexpected error (never cached).
FAILED = "the attack failed: "


@dataclass(frozen=True)
class CachedCrop:
    """A crop kept in the cache ("example_crops": an .npy array; "probe_crops": JPEG bytes), read only if
    its face is among the examples finally shown: a warm re-run reads no crop of a face the example heap
    later drops."""

    kind: str
    key: str


#: A crop in memory (made during this run) or in the cache.
Crop = np.ndarray | CachedCrop


@dataclass(frozen=True)
class PendingExample:
    """An `ExampleFace` whose crops may still be in the cache (`resolve_example` reads them)."""

    method: str
    face_id: str
    original: Crop
    anonymized: Crop
    reconstructions: tuple[tuple[str, Crop], ...]
    similarity: tuple[tuple[str, str, float], ...]


@dataclass
class Probe:
    """One attacked face of one method x attack: what scoring and the reports need, nothing more."""

    face: FaceRecord
    embeddings: dict[str, np.ndarray]
    spread: dict[str, float]
    quality: dict[str, float | None]
    detected: bool
    anonymized_sha256: str
    seconds: float


@dataclass
class MethodWork:
    """What one method accumulates during the pass."""

    method: Method
    info: MethodInfo
    attacks: list[Attack]
    probes: dict[str, list[Probe]] = field(default_factory=dict)
    parrot: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # recognizer -> face id -> anonymized embedding
    gaps: dict[str, list[str]] = field(default_factory=dict)  # reason -> face ids without results
    attack_seconds: dict[str, float] = field(default_factory=dict)
    examples: list[tuple[float, str, PendingExample]] = field(default_factory=list)  # a min-heap of the riskiest faces
    reused: int = 0
    computed: int = 0
    hidden: frozenset[str] = frozenset()  # images whose anonymized file carries a hidden image (audited by `hidden_content`)
    face_operators: dict[str, FaceOperator] = field(default_factory=dict)  # face id -> its own operator (an identified folder)

    @property
    def needs_parrot(self) -> bool:
        return any(attack.gallery_domain == "anonymized" for attack in self.attacks)


def _encode(crop: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(crop).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.uint8)


class Pass:
    """One pass over the images for every method (see the module docstring)."""

    def __init__(self, ctx: RunContext, inputs: Inputs, models: Models, works: list[MethodWork]) -> None:
        self.ctx, self.inputs, self.models, self.works = ctx, inputs, models, works
        self.embedders = {name: Embedder(r, ctx.cache, ctx.clock, ctx.config.batch_size) for name, r in models.recognizers.items()}
        self.columns: list[QualityColumn] = [
            LPIPSColumn(models.lpips) if cls is LPIPSColumn else cls()  # type: ignore[call-arg,arg-type]
            for cls in QUALITY_COLUMNS.values()
            if not cls.model or (cls.model == "lpips" and models.lpips is not None)
        ]
        self.gallery_index = inputs.gallery.index
        self._position = (0, 1)  # (images done, images in all) of the pass running now: for progress
        self.audited = {face.face_id for face in inputs.audited}
        self.largest_chip = max([r.crop_size for r in models.recognizers.values()] + [METRIC_CROP])
        self._models_key = json.dumps(
            {name: r.fingerprint for name, r in models.recognizers.items()}
            | {"columns": [c.name for c in self.columns], "lpips": models.lpips.fingerprint if models.lpips is not None else None},
            sort_keys=True,
        )

    # -- the pass ---------------------------------------------------------------------------------
    def labels(self) -> list[tuple[str, list[FaceRecord], list[FaceRecord]]]:
        """The images to process, in order: (label, its gallery faces, its audited faces)."""
        by_image: dict[str, list[FaceRecord]] = {}
        for face in self.inputs.gallery.faces:
            by_image.setdefault(face.image, []).append(face)
        parrot = any(w.needs_parrot for w in self.works)
        work = []
        for label in sorted(by_image):
            audited = [f for f in by_image[label] if f.face_id in self.audited]
            if audited or parrot:
                work.append((label, by_image[label], audited))
        return work

    def run(self, labels: list[tuple[str, list[FaceRecord], list[FaceRecord]]] | None = None, *, until_computed: bool = False) -> int:
        """Process the images here, in this process (see `redteam.engine.executors` for workers); returns
        how many were processed. With `until_computed`, stop after the first image that needed any
        computation (model inference, an attack, a method applied): the images before it were all read
        from the cache, and what remains is worth handing to workers."""
        todo = self.labels() if labels is None else labels
        for done, (label, faces, audited) in enumerate(todo, start=1):
            self._position = (done - 1, len(todo))
            before = self._computed()
            self._image(label, faces, audited)
            self.ctx.progress(f"attacking {len(self.works)} method(s)", done, len(todo))
            if done == 1:
                self._announce_cost(sum(len(audited) for _, _, audited in todo))
            if until_computed and self._computed() > before:
                return done
        return len(todo)

    def _computed(self) -> float:
        """A measure that grows whenever anything is computed rather than read from the cache."""
        seconds = self.ctx.clock.seconds
        return sum(w.computed for w in self.works) + sum(seconds.get(c, 0.0) for c in ("inference", "attack", "anonymize"))

    def _announce_cost(self, attacked_faces: int) -> None:
        """After the first image, the cost per face of each costly attack, and what attacking every audited
        face will take (images of the gallery that are only anonymized for the parrot tier are not attacked)."""
        for work in self.works:
            faces = max(1, len({p.face.face_id for probes in work.probes.values() for p in probes}))
            costly = {a: t / faces for a, t in work.attack_seconds.items() if t / faces >= 1.0}
            if costly:
                estimate = sum(costly.values()) * attacked_faces
                self.ctx.log(
                    f"{work.method.name}: "
                    + ", ".join(f"{a} ~{t:.1f} s/face" for a, t in sorted(costly.items(), key=lambda i: -i[1]))
                    + f" (about {estimate / 60:.0f} min for the {attacked_faces} attacked faces at this rate)"
                )

    def _image(self, label: str, faces: list[FaceRecord], audited: list[FaceRecord]) -> None:
        """Every method and attack on one image. Its pixels (and each method's output) are decoded or
        made only when something is not in the cache: a warm re-run hashes the files and reads results.
        Whether each face is still detectable is found for every method at once (one batched detector call)."""
        path = self.inputs.paths[label]
        original = self.ctx.open(path, label, None)  # read before (issues recorded then)
        if original is None:
            return
        boxes = {face.face_id: face.geometry.box for face in audited}
        original_crops = LazyCrops(boxes, lambda face_id: box_crop(original.pixels, boxes[face_id], METRIC_CROP))
        outputs: dict[int, ImageHandle] = {}
        for index, work in enumerate(self.works):
            try:
                anonymized = self._anonymized(work, label, faces, audited, original)
            except InputError as error:
                self._lost(work, label, audited, error)
                continue
            if anonymized is not None:
                outputs[index] = anonymized
        try:
            detected = self._detected(outputs, audited)
        except InputError as error:  # a file changed under the audit: that image's evidence is lost
            for index in outputs:
                self._lost(self.works[index], label, audited, error)
            return
        for index, anonymized in outputs.items():
            work = self.works[index]
            try:
                self._attacks(work, label, faces, audited, anonymized, original, original_crops, boxes, detected[index])
            except InputError as error:
                self._lost(work, label, audited, error)

    def _lost(self, work: MethodWork, label: str, audited: list[FaceRecord], error: InputError) -> None:
        self.ctx.issue(error.issue_kind, label, work.method.name, error.message, "skipped", error.fix)
        work.gaps.setdefault("unreadable during the audit", []).extend(face.face_id for face in audited)

    def _attacks(
        self,
        work: MethodWork,
        label: str,
        faces: list[FaceRecord],
        audited: list[FaceRecord],
        anonymized: ImageHandle,
        original: ImageHandle,
        original_crops: LazyCrops,
        boxes: dict[str, tuple[float, float, float, float]],
        detected: dict[str, bool],
    ) -> None:
        if work.needs_parrot:
            self._parrot(work, faces, anonymized.pixels)
        if not audited:
            return
        self._fit_face_operators(work, label, faces, anonymized, original)
        anonymized_crops = LazyCrops(boxes, lambda face_id: box_crop(anonymized.pixels, boxes[face_id], METRIC_CROP))
        reconstructions: dict[str, Mapping[str, Crop]] = {}  # attack -> face id -> attacked crop
        fresh: dict[str, dict[str, Probe]] = {}  # face id -> attack -> this image's probe
        for attack in work.attacks:
            before = len(work.probes.get(attack.name, []))
            if attack.name == HiddenContentAttack.name:
                hidden = self._hidden(work, label, anonymized.shape)
                if hidden is None:
                    continue
                seen = self._detected({0: hidden}, audited)[0]
                reconstructions[attack.name] = self._attack(work, attack, label, faces, audited, hidden, original_crops, seen)
            else:
                reconstructions[attack.name] = self._attack(work, attack, label, faces, audited, anonymized, original_crops, detected)
            for probe in work.probes.get(attack.name, [])[before:]:
                fresh.setdefault(probe.face.face_id, {})[attack.name] = probe
        examples_original = LazyCrops(boxes, lambda face_id: self._example_crop(original, boxes[face_id], lambda: original_crops[face_id]))
        examples_anonymized = LazyCrops(boxes, lambda face_id: self._example_crop(anonymized, boxes[face_id], lambda: anonymized_crops[face_id]))
        self._keep_examples(work, audited, fresh, examples_original, examples_anonymized, reconstructions)

    def _fit_face_operators(self, work: MethodWork, label: str, faces: list[FaceRecord], anonymized: ImageHandle, original: ImageHandle) -> None:
        """For a folder whose operator was identified, each face's own operator (its region from the
        difference, its strength fitted on it: `redteam.engine.face_operator`), cached per image pair, for
        the adaptive attacks; nothing for other methods or when no attack needs the operator."""
        reference = work.method.reference
        if work.method.source.spec_origin != "identified" or reference is None or not any(a.needs_known_method for a in work.attacks):
            return
        key = content_key(
            face_operator.code_fingerprint(), reference.spec, original.digest, anonymized.digest, json.dumps([f.geometry.to_json() for f in faces])
        )
        found = face_operator.read_operators(self.ctx.cache.get_json("face_operators", key), len(faces))
        if found is None:  # not fitted yet on this pair by this code (or a damaged entry): fitted and stored
            with self.ctx.clock.measure("identify"):
                found = face_operator.fit_face_operators(reference, original.pixels, anonymized.pixels, [f.geometry for f in faces])
            self.ctx.cache.put_json("face_operators", key, [f.to_json() if f is not None else None for f in found])
        for face, operator in zip(faces, found, strict=True):
            if operator is not None:
                work.face_operators[face.face_id] = operator
        own = [f"{face.face_id}: {op.method.stages[0].spec}" for face, op in zip(faces, found, strict=True) if op is not None and op.source == "face"]
        if own:
            self.ctx.log(f"{work.method.name}: {label}: fitted on the face itself: " + "; ".join(own))

    def _hidden(self, work: MethodWork, label: str, shape: tuple[int, ...]) -> ImageHandle | None:
        """The first image the anonymized file carries besides its visible pixels (EXIF thumbnail, XMP
        preview, colour under transparency, another frame), at the original's size; None if it has none."""
        path = anonymized_path(self.ctx, work.method.source, label) if label in work.hidden else None
        found = hidden_images(path) if path is not None else []
        if not found:
            return None
        kind, pixels = found[0]
        if pixels.shape[:2] != shape[:2]:
            pixels = _resized(pixels, shape)
        self.ctx.log(f"{work.method.name}: {label} carries a hidden image ({kind}): audited as attack '{HiddenContentAttack.name}'")
        return ImageHandle.of(pixels)

    def _anonymized(self, work: MethodWork, label: str, faces: list[FaceRecord], audited: list[FaceRecord], original: ImageHandle) -> ImageHandle | None:
        """The method's output for this image, or None (a gap for its audited faces, with the issue)."""
        source, reference = work.method.source, work.method.reference
        if source.kind == "observed" and faces[0].in_run:
            handle, gap = self._observed(work, label, original)
            if handle is not None or not audited:
                return handle
            work.gaps.setdefault(gap, []).extend(face.face_id for face in audited)
            return None
        if reference is None:
            return None  # a distractor of an observed method with no known operator: not in its parrot gallery
        generator = torch.Generator().manual_seed(image_seed(self.ctx.config.seed, label))
        with self.ctx.clock.measure("anonymize"):
            return ImageHandle.of(reference.apply(original.pixels, [f.geometry for f in faces], generator))

    def _observed(self, work: MethodWork, rel: str, original: ImageHandle) -> tuple[ImageHandle | None, str]:
        """The user's anonymized image for `rel` at the original's size, or None and why."""
        source, ctx = work.method.source, self.ctx
        path = anonymized_path(ctx, source, rel)
        if path is None and source.folder is not None and rel in ctx.counterparts[source.folder].outside:
            ctx.issue("link_outside", rel, source.name, LINK_OUTSIDE, "skipped")
            return None, "link_outside"
        if path is None and source.folder is not None and rel in ctx.counterparts[source.folder].unreadable:
            ctx.issue("unreadable", rel, source.name, ctx.counterparts[source.folder].unreadable[rel], "skipped", UNREADABLE_FOLDER_FIX)
            return None, "unreadable anonymized file"
        if path is None or not path.exists():
            ctx.issue("missing_counterpart", rel, source.name, "no anonymized file", "skipped")
            return None, "missing_counterpart"
        image = ctx.open(path, f"{source.name}:{rel}", source.name)
        if image is None:
            return None, "unreadable anonymized file"
        ctx.input_hashes[f"{source.name}:{rel}"] = image.sha256
        if "exif_orientation" in image.conversions:
            image = self._best_orientation(work, rel, path, image, original)
        if image.shape == original.shape:
            return image, ""
        height, width = original.shape[:2]
        size = f"{image.shape[1]}x{image.shape[0]} vs original {width}x{height}"
        if abs((image.shape[1] / image.shape[0]) / (width / height) - 1.0) > ctx.config.size_tolerance:
            ctx.issue("size_mismatch", rel, source.name, f"aspect ratio differs ({size})", "skipped")
            return None, "size_mismatch"
        ctx.issue("resized", rel, source.name, f"resized to the original's size ({size})", "audited")
        return ImageHandle.of(_resized(image.pixels, original.shape)), ""

    def _best_orientation(self, work: MethodWork, rel: str, path: Path, oriented: ImageHandle, original: ImageHandle) -> ImageHandle:
        """An anonymized file with an EXIF orientation tag, as displayed or as stored: whichever has the
        original's geometry and, when both do (a square), matches the original's pixels more closely. The
        tag is metadata an attacker can drop, so the audit compares like with like (recorded as an issue)."""
        stored = load_image(path, orient=False).pixels
        fits = [p for p in (oriented.pixels, stored) if p.shape == original.shape]
        if not fits:
            return oriented
        best = min(fits, key=lambda p: float(np.abs(p.astype(np.int16) - original.pixels.astype(np.int16)).mean()))
        if best is stored:
            self.ctx.issue(
                "exif_orientation_ignored", rel, work.method.source.name, "its stored pixels, not the EXIF-rotated ones, match the original", "audited"
            )
            return ImageHandle.of(stored)
        return oriented

    def _detected(self, outputs: dict[int, ImageHandle], faces: list[FaceRecord]) -> dict[int, dict[str, bool]]:
        """Per method (index -> face id -> flag): whether MTCNN still finds each face (IoU >= 0.5 with its
        original box). It searches the face's neighbourhood (its box grown by half), which is where a match
        can be, rather than the whole image, and only for faces at least half as wide as the original's (a
        box with IoU >= 0.5 has at least half its area, so a side at least 0.71 of it): the detector's
        pyramid skips the scales of smaller faces. Every method's output has the original's size, so the
        neighbourhoods have one size and the detections not in the cache run as one batch."""
        flags: dict[int, dict[str, bool]] = {index: {} for index in outputs}
        if not outputs:
            return flags
        height, width = next(iter(outputs.values())).shape[:2]
        for face in faces:
            x0, y0, x1, y1 = face.geometry.box
            gx, gy = (x1 - x0) / 2, (y1 - y0) / 2
            cx0, cy0 = max(0, int(x0 - gx)), max(0, int(y0 - gy))
            cx1, cy1 = min(width, int(np.ceil(x1 + gx))), min(height, int(np.ceil(y1 + gy)))
            smallest = int(min(x1 - x0, y1 - y0) / 2)
            keys = {index: content_key(handle.digest, f"{cx0},{cy0},{cx1},{cy1}") for index, handle in outputs.items()}
            found = {index: self.ctx.cached_detection(key, smallest) for index, key in keys.items()}
            missing = [index for index, faces_found in found.items() if faces_found is None]
            if missing:
                crops = [np.ascontiguousarray(outputs[index].pixels[cy0:cy1, cx0:cx1]) for index in missing]
                self.ctx.load_detector()
                with self.ctx.clock.measure("inference"):
                    results = self.ctx.detector.detect_batch(crops, smallest)
                for index, fresh in zip(missing, results, strict=True):
                    self.ctx.store_detection(keys[index], fresh, smallest)
                    found[index] = fresh
            for index, known in found.items():
                moved = [replace(f, box=(f.box[0] + cx0, f.box[1] + cy0, f.box[2] + cx0, f.box[3] + cy0)) for f in known or []]
                flags[index][face.face_id] = match_detections([face.geometry], moved)[0]
        return flags

    def _parrot(self, work: MethodWork, faces: list[FaceRecord], anonymized: np.ndarray) -> None:
        for name, recognizer in self.models.recognizers.items():
            alignments = self.inputs.gallery.alignments[name]
            chips = [recognizer.crop(anonymized, alignments[face.face_id]) for face in faces]
            for face, embedding in zip(faces, self.embedders[name](chips), strict=True):
                work.parrot.setdefault(name, {})[face.face_id] = embedding.numpy()

    # -- one attack on one image --------------------------------------------------------------------
    def _key(self, work: MethodWork, attack: Attack, label: str, digest: str, faces: list[FaceRecord]) -> str:
        provenance = json.dumps(attack.provenance(work.info), sort_keys=True)
        geometry = json.dumps([face.geometry.to_json() for face in faces])
        operators = [work.face_operators[f.face_id].to_json() for f in faces if f.face_id in work.face_operators and attack.needs_known_method]
        return content_key(
            PROBE_VERSION,
            work.method.name,
            label,
            digest,
            attack.spec,
            attack.version,
            provenance,
            str(self.ctx.config.seed),
            geometry,
            self._models_key,
            str(SCALE_CAP),
            json.dumps(operators),
        )

    def _attack(
        self,
        work: MethodWork,
        attack: Attack,
        label: str,
        faces: list[FaceRecord],
        audited: list[FaceRecord],
        anonymized: ImageHandle,
        original_crops: Mapping[str, np.ndarray],
        detected: dict[str, bool],
    ) -> Mapping[str, Crop]:
        """Probes of `attack` for the audited faces of one image (from the cache when it has them);
        returns each probed face's attacked crop (in memory, or a reference to the cache)."""
        digest = anonymized.digest
        key = self._key(work, attack, label, digest, faces)
        cached = self._cached(key, audited)
        crops: Mapping[str, Crop]
        if cached is not None:
            work.reused += 1
            records, refused, seconds, crops = cached
        else:
            work.computed += 1
            done, total = self._position
            self.ctx.progress(f"attacking {len(self.works)} method(s) | {work.method.name}: {attack.name} on {label}", done, total)
            records, refused, seconds, crops = self._compute(work, attack, label, faces, audited, anonymized.pixels, original_crops)
            if not any(reason.startswith(FAILED) for reason in refused.values()):  # a failure is retried next run
                self._store(key, records, refused, seconds, crops)
        work.attack_seconds[attack.name] = work.attack_seconds.get(attack.name, 0.0) + seconds
        for face in audited:
            if face.face_id in refused:
                work.gaps.setdefault(f"attack '{attack.name}' not applicable: {refused[face.face_id]}", []).append(face.face_id)
                continue
            record = records[face.face_id]
            work.probes.setdefault(attack.name, []).append(
                Probe(
                    face=face,
                    embeddings={name: np.asarray(v, dtype=np.float32) for name, v in record["embeddings"].items()},
                    spread=record["spread"],
                    quality=record["quality"],
                    detected=detected[face.face_id],
                    anonymized_sha256=digest,
                    seconds=round(seconds / len(audited), 6),
                )
            )
        return crops

    def _compute(
        self,
        work: MethodWork,
        attack: Attack,
        label: str,
        faces: list[FaceRecord],
        audited: list[FaceRecord],
        anonymized: np.ndarray,
        original_crops: Mapping[str, np.ndarray],
    ) -> tuple[dict[str, dict], dict[str, str], float, dict[str, np.ndarray]]:
        generator = torch.Generator().manual_seed(derived_seed(self.ctx.config.seed, work.method.name, attack.name, label))
        began = time.perf_counter()
        with self.ctx.clock.measure("attack"):
            attacked, refused = self._reconstruct(attack, work, anonymized, faces, generator)
        seconds = time.perf_counter() - began
        probed = [face for face in audited if face.face_id not in refused]
        crops = {face.face_id: box_crop(attacked, face.geometry.box, METRIC_CROP) for face in probed}
        records: dict[str, dict] = {face.face_id: {"embeddings": {}, "spread": {}, "quality": {}} for face in probed}
        if probed:
            for name, recognizer in self.models.recognizers.items():
                alignments = self.inputs.gallery.alignments[name]
                chips = [recognizer.crop(attacked, alignments[face.face_id]) for face in probed]
                for face, chip, embedding in zip(probed, chips, self.embedders[name](chips), strict=True):
                    records[face.face_id]["embeddings"][name] = embedding.numpy().tolist()
                    records[face.face_id]["spread"][name] = float(np.asarray(chip, dtype=np.float64).std())
            attacked_stack = np.stack([crops[f.face_id] for f in probed])
            original_stack = np.stack([original_crops[f.face_id] for f in probed])
            for column in self.columns:
                with self.ctx.clock.measure("inference" if column.model else "metrics"):
                    values = column(attacked_stack, original_stack)
                for face, value in zip(probed, values, strict=True):
                    records[face.face_id]["quality"][column.name] = float(value)
        return records, refused, seconds, crops

    def _reconstruct(
        self, attack: Attack, work: MethodWork, anonymized: np.ndarray, faces: list[FaceRecord], generator: torch.Generator
    ) -> tuple[np.ndarray, dict[str, str]]:
        """Attack each face's window and paste the reconstruction back into a copy of the image; face id
        -> reason for the faces the attack cannot be applied to (nothing is pasted there). An attack that
        needs the operator gets the face's own (`MethodWork.face_operators`) where one was fitted."""
        info = work.info
        if not attack.reconstructs:
            return anonymized, {}
        out = np.array(anonymized, copy=True)
        refused: dict[str, str] = {}
        for face in faces:
            operator = work.face_operators.get(face.face_id) if attack.needs_known_method else None
            reference, region = (operator.method, operator.region) if operator is not None else (info.reference, None)
            x0, y0, x1, y1 = attack_window(anonymized.shape, face.geometry, reference, region)
            window = to_tensor(anonymized[y0:y1, x0:x1])
            context = replace(info, reference=reference, face=face.geometry, origin=(x0, y0), image_shape=anonymized.shape, region=region)
            scale = SCALE_CAP * self.largest_chip / max(face.geometry.width, 1.0)
            try:
                if attack.works_at_any_scale and scale < 1.0:
                    small = torch.nn.functional.interpolate(window, scale_factor=scale, mode="area", recompute_scale_factor=False)
                    shrunk = _resampled(context, small.shape[-1] / window.shape[-1], small.shape[-2] / window.shape[-2])
                    restored = torch.nn.functional.interpolate(
                        attack.reconstruct(small, method=shrunk, generator=generator), size=window.shape[-2:], mode="bicubic", align_corners=False
                    ).clamp(0.0, 1.0)
                else:
                    restored = attack.reconstruct(window, method=context, generator=generator)
            except AttackNotApplicable as reason:
                refused[face.face_id] = str(reason)
                continue
            except Exception as error:  # noqa: BLE001 - a failing attack costs that face's evidence, not the audit
                refused[face.face_id] = f"{FAILED}{type(error).__name__}: {error}"
                self.ctx.log(f"attack {attack.name} failed on {face.face_id}: {type(error).__name__}: {error} (that face has no result: no PASS)")
                continue
            if restored.shape != window.shape:
                raise RuntimeError(f"attack {attack.name} returned shape {tuple(restored.shape)} for {tuple(window.shape)}")
            out[y0:y1, x0:x1] = to_uint8(restored)
        return out, refused

    # -- the probe cache ----------------------------------------------------------------------------
    def _store(self, key: str, records: dict[str, dict], refused: dict[str, str], seconds: float, crops: dict[str, np.ndarray]) -> None:
        self.ctx.cache.put_json("probes", key, {"records": records, "refused": refused, "seconds": seconds})
        for face_id, crop in crops.items():
            self.ctx.cache.put_bytes("probe_crops", content_key(key, face_id), _encode(crop))

    def _cached(self, key: str, audited: list[FaceRecord]) -> tuple[dict[str, dict], dict[str, str], float, Mapping[str, Crop]] | None:
        """A stored result, checked: every audited face present or refused, finite embeddings of the right
        size for every recognizer, its crops present. A bad entry is recomputed with a log line. The crops
        are read only for the examples finally shown (`resolve_example`)."""
        entry = self.ctx.cache.get_json("probes", key)
        if entry is None:
            return None
        try:
            records, refused, seconds = entry["records"], entry["refused"], float(entry["seconds"])
            present = []
            for face in audited:
                if face.face_id in refused:
                    continue
                record = records[face.face_id]
                for name, recognizer in self.models.recognizers.items():
                    vector = np.asarray(record["embeddings"][name], dtype=np.float64)
                    if vector.shape != (recognizer.embedding_dim,) or not np.all(np.isfinite(vector)):
                        raise ValueError("embedding")
                    float(record["spread"][name])
                if not self.ctx.cache.has("probe_crops", content_key(key, face.face_id)):
                    raise ValueError("crop")
                present.append(face.face_id)
            if not math.isfinite(seconds):
                raise ValueError("seconds")
        except (KeyError, TypeError, ValueError, OSError):
            self.ctx.log(f"probe cache entry {key[:12]} is incomplete or malformed: recomputed")
            return None
        return records, refused, seconds, {face_id: CachedCrop("probe_crops", content_key(key, face_id)) for face_id in present}

    # -- examples ---------------------------------------------------------------------------------
    def _example_crop(self, image: ImageHandle, box: tuple[float, float, float, float], make: Callable[[], np.ndarray]) -> Crop:
        """The crop of an example face, kept in the cache under its image's pixel digest and box: a warm
        re-run shows the same examples without decoding the images they come from (or reading the crops
        of faces that do not stay among the examples)."""
        key = content_key(image.digest, f"example-crop-{METRIC_CROP}", ",".join(f"{v:.4f}" for v in box))
        if self.ctx.cache.has("example_crops", key, ".npy"):
            return CachedCrop("example_crops", key)
        crop = make()
        self.ctx.cache.put_array("example_crops", key, crop)
        return crop

    def _keep_examples(
        self,
        work: MethodWork,
        faces: list[FaceRecord],
        fresh: dict[str, dict[str, Probe]],
        original_crops: Mapping[str, Crop],
        anonymized_crops: Mapping[str, Crop],
        reconstructions: dict[str, Mapping[str, Crop]],
    ) -> None:
        """Keep the riskiest faces so far (closest to their own original under any clean attack),
        with their crops, in a bounded heap; the crops of a face that does not enter it are never made."""
        keep = 2 * self.ctx.config.examples_per_method
        if keep <= 0:
            return
        clean = {a.name for a in work.attacks if a.gallery_domain == "clean"}
        for face in faces:
            pairs, risk = [], -math.inf  # (attack, recognizer, attacked embedding, own embedding)
            for attack_name, probe in fresh.get(face.face_id, {}).items():
                if attack_name not in clean:
                    continue
                for name, recognizer in self.models.recognizers.items():
                    own = self.inputs.gallery.embeddings[name][self.gallery_index[face.face_id]].numpy()
                    distance = float(recognizer.distances(torch.from_numpy(probe.embeddings[name])[None], torch.from_numpy(own)[None])[0, 0])
                    pairs.append((attack_name, name, probe.embeddings[name], own))
                    risk = max(risk, 1.0 - distance / recognizer.threshold.value)
            if not pairs:
                continue
            if len(work.examples) >= keep and (risk, face.face_id) <= work.examples[0][:2]:
                continue  # not riskier than the least risky kept: neither its crops nor its similarities are needed
            similarity = [(a, name, float(np.dot(x, own) / (np.linalg.norm(x) * np.linalg.norm(own) + 1e-12))) for a, name, x, own in pairs]
            example = PendingExample(
                method=work.method.name,
                face_id=face.face_id,
                original=original_crops[face.face_id],
                anonymized=anonymized_crops[face.face_id],
                reconstructions=tuple(
                    (a, reconstructions[a][face.face_id]) for a in sorted(reconstructions) if a in clean and face.face_id in reconstructions[a]
                ),
                similarity=tuple(similarity),
            )
            item = (risk, face.face_id, example)  # the face id breaks ties: the same choice in any worker
            if len(work.examples) < keep:
                heapq.heappush(work.examples, item)
            else:
                heapq.heappushpop(work.examples, item)


def _resampled(info: MethodInfo, sx: float, sy: float) -> MethodInfo:
    """`info` for a window resampled by `sx` across and `sy` down: the face, the window's corner and the
    image's shape in the coordinates of the pixels the attack is given."""
    shape = info.image_shape
    return replace(
        info,
        face=info.face.scaled(sx, sy) if info.face is not None else None,
        origin=(round(info.origin[0] * sx), round(info.origin[1] * sy)),
        image_shape=(round(shape[0] * sy), round(shape[1] * sx), *shape[2:]) if shape is not None else None,
        region=_scaled_box(info.region, sx, sy) if info.region is not None else None,
    )


def _scaled_box(box: Box, sx: float, sy: float) -> Box:
    return (round(box[0] * sx), round(box[1] * sy), round(box[2] * sx), round(box[3] * sy))


def _resized(pixels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """`pixels` resampled (bicubic) to the height and width of `shape`."""
    return np.asarray(Image.fromarray(pixels).resize((shape[1], shape[0]), Image.Resampling.BICUBIC), dtype=np.uint8)


def resolve_crop(cache: Cache, crop: Crop, log: Callable[[str], object]) -> np.ndarray:
    """A crop's pixels: itself if in memory, else read from the cache; an entry gone or no longer
    decoding (the cache was cleaned meanwhile) is shown blank, with a log line."""
    if isinstance(crop, np.ndarray):
        return crop
    blank = np.zeros((METRIC_CROP, METRIC_CROP, 3), np.uint8)
    if crop.kind == "example_crops":
        pixels = cache.get_array(crop.kind, crop.key)
        if pixels is not None and pixels.shape == blank.shape and pixels.dtype == np.uint8:
            return pixels
    else:
        data = cache.get_bytes(crop.kind, crop.key)
        try:
            if data is not None:
                return _decode(data)
        except (OSError, ValueError):
            pass
    log(f"cached crop {crop.kind}/{crop.key[:12]} is gone or no longer decodes: shown blank")
    return blank


def resolve_example(cache: Cache, example: PendingExample, log: Callable[[str], object]) -> ExampleFace:
    """The example with every crop read (`resolve_crop`)."""
    return ExampleFace(
        method=example.method,
        face_id=example.face_id,
        original=resolve_crop(cache, example.original, log),
        anonymized=resolve_crop(cache, example.anonymized, log),
        reconstructions=tuple((attack, resolve_crop(cache, crop, log)) for attack, crop in example.reconstructions),
        similarity=example.similarity,
    )
