"""One video audit: read and pair the videos, track the original's faces, then per redacted video the
leak check on every sampled frame and the attacks on every track, scored per track, judged by the still
audit's verdict rule and gate, into the same `AuditResult` every report writer reads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attacks import Applicability, Attack, MethodInfo
from metrics.columns import QUALITY_COLUMNS, LPIPSColumn, QualityColumn
from redteam.cache import Cache
from redteam.core.config import AuditConfig, DetectorSettings, MethodSource
from redteam.core.devices import resolve_device
from redteam.core.hub import no_downloads
from redteam.core.paths import default_cache_dir
from redteam.core.policy import Policy, load_policy
from redteam.core.provenance import environment
from redteam.core.results import AuditResult, FaceRecord, Leak, LogFn, MethodEvidence, ProgressFn, ResultRow, SkippedAttack
from redteam.engine.context import RunContext
from redteam.engine.embedding import Embedder
from redteam.engine.models import Models, load_models
from redteam.engine.scoring import outcomes
from redteam.engine.verdict import method_verdicts, metric_verdicts
from redteam.faces import FaceDetector
from redteam.video import probes as probe_stage
from redteam.video.leaked import LeakedInterval, as_leak, check_track, intervals
from redteam.video.observe import FaceView, OriginalPass, redacted_views, track_original
from redteam.video.pairing import pair_frames
from redteam.video.probes import EmbedFn
from redteam.video.reader import VideoInfo, probe_video
from redteam.video.rows import GalleryTemplates, score_probe, templates
from redteam.video.tracks import Track, merge_same_person

#: Metrics a video audit cannot measure (a track has no other photo of its person): their limits are
#: listed as not applicable instead of blocking every verdict.
NOT_MEASURED = ("rank1_other", "rank5_other")


@dataclass(frozen=True)
class VideoConfig:
    """Every parameter of a video audit (written into video.json and, as an AuditConfig, summary.json)."""

    original: Path
    redacted: tuple[tuple[str, Path], ...]
    out: Path
    gallery: Path | None = None
    policy: Path | None = None
    builtin_policy: str = "default_policy.toml"
    recognizers: tuple[str, ...] = ()
    attacks: tuple[str, ...] = ("auto",)
    stride: int = 1  # every stride-th frame is decoded, tracked and checked
    best_frames: int = 3  # frames per track the per-frame attacks run on
    device: str = "cpu"
    seed: int = 0
    cache_dir: Path | None = None
    detector: DetectorSettings = field(default_factory=DetectorSettings)
    include_originals_in_report: bool = True  # False: the filmstrips show the published frames only

    def audit_config(self) -> AuditConfig:
        return AuditConfig(
            originals=self.original,
            out=self.out,
            methods=tuple(MethodSource(name, "observed", folder=path) for name, path in self.redacted),
            gallery=self.gallery,
            policy=self.policy,
            builtin_policy=self.builtin_policy,
            recognizers=self.recognizers,
            attacks=self.attacks,
            device=self.device,
            seed=self.seed,
            cache_dir=self.cache_dir,
            detector=self.detector,
            include_originals_in_report=self.include_originals_in_report,
            identify=False,
        )


@dataclass(frozen=True)
class VideoAudit:
    """The audit's result and what only a video has: the videos, tracks, leaked intervals, probes' notes."""

    result: AuditResult
    videos: dict[str, VideoInfo]
    tracks: tuple[Track, ...]
    leaked: tuple[LeakedInterval, ...]
    probes: dict[str, dict[str, dict[str, Any]]]  # method -> track -> attack -> {frames, note}
    frame_checks: dict[str, int]  # method -> sampled track frames checked by the leak rule
    filmstrip: dict[str, list[tuple[np.ndarray, np.ndarray, str]]]  # method -> (original crop, redacted crop, caption) of its worst interval

    def to_json(self, config: VideoConfig) -> dict[str, Any]:
        return {
            "stride": config.stride,
            "best_frames": config.best_frames,
            "videos": {name: info.to_json() for name, info in self.videos.items()},
            "tracks": [{"track": t.track_id, "start_s": round(t.start, 3), "end_s": round(t.end, 3), "sampled_frames": len(t.sightings)} for t in self.tracks],
            "leaked_intervals": [interval.to_json() for interval in self.leaked],
            "frames_checked": self.frame_checks,
            "probes": self.probes,
            "not_measured": {metric: "a track has no other photo of its person" for metric in NOT_MEASURED},
        }


def video_policy(policy: Policy) -> Policy:
    """The policy without the limits a video cannot measure (NOT_MEASURED)."""
    return replace(
        policy,
        limits=tuple(limit for limit in policy.limits if limit[1] not in NOT_MEASURED),
        default_limits=tuple(limit for limit in policy.default_limits if limit[0] not in NOT_MEASURED),
    )


class VideoAuditRun:
    """One video audit: construct with a frozen config, then `run()`."""

    def __init__(self, config: VideoConfig, *, log: LogFn | None = None, progress: ProgressFn | None = None) -> None:
        from attacks import ATTACKS
        from metrics.recognizers import RECOGNIZERS

        self.config = config
        device = resolve_device(config.device)
        audit_config = config.audit_config()
        policy = load_policy(config.policy, tuple(RECOGNIZERS), builtin=config.builtin_policy, known_attacks=tuple(ATTACKS))
        self.ctx = RunContext(
            config=audit_config,
            policy=video_policy(policy),
            device=device,
            cache=Cache(config.cache_dir if config.cache_dir is not None else default_cache_dir(), log=log),
            detector=FaceDetector(config.detector, device=device),
            log=log or (lambda message: None),
            progress=progress or (lambda stage, done, total: None),
        )

    def run(self) -> VideoAudit:
        with no_downloads():
            return self._run()

    def _run(self) -> VideoAudit:
        from redteam.video.gallery import distractor_embeddings

        ctx, config, started = self.ctx, self.config, time.perf_counter()
        videos = {"original": probe_video(config.original)}
        pairs = {}
        for name, path in config.redacted:
            videos[name] = probe_video(path)
            pairs[name] = pair_frames(videos["original"], videos[name], name)
        models = load_models(ctx, None, None)
        embedders = {name: Embedder(recognizer, ctx.cache, ctx.clock, ctx.config.batch_size) for name, recognizer in models.recognizers.items()}

        def embed(name: str, chips: list[np.ndarray]) -> np.ndarray:
            return embedders[name](chips).numpy()

        with ctx.clock.measure("original"):
            original = track_original(config.original, videos["original"].frames, config.stride, ctx.detector, models.recognizers, ctx.cache, ctx.progress)
        found = len(original.tracks)

        keys = [(s.frame, s.face.box) for track in original.tracks for s in track.sightings]
        clean = {name: dict(zip(keys, embed(name, [original.views[key].chips[name] for key in keys]), strict=True)) for name in models.recognizers}

        def template(track: Track) -> dict[str, np.ndarray]:
            """The track's clean template: the mean embedding of its original frames (each embedded once, above)."""
            return {name: np.stack([clean[name][(s.frame, s.face.box)] for s in track.sightings]).mean(axis=0) for name in models.recognizers}

        def same_person(a: Track, b: Track) -> bool:
            first, second = template(a), template(b)
            return bool(models.recognizers) and all(
                float(recognizer.distances(torch.from_numpy(first[name][None]), torch.from_numpy(second[name][None]))[0, 0]) < recognizer.threshold.value
                for name, recognizer in models.recognizers.items()
            )

        original.tracks = merge_same_person(original.tracks, same_person)
        ctx.log(
            f"original: {found} face track(s) in {original.sampled} sampled frame(s), {len(original.tracks)} person(s) after joining the tracks of one "
            f"person; {original.dropped} single-frame detection(s) dropped"
        )
        track_embeddings = {track.track_id: template(track) for track in original.tracks}
        distractors = distractor_embeddings(ctx, config.gallery, models.recognizers, embed) if config.gallery else {}
        gallery = templates([t.track_id for t in original.tracks], track_embeddings, distractors) if original.tracks else None
        quality = _quality_columns(models)
        rows: list[ResultRow] = []
        leaks: list[Leak] = []
        leaked: list[LeakedInterval] = []
        evidence: dict[str, MethodEvidence] = {}
        notes: dict[str, dict[str, dict[str, Any]]] = {}
        checked: dict[str, int] = {}
        skipped: list[SkippedAttack] = []
        strips = {}
        per_frame, skipped_attacks = _per_frame_attacks(models, ctx.policy.required_attacks)
        for name, path in config.redacted:
            with ctx.clock.measure(f"{name}"):
                views = redacted_views(path, pairs[name], original, models.recognizers, ctx.progress, name, config.best_frames)
                method_rows, method_intervals, notes[name], checked[name] = self._method(
                    name, path, original, views, models, per_frame, gallery, quality, embed
                )
            rows += method_rows
            leaked += method_intervals
            leaks += [as_leak(interval, path.name) for interval in method_intervals]
            skipped += [SkippedAttack(name, attack, reason) for attack, reason in skipped_attacks]
            refused = {(attack, info["note"]) for track in notes[name].values() for attack, info in track.items() if info["frames"] == 0}
            skipped += [SkippedAttack(name, attack, note) for attack, note in sorted(refused)]
            evidence[name] = self._evidence(name, original, method_rows)
            worst = max((i for i in method_intervals), key=lambda i: len(i.checks), default=None)
            if worst is not None:
                strips[name] = [
                    (
                        original.views[(c.sighting.frame, c.sighting.face.box)].crop,
                        views[(c.sighting.frame, c.sighting.face.box)].crop,
                        f"{c.sighting.time:.2f} s",
                    )
                    for c in worst.checks[:8]
                ]
        for leak in leaks:
            ctx.log(f"LEAK {leak.describe()}")
        ctx.clock.seconds["total"] = time.perf_counter() - started
        result = self._result(models, tuple(rows), evidence, tuple(leaks), tuple(skipped), videos)
        faces = tuple(FaceRecord(t.track_id, f"{config.original.name}#{t.track_id}", 0, t.track_id, t.best(1)[0].face, True) for t in original.tracks)
        result = replace(result, faces=faces, gallery_size=len(gallery.labels) if gallery is not None else 0)
        return VideoAudit(result, videos, tuple(original.tracks), tuple(leaked), notes, checked, strips)

    def _method(
        self,
        name: str,
        path: Path,
        original: OriginalPass,
        views: dict[tuple, FaceView],
        models: Models,
        per_frame: list[Attack],
        gallery: GalleryTemplates | None,
        quality: dict[str, QualityColumn | None],
        embed: EmbedFn,
    ) -> tuple[list[ResultRow], list[LeakedInterval], dict[str, dict[str, Any]], int]:
        """Leak check and attacks for one redacted video: (rows, leaked intervals, probe notes, frames checked)."""
        ctx, config = self.ctx, self.config
        recognizers = models.recognizers
        names = list(recognizers)
        sha256 = ctx.sha256(path)
        shape = (*original.shape, 3)
        rows: list[ResultRow] = []
        found: list[LeakedInterval] = []
        notes: dict[str, dict[str, Any]] = {}
        frames_checked = 0

        def crop_chip(recognizer: str, pixels: np.ndarray, key: tuple) -> np.ndarray:
            return recognizers[recognizer].crop(pixels, original.alignments[key][recognizer])

        if gallery is None:  # no track: nothing to check or attack
            return rows, found, notes, frames_checked
        settings = probe_stage.AttackSettings(config.best_frames, config.seed, name, ctx.cache)
        for number, track in enumerate(original.tracks, start=1):
            ctx.progress(f"{name}: attacking tracks", number - 1, len(original.tracks))
            checks = check_track(track, original.views, views, recognizers, embed)
            frames_checked += len(checks)
            found += intervals(name, track, checks, max_gap=config.stride)
            frames = probe_stage.TrackFrames(track, original.views, views, shape)
            made = [probe_stage.naive(frames, names, embed), probe_stage.frame_average(frames, names, embed)]
            made.append(probe_stage.multiframe_sr(frames, names, embed, crop_chip, ctx.cache))
            for attack in per_frame:
                with ctx.clock.measure("attacks"):
                    made.append(probe_stage.per_frame(attack, frames, names, embed, crop_chip, settings))
            best_key = frames.keys(track.best(1))[0]
            columns = {column: (instance, original.views[best_key].crop if instance is not None else None) for column, instance in quality.items()}
            detected = self._detected(views[best_key], track.best(1)[0].face)
            context = {"video": path.name, "method": name, "sha256": sha256}
            for probe in made:
                rows += score_probe(probe, track.track_id, gallery, recognizers, columns, context, detected)
            notes[track.track_id] = {probe.attack: {"tier": probe.tier, "frames": probe.frames, "note": probe.note} for probe in made}
        ctx.progress(f"{name}: attacking tracks", len(original.tracks), len(original.tracks))
        return rows, found, notes, frames_checked

    def _detected(self, view: Any, face: Any) -> bool:
        """Whether MTCNN still finds a face at the tracked place in the redacted window."""
        from redteam.core.geometry import box_iou

        x0, y0 = view.origin
        box = (face.box[0] - x0, face.box[1] - y0, face.box[2] - x0, face.box[3] - y0)
        return any(box_iou(box, found.box) >= 0.3 for found in self.ctx.detector.detect(np.ascontiguousarray(view.window)))

    def _evidence(self, name: str, original: OriginalPass, rows: list[ResultRow]) -> MethodEvidence:
        covered: dict[tuple[str, str], set[str]] = {}
        for row in rows:
            covered.setdefault((row.attack, row.recognizer), set()).add(row.face_id)
        missing = []
        if self.config.stride > 1:
            missing.append(
                f"the leak check saw 1 frame in {self.config.stride} (--stride {self.config.stride}): a face left unredacted for fewer frames can be missed; "
                "certify with --stride 1"
            )
        if not original.tracks:
            missing.append("no face was found in the original video: nothing was audited")
        for attack in self.ctx.policy.required_attacks:
            ran = {face for (name, _), faces in covered.items() if name == attack for face in faces}
            if len(ran) < len(original.tracks) or not original.tracks:
                missing.append(f"policy requires attack '{attack}', which ran on {len(ran)} of {len(original.tracks)} track(s)")
        return MethodEvidence(
            faces=len(original.tracks),
            declared=False,
            tiers_run=frozenset(row.tier for row in rows),
            coverage={key: len(faces) for key, faces in covered.items()},
            missing=tuple(missing),
        )

    def _result(
        self,
        models: Models,
        rows: tuple[ResultRow, ...],
        evidence: dict[str, MethodEvidence],
        leaks: tuple[Leak, ...],
        skipped: tuple[SkippedAttack, ...],
        videos: dict[str, VideoInfo],
    ) -> AuditResult:
        ctx = self.ctx
        verdicts = metric_verdicts(list(outcomes(rows)), ctx.policy)
        names = [name for name, _ in self.config.redacted]
        by_method = method_verdicts(names, verdicts, ctx.policy, evidence, models.blockers, leaks)
        hashes = {str(info.path): ctx.sha256(info.path) for info in videos.values()}
        return AuditResult(
            config=ctx.config,
            policy=ctx.policy,
            rows=rows,
            metric_verdicts=tuple(verdicts),
            method_verdicts=tuple(by_method),
            issues=tuple(ctx.issues),
            conversions={},
            faces=(),
            gallery_size=0,
            methods=ctx.config.methods,
            recognizers=models.records(),
            unavailable=dict(models.unavailable),
            blockers=tuple(models.blockers),
            skipped_attacks=skipped,
            examples=(),
            input_hashes=hashes,
            timings={k: round(v, 4) for k, v in ctx.clock.seconds.items()},
            attack_seconds={},
            attack_models={},
            cache_stats={},
            identifications={},
            environment=environment(),
            quality_columns=tuple(QUALITY_COLUMNS),
            quality_headings={name: column.heading or name for name, column in QUALITY_COLUMNS.items()},
            leaks=leaks,
        )


def _quality_columns(models: Models) -> dict[str, QualityColumn | None]:
    """Every quality column, LPIPS only when its trunk is available (None: the column stays empty)."""
    columns: dict[str, QualityColumn | None] = {}
    for name, column in QUALITY_COLUMNS.items():
        if column is LPIPSColumn:
            columns[name] = LPIPSColumn(models.lpips) if models.lpips is not None else None
        else:
            columns[name] = column()  # type: ignore[call-arg]
    return columns


def _per_frame_attacks(models: Models, required: tuple[str, ...]) -> tuple[list[Attack], list[tuple[str, str]]]:
    """The run's still-image attacks that can run on a black-box video redaction, and the others with why; an
    attack requested on the command line or `required` by the policy whose model is missing is a blocker."""

    runnable: list[Attack] = []
    skipped: list[tuple[str, str]] = []
    info = MethodInfo("video", None)
    for attack in models.attacks:
        if attack.name == "none":
            continue  # the naive probe covers it, over every frame
        if attack.gallery_domain == "anonymized":
            skipped.append((attack.name, "a parrot attack needs the gallery redacted the same way, which a video audit does not have"))
            continue
        applicability = Applicability.of(attack.applicable(info))
        if applicability.ok:
            runnable.append(attack)
            continue
        skipped.append((attack.name, applicability.reason))
        models.block_if_model_missing(attack.name, applicability, required)
    return runnable, skipped
