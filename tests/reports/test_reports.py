"""Every report format comes from the same result; HTML is self-contained; originals can be left out."""

import json

import pandas as pd
import pytest

from redteam.core.config import AuditConfig, MethodSource
from redteam.engine import AuditRun
from reports import write_reports
from reports.table import results_frame


@pytest.fixture(scope="module")
def result(sample_dir, cache_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("reports")
    config = AuditConfig(
        originals=sample_dir,
        out=out,
        methods=(
            MethodSource("blur", "reference", spec="gaussian_blur:sigma=2"),
            MethodSource("box", "reference", spec="box:margin=0.6"),
        ),
        cache_dir=cache_dir,
        recognizers=("dlib",),
        builtin_policy="demo_policy.toml",
        attacks=("none", "parrot"),
    )
    return AuditRun(config).run()


def test_all_formats_agree_with_the_results_table(result, tmp_path):
    written = write_reports(result, tmp_path)
    assert set(written) == {"parquet", "json", "markdown", "html", "junit", "sarif"}
    table = pd.read_parquet(written["parquet"])
    pd.testing.assert_frame_equal(table, results_frame(result), check_dtype=False)
    summary = json.loads(written["json"].read_text())
    assert summary["sample"] == {"faces": 5, "images": 5, "identities": 3, "gallery_size": 5, "rows": len(table), "unlabelled_faces": []}
    blur_verify = next(v for v in summary["verdicts"] if v["method"] == "blur" and v["metric"] == "verify" and v["tier"] == "naive")
    expected = table[(table.method == "blur") & (table.attack == "none")]["verify"]
    assert blur_verify["successes"] == int(expected.sum()) and blur_verify["n"] == len(expected)
    for key in ("policy", "config", "environment", "models", "input_hashes", "method_specs", "timings_seconds", "cache"):
        assert summary[key], key
    assert len(summary["input_hashes"]) == 5
    assert summary["models"]["dlib"]["threshold"] == 0.6
    assert summary["environment"]["torch"]
    markdown = written["markdown"].read_text()
    assert "| blur | reference | gaussian_blur:sigma=2.0 | **FAIL** |" in markdown
    stages = summary["method_specs"]["blur"]["stages"]
    # every parameter of the stage, defaults included (fraction and context: a tool that scales its blur with the face)
    assert stages == [
        {
            "method": "gaussian_blur",
            "parameters": {"sigma": 2.0, "fraction": 0.0, "context": 1, "margin": 0.2, "shape": "rect", "feather": 0.0, "region": "face"},
        }
    ]
    assert "chance" in markdown and "95%" in markdown


def test_html_is_self_contained_with_histograms_and_examples(result, tmp_path):
    html = write_reports(result, tmp_path)["html"].read_text()
    assert "http://" not in html and "https://" not in html
    assert html.count('aria-label="distance histogram') == 2
    assert html.count('alt="original"') == 4 * 2
    assert html.count('alt="anonymized"') == 4 * 2


def test_no_originals_in_report(result, tmp_path):
    from dataclasses import replace

    hidden = replace(result, config=replace(result.config, include_originals_in_report=False))
    html = write_reports(hidden, tmp_path)["html"].read_text()
    assert 'alt="original"' not in html
    assert "left out of this report" in html


def test_reports_are_written_atomically(result, tmp_path):
    write_reports(result, tmp_path)
    assert not list(tmp_path.glob(".*.part"))
    assert (tmp_path / "report.html").stat().st_mode & 0o044  # readable like any other file


def test_hostile_names_never_become_live_markup(sample_dir, cache_dir, tmp_path):
    """Method names are the user's text: rendered by a CommonMark renderer with raw HTML enabled, report.md
    shows them as written (no element, no link, no broken table); report.html escapes them too."""
    from markdown_it import MarkdownIt

    hostile = "<script>alert(1)</script>[x](javascript:alert(2))|**PASS** $\\frac$"
    config = AuditConfig(
        originals=sample_dir,
        out=tmp_path / "out",
        methods=(MethodSource(hostile, "reference", spec="box:margin=0.6"),),
        cache_dir=cache_dir,
        recognizers=("dlib",),
        builtin_policy="demo_policy.toml",
        attacks=("none",),
    )
    written = write_reports(AuditRun(config).run(), tmp_path / "out")
    rendered = MarkdownIt("commonmark", {"html": True}).enable("table").render(written["markdown"].read_text())
    assert "<script" not in rendered and 'href="javascript' not in rendered and "<strong>PASS" not in rendered
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered and "[x](javascript:alert(2))" in rendered
    assert "<script>alert(1)" not in written["html"].read_text()


def test_the_summary_leads_with_the_outcome_the_deciding_rows_and_the_next_step(result, tmp_path):
    from reports.decision import decision

    summary = decision(result)
    assert summary.outcome == result.overall.value == "FAIL" and summary.exit_code == 1
    blur = next(line for line in summary.deciding if line.startswith("blur FAIL: "))
    assert "naive tier" in blur and "vs limit" in blur
    assert summary.cannot_certify and "even 0 re-identified of 5 faces has a 95% upper bound of 43%" in summary.cannot_certify
    assert "add 17 distractors" in summary.cannot_certify and any("--gallery" in step for step in summary.next_steps)
    assert "audit at least 35 faces in all (now 5)" in " ".join(summary.next_steps)  # Wilson: 0/35 has upper bound 9.9%
    written = write_reports(result, tmp_path)
    markdown = written["markdown"].read_text()
    assert markdown.index("## Summary: FAIL (exit 1)") < markdown.index("## Verdicts per method")
    assert "blur FAIL: naive tier" in markdown and "cannot certify" in markdown
    html = written["html"].read_text()
    assert html.index('class="summary FAIL"') < html.index("Verdicts per method")
    assert json.loads(written["json"].read_text())["decision"]["outcome"] == "FAIL"


def test_the_zero_success_bound_matches_the_interval_functions():
    from metrics.statistics import rate_interval
    from reports.decision import zero_success_upper_bound

    for trials in (1, 5, 30, 300):
        for interval in ("wilson", "clopper-pearson"):
            assert zero_success_upper_bound(trials, 0.95, interval) == pytest.approx(rate_interval(0, trials, 0.95, interval).high, abs=1e-9)


def test_junit_and_sarif_carry_one_case_per_method_and_tier_and_one_result_per_non_pass(result, tmp_path):
    import xml.etree.ElementTree as ElementTree

    written = write_reports(result, tmp_path)
    suite = ElementTree.parse(written["junit"]).getroot().find("testsuite")
    cases = {(case.get("classname"), case.get("name")): case for case in suite.findall("testcase")}
    assert {name for _, name in cases} >= {"naive", "reconstruction", "parrot", "adaptive"}
    assert int(suite.get("tests")) == len(cases) and int(suite.get("failures")) >= 1
    failure = cases[("redteam.blur", "naive")].find("failure")
    assert failure is not None and "lower bound" in failure.text
    assert cases[("redteam.blur", "adaptive")].find("skipped") is not None or cases[("redteam.blur", "adaptive")].find("error") is not None
    document = json.loads(written["sarif"].read_text())
    assert document["version"] == "2.1.0" and document["$schema"].endswith("sarif-2.1.0.json")
    run = document["runs"][0]
    assert {rule["id"] for rule in run["tool"]["driver"]["rules"]} == {"RT001", "RT002", "RT003", "RT004"}
    by_method = {r["properties"]["method"]: r for r in run["results"] if r["ruleId"] != "RT003"}  # RT003: one result per leak
    verdicts = {v.method: v.verdict.value for v in result.method_verdicts}
    assert set(by_method) == {m for m, v in verdicts.items() if v != "PASS"}
    assert by_method["blur"]["ruleId"] == "RT001" and by_method["blur"]["level"] == "error"
    assert by_method["blur"]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "report.html"


# Issue 22 ------------------------------------------------------------------------------------------

#: A name with an ANSI colour sequence, a bell, a carriage return, a line feed, a C1 control (NEL) and a
#: bidirectional override: none of them may reach an output raw.
HOSTILE = "evil\x1b[31mred\x07bell\rcr\nnl\x85nel\u202eltr"
RAW = ("\x1b", "\x07", "\r", "\x85", "\u202e")


def test_a_failing_writer_leaves_no_report_behind(result, tmp_path, monkeypatch):
    """The reports are all-or-nothing: summary.json and results.parquet (written first) do not stay when a
    later writer fails (report.md could not be encoded), and a folder made for them goes too."""
    import reports

    def broken(result, out):
        raise UnicodeEncodeError("utf-8", "\udcff", 0, 1, "surrogates not allowed")

    monkeypatch.setitem(reports.WRITERS, "markdown", broken)
    out = tmp_path / "new" / "out"
    with pytest.raises(UnicodeEncodeError):
        write_reports(result, out)
    assert not out.exists()
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "summary.json").write_text("{}")  # a previous run's report stays as it was
    with pytest.raises(UnicodeEncodeError):
        write_reports(result, tmp_path / "kept")
    assert [p.name for p in (tmp_path / "kept").iterdir()] == ["summary.json"] and (tmp_path / "kept" / "summary.json").read_text() == "{}"


def test_control_characters_in_names_are_escaped_in_every_report(sample_dir, cache_dir, tmp_path):
    """ANSI sequences and control characters in a method or file name reach no report raw; the JUnit file
    stays valid XML 1.0; every report shows the name with visible escapes."""
    import shutil
    import xml.etree.ElementTree as ElementTree

    originals = tmp_path / "originals"
    shutil.copytree(sample_dir, originals)
    shutil.copy(originals / "joe_biden" / "biden.jpg", originals / f"{HOSTILE}.jpg")
    config = AuditConfig(
        originals=originals,
        out=tmp_path / "out",
        methods=(MethodSource(HOSTILE, "reference", spec="box:margin=0.6"),),
        cache_dir=cache_dir,
        recognizers=("dlib",),
        builtin_policy="demo_policy.toml",
        attacks=("none",),
    )
    written = write_reports(AuditRun(config).run(), tmp_path / "out")
    shown = "evil\\x1b[31mred\\x07bell\\rcr\\nnl\\x85nel\\u202eltr"
    for name in ("markdown", "html", "junit", "sarif"):
        text = written[name].read_text(encoding="utf-8")
        assert not any(character in text for character in RAW), name
    from markdown_it import MarkdownIt

    assert shown in MarkdownIt("commonmark").enable("table").render(written["markdown"].read_text())  # shown with its escapes
    assert shown in written["html"].read_text()
    suite = ElementTree.parse(written["junit"]).getroot().find("testsuite")  # parses: no control character left
    assert any(case.get("classname") == f"redteam.{shown}" for case in suite.findall("testcase"))
    sarif = json.loads(written["sarif"].read_text())
    assert sarif["runs"][0]["results"][0]["properties"]["method"] == shown
    assert not any(character in json.dumps(sarif, ensure_ascii=False) for character in RAW)


def test_the_demo_summary_gives_one_consistent_set_of_next_steps(result):
    """On the 5-face demo the summary said "audit at least 2 more faces: min_samples is 5" beside "audit at
    least 35 faces in all", quoted "add at least 6 distractor faces" beside "add at least 17", and cut a
    reason in the middle ("...; 5 …")."""
    import re

    from reports.decision import FULL_REASONS, decision

    summary = decision(result)
    text = "\n".join([summary.headline, summary.cannot_certify or "", *summary.deciding, *summary.next_steps])
    assert not re.search(r"audit at least \d+ more faces", text)
    faces = [step for step in summary.next_steps if step.startswith("audit at least")]
    assert faces == ["audit at least 35 faces in all (now 5): fewer cannot bring an upper bound below 10%"]
    counts = {int(n) for n in re.findall(r"(\d+) (?:distractor|faces of other people)", text)} | {int(n) for n in re.findall(r"add (\d+) distractors", text)}
    assert counts == {17}, counts  # one count: the one that brings every rate's chance below its limit
    other = [step for step in summary.next_steps if "rank1_other" in step]
    assert other and "another photo of the same person (3 here)" in other[0] and "at least 35" in other[0]
    for line in summary.deciding:
        assert "…" not in line
        assert not line.endswith("...") or line.endswith(f"({FULL_REASONS})")
    box = next(line for line in summary.deciding if line.startswith("box INCONCLUSIVE: "))
    assert "chance level 0.200 >= limit 0.100" in box and ": INCONCLUSIVE:" not in box and box.endswith(f"{FULL_REASONS})")


def test_a_long_reason_is_cut_at_a_word_with_a_pointer_to_the_full_text():
    from reports.decision import FULL_REASONS, _short

    reason = "naive/none/dlib/rank1: " + " ".join(f"word{i:03d}" for i in range(200))
    short = _short(reason, 120)
    assert short.endswith(f" ... ({FULL_REASONS})") and len(short) < 120 + len(FULL_REASONS) + 10
    kept = short[: -len(f" ... ({FULL_REASONS})")]
    assert reason.startswith(kept) and reason[len(kept)] == " "  # ends on a whole word


def _change(method: str, label: str) -> dict:
    """A row of `regression.changes` as `redteam.regression.Change.to_json` writes it."""
    row = {"method": method, "tier": "naive", "attack": "none", "recognizer": "dlib", "metric": "verify", "k": 1, "n": 5}
    difference, low, high = (0.0, -0.4, 0.4) if label == "unchanged" else (0.6, 0.1, 0.9)
    return {
        "method": method,
        "tier": "naive",
        "metric": "verify",
        "old": row,
        "new": row,
        "difference": difference,
        "low": low,
        "high": high,
        "label": label,
        "cause": "",
    }


REGRESSION = {
    "baseline": "20261201T000000Z-aaaa",
    "run": "20261202T000000Z-bbbb",
    "gate": ["box passed in baseline run 20261201T000000Z-aaaa and is now INCONCLUSIVE"],
    "changes": [_change("box", "unchanged"), _change("blur", "regressed")],
}


def test_a_regression_has_its_own_exit_code_junit_case_and_sarif_rule(result, tmp_path):
    """`--baseline` exited 1 for a regression, like an ordinary FAIL: a nightly job over a method that always
    failed was red every night. A regression is exit 6 (after 4, before 1), and its own JUnit case and SARIF rule."""
    import xml.etree.ElementTree as ElementTree
    from dataclasses import replace

    from redteam.core.errors import ExitCode
    from reports.decision import decision

    regressed = replace(result, regression=REGRESSION)
    assert regressed.exit_code == ExitCode.REGRESSED == 6
    assert replace(regressed, blockers=("attack 'sr' was requested but its model is unavailable",)).exit_code == ExitCode.MODEL_UNAVAILABLE
    clean = replace(result, regression={**REGRESSION, "gate": [], "changes": REGRESSION["changes"][:1]})
    assert clean.exit_code == result.exit_code == ExitCode.NOT_ALL_PASS  # the known FAIL, nothing regressed
    assert decision(clean).baseline == "no regression against baseline run 20261201T000000Z-aaaa: 1 rate(s) compared (1 unchanged)"
    assert "regress" not in decision(clean).headline  # said once, in its own line
    assert decision(regressed).baseline.startswith("REGRESSED against baseline run 20261201T000000Z-aaaa: 1 finding(s)")
    assert decision(regressed).exit_code == 6

    written = write_reports(regressed, tmp_path / "regressed")
    summary = json.loads(written["json"].read_text())
    assert summary["exit_code"] == 6 and summary["decision"]["exit_code"] == 6 and summary["decision"]["baseline"].startswith("REGRESSED")
    suite = ElementTree.parse(written["junit"]).getroot().find("testsuite")
    (case,) = [c for c in suite.findall("testcase") if c.get("classname") == "redteam.baseline"]
    failure = case.find("failure")
    assert failure is not None and failure.get("type") == "REGRESSION" and "box passed in baseline" in failure.text
    sarif = json.loads(written["sarif"].read_text())["runs"][0]
    (found,) = [r for r in sarif["results"] if r["ruleId"] == "RT004"]
    assert "box passed in baseline" in found["message"]["text"] and found["properties"]["baseline"] == REGRESSION["baseline"]
    assert "## Summary: FAIL (exit 6)" in written["markdown"].read_text()

    written = write_reports(clean, tmp_path / "clean")
    suite = ElementTree.parse(written["junit"]).getroot().find("testsuite")
    (case,) = [c for c in suite.findall("testcase") if c.get("classname") == "redteam.baseline"]
    assert case.find("failure") is None and case.get("name") == "no regression against baseline run 20261201T000000Z-aaaa"
    assert not [r for r in json.loads(written["sarif"].read_text())["runs"][0]["results"] if r["ruleId"] == "RT004"]
    assert "no regression against baseline run 20261201T000000Z-aaaa" in written["markdown"].read_text()
