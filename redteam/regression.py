"""Comparing two recorded runs: per method x tier x metric, the change in the worst rate with a confidence
interval for the difference, a label, and the likely cause; and the baseline gate of `audit --baseline`.

The interval for a difference of two independent proportions is Newcombe's hybrid score interval
(Newcombe 1998, "Interval estimation for the difference between independent proportions", Statistics in
Medicine 17, method 10), built from the two Wilson intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from metrics.statistics import wilson_interval
from redteam.store import RunRecord

LABELS = ("regressed", "improved", "unchanged", "new", "dropped", "not comparable")


def newcombe_interval(k_new: int, n_new: int, k_old: int, n_old: int, confidence: float = 0.95) -> tuple[float, float, float]:
    """(difference, low, high) of p_new - p_old by Newcombe's method 10 (hybrid Wilson score)."""
    new, old = wilson_interval(k_new, n_new, confidence), wilson_interval(k_old, n_old, confidence)
    p_new, p_old = k_new / n_new, k_old / n_old
    difference = p_new - p_old
    low = difference - math.sqrt((p_new - new.low) ** 2 + (old.high - p_old) ** 2)
    high = difference + math.sqrt((new.high - p_new) ** 2 + (p_old - old.low) ** 2)
    return difference, low, high


@dataclass(frozen=True)
class Change:
    """The worst rate of one method x tier x metric in two runs (worst over attacks and recognizers)."""

    method: str
    tier: str
    metric: str
    old: dict[str, Any] | None
    new: dict[str, Any] | None
    difference: float | None
    low: float | None
    high: float | None
    label: str
    cause: str

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _worst(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    worst: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in rows:
        if not row["n"]:
            continue
        key = (row["method"], row["tier"], row["metric"])
        if key not in worst or row["k"] / row["n"] > worst[key]["k"] / worst[key]["n"]:
            worst[key] = row
    return worst


def not_comparable(old: RunRecord, new: RunRecord) -> list[str]:
    """Why two runs cannot be compared (empty: they can)."""
    reasons = []
    if old.inputs_hash != new.inputs_hash:
        reasons.append("the inputs differ (input files or method specs)")
    if old.policy_hash != new.policy_hash:
        reasons.append("the policy differs")
    return reasons


def catalog_changes(old: RunRecord, new: RunRecord) -> list[str]:
    """What is new or changed in attacks, models, recognizers and package versions."""
    changes = []
    old_catalog, new_catalog = old.record.get("catalog", {}), new.record.get("catalog", {})
    added = sorted(set(new_catalog.get("attacks", [])) - set(old_catalog.get("attacks", [])))
    removed = sorted(set(old_catalog.get("attacks", [])) - set(new_catalog.get("attacks", [])))
    changes += [f"new attack {a}" for a in added] + [f"attack {a} no longer run" for a in removed]
    for name, details in new_catalog.get("recognizers", {}).items():
        before = old_catalog.get("recognizers", {}).get(name)
        if before is None:
            changes.append(f"new recognizer {name}")
        elif before != details:
            changes.append(f"recognizer {name} changed ({', '.join(sorted(k for k in details if details.get(k) != before.get(k)))})")
    old_models, new_models = old_catalog.get("attack_models", {}), new_catalog.get("attack_models", {})
    for method, per_attack in new_models.items():
        for attack, details in per_attack.items():
            if old_models.get(method, {}).get(attack) not in (None, details):
                changes.append(f"model of attack {attack} changed")
    old_packages, new_packages = old.record.get("packages", {}), new.record.get("packages", {})
    changes += [f"{p} {old_packages.get(p, 'absent')} -> {v}" for p, v in sorted(new_packages.items()) if old_packages.get(p) != v]
    return list(dict.fromkeys(changes))


def compare(old: RunRecord, new: RunRecord, confidence: float = 0.95) -> list[Change]:
    """One Change per method x tier x metric present in either run."""
    blocked = not_comparable(old, new)
    changes_in_catalog = catalog_changes(old, new)
    old_worst, new_worst = _worst(old.verdict_rows), _worst(new.verdict_rows)
    result = []
    for key in sorted(set(old_worst) | set(new_worst)):
        before, after = old_worst.get(key), new_worst.get(key)
        difference = low = high = None
        if blocked:
            label, cause = "not comparable", "; ".join(blocked)
        elif before is None:
            label, cause = "new", f"first measured in this run (attack {after['attack']})" if after else ""
        elif after is None:
            label, cause = "dropped", "not measured in this run"
        else:
            difference, low, high = newcombe_interval(after["k"], after["n"], before["k"], before["n"], confidence)
            label = "regressed" if low > 0 else "improved" if high < 0 else "unchanged"
            cause = ""
            if label != "unchanged":
                suspects = [c for c in changes_in_catalog if after["attack"] in c or after["recognizer"] in c]
                cause = "; ".join(suspects or changes_in_catalog[:3]) or "no change in attacks, models or versions: sampling or inputs"
                if after["attack"] != before["attack"]:
                    cause = f"worst attack now {after['attack']} (was {before['attack']}); " + cause
        result.append(Change(key[0], key[1], key[2], before, after, difference, low, high, label, cause))
    return result


def gate(baseline: RunRecord, current: RunRecord, confidence: float = 0.95) -> list[str]:
    """Why the current run regresses against the baseline (empty: it does not): a method that passed no
    longer passes, or a rate rose significantly (Newcombe interval above 0). Runs that cannot be
    compared are a failure of the gate too: a baseline over other inputs or another policy proves nothing."""
    blocked = not_comparable(baseline, current)
    if blocked:
        return [f"baseline {baseline.run_id} is not comparable: {'; '.join(blocked)}"]
    reasons = []
    for method, verdict in baseline.method_verdicts.items():
        now = current.method_verdicts.get(method)
        if verdict == "PASS" and now != "PASS":
            reasons.append(f"{method} passed in baseline {baseline.run_id} and is now {now or 'not audited'}")
    for change in compare(baseline, current, confidence):
        if change.label == "regressed":
            reasons.append(
                f"{change.method} {change.tier} {change.metric} rose by {change.difference:+.1%} [{change.low:+.1%}, {change.high:+.1%}] ({change.cause})"
            )
    return reasons
