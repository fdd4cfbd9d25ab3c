"""Threat tiers: the attacker models every verdict is reported for, weakest first."""

from __future__ import annotations

from enum import Enum


class ThreatTier(str, Enum):
    """Attacker models, weakest first (Newton, Sweeney and Malin 2005; Hao et al., FG 2020)."""

    NAIVE = "naive"
    RECONSTRUCTION = "reconstruction"
    PARROT = "parrot"
    ADAPTIVE = "adaptive"


TIER_ORDER: tuple[ThreatTier, ...] = tuple(ThreatTier)
TIER_NAMES: tuple[str, ...] = tuple(t.value for t in ThreatTier)
