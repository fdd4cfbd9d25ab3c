"""report.junit.xml: one JUnit test case per leak (first), one for the baseline comparison (`audit --baseline`: a
<failure> when the run regressed, passing otherwise), and one per method x tier, for CI systems that read JUnit
(GitLab, Jenkins, GitHub test reporters). A FAIL is a <failure>, an INCONCLUSIVE an <error> (the run could not
decide), a tier that did not run is <skipped>; the message carries the verdict's reason. Every text from the inputs
(method, attack, file names quoted in reasons) goes through `redteam.core.text.printable`: XML 1.0 allows
no control character but tab, line feed and carriage return, and a CI log shows none raw."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

from redteam.core.atomic import write_text_atomically
from redteam.core.results import AuditResult, Verdict
from redteam.core.text import printable as _p
from redteam.core.tiers import TIER_ORDER


def _regression_cases(result: AuditResult) -> list[ElementTree.Element]:
    """With `--baseline`: one case, failed (type REGRESSION, exit 6) with the gate's reasons when the run
    regressed against the baseline, passing when it did not."""
    regression = result.regression
    if not regression:
        return []
    baseline = _p(str(regression.get("baseline")))
    case = ElementTree.Element("testcase", {"classname": "redteam.baseline", "name": f"no regression against baseline run {baseline}"})
    gate = regression.get("gate") or []
    if gate:
        message = f"regressed against baseline run {baseline} ({len(gate)} finding(s))"
        ElementTree.SubElement(case, "failure", {"message": message, "type": "REGRESSION"}).text = "\n".join(_p(reason) for reason in gate)
    return [case]


def junit_xml(result: AuditResult) -> str:
    cases = []
    for method in result.method_verdicts:
        tiers = dict(method.tiers)
        for tier in TIER_ORDER:
            case = ElementTree.Element("testcase", {"classname": _p(f"redteam.{method.method}"), "name": tier.value})
            verdict = tiers.get(tier.value)
            rates = [v for v in result.metric_verdicts if v.method == method.method and v.tier == tier.value and v.verdict is not Verdict.PASS]
            detail = "\n".join(_p(f"{v.attack}/{v.recognizer}/{v.metric}: {v.verdict.value}: {v.reason}") for v in rates)
            if verdict is None:
                ElementTree.SubElement(case, "skipped", {"message": f"tier '{tier.value}' did not run"})
            elif verdict is Verdict.FAIL:
                ElementTree.SubElement(case, "failure", {"message": _p(f"{method.method} {tier.value}: FAIL"), "type": "FAIL"}).text = detail
            elif verdict is Verdict.INCONCLUSIVE:
                reasons = detail or "\n".join(_p(reason) for reason in method.reasons)
                ElementTree.SubElement(case, "error", {"message": _p(f"{method.method} {tier.value}: INCONCLUSIVE"), "type": "INCONCLUSIVE"}).text = reasons
            cases.append(case)
        if method.verdict is not Verdict.PASS and method.reasons:  # method-level reasons (evidence gate) as their own case
            gate = ElementTree.Element("testcase", {"classname": _p(f"redteam.{method.method}"), "name": "evidence"})
            kind = "failure" if method.verdict is Verdict.FAIL else "error"
            ElementTree.SubElement(gate, kind, {"message": _p(f"{method.method}: {method.verdict.value}"), "type": method.verdict.value}).text = "\n".join(
                _p(reason) for reason in method.reasons
            )
            cases.append(gate)
    leaks = []
    for leak in result.leaks:  # each leak is its own failed case, listed first: a published face is a published face
        case = ElementTree.Element("testcase", {"classname": _p(f"redteam.{leak.method}"), "name": _p(f"leak {leak.face_id}")})
        message = _p(f"LEAK {leak.method}: {leak.face_id} published by {leak.published}")
        ElementTree.SubElement(case, "failure", {"message": message, "type": "LEAK"}).text = "\n".join(_p(line) for line in leak.evidence)
        leaks.append(case)
    cases = leaks + _regression_cases(result) + cases
    suite = ElementTree.Element(
        "testsuite",
        {
            "name": _p(f"redteam audit (policy {result.policy.name})"),
            "tests": str(len(cases)),
            "failures": str(sum(c.find("failure") is not None for c in cases)),
            "errors": str(sum(c.find("error") is not None for c in cases)),
            "skipped": str(sum(c.find("skipped") is not None for c in cases)),
        },
    )
    suite.extend(cases)
    suites = ElementTree.Element("testsuites", {"name": "redteam"})
    suites.append(suite)
    ElementTree.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ElementTree.tostring(suites, encoding="unicode") + "\n"


def write_junit(result: AuditResult, out: Path) -> Path:
    return write_text_atomically(out / "report.junit.xml", junit_xml(result))
