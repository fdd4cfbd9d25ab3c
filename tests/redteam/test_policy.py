import pytest

from redteam.core.errors import ConfigError
from redteam.core.policy import load_policy, parse_policy

RECOGNIZERS = ("dlib", "facenet")


def test_builtin_policies_load():
    default = load_policy(None, RECOGNIZERS)
    assert default.min_samples == 30 and default.confidence == 0.95
    assert default.limits_for("naive")["rank1"] == pytest.approx(0.10)
    demo = load_policy(None, RECOGNIZERS, builtin="demo_policy.toml")
    assert demo.min_samples == 5 and demo.required_recognizers == ("dlib",)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"limits": {"naive": {"rank1": 1.5}}}, "must be a rate"),
        ({"limits": {"naive": {"rank7": 0.1}}}, "unknown metric 'rank7'"),
        ({"limits": {"space": {"rank1": 0.1}}}, "unknown tier 'space'"),
        ({"limits": {}}, "needs a \\[limits"),
        ({"confidence": 95, "limits": {"naive": {"rank1": 0.1}}}, "confidence"),
        ({"min_samples": 0, "limits": {"naive": {"rank1": 0.1}}}, "min_samples"),
        ({"required_recognizers": ["arcface"], "limits": {"naive": {"rank1": 0.1}}}, "arcface"),
        ({"colour": "red", "limits": {"naive": {"rank1": 0.1}}}, "unknown key"),
        ({"limits": {"parrot": {"rank1": 0.1}}}, "cannot measure"),
        ({"limits": {"naive": {}}}, "at least one metric"),
        ({"required_attacks": ["telepathy"], "limits": {"naive": {"rank1": 0.1}}}, "telepathy"),
    ],
)
def test_invalid_policies_say_what_is_wrong(data, message):
    if "required_attacks" in data:
        with pytest.raises(ConfigError, match=message):
            parse_policy(data, "test.toml", RECOGNIZERS, ("none", "bicubic"))
        return
    with pytest.raises(ConfigError, match=message) as error:
        parse_policy(data, "test.toml", RECOGNIZERS)
    assert error.value.fix


def test_broken_toml_is_a_config_error(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text("confidence = = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_policy(path, RECOGNIZERS)


def test_builtin_default_requires_reconstruction_and_adaptive_when_declared():
    default = load_policy(None, RECOGNIZERS)
    assert default.tiers_required(declared=False) == ("naive", "reconstruction")
    assert default.tiers_required(declared=True) == ("naive", "reconstruction", "adaptive")
    for tier in ("naive", "reconstruction", "parrot", "adaptive"):
        assert default.limits_for(tier), tier  # every tier that can run is judged


def test_default_limits_fill_tiers_without_a_table():
    policy = parse_policy({"limits": {"naive": {"rank1": 0.2}, "default": {"verify": 0.1, "rank1_other": 0.05}}}, "t.toml", RECOGNIZERS)
    assert policy.limits_for("naive") == {"rank1": 0.2}
    assert policy.limits_for("adaptive") == {"verify": 0.1, "rank1_other": 0.05}
    assert policy.limits_for("parrot") == {"rank1_other": 0.05}
    assert parse_policy({"limits": {"naive": {"rank1": 0.2}}}, "t.toml", RECOGNIZERS).limits_for("adaptive") is None
    assert policy.to_json()["limits"]["default"] == {"verify": 0.1, "rank1_other": 0.05}


@pytest.mark.parametrize(
    "content, message",
    [(b"confidence = 0.95\n# \xff\xfe\n", "not UTF-8"), (b"x = " + b"[" * 50_000 + b"]" * 50_000 + b"\n", "too deeply")],
)
def test_hostile_policy_files_are_config_errors(tmp_path, content, message):
    path = tmp_path / "p.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        load_policy(path, RECOGNIZERS)


@pytest.mark.parametrize(
    "data, key",
    [
        ({"min_samples": 10**18, "limits": {"naive": {"rank1": 0.1}}}, "min_samples"),  # absurd: no audit reaches it (was exit 1)
        ({"min_samples": 1_000_001, "limits": {"naive": {"rank1": 0.1}}}, "min_samples"),
        ({"limits": {"naive": {"rank1": 1e308}}}, "naive.rank1"),
        ({"limits": {"default": {"verify": -1e-9}}}, "default.verify"),
        ({"limits": {"naive": {"rank1": float("nan")}}}, "limits.naive.rank1"),
        ({"confidence": float("inf"), "limits": {"naive": {"rank1": 0.1}}}, "confidence"),
        ({"confidence": 1.0, "limits": {"naive": {"rank1": 0.1}}}, "confidence"),
        ({"confidence": 0.0, "limits": {"naive": {"rank1": 0.1}}}, "confidence"),
        ({"description": float("nan"), "limits": {"naive": {"rank1": 0.1}}}, "description"),
        ({"name": 1e308, "limits": {"naive": {"rank1": 0.1}}}, "name"),
    ],
)
def test_out_of_range_numbers_are_config_errors_naming_the_key(data, key):
    """Issue 22: every number of a policy is finite and in range, or the policy is refused (exit 3)."""
    with pytest.raises(ConfigError, match=key.replace(".", "\\.").replace("[", "\\[")) as error:
        parse_policy(data, "test.toml", RECOGNIZERS)
    assert error.value.exit_code == 3 and error.value.fix


def test_a_policy_file_with_a_huge_min_samples_is_refused(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text("min_samples = 9223372036854775807\n[limits.naive]\nverify = 0.1\n")
    with pytest.raises(ConfigError, match="min_samples must be an integer from 1 to 1,000,000"):
        load_policy(path, RECOGNIZERS)
