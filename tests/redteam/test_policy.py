import pytest

from redteam.errors import ConfigError
from redteam.policy import load_policy, parse_policy

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
    ],
)
def test_invalid_policies_say_what_is_wrong(data, message):
    with pytest.raises(ConfigError, match=message) as error:
        parse_policy(data, "test.toml", RECOGNIZERS)
    assert error.value.fix


def test_broken_toml_is_a_config_error(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text("confidence = = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_policy(path, RECOGNIZERS)
