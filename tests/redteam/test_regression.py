"""Regression audits: the run store (including concurrent writers), compare's Newcombe interval and its
labels, and the baseline gate through the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from redteam.regression import compare, gate, newcombe_interval
from redteam.store import RunRecord, RunStore


def record(
    run_id: str, rates: dict[tuple[str, str, str], tuple[int, int]], *, verdicts=None, inputs="in", policy="p", attacks=("none",), torch="2.14"
) -> RunRecord:
    rows = [
        {
            "method": m,
            "tier": t,
            "attack": attacks[-1],
            "recognizer": "dlib",
            "metric": metric,
            "k": k,
            "n": n,
            "low": 0.0,
            "high": 1.0,
            "limit": 0.1,
            "verdict": "FAIL",
        }
        for (m, t, metric), (k, n) in rates.items()
    ]
    methods = [{"method": m, "verdict": v, "tiers": {}} for m, v in (verdicts or {}).items()]
    catalog = {"attacks": list(attacks), "attack_models": {}, "recognizers": {"dlib": {"fingerprint": "d1"}}}
    body = {"methods": methods, "verdicts": rows, "catalog": catalog, "packages": {"torch": torch}, "policy": {}, "faces": 30}
    return RunRecord(run_id, f"2026-11-30T00:00:{run_id[-2:]}+00:00", inputs, policy, "c", "FAIL", 1, body)


def test_newcombe_hybrid_score_interval_matches_the_paper() -> None:
    # Newcombe (1998), Table II, method 10: 56/70 - 48/80 -> 0.2000 [0.0524, 0.3339]; 5/56 - 0/29 -> [-0.0381, 0.1926]
    difference, low, high = newcombe_interval(56, 70, 48, 80)
    assert (round(difference, 4), round(low, 4), round(high, 4)) == (0.2, 0.0524, 0.3339)
    _, low, high = newcombe_interval(5, 56, 0, 29)
    assert (round(low, 4), round(high, 4)) == (-0.0381, 0.1926)


def test_each_label_and_its_cause() -> None:
    key = ("blur", "reconstruction", "rank1")
    old = record("run-01", {key: (3, 60), ("blur", "naive", "rank1"): (30, 60), ("box", "naive", "rank1"): (1, 60)})
    new = record(
        "run-02",
        {key: (40, 60), ("blur", "naive", "rank1"): (5, 60), ("px", "naive", "rank1"): (2, 60), ("box", "naive", "rank1"): (2, 60)},
        attacks=("none", "sr"),
    )
    labels = {(c.method, c.tier, c.metric): c for c in compare(old, new)}
    assert labels[key].label == "regressed" and "new attack sr" in labels[key].cause and labels[key].low > 0
    assert labels[("blur", "naive", "rank1")].label == "improved"
    assert labels[("box", "naive", "rank1")].label == "unchanged"
    assert labels[("px", "naive", "rank1")].label == "new"
    gone = compare(new, old)
    assert {c.label for c in gone if c.method == "px"} == {"dropped"}
    other_inputs = record("run-03", {key: (3, 60)}, inputs="other")
    assert {c.label for c in compare(old, other_inputs)} == {"not comparable"}
    assert "the inputs differ" in compare(old, other_inputs)[0].cause
    assert "the policy differs" in compare(old, record("run-04", {key: (3, 60)}, policy="q"))[0].cause


def test_the_gate_fails_a_method_that_stopped_passing_or_a_significant_rise() -> None:
    key = ("blur", "reconstruction", "rank1")
    baseline = record("run-01", {key: (0, 60)}, verdicts={"blur": "PASS"})
    assert gate(baseline, record("run-02", {key: (1, 60)}, verdicts={"blur": "PASS"})) == []
    stopped = gate(baseline, record("run-03", {key: (5, 60)}, verdicts={"blur": "INCONCLUSIVE"}))
    assert any("passed in baseline run-01 and is now INCONCLUSIVE" in reason for reason in stopped)
    risen = gate(baseline, record("run-04", {key: (20, 60)}, verdicts={"blur": "FAIL"}))
    assert any("rose by" in reason for reason in risen)
    assert gate(baseline, record("run-05", {key: (0, 60)}, verdicts={"blur": "PASS"}, inputs="x"))[0].startswith("baseline run-01 is not comparable")


WRITER = """
import sys
from pathlib import Path
from redteam.store import RunRecord, RunStore
store, prefix = RunStore(Path(sys.argv[1])), sys.argv[2]
for index in range(25):
    rows = [{"method": "m", "tier": "naive", "attack": "none", "recognizer": "dlib", "metric": "rank1", "k": index, "n": 60}]
    store.record(RunRecord(f"{prefix}-{index:02d}", f"2026-11-30T00:00:{index:02d}+00:00", "in", "p", "c", "FAIL", 1, {"verdicts": rows}))
"""


def test_two_writers_share_one_store(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), prefix]) for prefix in ("a", "b")]
    assert [writer.wait(120) for writer in writers] == [0, 0]
    runs = RunStore(path).runs()
    assert len(runs) == 50 and {r.run_id[0] for r in runs} == {"a", "b"}
    assert RunStore(path).get("a-07").verdict_rows[0]["k"] == 7


def redteam(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "redteam", *map(str, args)], capture_output=True, text=True, env=dict(os.environ, COLUMNS="250", **(env or {})), timeout=600
    )


@pytest.mark.slow
def test_the_baseline_gate_through_the_command_line(originals: Path, tmp_path: Path, cache_dir: Path) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text('min_samples = 5\nrequired_tiers = ["naive"]\n[limits.naive]\nverify = 0.5\n')
    store = tmp_path / "runs.sqlite"
    common = ("--policy", policy, "--attack", "none", "--cache-dir", cache_dir, "--store", store, "--recognizer", "dlib")
    first = redteam("audit", originals, "--out", tmp_path / "a", "--method", "m=box:margin=0.6", *common)
    assert first.returncode == 0, first.stderr
    same = redteam("audit", originals, "--out", tmp_path / "b", "--method", "m=box:margin=0.6", "--baseline", "latest", *common)
    assert same.returncode == 0, same.stderr
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["regression"]["gate"] == [] and {c["label"] for c in summary["regression"]["changes"]} == {"unchanged"}
    assert f"no regression against baseline run {summary['regression']['baseline']}" in same.stdout  # said in one line
    other = redteam("audit", originals, "--out", tmp_path / "c", "--method", "m=gaussian_blur:sigma=1", "--baseline", "latest", *common)
    assert other.returncode == 6, other.stderr  # other inputs: the baseline proves nothing, the gate fails with its own code
    regressed = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert "not comparable" in regressed["regression"]["gate"][0] and regressed["exit_code"] == 6  # the summary says what the process said
    assert "REGRESSED against baseline run" in other.stdout
    unknown = redteam("audit", originals, "--out", tmp_path / "d", "--method", "m=box", "--baseline", "nosuch", *common)
    assert unknown.returncode == 2 and "is not in" in unknown.stderr
    history = redteam("history", "--store", store)
    assert history.returncode == 0 and history.stdout.count(" m ") >= 3
    compared = redteam("compare", summary["regression"]["baseline"], summary["regression"]["run"], "--store", store)
    assert compared.returncode == 0 and "unchanged" in compared.stdout, compared.stderr
    latest = redteam("compare", "--store", store)  # the latest run (other inputs) has no earlier run over its inputs
    assert latest.returncode == 2 and "no earlier run over the same inputs" in latest.stderr
    junit = (tmp_path / "b" / "report.junit.xml").read_text()
    assert 'name="naive"' in junit and (tmp_path / "b" / "report.sarif").is_file()
    assert 'classname="redteam.baseline"' in junit and 'type="REGRESSION"' not in junit
    assert 'type="REGRESSION"' in (tmp_path / "c" / "report.junit.xml").read_text()
    assert "RT004" in {r["ruleId"] for r in json.loads((tmp_path / "c" / "report.sarif").read_text())["runs"][0]["results"]}


@pytest.mark.slow
def test_two_concurrent_audits_record_into_one_store(originals: Path, tmp_path: Path, cache_dir: Path) -> None:
    store = tmp_path / "runs.sqlite"
    command = [sys.executable, "-m", "redteam", "audit", str(originals), "--attack", "none", "--recognizer", "dlib", "--store", str(store)]
    audits = [
        subprocess.Popen([*command, "--method", f"m{index}=box:margin=0.6", "--out", str(tmp_path / f"out{index}"), "--cache-dir", str(tmp_path / f"c{index}")])
        for index in range(2)
    ]
    assert [audit.wait(600) for audit in audits] == [1, 1]  # the built-in policy cannot PASS 5 faces: exit 1, recorded
    runs = RunStore(store).runs()
    assert len(runs) == 2 and {method: verdict for run in runs for method, verdict in run.method_verdicts.items()} == {
        "m0": "INCONCLUSIVE",
        "m1": "INCONCLUSIVE",
    }
    assert all((store.parent / "runs" / f"{run.run_id}.parquet").is_file() for run in runs)
