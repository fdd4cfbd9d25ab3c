"""Naive tier: the face an anonymized file still carries outside its visible pixels."""

from __future__ import annotations

import torch

from attacks.base import Attack, MethodInfo
from redteam.core.tiers import ThreatTier


class HiddenContentAttack(Attack):
    """Match the image an anonymized file carries besides its visible pixels (its EXIF thumbnail, an XMP
    preview, the colour under fully transparent pixels, another frame or page), resized to the
    original's size, against the clean gallery. No skill is needed: opening the file is enough.

    Not selectable: the audit adds it to an observed method whose files carry such images, and hands it
    that image instead of the visible one (`redteam.images.hidden_images`), so its reconstruction is the
    identity.

    References:
        Murdoch and Dornseif, "Hidden Data in Internet Published Documents", 21C3 2004 (EXIF thumbnails
        that keep what the visible image was edited to remove).
    """

    name = "hidden_content"
    reconstructs = False  # the engine hands it the hidden image: its probe is that image as it is
    tier = ThreatTier.NAIVE

    def reconstruct(self, images: torch.Tensor, *, method: MethodInfo, generator: torch.Generator) -> torch.Tensor:
        return images.clone()
