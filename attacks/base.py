"""The Attack interface: an adversary's reconstruction of anonymized images, and its threat tier."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch

from redteam.anonymizers.base import Anonymizer
from redteam.core.geometry import Box, FaceGeometry
from redteam.core.params import Configurable, Parameter
from redteam.core.tiers import TIER_ORDER, ThreatTier

__all__ = ["TIER_ORDER", "Applicability", "Attack", "AttackNotApplicable", "MethodInfo", "ThreatTier"]


@dataclass(frozen=True)
class Applicability:
    """Whether an attack can run against a method; unpacks as ``ok, reason``.

    Attributes:
        model_missing: it would apply, but a model or weight file it needs is not on this machine (an
            attack the user requested or the policy requires then makes the audit exit 4).
    """

    ok: bool
    reason: str = ""
    model_missing: bool = False

    def __iter__(self) -> Iterator[bool | str]:
        return iter((self.ok, self.reason))

    def __getitem__(self, index: int) -> bool | str:
        return (self.ok, self.reason)[index]

    @classmethod
    def of(cls, value: Applicability | tuple[bool, str]) -> Applicability:
        """Accept a plugin's plain ``(ok, reason)`` tuple too."""
        return value if isinstance(value, Applicability) else cls(bool(value[0]), str(value[1]))


class AttackNotApplicable(Exception):  # noqa: N818 - it is an outcome, not a failure
    """Raised by `reconstruct` for one face it cannot attack (e.g. no mosaic grid shows): that face gets
    no result for the attack, with this reason in the report, instead of an unchanged copy passed off as
    a reconstruction."""


@dataclass(frozen=True)
class MethodInfo:
    """What the attacker knows about the anonymization method.

    Attributes:
        name: the method's label in the run, e.g. "blur".
        reference: the reproducible method if known (a reference method or a declared spec);
            None for an observed black-box folder.
        face, origin, image_shape: the face being attacked, the window's top-left corner in the image,
            and the image's shape, so a known stage's region can be located inside the window. All in
            the coordinates of the pixels the attack is given: when the engine shrinks a large face's
            window for an attack that `works_at_any_scale`, they are scaled with it.
        audited_hashes: SHA-256 of the audited originals (a learned attack must not have trained on them).
        region: where the reference's first stage acted on this face, in image coordinates, when it was
            measured from the difference (an identified tool's own region: `redteam.engine.face_operator`);
            None to derive it from the face box and the spec's margin.
        audited_identities: the identity folders of the audited people (a learned attack must not have
            trained on them).
        attack_embeddings: the engine scores an attack in its own embedding space (`Attack.embedding_space`).
    """

    name: str
    reference: Anonymizer | None
    face: FaceGeometry | None = None
    origin: tuple[int, int] = (0, 0)
    image_shape: tuple[int, ...] | None = None
    audited_hashes: frozenset[str] = frozenset()
    region: Box | None = None
    audited_identities: frozenset[str] = frozenset()
    attack_embeddings: bool = False

    @property
    def is_known(self) -> bool:
        return self.reference is not None

    def region_of(self, stage: Anonymizer) -> tuple[int, int, int, int] | None:
        """Where `stage` anonymized this face, in the window's coordinates (None if unknown)."""
        if self.face is None or self.image_shape is None:
            return None
        if self.region is not None and self.reference is not None and stage is self.reference.stages[0]:
            x0, y0, x1, y1 = self.region
            return (x0 - self.origin[0], y0 - self.origin[1], x1 - self.origin[0], y1 - self.origin[1])
        regions = stage.regions(self.image_shape, [self.face])
        if not regions:
            return None
        x0, y0, x1, y1 = regions[0]
        return (x0 - self.origin[0], y0 - self.origin[1], x1 - self.origin[0], y1 - self.origin[1])

    def changed_pixels(self, stage: Anonymizer, shape: tuple[int, int]) -> np.ndarray:
        """Bool mask over an h x w window: the pixels `stage` changed (inside its region's shape, feather
        included), all False when the region is unknown."""
        height, width = shape
        changed = np.zeros((height, width), dtype=bool)
        region = self.region_of(stage)
        if region is None:
            return changed
        x0, y0, x1, y1 = region
        inside = stage.region_mask(region, self.face) > 0
        cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
        changed[cy0:cy1, cx0:cx1] = inside[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
        return changed

    def stage(self, *names: str) -> Anonymizer | None:
        """The last stage of the known method whose name is one of `names`, or None."""
        if self.reference is None:
            return None
        found = [stage for stage in self.reference.stages if stage.name in names]
        return found[-1] if found else None

    def stage_of(self, kind: str) -> Anonymizer | None:
        """The last stage of the known method whose operator is of `kind` ("blur", "cells", "mask",
        "noise", ...: `Anonymizer.operator_kind`), or None. Attacks choose by this capability, so a
        plugin method with a blur operator gets the deconvolution attacks without naming them."""
        if self.reference is None:
            return None
        found = [stage for stage in self.reference.stages if stage.operator_kind == kind]
        return found[-1] if found else None


class Attack(Configurable, ABC):
    """One attack. `reconstruct` maps anonymized images to the attacker's best estimate.

    Attributes:
        name: registry key and CLI choice.
        tier: its threat tier.
        gallery_domain: "clean" matches against clean originals; "anonymized" matches against a
            gallery anonymized with the same method (the parrot attacker).
        needs_known_method: True when it only applies to methods whose operator is known.
        works_at_any_scale: True when it needs no pixel-exact geometry (a blind restorer): the engine then
            attacks faces larger than twice the recognizers' chip on a shrunk window, as what it recovers
            beyond that scale is never seen by a recognizer.
        reconstructs: False when its probe is the anonymized image itself (naive, parrot): the engine then
            skips the per-face reconstruction loop.
    """

    what: ClassVar[str] = "attack"
    tier: ClassVar[ThreatTier]
    gallery_domain: ClassVar[Literal["clean", "anonymized"]] = "clean"
    needs_known_method: ClassVar[bool] = False
    works_at_any_scale: ClassVar[bool] = False
    reconstructs: ClassVar[bool] = True
    #: For an attack that `works_at_any_scale`: the largest face it is given, in multiples of the largest
    #: chip a recognizer or quality column takes (None: the engine's default, `redteam.attack_runner.SCALE_CAP`).
    scale_cap: ClassVar[float | None] = None
    version: ClassVar[str] = "1"
    parameters: ClassVar[tuple[Parameter, ...]] = ()

    def use_device(self, device: torch.device) -> Attack:
        """Follow the run's `--device` unless the attack's spec chose one (`device=auto` is the default)."""
        if self.values.get("device") == "auto":
            self.values["device"] = str(device)
        return self

    def applicable(self, method: MethodInfo) -> Applicability:
        """Whether the attack can run against `method`, and if not, why."""
        if self.needs_known_method and not method.is_known:
            return Applicability(False, f"needs a known method; '{method.name}' is an observed folder without a spec")
        return Applicability(True)

    def provenance(self, method: MethodInfo) -> dict[str, str]:
        """The exact models behind this attack for `method` (file hashes, hub snapshots), recorded in
        summary.json so an audit can be reproduced and signed. Empty for model-free attacks."""
        return {}

    def embedding_space(self, method: MethodInfo, recognizer: str, fingerprint: str) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """A map the engine applies to this attack's probe embeddings and to the gallery's before ranking
        them with `recognizer` (whose weights have `fingerprint`), or None to rank the recognizer's own
        embeddings (every attack but one that learned its own space: the trained parrot)."""
        return None

    @abstractmethod
    def reconstruct(self, images: torch.Tensor, *, method: MethodInfo, generator: torch.Generator) -> torch.Tensor:
        """Reconstruct a batch.

        Args:
            images: N x 3 x H x W float32 RGB in [0, 1], anonymized.
            method: what the attacker knows about the method.
            generator: seeded source of randomness; the same seed gives the same output.

        Returns:
            N x 3 x H x W float32 in [0, 1].
        """

    @classmethod
    def summary(cls) -> str:
        """The first docstring line (what `redteam list attacks` shows)."""
        return (cls.__doc__ or cls.name).strip().splitlines()[0]
