"""Registry of attacks, extended by the `redteam.attacks` entry-point group."""

from __future__ import annotations

from attacks.base import Applicability, Attack, AttackNotApplicable, MethodInfo
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
from attacks.trained_parrot import TrainedParrot
from redteam.core.plugins import PluginRegistry
from redteam.core.spec import build_stages
from redteam.core.tiers import TIER_ORDER, ThreatTier

ATTACKS: PluginRegistry[Attack] = PluginRegistry(
    "redteam.attacks",
    Attack,  # type: ignore[type-abstract]  # plugins subclass it
    (
        NoAttack,
        ParrotAttack,
        TrainedParrot,
        BicubicUpscale,
        LanczosUpscale,
        BlindDeconvolution,
        NonLocalMeansDenoise,
        JpegDeblock,
        WienerDeconvolution,
        RichardsonLucy,
        TVDeconvolution,
        LearnedInversion,
        SuperResolution,
        SDEdit,
        SDUpscale,
        DiffusionInpaint,
        DiffPIRAttack,
    ),
)

__all__ = ["ATTACKS", "Applicability", "Attack", "AttackNotApplicable", "ChainAttack", "MethodInfo", "ThreatTier", "TIER_ORDER", "build_attack"]


def build_attack(spec: str) -> Attack:
    """An attack `name[:key=value,...]`, or a chain `a|b|c` applied left to right (the one spec grammar;
    errors are ConfigError, exit 3)."""
    stages = build_stages(spec, ATTACKS, "attack")
    for stage in stages:
        stage.name = stage.spec  # type: ignore[misc]  # rows and reports tell variants apart
    return stages[0] if len(stages) == 1 else ChainAttack(stages)
