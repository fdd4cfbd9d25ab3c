"""Registry of attacks, extended by the `redteam.attacks` entry-point group."""

from __future__ import annotations

from attacks.base import TIER_ORDER, Attack, MethodInfo, ThreatTier
from attacks.chain import ChainAttack
from attacks.deconvolution import BlindDeconvolution, RichardsonLucy, TVDeconvolution, WienerDeconvolution
from attacks.denoising import JpegDeblock, NonLocalMeansDenoise
from attacks.interpolation import BicubicUpscale, LanczosUpscale
from attacks.learned import LearnedInversion
from attacks.naive import NoAttack
from attacks.parrot import ParrotAttack
from redteam.errors import UsageError
from redteam.plugins import load_entry_points

ATTACKS: dict[str, type[Attack]] = {
    attack.name: attack
    for attack in (
        NoAttack, ParrotAttack, BicubicUpscale, LanczosUpscale, BlindDeconvolution, NonLocalMeansDenoise, JpegDeblock,
        WienerDeconvolution, RichardsonLucy, TVDeconvolution, LearnedInversion,
    )
}
ATTACKS.update(load_entry_points("redteam.attacks", Attack))

__all__ = ["ATTACKS", "Attack", "ChainAttack", "MethodInfo", "ThreatTier", "TIER_ORDER", "build_attack"]


def build_attack(spec: str) -> Attack:
    """An attack by name, or a chain `a|b|c` applied left to right."""
    names = [part.strip() for part in spec.split("|")]
    for name in names:
        if name not in ATTACKS:
            raise UsageError(f"unknown attack '{name}' in '{spec}'", fix="choose from: " + ", ".join(ATTACKS) + " (chain them with |)")
    if len(names) == 1:
        return ATTACKS[names[0]]()
    return ChainAttack([ATTACKS[name]() for name in names])
