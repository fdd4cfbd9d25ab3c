"""The frozen configuration of one audit: CLI options (and an optional TOML file) -> AuditConfig -> run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal


@dataclass(frozen=True)
class DetectorSettings:
    """Detector parameters; each one is written into the report.

    Attributes:
        min_score: MTCNN face probability below which a detection is discarded.
        min_face_size: smallest face side in pixels MTCNN searches for.
    """

    min_score: float = 0.95
    min_face_size: int = 20


@dataclass(frozen=True)
class MethodSource:
    """Where a method's anonymized images come from.

    Attributes:
        name: label in the run and reports (unique).
        kind: "reference" (applied on the fly from `spec`) or "observed" (the user's files).
        spec: the canonical method spec of a reference method, or of an observed one whose method is
            known: declared by its folder's record, or identified from its pairs.
        folder: an observed folder mirroring the originals.
        files: an observed method's (original_rel, anonymized path) pairs from a manifest.
        spec_origin: where `spec` came from: "given", "declared" or "identified".
    """

    name: str
    kind: Literal["reference", "observed"]
    spec: str | None = None
    folder: Path | None = None
    files: tuple[tuple[str, Path], ...] = ()
    spec_origin: str = "given"


@dataclass(frozen=True)
class AuditConfig:
    """Every parameter that shapes a number of the audit; written into summary.json."""

    originals: Path
    out: Path
    methods: tuple[MethodSource, ...]
    gallery: Path | None = None
    policy: Path | None = None
    builtin_policy: str = "default_policy.toml"
    recognizers: tuple[str, ...] = ()
    attacks: tuple[str, ...] = ("auto",)
    device: str = "cpu"
    seed: int = 0
    cache_dir: Path | None = None
    include_originals_in_report: bool = True
    detector: DetectorSettings = field(default_factory=DetectorSettings)
    calibration: Path | None = None
    calibration_far: float = 1e-3
    identity_overrides: tuple[tuple[str, str], ...] = ()
    batch_size: int = 32
    lpips_net: str = "alex"  # LPIPS trunk: "alex" or "vgg"
    examples_per_method: int = 4
    size_tolerance: float = 0.01
    identify: bool = True  # fit the operator of observed folders (Kerckhoffs); False leaves them unknown
    workers: int = 1  # processes (or Ray tasks) the pass over the images is split over
    executor: str = "local"  # local (one process, or --workers processes) or ray
    ray_address: str | None = None  # an existing Ray cluster; None starts a local one
    probes: tuple[str, ...] | None = None  # originals (relative paths) to attack; None: all. The others stay in the gallery.

    def to_json(self) -> dict[str, Any]:
        def convert(value: Any) -> Any:
            if isinstance(value, Path):
                return str(value)
            if isinstance(value, dict):
                return {k: convert(v) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return [convert(v) for v in value]
            return value

        return convert(asdict(self))
