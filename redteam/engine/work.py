"""What the probes stage accumulates per method, and the crops it keeps: plain data, shared by the pass,
its workers, scoring and the reports."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from attacks import Attack, MethodInfo
from redteam.core.results import FaceRecord
from redteam.engine.face_operator import FaceOperator
from redteam.engine.methods import Method


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
    exempt: dict[str, set[str]] = field(default_factory=dict)  # attack -> faces with nothing left to restore (the naive tier covers them)

    @property
    def needs_parrot(self) -> bool:
        return any(attack.gallery_domain == "anonymized" for attack in self.attacks)
