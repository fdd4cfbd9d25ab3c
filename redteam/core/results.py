"""The result types every stage produces and every report writer reads: input issues, faces, the
results rows (one per image x face x method x attack x recognizer, the single source of every number),
outcomes and verdicts, identified operators and the whole audit's result."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from redteam.core.config import AuditConfig, MethodSource
from redteam.core.errors import ExitCode
from redteam.core.geometry import FaceGeometry
from redteam.core.policy import Policy


@dataclass(frozen=True)
class RateEstimate:
    """k successes out of n trials, with a two-sided confidence interval.

    Attributes:
        successes: k.
        trials: n (0 means no evidence: rate is NaN, interval [0, 1]).
        low, high: interval bounds.
        confidence: e.g. 0.95.
        method: "wilson" or "clopper-pearson".
    """

    successes: int
    trials: int
    low: float
    high: float
    confidence: float
    method: str

    @property
    def rate(self) -> float:
        return self.successes / self.trials if self.trials else math.nan


class Verdict(str, Enum):
    PASS = "PASS"
    INCONCLUSIVE = "INCONCLUSIVE"
    FAIL = "FAIL"


_SEVERITY = {Verdict.PASS: 0, Verdict.INCONCLUSIVE: 1, Verdict.FAIL: 2}


def worst(verdicts: Iterable[Verdict]) -> Verdict:
    return max(verdicts, key=_SEVERITY.__getitem__, default=Verdict.INCONCLUSIVE)


@dataclass(frozen=True)
class Outcome:
    """One row's outcome for one rate metric (success None = not applicable to this row).

    Attributes:
        chance: probability that a random ranking scores a success on this row (NaN: no chance level).
        pool, matches, k: the random-guess model behind `chance` (a success is one of `matches`
            entries in the top k of `pool`), so the gate can say how many distractors lower it.
        face_id: the audited face, for the coverage check.
        degenerate: the probe carries no identity (blank or collapsed) and was scored as the best
            constant guess (not identified).
    """

    method: str
    tier: str
    attack: str
    recognizer: str
    metric: str
    success: bool | None
    chance: float
    pool: int = 0
    matches: int = 0
    k: int = 1
    face_id: str = ""
    degenerate: bool = False


@dataclass(frozen=True)
class MetricVerdict:
    """The verdict on one rate: method x tier x attack x recognizer x metric.

    Attributes:
        limit: the policy's limit (NaN when the tier has no limits: then the verdict is INCONCLUSIVE).
        distractors_needed: when chance >= limit, how many gallery distractors bring chance below it.
        degenerate: probes scored as the best constant guess (blank or collapsed embeddings).
    """

    method: str
    tier: str
    attack: str
    recognizer: str
    metric: str
    limit: float
    estimate: RateEstimate
    chance: float
    verdict: Verdict
    reason: str
    distractors_needed: int | None = None
    degenerate: int = 0


@dataclass(frozen=True)
class MethodEvidence:
    """What ran for one method, for the evidence gate.

    Attributes:
        faces: audited faces of the method (every face of the run's originals).
        declared: the method's operator is known (reference, declared spec, identified operator).
        tiers_run: the tiers with at least one results row.
        tiers_covered: tiers none of whose attacks could run because no face held anything to restore (a
            solid box): a required one is met by them (the naive tier scores those faces), without rates.
        coverage: (attack, recognizer) -> faces with a results row, for every attack that ran.
        gaps: why faces have no row (e.g. "3 faces: missing_counterpart"), shown when coverage is short.
        missing: requested or required things that did not run for this method, each with its reason.
    """

    faces: int
    declared: bool = False
    tiers_run: frozenset[str] = frozenset()
    tiers_covered: frozenset[str] = frozenset()  # tiers whose attacks had nothing to restore on any face (a constant fill)
    coverage: dict[tuple[str, str], int] = field(default_factory=dict)
    gaps: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()


@dataclass(frozen=True)
class MethodVerdict:
    """A method's overall verdict, its per-tier verdicts and the reasons behind anything not PASS."""

    method: str
    verdict: Verdict
    tiers: tuple[tuple[str, Verdict], ...]
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Leak:
    """A published face the redaction did not protect (README, "The leak rule"): it FAILs its method at any
    sample size, because a published face is a published face.

    Attributes:
        method: the method whose output published it.
        face_id: the original face it shows.
        image: the original image it comes from.
        published: what shows it: the anonymized file, a file beside it, or content hidden in the file.
        evidence: why it is a leak, one line per finding (unchanged pixels, a recognizer's distance).
        distances: recognizer -> distance of the published face to its original.
    """

    method: str
    face_id: str
    image: str
    published: str
    evidence: tuple[str, ...]
    distances: tuple[tuple[str, float], ...] = ()

    def describe(self) -> str:
        return f"{self.method}: face {self.face_id} is published by {self.published}: {'; '.join(self.evidence)}"

    def to_json(self) -> dict[str, object]:
        return {
            "method": self.method,
            "face_id": self.face_id,
            "image": self.image,
            "published": self.published,
            "evidence": list(self.evidence),
            "distances": {name: round(value, 4) for name, value in self.distances},
        }


@dataclass(frozen=True)
class FaceFit:
    """How well the identified spec reproduces one face: mean absolute error in grey levels."""

    image: str
    face_index: int
    residual: float


@dataclass(frozen=True)
class Identification:
    """The fitted method of an observed folder.

    Attributes:
        spec: the best candidate's canonical spec (None when nothing could be fitted).
        residual: its median per-face residual (grey levels).
        identified: residual within MAX_RESIDUAL: the method counts as declared.
        faces: the per-face residuals of the spec.
        candidates: every family's best spec with its residual, best first.
        reason: what was found, in one line.
    """

    spec: str | None
    residual: float
    identified: bool
    faces: tuple[FaceFit, ...]
    candidates: tuple[tuple[str, float], ...]
    reason: str
    max_residual: float = 3.0

    def to_json(self) -> dict[str, object]:
        return {
            "spec": self.spec,
            "residual": None if math.isnan(self.residual) else round(self.residual, 3),
            "identified": self.identified,
            "max_residual": self.max_residual,
            "reason": self.reason,
            "faces": [{"image": f.image, "face": f.face_index, "residual": round(f.residual, 3)} for f in self.faces],
            "candidates": [{"spec": spec, "residual": round(value, 3)} for spec, value in self.candidates],
        }


LogFn = Callable[[str], None]
#: progress(stage, done, total): `stage` names a bar; text after " | " is a detail shown on that bar (what is
#: running now), not part of its name.
ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class InputIssue:
    """An input problem, handled explicitly and counted in the report.

    Attributes:
        kind: a key of `ISSUE_FIXES` (unreadable, too_large, missing_counterpart, no_face, ...).
        action: what the run did: "skipped" or "audited".
        fix: what the user can do about it (`ISSUE_FIXES[kind]` unless the error said more precisely).
    """

    kind: str
    path: str
    method: str | None
    detail: str
    action: str
    fix: str = ""


#: The input issues of a file that could not be read: an original among them means the set was not audited
#: in full, an anonymized file among them leaves its faces without a result.
UNREAD_ISSUES = frozenset({"unreadable", "too_large"})

#: Every kind of input issue, with the fix shown next to it in the terminal and the reports.
ISSUE_FIXES: dict[str, str] = {
    "unreadable": "re-export or re-download the file, or remove it",
    "too_large": "downscale the image (faces are audited at a few hundred pixels) or remove it",
    "missing_counterpart": "add the anonymized file at the original's relative path (any supported suffix)",
    "size_mismatch": "publish the anonymized file at the original's aspect ratio (crop or pad nothing)",
    "resized": "none needed: audited after resizing to the original's size",
    "no_face": "none needed if the photo shows no face; otherwise use a larger photo or lower --min-face-score",
    "multi_face": "none needed: every face is audited",
    "duplicate": "none needed: the copy is counted once",
    "near_duplicate": "none needed: near-duplicates never stand in for each other",
    "link_outside": "copy the file into the folder if it should be audited",
    "unsupported_file": "convert it to JPEG, PNG, WebP, TIFF or GIF if it should be audited",
    "no_original": "remove the file, or add its original at the same relative path",
    "hidden_content": "strip it: re-encode the visible pixels only (no thumbnail, metadata, extra frames or alpha)",
    "exif_orientation_ignored": "none needed: the stored pixels were audited",
    "extra_file": "remove it from the published folder, or redact it like the file it sits beside",
    "implausible_face": "none needed if it is not a face; to audit it anyway, set keep_implausible_faces = true in the policy",
    "unlabelled_face": "none needed; to give it an identity, put the photo in that person's folder alone, or crop it",
}


#: An unlabelled face (not the named person of its photo) competes in other probes' rankings only when its
#: box is at least this many pixels on each side: half the largest recognizer chip (FaceNet's 160 px). A
#: smaller face is upsampled more than 2x into its chip and attracts degraded probes as a hub (README,
#: "Input layout": on CelebA a 37 px background face was the nearest gallery entry of 368 of 822 blurred
#: probes); it is still audited itself.
MIN_COMPETITOR_FACE = 80


@dataclass(frozen=True)
class FaceRecord:
    """One face of an original (or distractor) image, with the geometry found on the original."""

    face_id: str
    image: str
    face_index: int
    identity: str | None
    geometry: FaceGeometry
    in_run: bool

    @property
    def competes(self) -> bool:
        """Whether this face, in the gallery, may outrank other probes' true matches: every labelled face,
        and unlabelled faces of at least MIN_COMPETITOR_FACE px a side."""
        return self.identity is not None or min(self.geometry.width, self.geometry.height) >= MIN_COMPETITOR_FACE


@dataclass(frozen=True)
class ResultRow:
    """One row of the results table: image x face x method x attack x recognizer."""

    image: str
    face_index: int
    face_id: str
    identity: str | None
    method: str
    method_kind: str
    method_spec: str | None
    tier: str
    attack: str
    recognizer: str
    similarity: float
    distance: float
    threshold: float
    threshold_calibrated: bool
    verify: bool | None
    rank: float | None
    rank1: bool | None
    rank5: bool | None
    rank_other: float | None
    rank1_other: bool | None
    rank5_other: bool | None
    chance_rank1: float
    chance_rank5: float
    chance_rank1_other: float
    chance_rank5_other: float
    gallery_size: int
    gallery_pool: int  # gallery entries ranked against the own original (near-duplicates of it removed)
    other_photos: int  # other photos of the same person in the gallery
    probe_degenerate: str | None  # why this probe carries no identity (blank, collapsed), scored as not identified
    nearest_other: str | None  # the nearest gallery face other than the own photo, competing or not (hubness: README, "Input layout")
    anonymized_face_detected: bool
    quality: tuple[tuple[str, float | None], ...]  # image-quality columns (metrics.columns): ssim, psnr, lpips, ...
    anonymized_sha256: str
    attack_seconds: float  # wall clock of this face's reconstruction (the image's time shared by its faces); not reproducible


@dataclass(frozen=True)
class ExampleFace:
    """Crops shown in the report for one face of one method (METRIC_CROP squares, uint8)."""

    method: str
    face_id: str
    original: np.ndarray
    anonymized: np.ndarray
    reconstructions: tuple[tuple[str, np.ndarray], ...]
    similarity: tuple[tuple[str, str, float], ...]


@dataclass(frozen=True)
class SkippedAttack:
    method: str
    attack: str
    reason: str


@dataclass(frozen=True)
class AuditResult:
    """Everything the report writers need; the results rows are the single source of numbers."""

    config: AuditConfig
    policy: Policy
    rows: tuple[ResultRow, ...]
    metric_verdicts: tuple[MetricVerdict, ...]
    method_verdicts: tuple[MethodVerdict, ...]
    issues: tuple[InputIssue, ...]
    conversions: dict[str, int]
    faces: tuple[FaceRecord, ...]
    gallery_size: int
    methods: tuple[MethodSource, ...]
    recognizers: dict[str, dict[str, object]]
    unavailable: dict[str, str]
    blockers: tuple[str, ...]
    skipped_attacks: tuple[SkippedAttack, ...]
    examples: tuple[ExampleFace, ...]
    input_hashes: dict[str, str]
    timings: dict[str, float]
    attack_seconds: dict[str, dict[str, float]]
    attack_models: dict[str, dict[str, dict[str, str]]]  # method -> attack -> checkpoint hashes / hub snapshots
    cache_stats: dict[str, int]
    identifications: dict[str, Identification]  # observed method -> the operator fitted from its pairs
    environment: dict[str, str]
    quality_columns: tuple[str, ...] = ("ssim", "psnr", "lpips")  # the image-quality columns of the results table
    quality_headings: dict[str, str] = field(default_factory=dict)  # column -> its title in the reports (default: its name)
    method_stages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # method -> every stage with every parameter
    impostor_distances: dict[str, tuple[float, ...]] = field(default_factory=dict)  # recognizer -> distances between unrelated people (clean)
    regression: dict[str, Any] | None = None  # `audit --baseline`: the baseline run, the gate's reasons, the comparison rows
    leaks: tuple[Leak, ...] = ()  # published faces the redaction did not protect: each FAILs its method
    face_operators: dict[str, dict[str, dict[str, object]]] = field(default_factory=dict)  # identified method -> face id -> its own operator

    @property
    def model_unavailable(self) -> bool:
        return bool(self.blockers)

    @property
    def overall(self) -> Verdict:
        """The audit's outcome: the worst method verdict (FAIL > INCONCLUSIVE > PASS); INCONCLUSIVE when a
        blocker stopped it or no method was judged."""
        if self.blockers or not self.method_verdicts:
            return worst([Verdict.INCONCLUSIVE, *(v.verdict for v in self.method_verdicts)])
        return worst(v.verdict for v in self.method_verdicts)

    @property
    def exit_code(self) -> ExitCode:
        """The audit command's exit code (README, "Exit codes"): 4 when something required was unavailable,
        6 when the run regressed against its baseline (`--baseline`), 0 when every method PASSed, else 1."""
        if self.blockers:
            return ExitCode.MODEL_UNAVAILABLE
        if self.regression and self.regression.get("gate"):
            return ExitCode.REGRESSED
        return ExitCode.ALL_PASS if self.method_verdicts and all(v.verdict is Verdict.PASS for v in self.method_verdicts) else ExitCode.NOT_ALL_PASS
