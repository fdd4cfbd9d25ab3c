"""The Attack interface: an adversary's reconstruction of anonymized images, and its threat tier."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar, Literal

import torch

from redteam.anonymizers.base import Anonymizer


class ThreatTier(str, Enum):
    """Attacker models, weakest first (Newton, Sweeney and Malin 2005; Hao et al., FG 2020)."""

    NAIVE = "naive"
    RECONSTRUCTION = "reconstruction"
    PARROT = "parrot"
    ADAPTIVE = "adaptive"


TIER_ORDER: tuple[ThreatTier, ...] = tuple(ThreatTier)


@dataclass(frozen=True)
class MethodInfo:
    """What the attacker knows about the anonymization method.

    Attributes:
        name: the method's label in the run, e.g. "blur".
        reference: the reproducible method if known (a reference method or a declared spec);
            None for an observed black-box folder.
    """

    name: str
    reference: Anonymizer | None

    @property
    def is_known(self) -> bool:
        return self.reference is not None


class Attack(ABC):
    """One attack. `reconstruct` maps anonymized images to the attacker's best estimate.

    Attributes:
        name: registry key and CLI choice.
        tier: its threat tier.
        gallery_domain: "clean" matches against clean originals; "anonymized" matches against a
            gallery anonymized with the same method (the parrot attacker).
        needs_known_method: True when it only applies to methods whose operator is known.
    """

    name: ClassVar[str]
    tier: ClassVar[ThreatTier]
    gallery_domain: ClassVar[Literal["clean", "anonymized"]] = "clean"
    needs_known_method: ClassVar[bool] = False
    version: ClassVar[str] = "1"

    def applicable(self, method: MethodInfo) -> tuple[bool, str]:
        """Whether the attack can run against `method`, and if not, why."""
        if self.needs_known_method and not method.is_known:
            return False, f"needs a known method; '{method.name}' is an observed folder without a spec"
        return True, ""

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
