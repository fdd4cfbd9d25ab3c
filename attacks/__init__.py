"""Registry of attacks, extended by the `redteam.attacks` entry-point group."""

from __future__ import annotations

from attacks.base import TIER_ORDER, Applicability, Attack, AttackNotApplicable, MethodInfo, ThreatTier
from attacks.chain import ChainAttack
from attacks.deconvolution import BlindDeconvolution, RichardsonLucy, TVDeconvolution, WienerDeconvolution
from attacks.denoising import JpegDeblock, NonLocalMeansDenoise
from attacks.diffusion import DiffusionInpaint, SDEdit, SDUpscale
from attacks.interpolation import BicubicUpscale, LanczosUpscale
from attacks.learned import LearnedInversion
from attacks.naive import NoAttack
from attacks.parrot import ParrotAttack
from attacks.posterior import DiffPIRAttack
from attacks.super_resolution import SuperResolution
from redteam.errors import RedteamError, UsageError
from redteam.plugins import load_entry_points

ATTACKS: dict[str, type[Attack]] = {
    attack.name: attack
    for attack in (
        NoAttack, ParrotAttack, BicubicUpscale, LanczosUpscale, BlindDeconvolution, NonLocalMeansDenoise, JpegDeblock,
        WienerDeconvolution, RichardsonLucy, TVDeconvolution, LearnedInversion, SuperResolution, SDEdit, SDUpscale, DiffusionInpaint,
        DiffPIRAttack,
    )
}
ATTACKS.update(load_entry_points("redteam.attacks", Attack))

__all__ = ["ATTACKS", "Applicability", "Attack", "AttackNotApplicable", "ChainAttack", "MethodInfo", "ThreatTier", "TIER_ORDER", "build_attack"]


def build_attack(spec: str) -> Attack:
    """An attack `name[:key=value,...]`, or a chain `a|b|c` applied left to right."""
    stages = []
    for part in spec.split("|"):
        name, _, arguments = part.strip().partition(":")
        name = name.strip()
        if name not in ATTACKS:
            raise UsageError(f"unknown attack '{name}' in '{spec}'", fix="choose from: " + ", ".join(ATTACKS) + " (chain them with |)")
        attack_class = ATTACKS[name]
        declared = {p.name: p for p in attack_class.parameters}
        values = {}
        for token in filter(None, (t.strip() for t in arguments.split(","))):
            key, equals, raw = token.partition("=")
            if not equals or key.strip() not in declared:
                raise UsageError(
                    f"bad parameter '{token}' for attack '{name}'",
                    fix="valid parameters: " + ("; ".join(p.describe() for p in attack_class.parameters) or "none"),
                )
            try:
                values[key.strip()] = declared[key.strip()].coerce(name, raw.strip())
            except RedteamError as error:
                raise UsageError(error.message, fix=error.fix) from None
        attack = attack_class(**values)
        attack.name = attack.spec  # type: ignore[misc]  # rows and reports tell variants apart
        stages.append(attack)
    return stages[0] if len(stages) == 1 else ChainAttack(stages)
