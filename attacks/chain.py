"""Chains of attacks (`wiener|bicubic`): each stage's output is the next one's input."""

from __future__ import annotations

from typing import Sequence

import torch

from attacks.base import Applicability, Attack, MethodInfo
from redteam.core.tiers import TIER_ORDER, ThreatTier


class ChainAttack(Attack):
    """Attacks applied in order; its tier is the strongest of its stages'."""

    name = "chain"
    tier = ThreatTier.RECONSTRUCTION

    def __init__(self, stages: Sequence[Attack]) -> None:  # noqa: D107 - stages, not parameters
        super().__init__()
        self.stages = tuple(stages)
        self.name = "|".join(stage.spec for stage in self.stages)  # type: ignore[misc]
        self.tier = max((stage.tier for stage in self.stages), key=TIER_ORDER.index)  # type: ignore[misc]
        self.gallery_domain = "anonymized" if any(s.gallery_domain == "anonymized" for s in self.stages) else "clean"  # type: ignore[misc]

    def applicable(self, method: MethodInfo) -> Applicability:
        for stage in self.stages:
            verdict = Applicability.of(stage.applicable(method))
            if not verdict.ok:
                return Applicability(False, f"stage {stage.name}: {verdict.reason}", verdict.model_missing)
        return Applicability(True)

    def use_device(self, device: torch.device) -> ChainAttack:
        for stage in self.stages:
            stage.use_device(device)
        return self

    def provenance(self, method: MethodInfo) -> dict[str, str]:
        return {f"{stage.name}.{key}": value for stage in self.stages for key, value in stage.provenance(method).items()}

    def reconstruct(self, images: torch.Tensor, *, method: MethodInfo, generator: torch.Generator) -> torch.Tensor:
        out = images
        for stage in self.stages:
            out = stage.reconstruct(out, method=method, generator=generator).clamp(0.0, 1.0)
        return out
