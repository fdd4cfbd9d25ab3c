"""From per-row outcomes to PASS / FAIL / INCONCLUSIVE, through one evidence gate (fail closed).

Rule for one rate with limit L at confidence c (README, "The verdict rule"):
    no applicable sample                                  -> INCONCLUSIVE
    chance level >= L (a random guess would reach L)      -> INCONCLUSIVE, with the distractors that fix it
    interval's lower bound > L                            -> FAIL (at any n: min_samples only blocks PASS)
    n < min_samples                                       -> INCONCLUSIVE
    interval's upper bound < L                            -> PASS
    otherwise                                             -> INCONCLUSIVE
A tier's verdict is the worst over its attacks, recognizers and metrics. A method PASSes only when every
rate of every tier that ran PASSes and the evidence gate holds: every tier that ran has limits, every
required tier, attack, recognizer and metric ran, every attack that ran covered every audited face of
the method with every recognizer, and no requested model was missing. Otherwise the best it gets is
INCONCLUSIVE (a FAIL stays a FAIL). A leak (a published face left unchanged or verified far below the
threshold, `redteam.engine.leaks`) FAILs its method at any sample size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from metrics.identity import chance_other_photo
from metrics.statistics import rate_interval
from redteam.core.policy import Policy
from redteam.core.results import Leak, MethodEvidence, MethodVerdict, MetricVerdict, Outcome, RateEstimate, Verdict, worst
from redteam.core.tiers import TIER_ORDER


def distractors_to_beat(outcomes: Sequence[Outcome], limit: float, cap: int = 10**7) -> int | None:
    """The fewest distractor faces (identities not in the run) that bring the mean chance level of
    `outcomes` strictly below `limit`; None if no gallery size does (limit 0, or no chance model)."""
    models = [(o.pool, o.matches, o.k) for o in outcomes if o.success is not None and o.pool > 0]
    if not models or limit <= 0:
        return None

    def chance(extra: int) -> float:
        return sum(chance_other_photo(k, pool + extra, matches) for pool, matches, k in models) / len(models)

    if chance(0) < limit:
        return 0
    high = 1
    while chance(high) >= limit:
        high *= 2
        if high > cap:
            return None
    low = high // 2
    while low + 1 < high:
        middle = (low + high) // 2
        if chance(middle) >= limit:
            low = middle
        else:
            high = middle
    return high


def decide(estimate: RateEstimate, limit: float, min_samples: int, chance: float = math.nan) -> tuple[Verdict, str]:
    """Apply the interval rule to one rate (see the module docstring)."""
    n, level = estimate.trials, f"{estimate.confidence:.0%}"
    bounds = f"{estimate.successes}/{n}, {level} CI [{estimate.low:.3f}, {estimate.high:.3f}]"
    if n == 0:
        return Verdict.INCONCLUSIVE, "no samples"
    if math.isnan(limit):
        return Verdict.INCONCLUSIVE, f"no limit for this tier in the policy ({bounds})"
    if not math.isnan(chance) and chance >= limit:
        return Verdict.INCONCLUSIVE, f"chance level {chance:.3f} >= limit {limit:.3f}: a random guess reaches the limit, PASS unreachable ({bounds})"
    if estimate.low > limit:
        return Verdict.FAIL, f"lower bound {estimate.low:.3f} > limit {limit:.3f} ({bounds})"
    if n < min_samples:
        return Verdict.INCONCLUSIVE, f"n={n} below min_samples={min_samples} ({bounds})"
    if estimate.high < limit:
        return Verdict.PASS, f"upper bound {estimate.high:.3f} < limit {limit:.3f} ({bounds})"
    return Verdict.INCONCLUSIVE, f"interval straddles limit {limit:.3f} ({bounds})"


def metric_verdicts(outcomes: Sequence[Outcome], policy: Policy) -> list[MetricVerdict]:
    """One verdict per (method, tier, attack, recognizer) that ran and per metric its tier's limits name
    (a limited metric with no applicable row is INCONCLUSIVE, "no samples"), plus one INCONCLUSIVE
    verdict per measured rate of a tier the policy sets no limits for, so that it is shown."""
    groups: dict[tuple[str, str, str, str], dict[str, list[Outcome]]] = {}
    for outcome in outcomes:
        per_metric = groups.setdefault((outcome.method, outcome.tier, outcome.attack, outcome.recognizer), {})
        per_metric.setdefault(outcome.metric, []).append(outcome)
    verdicts = []
    for (method, tier, attack, recognizer), per_metric in sorted(groups.items()):
        tier_limits = policy.limits_for(tier)
        if tier_limits is None:
            judged = {metric: math.nan for metric, rows in per_metric.items() if any(r.success is not None for r in rows)}
        else:
            judged = tier_limits
        for metric, limit in sorted(judged.items()):
            applicable = [r for r in per_metric.get(metric, []) if r.success is not None]
            verdicts.append(_metric_verdict(method, tier, attack, recognizer, metric, limit, applicable, policy))
    return verdicts


def _metric_verdict(
    method: str, tier: str, attack: str, recognizer: str, metric: str, limit: float, applicable: list[Outcome], policy: Policy
) -> MetricVerdict:
    estimate = rate_interval(sum(bool(r.success) for r in applicable), len(applicable), policy.confidence, policy.interval)
    chances = [r.chance for r in applicable if not math.isnan(r.chance)]
    chance = sum(chances) / len(chances) if chances else math.nan
    verdict, reason = decide(estimate, limit, policy.min_samples, chance)
    needed = None
    if not math.isnan(chance) and not math.isnan(limit) and chance >= limit:
        needed = distractors_to_beat(applicable, limit)
        reason += (
            f"; add at least {needed} distractor faces of other people with --gallery"
            if needed is not None
            else "; no gallery size brings chance below a limit of 0"
        )
    degenerate = sum(r.degenerate for r in applicable)
    if degenerate:
        reason += f"; {degenerate} probe(s) carry no identity (blank or collapsed) and count as not identified"
    return MetricVerdict(method, tier, attack, recognizer, metric, limit, estimate, chance, verdict, reason, needed, degenerate)


def _gate(method: str, evidence: MethodEvidence, verdicts: Sequence[MetricVerdict], policy: Policy) -> list[str]:
    """Everything that stops `method` from PASSing besides its rates (empty: the gate holds)."""
    reasons = []
    for tier in policy.tiers_required(evidence.declared):
        if tier not in evidence.tiers_run | evidence.tiers_covered:
            reasons.append(f"required tier '{tier}' did not run")
    for tier in sorted(evidence.tiers_run, key=[t.value for t in TIER_ORDER].index):
        if policy.limits_for(tier) is None:
            reasons.append(f"tier '{tier}' ran but the policy sets no limits for it: add [limits.{tier}] or [limits.default]")
    if not any(v.method == method for v in verdicts):
        reasons.append("no limited rate could be computed for this method")
    short = sorted((attack, recognizer, faces) for (attack, recognizer), faces in evidence.coverage.items() if faces < evidence.faces)
    for attack, recognizer, faces in short:
        reasons.append(f"attack '{attack}' with {recognizer} has results for {faces} of {evidence.faces} audited faces")
    if short or (evidence.faces and not evidence.coverage):
        reasons.extend(f"faces without results: {gap}" for gap in evidence.gaps)
    reasons.extend(evidence.missing)
    return reasons


def method_verdicts(
    methods: Sequence[str],
    verdicts: Sequence[MetricVerdict],
    policy: Policy,
    evidence: dict[str, MethodEvidence],
    blockers: Sequence[str],
    leaks: Sequence[Leak] = (),
) -> list[MethodVerdict]:
    """Aggregate per method: worst over tiers, then the evidence gate. `blockers` (requested or
    required models that are unavailable) and every gate reason turn a PASS into INCONCLUSIVE. A leak
    (`redteam.engine.leaks`) FAILs its method whatever the rates and the sample size, and is its first reason."""
    results = []
    for method in methods:
        mine = [v for v in verdicts if v.method == method]
        tiers: list[tuple[str, Verdict]] = []
        reasons: list[str] = [f"leak: {leak.describe()}" for leak in leaks if leak.method == method]
        for tier in (t.value for t in TIER_ORDER):
            in_tier = [v for v in mine if v.tier == tier]
            if in_tier:
                tier_verdict = worst(v.verdict for v in in_tier)
                tiers.append((tier, tier_verdict))
                reasons.extend(f"{tier}/{v.attack}/{v.recognizer}/{v.metric}: {v.verdict.value}: {v.reason}" for v in in_tier if v.verdict is not Verdict.PASS)
        overall = worst(v for _, v in tiers) if tiers else Verdict.INCONCLUSIVE
        if method in evidence:
            gate = _gate(method, evidence[method], mine, policy) + list(blockers)
        else:
            gate = ["no record of what ran for this method"] + list(blockers)
        if gate and overall is Verdict.PASS:
            overall = Verdict.INCONCLUSIVE
        if any(leak.method == method for leak in leaks):
            overall = Verdict.FAIL
        reasons.extend(gate)
        results.append(MethodVerdict(method, overall, tuple(tiers), tuple(reasons)))
    return results
