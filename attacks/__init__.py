"""Registry of attacks, extended by the `redteam.attacks` entry-point group."""

from __future__ import annotations

from attacks.base import TIER_ORDER, Attack, MethodInfo, ThreatTier
from attacks.naive import NoAttack
from attacks.parrot import ParrotAttack
from redteam.plugins import load_entry_points

ATTACKS: dict[str, type[Attack]] = {
    NoAttack.name: NoAttack,
    ParrotAttack.name: ParrotAttack,
}
ATTACKS.update(load_entry_points("redteam.attacks", Attack))

__all__ = ["ATTACKS", "TIER_ORDER", "Attack", "MethodInfo", "ThreatTier"]
