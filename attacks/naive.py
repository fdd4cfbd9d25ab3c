"""Naive tier: match the anonymized face as it is."""

from __future__ import annotations

import torch

from attacks.base import Attack, MethodInfo
from redteam.core.tiers import ThreatTier


class NoAttack(Attack):
    """Match the anonymized face as it is against the clean gallery.

    References:
        Newton, Sweeney and Malin, "Preserving Privacy by De-identifying Face Images", IEEE TKDE 2005
        (the "naive" recognition experiment).
    """

    name = "none"
    tier = ThreatTier.NAIVE
    reconstructs = False

    def reconstruct(self, images: torch.Tensor, *, method: MethodInfo, generator: torch.Generator) -> torch.Tensor:
        return images.clone()
