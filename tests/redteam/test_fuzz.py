"""Any text given to the manifest, policy and method/attack spec parsers gives a valid result or a clean,
documented error (a RedteamError with a message and exit code), never another exception."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attacks import build_attack
from redteam.anonymizers import build_method
from redteam.core.errors import RedteamError
from redteam.core.policy import load_policy
from redteam.datasets import read_manifest

FUZZ = settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)  # the same cases every run: CI is reproducible
#: Text that looks like specs: names, separators and numbers, with some arbitrary characters mixed in.
SPEC_TEXT = st.text(alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyz_:=,|.-+0123456789 eEnaif\t\n\\[]$\u00e9\u0000"), max_size=60) | st.text(max_size=40)
SPEC_LIKE = st.builds(
    lambda name, key, value: f"{name}:{key}={value}",
    st.sampled_from(["gaussian_blur", "mosaic", "pixelate", "noise", "jpeg", "box", "k_same", "downsample", "bicubic", "wiener", "sr"]),
    st.sampled_from(["sigma", "block", "pitch", "quality", "k", "factor", "margin", "scale", "nosuch"]),
    st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(str), st.integers(-(10**12), 10**12).map(str), st.text(max_size=8)),
)


def clean(call, *args) -> None:
    try:
        call(*args)
    except RedteamError as error:
        assert error.message and int(error.exit_code) in (2, 3, 4)


@FUZZ
@given(SPEC_TEXT | SPEC_LIKE)
def test_method_specs(text: str) -> None:
    clean(build_method, text)


@FUZZ
@given(SPEC_TEXT | SPEC_LIKE)
def test_attack_specs(text: str) -> None:
    clean(build_attack, text)


TOML_LIKE = st.lists(
    st.one_of(
        st.sampled_from(["confidence = ", "min_samples = ", "[limits.naive]", "[limits.default]", "verify = ", "required_tiers = ", "interval = ", "[[x]]"]),
        st.floats(allow_nan=True, allow_infinity=True).map(str),
        st.integers(-5, 10**6).map(str),
        st.sampled_from(['"wilson"', '["naive"]', "[", "]", "{", "}", '"', "\n", "inf", "nan", "true"]),
        st.text(max_size=10),
    ),
    max_size=20,
).map("".join)


@FUZZ
@given(st.binary(max_size=200) | TOML_LIKE.map(str.encode))
def test_policy_files(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "policy.toml"
    path.write_bytes(content)
    clean(load_policy, path, ("dlib", "facenet"))


CSV_LIKE = st.lists(
    st.one_of(
        st.sampled_from(["original,anonymized,method,identity\n", "\ufefforiginal,anonymized,method\n", ",", "\n", '"', "a/1.jpg", "../x.png", "/abs.png"]),
        st.text(max_size=12),
    ),
    max_size=20,
).map("".join)


@FUZZ
@given(st.binary(max_size=200) | CSV_LIKE.map(str.encode))
def test_manifests(tmp_path: Path, content: bytes) -> None:
    manifest = tmp_path / "pairs.csv"
    manifest.write_bytes(content)
    (tmp_path / "originals").mkdir(exist_ok=True)
    clean(read_manifest, manifest, tmp_path / "originals")
