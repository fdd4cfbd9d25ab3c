import math

from metrics.statistics import wilson_interval
from redteam.policy import parse_policy
from redteam.verdict import Outcome, Verdict, decide, method_verdicts, metric_verdicts

POLICY = parse_policy(
    {"min_samples": 10, "required_tiers": ["naive"], "limits": {"naive": {"rank1": 0.2}, "parrot": {"rank1_other": 0.2}}},
    "test", ("dlib",),
)


def test_interval_rule():
    assert decide(wilson_interval(0, 40), 0.2, 10)[0] is Verdict.PASS  # upper 0.088 < 0.2
    assert decide(wilson_interval(20, 40), 0.2, 10)[0] is Verdict.FAIL  # lower 0.35 > 0.2
    assert decide(wilson_interval(8, 40), 0.2, 10)[0] is Verdict.INCONCLUSIVE  # straddles
    verdict, reason = decide(wilson_interval(0, 5), 0.2, 10)
    assert verdict is Verdict.INCONCLUSIVE and "below min_samples" in reason
    assert decide(wilson_interval(0, 0), 0.2, 1)[0] is Verdict.INCONCLUSIVE


def test_boundary_is_not_a_pass():
    estimate = wilson_interval(0, 40)
    assert decide(estimate, estimate.high, 10)[0] is Verdict.INCONCLUSIVE


def outcomes(method, tier, metric, hits, n, attack="none", recognizer="dlib", chance=0.05):
    return [Outcome(method, tier, attack, recognizer, metric, i < hits, chance) for i in range(n)]


def test_method_is_as_bad_as_its_worst_attack_and_recognizer():
    rows = outcomes("m", "naive", "rank1", 0, 40) + outcomes("m", "naive", "rank1", 30, 40, recognizer="facenet")
    verdicts = metric_verdicts(rows, POLICY)
    assert {v.recognizer: v.verdict for v in verdicts} == {"dlib": Verdict.PASS, "facenet": Verdict.FAIL}
    (method,) = method_verdicts(["m"], verdicts, POLICY, {"m": {"naive"}}, [])
    assert method.verdict is Verdict.FAIL and dict(method.tiers)["naive"] is Verdict.FAIL


def test_not_applicable_rows_do_not_count_as_samples():
    rows = outcomes("m", "naive", "rank1", 0, 40) + [Outcome("m", "naive", "none", "dlib", "rank1", None, math.nan)] * 5
    (verdict,) = metric_verdicts(rows, POLICY)
    assert verdict.estimate.trials == 40


def test_required_tier_and_blockers_prevent_pass():
    verdicts = metric_verdicts(outcomes("m", "naive", "rank1", 0, 40), POLICY)
    (ok,) = method_verdicts(["m"], verdicts, POLICY, {"m": {"naive"}}, [])
    assert ok.verdict is Verdict.PASS
    (blocked,) = method_verdicts(["m"], verdicts, POLICY, {"m": {"naive"}}, ["policy requires recognizer 'facenet'"])
    assert blocked.verdict is Verdict.INCONCLUSIVE and any("facenet" in r for r in blocked.reasons)
    (missing,) = method_verdicts(["m"], [], POLICY, {"m": set()}, [])
    assert missing.verdict is Verdict.INCONCLUSIVE and any("did not run" in r for r in missing.reasons)


def test_limit_below_chance_is_flagged():
    (verdict,) = metric_verdicts(outcomes("m", "naive", "rank1", 1, 20, chance=0.25), POLICY)
    assert "chance level" in verdict.reason
