"""The probes stage: one pass over the images, each decoded once, for every method and attack at once.

For each image: its anonymized version per method (`AnonymizedSource`), whether its faces are still
detectable (`detectability`), each attack's reconstruction of each face's window (`AttackRunner`: pasted
back, then cropped with the ORIGINAL's geometry), the recognizers' embeddings of the result and its
image-quality columns. Each (method, image, attack) result is stored in the cache as soon as it is
computed (`ProbeCache`): a killed run resumes from there, and a second run of the same audit computes no
reconstruction at all. Only embeddings, a few numbers per probe and a bounded set of example crops
(`ExampleHeap`) are kept in memory, so memory does not grow with the images' size or number beyond that.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

import redteam.engine.face_operator as face_operator
from attacks import Attack
from attacks.hidden import HiddenContentAttack
from metrics.columns import METRIC_CROP, QUALITY_COLUMNS, LPIPSColumn, QualityColumn
from redteam.attack_runner import FAILED, NO_INFORMATION, AttackRunner, attack_generator
from redteam.cache import content_key
from redteam.core.errors import InputError
from redteam.core.geometry import box_crop
from redteam.core.results import FaceRecord
from redteam.engine.anonymized_source import AnonymizedSource
from redteam.engine.context import RunContext
from redteam.engine.detectability import detected as detectable
from redteam.engine.embedding import Embedder
from redteam.engine.examples import ExampleHeap
from redteam.engine.handles import ImageHandle, LazyCrops
from redteam.engine.inputs import Inputs
from redteam.engine.models import Models
from redteam.engine.probe_cache import ProbeCache
from redteam.engine.work import Crop, MethodWork, Probe

HIDDEN_CONTENT = HiddenContentAttack.name


@dataclass(frozen=True)
class _Image:
    """One original being processed: its faces (all, and the audited ones) and their crops."""

    label: str
    faces: list[FaceRecord]
    audited: list[FaceRecord]
    original: ImageHandle
    original_crops: LazyCrops
    boxes: dict[str, tuple[float, float, float, float]]


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
        self._position = (0, 1)  # (images done, images in all) of the pass running now: for progress
        self._spent: dict[str, dict[str, float]] = {}  # method -> attack -> seconds computed here (not read from the cache)
        self.audited = {face.face_id for face in inputs.audited}
        models_key = json.dumps(
            {name: r.fingerprint for name, r in models.recognizers.items()}
            | {"columns": [c.name for c in self.columns], "lpips": models.lpips.fingerprint if models.lpips is not None else None},
            sort_keys=True,
        )
        self.source = AnonymizedSource(ctx)
        self.cache = ProbeCache(ctx, models.recognizers, models_key)
        self.runner = AttackRunner(max([r.crop_size for r in models.recognizers.values()] + [METRIC_CROP]))
        self.examples = ExampleHeap(ctx, models.recognizers, inputs.gallery)

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
        face will take (images of the gallery that are only anonymized for the parrot tier are not attacked).
        Only seconds spent here count: an attack whose results came from the cache was paid for by an earlier
        run, and a re-run would otherwise promise minutes it does not spend."""
        for work in self.works:
            faces = max(1, len({p.face.face_id for probes in work.probes.values() for p in probes}))
            costly = {a: t / faces for a, t in self._spent.get(work.method.name, {}).items() if t / faces >= 1.0}
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
        original = self.ctx.open(self.inputs.paths[label], label, None)  # read before (issues recorded then)
        if original is None:
            return
        boxes = {face.face_id: face.geometry.box for face in audited}
        crops = LazyCrops(boxes, lambda face_id: box_crop(original.pixels, boxes[face_id], METRIC_CROP))
        image = _Image(label, faces, audited, original, crops, boxes)
        outputs: dict[int, ImageHandle] = {}
        for index, work in enumerate(self.works):
            try:
                anonymized = self.source.image(work, label, faces, audited, original)
            except InputError as error:
                self._lost(work, label, audited, error)
                continue
            if anonymized is not None:
                outputs[index] = anonymized
        try:
            found = detectable(self.ctx, outputs, audited)
        except InputError as error:  # a file changed under the audit: that image's evidence is lost
            for index in outputs:
                self._lost(self.works[index], label, audited, error)
            return
        for index, anonymized in outputs.items():
            try:
                self._attacks(self.works[index], image, anonymized, found[index])
            except InputError as error:
                self._lost(self.works[index], label, audited, error)

    def _lost(self, work: MethodWork, label: str, audited: list[FaceRecord], error: InputError) -> None:
        self.ctx.issue(error.issue_kind, label, work.method.name, error.message, "skipped", error.fix)
        work.gaps.setdefault("unreadable during the audit", []).extend(face.face_id for face in audited)

    def _attacks(self, work: MethodWork, image: _Image, anonymized: ImageHandle, detected: dict[str, bool]) -> None:
        if work.needs_parrot:
            self._parrot(work, image.faces, anonymized.pixels)
        if not image.audited:
            return
        self._fit_face_operators(work, image, anonymized)
        boxes = image.boxes
        anonymized_crops = LazyCrops(boxes, lambda face_id: box_crop(anonymized.pixels, boxes[face_id], METRIC_CROP))
        reconstructions: dict[str, Mapping[str, Crop]] = {}  # attack -> face id -> attacked crop
        fresh: dict[str, dict[str, Probe]] = {}  # face id -> attack -> this image's probe
        for attack in work.attacks:
            before = len(work.probes.get(attack.name, []))
            if attack.name == HIDDEN_CONTENT:  # it attacks the image the file carries besides its visible one
                hidden = self.source.hidden(work, image.label, anonymized.shape)
                if hidden is None:
                    continue
                reconstructions[attack.name] = self._attack(work, attack, image, hidden, detectable(self.ctx, {0: hidden}, image.audited)[0])
            else:
                reconstructions[attack.name] = self._attack(work, attack, image, anonymized, detected)
            for probe in work.probes.get(attack.name, [])[before:]:
                fresh.setdefault(probe.face.face_id, {})[attack.name] = probe
        original = image.original
        examples_original = LazyCrops(boxes, lambda face_id: self.examples.crop(original, boxes[face_id], lambda: image.original_crops[face_id]))
        examples_anonymized = LazyCrops(boxes, lambda face_id: self.examples.crop(anonymized, boxes[face_id], lambda: anonymized_crops[face_id]))
        self.examples.keep(work, image.audited, fresh, examples_original, examples_anonymized, reconstructions)

    def _fit_face_operators(self, work: MethodWork, image: _Image, anonymized: ImageHandle) -> None:
        """For a folder whose operator was identified, each face's own operator (its region from the
        difference, its strength fitted on it: `redteam.engine.face_operator`), cached per image pair, for
        the adaptive attacks; nothing for other methods or when no attack needs the operator."""
        reference, faces, original = work.method.reference, image.faces, image.original
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
            self.ctx.log(f"{work.method.name}: {image.label}: fitted on the face itself: " + "; ".join(own))

    def _parrot(self, work: MethodWork, faces: list[FaceRecord], anonymized: np.ndarray) -> None:
        for name, recognizer in self.models.recognizers.items():
            alignments = self.inputs.gallery.alignments[name]
            chips = [recognizer.crop(anonymized, alignments[face.face_id]) for face in faces]
            for face, embedding in zip(faces, self.embedders[name](chips), strict=True):
                work.parrot.setdefault(name, {})[face.face_id] = embedding.numpy()

    # -- one attack on one image --------------------------------------------------------------------
    def _attack(self, work: MethodWork, attack: Attack, image: _Image, anonymized: ImageHandle, detected: dict[str, bool]) -> Mapping[str, Crop]:
        """Probes of `attack` for the audited faces of one image (from the cache when it has them);
        returns each probed face's attacked crop (in memory, or a reference to the cache)."""
        digest, audited = anonymized.digest, image.audited
        key = self.cache.key(work, attack, image.label, digest, image.faces)
        cached = self.cache.cached(key, audited)
        crops: Mapping[str, Crop]
        if cached is not None:
            work.reused += 1
            records, refused, seconds, crops = cached
        else:
            work.computed += 1
            done, total = self._position
            self.ctx.progress(f"attacking {len(self.works)} method(s) | {work.method.name}: {attack.name} on {image.label}", done, total)
            records, refused, seconds, crops = self._compute(work, attack, image, anonymized.pixels)
            spent = self._spent.setdefault(work.method.name, {})
            spent[attack.name] = spent.get(attack.name, 0.0) + seconds
            if not any(reason.startswith(FAILED) for reason in refused.values()):  # a failure is retried next run
                self.cache.store(key, records, refused, seconds, crops)
        work.attack_seconds[attack.name] = work.attack_seconds.get(attack.name, 0.0) + seconds
        for face in audited:
            if face.face_id in refused:
                work.gaps.setdefault(f"attack '{attack.name}' not applicable: {refused[face.face_id]}", []).append(face.face_id)
                if refused[face.face_id].startswith(NO_INFORMATION):
                    work.exempt.setdefault(attack.name, set()).add(face.face_id)
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
        self, work: MethodWork, attack: Attack, image: _Image, anonymized: np.ndarray
    ) -> tuple[dict[str, dict], dict[str, str], float, dict[str, np.ndarray]]:
        faces, audited = image.faces, image.audited
        generator = attack_generator(self.ctx.config.seed, work.method.name, attack.name, image.label)
        operators = {i: (op.method, op.region) for i, f in enumerate(faces) if (op := work.face_operators.get(f.face_id)) is not None}
        began = time.perf_counter()
        with self.ctx.clock.measure("attack"):
            attacked, refused_at = self.runner.reconstruct(attack, work.info, anonymized, [f.geometry for f in faces], generator, operators)
        seconds = time.perf_counter() - began
        refused = {faces[i].face_id: reason for i, reason in refused_at.items()}
        for face_id, reason in refused.items():
            if reason.startswith(FAILED):
                self.ctx.log(f"attack {attack.name} failed on {face_id}: {reason.removeprefix(FAILED)} (that face has no result: no PASS)")
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
            original_stack = np.stack([image.original_crops[f.face_id] for f in probed])
            for column in self.columns:
                with self.ctx.clock.measure("inference" if column.model else "metrics"):
                    values = column(attacked_stack, original_stack)
                for face, value in zip(probed, values, strict=True):
                    records[face.face_id]["quality"][column.name] = float(value)
        return records, refused, seconds, crops
