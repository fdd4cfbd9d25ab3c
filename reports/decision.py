"""The decision summary at the top of every report and of the terminal output: the outcome, the rows that
decide it, and the exact next step (more faces, gallery distractors, weights, policy limits).

A reviewer signing off a redaction policy reads this first; every number in it comes from the verdicts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from statistics import NormalDist

from redteam.core.results import UNREAD_ISSUES, AuditResult, MetricVerdict, Verdict

#: Longest method reason quoted in the summary: a longer one ends at a word boundary and points to the
#: method's section ("Why not PASS" in report.md and report.html; `methods[].reasons` in summary.json).
_REASON_CHARS = 400
#: Where a method's every reason is written in full.
FULL_REASONS = "all its reasons are under 'Why not PASS' in report.md"
#: A per-rate distractor count inside a reason: the summary gives the one count that fixes every rate.
_DISTRACTORS = re.compile(r"; add at least \d+ distractor faces of other people with --gallery")


@dataclass(frozen=True)
class Decision:
    """What the audit decided and what would change it.

    Attributes:
        outcome: PASS, FAIL or INCONCLUSIVE (the worst method verdict; INCONCLUSIVE when blocked).
        exit_code: the exit code of `redteam audit` for this result.
        headline: one sentence: the outcome and its count per verdict.
        deciding: the rows that decide it: per failing method its highest-risk failing rate, per
            inconclusive method its first reason.
        next_steps: what to add or change to reach a decision (deduplicated, most blocking first).
        cannot_certify: why this audit could never give PASS as configured (None when it could).
        baseline: with `--baseline`, the comparison in one line: regressed (exit 6) or no regression.
    """

    outcome: str
    exit_code: int
    headline: str
    deciding: tuple[str, ...]
    next_steps: tuple[str, ...]
    cannot_certify: str | None
    baseline: str | None = None


def zero_success_upper_bound(trials: int, confidence: float, interval: str) -> float:
    """The smallest upper bound any rate can have on `trials` samples: that of 0 successes. Closed forms:
    Wilson z^2 / (n + z^2) (Wilson 1927), Clopper-Pearson 1 - (alpha/2)^(1/n) (Clopper and Pearson 1934).
    When it is not below a limit, no number of clean results on this many faces can PASS."""
    if trials <= 0:
        return 1.0
    if interval == "clopper-pearson":
        return 1.0 - ((1.0 - confidence) / 2.0) ** (1.0 / trials)
    z = NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2.0)
    return z * z / (trials + z * z)


def _rate(v: MetricVerdict) -> str:
    e = v.estimate
    return f"{v.metric} {e.successes}/{e.trials} = {e.rate:.0%} [{e.low:.0%}, {e.high:.0%}] vs limit {v.limit:.0%}"


def _short(text: str, limit: int = _REASON_CHARS) -> str:
    """`text` whole, or cut at the last word boundary before `limit` characters with a pointer to where the
    full text is: never in the middle of a word or a number."""
    if len(text) <= limit:
        return text
    cut = text[:limit].rstrip()
    boundary = max(cut.rfind(" "), cut.rfind(";"), cut.rfind(","))
    cut = cut[:boundary] if boundary > limit // 2 else cut
    return cut.rstrip(" ;,") + f" ... ({FULL_REASONS})"


def _reason(reason: str) -> str:
    """A method reason as the summary quotes it: without the per-rate distractor count (the next steps give
    the single count that fixes every rate) and without repeating the verdict after the rate's name."""
    text = _DISTRACTORS.sub("", reason).replace(": INCONCLUSIVE: ", ": ", 1)
    return _short(text)


def baseline_line(result: AuditResult) -> str | None:
    """With `--baseline`: one line saying whether the run regressed against the baseline (None without)."""
    regression = result.regression
    if not regression:
        return None
    gate = regression.get("gate") or []
    changes = regression.get("changes") or []
    labels: dict[str, int] = {}
    for change in changes:
        labels[change.get("label", "")] = labels.get(change.get("label", ""), 0) + 1
    counted = ", ".join(f"{count} {label}" for label, count in sorted(labels.items()) if label)
    compared = f"{len(changes)} rate(s) compared" + (f" ({counted})" if counted else "")
    if gate:
        return f"REGRESSED against baseline run {regression.get('baseline')}: {len(gate)} finding(s) (the 'regression:' rows); {compared}"
    return f"no regression against baseline run {regression.get('baseline')}: {compared}"


def _faces_steps(result: AuditResult) -> list[str]:
    """The one "more faces" step, consistent with the cannot-certify banner: enough faces for min_samples
    and for an upper bound below the lowest limit at zero re-identified, in one number.

    A rate counts the faces it applies to: `rank1_other` only faces with another photo of the same person,
    so it can fall short of min_samples (or of the bound) even when the audit has enough faces in all."""
    policy, faces = result.policy, len(result.faces)
    limits = [v.limit for v in result.metric_verdicts if v.limit == v.limit]
    lowest = min(limits) if limits else None
    bound_needed = 0
    if lowest is not None and zero_success_upper_bound(faces, policy.confidence, policy.interval) >= lowest:
        bound_needed = next((n for n in range(faces + 1, 10**6) if zero_success_upper_bound(n, policy.confidence, policy.interval) < lowest), 0)
    needed = max(policy.min_samples, bound_needed)
    steps = []
    if needed > faces:
        why = []
        if faces < policy.min_samples:
            why.append(f"the policy's min_samples is {policy.min_samples}")
        if bound_needed:
            why.append(f"fewer cannot bring an upper bound below {lowest:.0%}")
        steps.append(f"audit at least {needed} faces in all (now {faces}): {' and '.join(why)}")
    other = [v for v in result.metric_verdicts if v.metric.endswith("_other") and v.verdict is Verdict.INCONCLUSIVE and 0 < v.estimate.trials < needed]
    if other:
        fewest = min(v.estimate.trials for v in other)
        metrics = sorted({v.metric for v in other})
        named = " and ".join(metrics) + (" count" if len(metrics) > 1 else " counts")
        steps.append(
            f"{named} only faces with another photo of the same person ({fewest} here): at least {needed} audited faces "
            "need one (identity folders, <identity>/<file>, with two or more photos each)"
        )
    return steps


def decision(result: AuditResult) -> Decision:
    verdicts = {v.method: v for v in result.method_verdicts}
    counts = {kind: sum(v.verdict is kind for v in verdicts.values()) for kind in Verdict}
    outcome = result.overall.value
    parts = [f"{counts[kind]} {kind.value}" for kind in (Verdict.FAIL, Verdict.INCONCLUSIVE, Verdict.PASS) if counts[kind]]
    headline = f"{outcome}: {len(verdicts)} method(s) audited ({', '.join(parts) or 'none judged'}) on {len(result.faces)} faces"
    if result.blockers:
        headline += "; something requested or required was unavailable, so nothing can PASS"

    deciding: list[str] = [f"LEAK {leak.describe()}" for leak in result.leaks]
    if result.leaks:
        headline += f"; {len(result.leaks)} published face(s) leaked (unchanged or verified as published): each FAILs its method"
    for name, verdict in verdicts.items():
        if verdict.verdict is Verdict.FAIL:
            failing = [v for v in result.metric_verdicts if v.method == name and v.verdict is Verdict.FAIL]
            worst = max(failing, key=lambda v: v.estimate.low, default=None)
            if worst is not None:
                deciding.append(f"{name} FAIL: {worst.tier} tier, attack {worst.attack}, {worst.recognizer}: {_rate(worst)}")
            else:
                deciding.append(f"{name} FAIL: {_reason(verdict.reasons[0]) if verdict.reasons else 'see its section'}")
        elif verdict.verdict is Verdict.INCONCLUSIVE:
            more = len(verdict.reasons) - 1
            extra = f" (and {more} more reason(s): {FULL_REASONS})" if more > 0 else ""
            deciding.append(f"{name} INCONCLUSIVE: {_reason(verdict.reasons[0]) + extra if verdict.reasons else 'see its section'}")

    gate = (result.regression or {}).get("gate") or []
    if gate:
        headline += f"; regressed against baseline run {result.regression['baseline']}"  # type: ignore[index]
        deciding.extend(f"regression: {reason}" for reason in gate)
    steps: list[str] = []
    if result.leaks:
        steps.append(f"redact the leaked faces ({len(result.leaks)}): see the LEAK lines; a leak FAILs its method whatever the sample size")
    steps += list(result.blockers)
    distractors = max((v.distractors_needed or 0 for v in result.metric_verdicts), default=0)
    steps += _faces_steps(result)
    if distractors > 0:
        steps.append(f"add at least {distractors} faces of other people with --gallery: with this gallery a random guess reaches a limit")
    unlimited = sorted({v.tier for v in result.metric_verdicts if v.limit != v.limit})
    if unlimited:
        steps.append(f"add limits for tier(s) {', '.join(unlimited)} to the policy ([limits.TIER] or [limits.default])")
    for verdict in verdicts.values():
        for reason in verdict.reasons:
            if ("strip it" in reason or "policy requires" in reason or "required tier" in reason) and reason not in steps:
                steps.append(f"{verdict.method}: {_reason(reason)}")
    if any(i.kind in UNREAD_ISSUES or i.kind in ("missing_counterpart", "size_mismatch") for i in result.issues):
        steps.append("provide a readable anonymized file of the original's aspect ratio for every original (see Input issues)")

    blockers_of_pass = []
    if len(result.faces) < result.policy.min_samples:
        blockers_of_pass.append(f"{len(result.faces)} audited faces is fewer than the policy's min_samples ({result.policy.min_samples})")
    limits = [v.limit for v in result.metric_verdicts if v.limit == v.limit]
    floor = zero_success_upper_bound(len(result.faces), result.policy.confidence, result.policy.interval)
    if limits and floor >= min(limits):
        blockers_of_pass.append(
            f"even 0 re-identified of {len(result.faces)} faces has a {result.policy.confidence:.0%} upper bound of {floor:.0%}, "
            f"not below the lowest limit {min(limits):.0%}"
        )
    if distractors > 0:
        blockers_of_pass.append(f"the gallery is too small for the policy's limits (add {distractors} distractors)")
    if result.blockers:
        blockers_of_pass.append("required models or attacks are unavailable")
    cannot = "This audit cannot certify a method as configured: " + "; ".join(blockers_of_pass) + "." if blockers_of_pass else None
    return Decision(outcome, int(result.exit_code), headline, tuple(deciding), tuple(dict.fromkeys(steps)), cannot, baseline_line(result))
