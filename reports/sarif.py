"""report.sarif: SARIF 2.1.0 (OASIS), one result per leak (first), per finding of a regression against the baseline
(`audit --baseline`, rule RT004) and per method that does not PASS, pointing at report.html,
for code-scanning dashboards (GitHub code scanning, Azure DevOps). Texts from the inputs are shown with
their control characters escaped (`redteam.core.text.printable`), as a dashboard would print them raw."""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from redteam.core.atomic import write_text_atomically
from redteam.core.results import AuditResult, Leak, Verdict
from redteam.core.text import printable

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
RULES = {
    Verdict.FAIL: ("RT001", "identity-survives", "error", "Faces are re-identified above the policy's limits"),
    Verdict.INCONCLUSIVE: ("RT002", "audit-inconclusive", "warning", "The audit could not decide: evidence missing or too few samples"),
}


def _version() -> str:
    try:
        return version("face-anon-redteam")
    except PackageNotFoundError:
        return "0+unknown"


LEAK_RULE = ("RT003", "face-leaked", "error", "A published face was left unchanged or is verified as published (the leak rule)")
REGRESSION_RULE = (
    "RT004",
    "regressed-against-baseline",
    "error",
    "The audit regressed against its baseline run: a method that passed no longer passes, a rate rose significantly, or the baseline is not comparable",
)


def _regression_results(result: AuditResult) -> list[dict[str, Any]]:
    regression = result.regression or {}
    return [
        {
            "ruleId": REGRESSION_RULE[0],
            "level": REGRESSION_RULE[2],
            "message": {"text": printable(f"regressed against baseline run {regression.get('baseline')}: {reason}")},
            "locations": [{"physicalLocation": {"artifactLocation": {"uri": "report.html"}}}],
            "properties": {"baseline": printable(str(regression.get("baseline"))), "run": printable(str(regression.get("run"))), "reason": printable(reason)},
        }
        for reason in regression.get("gate") or []
    ]


def _leak_result(leak: Leak) -> dict[str, Any]:
    return {
        "ruleId": LEAK_RULE[0],
        "level": LEAK_RULE[2],
        "message": {"text": printable(f"LEAK {leak.describe()}")},
        "locations": [{"physicalLocation": {"artifactLocation": {"uri": "report.html"}}}],
        "properties": {
            "method": printable(leak.method),
            "face_id": printable(leak.face_id),
            "image": printable(leak.image),
            "published": printable(leak.published),
            "evidence": [printable(line) for line in leak.evidence],
            "distances": {name: round(value, 4) for name, value in leak.distances},
        },
    }


def sarif(result: AuditResult) -> dict[str, Any]:
    results = [_leak_result(leak) for leak in result.leaks]  # each leak its own result, first
    results += _regression_results(result)
    for method in result.method_verdicts:
        if method.verdict is Verdict.PASS:
            continue
        rule_id = RULES[method.verdict][0]
        failing = [v for v in result.metric_verdicts if v.method == method.method and v.verdict is method.verdict]
        text = printable(f"{method.method}: {method.verdict.value}. " + " ".join(method.reasons[:3]))
        results.append(
            {
                "ruleId": rule_id,
                "level": RULES[method.verdict][2],
                "message": {"text": text.strip()},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": "report.html"}}}],
                "properties": {
                    "method": printable(method.method),
                    "tiers": {tier: verdict.value for tier, verdict in method.tiers},
                    "rates": [
                        {
                            "tier": v.tier,
                            "attack": printable(v.attack),
                            "recognizer": v.recognizer,
                            "metric": v.metric,
                            "k": v.estimate.successes,
                            "n": v.estimate.trials,
                        }
                        for v in failing
                    ],
                },
            }
        )
    rules = [
        {"id": rule_id, "name": name, "shortDescription": {"text": text}, "defaultConfiguration": {"level": level}}
        for rule_id, name, level, text in (*RULES.values(), LEAK_RULE, REGRESSION_RULE)
    ]
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": {"name": "redteam", "version": _version(), "rules": rules}},
                "results": results,
                "properties": {"policy": printable(result.policy.name), "faces": len(result.faces), "overall": result.overall.value},
            }
        ],
    }


def write_sarif(result: AuditResult, out: Path) -> Path:
    return write_text_atomically(out / "report.sarif", json.dumps(sarif(result), indent=2) + "\n")
