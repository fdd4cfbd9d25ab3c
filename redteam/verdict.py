"""From per-row outcomes to PASS / FAIL / INCONCLUSIVE, with intervals (policy-driven, fail closed).

Rule for one rate with limit L at confidence c: PASS if the interval's upper bound < L, FAIL if its
lower bound > L, otherwise INCONCLUSIVE; fewer than min_samples faces is INCONCLUSIVE. A tier's verdict
is the worst over its attacks, recognizers and metrics; a method's is the worst over the tiers that
ran (FAIL worse than INCONCLUSIVE worse than PASS), so it passes only against the strongest attack.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

from attacks.base import TIER_ORDER
from metrics.statistics import RateEstimate, rate_interval
from redteam.policy import Policy


class Verdict(str, Enum):
    PASS = "PASS"
    INCONCLUSIVE = "INCONCLUSIVE"
    FAIL = "FAIL"


_SEVERITY = {Verdict.PASS: 0, Verdict.INCONCLUSIVE: 1, Verdict.FAIL: 2}


def worst(verdicts: Iterable[Verdict]) -> Verdict:
    return max(verdicts, key=_SEVERITY.__getitem__, default=Verdict.INCONCLUSIVE)


@dataclass(frozen=True)
class Outcome:
    """One row's outcome for one rate metric (None = not applicable to this row)."""

    method: str
    tier: str
    attack: str
    recognizer: str
    metric: str
    success: bool | None
    chance: float


@dataclass(frozen=True)
class MetricVerdict:
    """The verdict on one rate: method x tier x attack x recognizer x metric."""

    method: str
    tier: str
    attack: str
    recognizer: str
    metric: str
    limit: float
    estimate: RateEstimate
    chance: float
    verdict: Verdict
    reason: str


@dataclass(frozen=True)
class MethodVerdict:
    """A method's overall verdict, its per-tier verdicts and the reasons behind anything not PASS."""

    method: str
    verdict: Verdict
    tiers: tuple[tuple[str, Verdict], ...]
    reasons: tuple[str, ...]


def decide(estimate: RateEstimate, limit: float, min_samples: int) -> tuple[Verdict, str]:
    """Apply the interval rule to one rate."""
    n, level = estimate.trials, f"{estimate.confidence:.0%}"
    bounds = f"{estimate.successes}/{n}, {level} CI [{estimate.low:.3f}, {estimate.high:.3f}]"
    if n == 0:
        return Verdict.INCONCLUSIVE, "no samples"
    if n < min_samples:
        return Verdict.INCONCLUSIVE, f"n={n} below min_samples={min_samples} ({bounds})"
    if estimate.high < limit:
        return Verdict.PASS, f"upper bound {estimate.high:.3f} < limit {limit:.3f} ({bounds})"
    if estimate.low > limit:
        return Verdict.FAIL, f"lower bound {estimate.low:.3f} > limit {limit:.3f} ({bounds})"
    return Verdict.INCONCLUSIVE, f"interval straddles limit {limit:.3f} ({bounds})"


def metric_verdicts(outcomes: Sequence[Outcome], policy: Policy) -> list[MetricVerdict]:
    """One verdict per (method, tier, attack, recognizer, metric) that the policy limits."""
    groups: dict[tuple[str, str, str, str, str], list[Outcome]] = {}
    for outcome in outcomes:
        key = (outcome.method, outcome.tier, outcome.attack, outcome.recognizer, outcome.metric)
        groups.setdefault(key, []).append(outcome)
    verdicts = []
    for (method, tier, attack, recognizer, metric), rows in sorted(groups.items()):
        limit = policy.limits_for(tier).get(metric)
        if limit is None:
            continue
        applicable = [r for r in rows if r.success is not None]
        estimate = rate_interval(sum(bool(r.success) for r in applicable), len(applicable), policy.confidence, policy.interval)
        chance = sum(r.chance for r in applicable) / len(applicable) if applicable else math.nan
        verdict, reason = decide(estimate, limit, policy.min_samples)
        if verdict is not Verdict.FAIL and not math.isnan(chance) and chance >= limit:
            reason += f"; chance level {chance:.3f} >= limit: PASS unreachable, add distractors with --gallery"
        verdicts.append(MetricVerdict(method, tier, attack, recognizer, metric, limit, estimate, chance, verdict, reason))
    return verdicts


def method_verdicts(
    methods: Sequence[str],
    verdicts: Sequence[MetricVerdict],
    policy: Policy,
    tiers_run: dict[str, set[str]],
    blockers: Sequence[str],
) -> list[MethodVerdict]:
    """Aggregate per method. `blockers` (unmet policy requirements) turn any PASS into INCONCLUSIVE."""
    results = []
    for method in methods:
        mine = [v for v in verdicts if v.method == method]
        tiers = []
        reasons = []
        for tier in (t.value for t in TIER_ORDER):
            in_tier = [v for v in mine if v.tier == tier]
            if in_tier:
                tier_verdict = worst(v.verdict for v in in_tier)
                tiers.append((tier, tier_verdict))
                reasons.extend(
                    f"{tier}/{v.attack}/{v.recognizer}/{v.metric}: {v.verdict.value}: {v.reason}"
                    for v in in_tier
                    if v.verdict is not Verdict.PASS
                )
        overall = worst(v for _, v in tiers) if tiers else Verdict.INCONCLUSIVE
        if not tiers:
            reasons.append("no rate could be computed for this method")
        for tier in policy.required_tiers:
            if tier not in tiers_run.get(method, set()):
                reasons.append(f"required tier '{tier}' did not run")
                overall = worst([overall, Verdict.INCONCLUSIVE])
        if blockers and overall is Verdict.PASS:
            overall = Verdict.INCONCLUSIVE
        reasons.extend(blockers)
        results.append(MethodVerdict(method, overall, tuple(tiers), tuple(reasons)))
    return results
