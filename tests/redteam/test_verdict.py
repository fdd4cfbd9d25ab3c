import math

from hypothesis import given, settings
from hypothesis import strategies as st

from metrics.identity import chance_other_photo
from metrics.statistics import wilson_interval
from redteam.core.policy import parse_policy
from redteam.core.results import MethodEvidence, Outcome, Verdict
from redteam.engine.verdict import decide, distractors_to_beat, method_verdicts, metric_verdicts

POLICY = parse_policy(
    {"min_samples": 10, "required_tiers": ["naive"], "limits": {"naive": {"rank1": 0.2}, "parrot": {"rank1_other": 0.2}}},
    "test",
    ("dlib",),
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
    cover = {("none", "dlib"): 40, ("none", "facenet"): 40}
    (method,) = method_verdicts(["m"], verdicts, POLICY, {"m": evidence(coverage=cover)}, [])
    assert method.verdict is Verdict.FAIL and dict(method.tiers)["naive"] is Verdict.FAIL


def test_not_applicable_rows_do_not_count_as_samples():
    rows = outcomes("m", "naive", "rank1", 0, 40) + [Outcome("m", "naive", "none", "dlib", "rank1", None, math.nan)] * 5
    (verdict,) = metric_verdicts(rows, POLICY)
    assert verdict.estimate.trials == 40


def test_required_tier_and_blockers_prevent_pass():
    verdicts = metric_verdicts(outcomes("m", "naive", "rank1", 0, 40), POLICY)
    (ok,) = method_verdicts(["m"], verdicts, POLICY, {"m": evidence()}, [])
    assert ok.verdict is Verdict.PASS
    (blocked,) = method_verdicts(["m"], verdicts, POLICY, {"m": evidence()}, ["policy requires recognizer 'facenet'"])
    assert blocked.verdict is Verdict.INCONCLUSIVE and any("facenet" in r for r in blocked.reasons)
    (missing,) = method_verdicts(["m"], [], POLICY, {"m": evidence(tiers=())}, [])
    assert missing.verdict is Verdict.INCONCLUSIVE and any("did not run" in r for r in missing.reasons)


def test_limit_below_chance_is_flagged():
    (verdict,) = metric_verdicts(outcomes("m", "naive", "rank1", 1, 20, chance=0.25), POLICY)
    assert "chance level" in verdict.reason


# -- the evidence gate -------------------------------------------------------------------------------

TIERS = ("naive", "reconstruction", "parrot", "adaptive")


def evidence(faces=40, tiers=("naive",), coverage=None, declared=False, missing=()):
    return MethodEvidence(
        faces=faces,
        declared=declared,
        tiers_run=frozenset(tiers),
        coverage=coverage if coverage is not None else {("none", "dlib"): faces},
        missing=tuple(missing),
    )


def test_min_samples_blocks_pass_but_not_a_clear_fail():
    assert decide(wilson_interval(16, 16), 0.1, 30)[0] is Verdict.FAIL
    verdict, reason = decide(wilson_interval(0, 16), 0.1, 30)
    assert verdict is Verdict.INCONCLUSIVE and "below min_samples" in reason


def test_chance_at_or_above_the_limit_is_inconclusive_with_the_distractors_that_fix_it():
    rows = [Outcome("m", "naive", "none", "dlib", "rank1", False, 0.25, pool=4, matches=1) for _ in range(40)]
    (verdict,) = metric_verdicts(rows, POLICY)
    assert verdict.verdict is Verdict.INCONCLUSIVE and verdict.estimate.high < 0.2
    # 1/G < 0.2 needs G >= 6 gallery entries: 2 more than the 4 there are.
    assert verdict.distractors_needed == 2 and "add at least 2 distractor faces" in verdict.reason


def test_distractors_for_other_photo_chance_by_hand():
    # 3 other photos among 9 entries: top-1 chance 1/3; below 0.1 needs 3/(9+d) < 0.1, d >= 22.
    rows = [Outcome("m", "naive", "none", "dlib", "rank1_other", False, chance_other_photo(1, 9, 3), pool=9, matches=3)]
    assert distractors_to_beat(rows, 0.1) == 22
    assert chance_other_photo(1, 9 + 22, 3) < 0.1 <= chance_other_photo(1, 9 + 21, 3)
    assert distractors_to_beat(rows, 0.0) is None


def test_tier_without_limits_takes_the_default_table_or_blocks_pass():
    naive_only = parse_policy({"min_samples": 1, "limits": {"naive": {"rank1": 0.5}}}, "t", ("dlib",))
    rows = outcomes("m", "naive", "rank1", 0, 40, chance=0.01) + outcomes("m", "reconstruction", "rank1", 0, 40, attack="bicubic", chance=0.01)
    verdicts = metric_verdicts(rows, naive_only)
    assert {v.tier: v.verdict for v in verdicts} == {"naive": Verdict.PASS, "reconstruction": Verdict.INCONCLUSIVE}
    cover = {("none", "dlib"): 40, ("bicubic", "dlib"): 40}
    (method,) = method_verdicts(["m"], verdicts, naive_only, {"m": evidence(tiers=("naive", "reconstruction"), coverage=cover)}, [])
    assert method.verdict is Verdict.INCONCLUSIVE and any("sets no limits" in r for r in method.reasons)
    with_default = parse_policy({"min_samples": 1, "limits": {"default": {"rank1": 0.5}}}, "t", ("dlib",))
    both = parse_policy({"min_samples": 1, "limits": {"default": {"rank1": 0.5, "verify": 0.5}}}, "t", ("dlib",))
    assert both.limits_for("parrot") == {}  # verify and rank1 cannot be measured in the parrot tier
    verdicts = metric_verdicts(rows, with_default)
    (method,) = method_verdicts(["m"], verdicts, with_default, {"m": evidence(tiers=("naive", "reconstruction"), coverage=cover)}, [])
    assert method.verdict is Verdict.PASS


def test_incomplete_coverage_or_missing_records_block_pass():
    verdicts = metric_verdicts(outcomes("m", "naive", "rank1", 0, 40, chance=0.01), POLICY)
    (short,) = method_verdicts(["m"], verdicts, POLICY, {"m": evidence(coverage={("none", "dlib"): 38})}, [])
    assert short.verdict is Verdict.INCONCLUSIVE and any("38 of 40" in r for r in short.reasons)
    (unknown,) = method_verdicts(["m"], verdicts, POLICY, {}, [])
    assert unknown.verdict is Verdict.INCONCLUSIVE
    (declared,) = method_verdicts(
        ["m"],
        verdicts,
        parse_policy({"min_samples": 1, "required_tiers_if_declared": ["adaptive"], "limits": {"naive": {"rank1": 0.2}}}, "t", ("dlib",)),
        {"m": evidence(declared=True)},
        [],
    )
    assert declared.verdict is Verdict.INCONCLUSIVE and any("'adaptive' did not run" in r for r in declared.reasons)


def _policies():
    metrics = st.sampled_from(["verify", "rank1", "rank1_other"])
    limits = st.dictionaries(st.sampled_from(["naive", "reconstruction", "default"]), st.dictionaries(metrics, st.floats(0.0, 1.0), min_size=1), min_size=1)
    return st.builds(
        lambda limits, confidence, min_samples, required: parse_policy(
            {"limits": limits, "confidence": confidence, "min_samples": min_samples, "required_tiers": required}, "h", ("dlib",)
        ),
        limits,
        st.sampled_from([0.5, 0.8, 0.9, 0.95, 0.99]),
        st.integers(1, 40),
        st.lists(st.sampled_from(["naive", "reconstruction"]), unique=True),
    )


@st.composite
def _audits(draw):
    faces = draw(st.integers(1, 60))
    tiers = draw(st.lists(st.sampled_from(["naive", "reconstruction"]), min_size=1, unique=True))
    rows, coverage = [], {}
    for tier in tiers:
        attack = "none" if tier == "naive" else "bicubic"
        covered = draw(st.integers(0, faces))
        coverage[(attack, "dlib")] = covered
        for face in range(covered):
            for metric in ("verify", "rank1", "rank1_other"):
                success = draw(st.sampled_from([True, False, None]))
                pool = draw(st.integers(1, 500))
                matches = 1 if metric != "rank1_other" else draw(st.integers(1, pool))
                chance = float("nan") if metric == "verify" else chance_other_photo(1, pool, matches)
                rows.append(Outcome("m", tier, attack, "dlib", metric, success, chance, pool=pool, matches=matches, face_id=str(face)))
    blockers = draw(st.lists(st.just("recognizer 'facenet' was requested but is unavailable"), max_size=1))
    missing = draw(st.lists(st.just("policy requires attack 'sr', which does not apply"), max_size=1))
    return rows, MethodEvidence(faces=faces, tiers_run=frozenset(tiers), coverage=coverage, missing=tuple(missing)), blockers


@settings(max_examples=300, deadline=None)
@given(_policies(), _audits())
def test_property_no_pass_unless_every_condition_of_the_gate_holds(policy, audit):
    rows, method_evidence, blockers = audit
    verdicts = metric_verdicts(rows, policy)
    (method,) = method_verdicts(["m"], verdicts, policy, {"m": method_evidence}, blockers)
    if method.verdict is not Verdict.PASS:
        return
    assert not blockers and not method_evidence.missing
    assert all(tier in method_evidence.tiers_run for tier in policy.required_tiers)
    assert all(covered == method_evidence.faces for covered in method_evidence.coverage.values())
    assert verdicts
    for tier in method_evidence.tiers_run:
        limits = policy.limits_for(tier)
        assert limits is not None
        for metric, limit in limits.items():
            group = [r for r in rows if r.tier == tier and r.metric == metric and r.success is not None]
            (judged,) = [v for v in verdicts if v.tier == tier and v.metric == metric]
            assert len(group) >= policy.min_samples and judged.estimate.trials == len(group)
            assert judged.estimate.high < limit
            chances = [r.chance for r in group if not math.isnan(r.chance)]
            assert not chances or sum(chances) / len(chances) < limit
