"""Parrot tier: anonymize the gallery with the same method and match in the anonymized domain."""

from __future__ import annotations

import torch

from attacks.base import Attack, MethodInfo
from redteam.core.tiers import ThreatTier


class ParrotAttack(Attack):
    """Anonymize the gallery with the same method and match in the anonymized domain.

    Only other photos of the same person count here: matching an anonymized probe against its own
    anonymized original is trivial, so same-photo metrics are not applicable to this tier. For an
    observed folder the gallery is the folder's own anonymized images (plus distractors anonymized with
    the identified operator, when there is one).

    References:
        Newton, Sweeney and Malin, IEEE TKDE 2005 ("parrot recognition"); Hao et al., FG 2020.
    """

    name = "parrot"
    tier = ThreatTier.PARROT
    gallery_domain = "anonymized"
    reconstructs = False

    def reconstruct(self, images: torch.Tensor, *, method: MethodInfo, generator: torch.Generator) -> torch.Tensor:
        return images.clone()
