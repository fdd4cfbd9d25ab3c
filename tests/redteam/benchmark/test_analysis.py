"""The benchmark's conclusions against hand computations: worst cases, the Pareto front, the minimal safe
setting on monotone and non-monotone curves, and strata with their intervals."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from redteam.benchmark.analysis import UTILITY_AXES, minimal_safe, pareto_front, sharpness_strata, size_stratum, strata_rates, worst_cases, yaw_of, yaw_stratum


def test_the_worst_case_is_the_highest_upper_bound_over_attacks_and_recognizers() -> None:
    frame = pd.DataFrame(
        [
            {
                "method": "m",
                "tier": "naive",
                "attack": "none",
                "recognizer": "dlib",
                "metric": "rank1_other",
                "n": 50,
                "rate": 0.10,
                "ci_low": 0.04,
                "ci_high": 0.21,
                "chance": 0.01,
            },
            {
                "method": "m",
                "tier": "reconstruction",
                "attack": "sr",
                "recognizer": "facenet",
                "metric": "rank1_other",
                "n": 50,
                "rate": 0.30,
                "ci_low": 0.19,
                "ci_high": 0.44,
                "chance": 0.01,
            },
            {
                "method": "m",
                "tier": "reconstruction",
                "attack": "sr",
                "recognizer": "facenet",
                "metric": "verify",
                "n": 50,
                "rate": 0.9,
                "ci_low": 0.8,
                "ci_high": 0.95,
                "chance": None,
            },
            {
                "method": "m",
                "tier": "adaptive",
                "attack": "x",
                "recognizer": "dlib",
                "metric": "rank1_other",
                "n": 0,
                "rate": math.nan,
                "ci_low": 0.0,
                "ci_high": 1.0,
                "chance": None,
            },
        ]
    )
    case = worst_cases(frame, "rank1_other")["m"]
    assert (case.attack, case.recognizer, case.rate, case.n) == ("sr", "facenet", 0.30, 50)  # the n=0 row is no evidence


def test_the_pareto_front_by_hand() -> None:
    # (risk, utility): a dominates c (less risk, more utility); b and d trade off; e ties a on both (kept: not strictly beaten).
    points = [("a", 0.1, 0.8), ("b", 0.05, 0.5), ("c", 0.2, 0.7), ("d", 0.3, 0.95), ("e", 0.1, 0.8), ("f", math.nan, 0.99)]
    assert pareto_front(points) == ["a", "b", "d", "e"]


def test_a_lower_is_better_utility_axis_is_turned_before_the_front() -> None:
    # LPIPS outside the faces: a changes least (0.01) at risk 0.3; b changes more (0.05) at risk 0.1; c changes
    # more than b at a higher risk than b (beaten). Read as "higher keeps more", c (0.20) would beat them all.
    axis = UTILITY_AXES["lpips_outside"]
    board = [("a", 0.3, 0.01), ("b", 0.1, 0.05), ("c", 0.2, 0.20)]
    assert pareto_front([(name, risk, axis.value(lpips)) for name, risk, lpips in board]) == ["a", "b"]
    assert UTILITY_AXES["ssim_image"].value(0.7) == 0.7 and next(iter(UTILITY_AXES)) == "ssim_image"  # the default axis


def test_the_minimal_safe_setting_of_a_monotone_curve() -> None:
    # mosaic block: risk falls as the block grows; bounds below 0.05 from 24 up.
    points = [(4, 0.6, 0.7), (8, 0.3, 0.4), (16, 0.05, 0.1), (24, 0.01, 0.04), (32, 0.0, 0.03)]
    found = minimal_safe("mosaic", "block", points, 0.05)
    assert (found.value, found.high, found.stronger_when, found.note) == (24, 0.04, "larger", "")


def test_a_non_monotone_curve_never_yields_a_setting_with_an_unsafe_stronger_one() -> None:
    # 16 is safe on its own, 24 is not: the answer is 32 (every stronger setting safe), and the dip is reported.
    points = [(8, 0.3, 0.4), (16, 0.01, 0.04), (24, 0.05, 0.09), (32, 0.0, 0.03)]
    found = minimal_safe("mosaic", "block", points, 0.05)
    assert found.value == 32 and found.first_safe == 16 and "not monotone" in found.note


def test_a_parameter_that_weakens_as_it_grows_and_a_sweep_with_no_safe_setting() -> None:
    quality = [(10, 0.0, 0.02), (30, 0.01, 0.04), (60, 0.2, 0.3), (90, 0.6, 0.7)]  # JPEG quality: larger keeps more
    found = minimal_safe("jpeg", "quality", quality, 0.05)
    assert (found.value, found.stronger_when) == (30, "smaller")
    none = minimal_safe("gaussian_blur", "sigma", [(2, 0.8, 0.9), (4, 0.5, 0.6)], 0.05)
    assert none.value is None and "no setting" in none.note


def test_strata_rates_and_their_intervals() -> None:
    rows = pd.DataFrame(
        {"technique": ["t"] * 6, "factor": ["size"] * 6, "stratum": ["0-64 px"] * 4 + [">= 256 px"] * 2, "success": [True, True, True, False, False, False]}
    )
    small, large = strata_rates(rows)[::-1] if strata_rates(rows)[0].stratum != "0-64 px" else strata_rates(rows)
    assert (small.successes, small.n, small.rate) == (3, 4, 0.75) and small.low < 0.75 < small.high
    assert (large.successes, large.n, large.rate) == (0, 2, 0.0) and large.high > 0.5  # two faces: a wide interval


def test_strata_edges() -> None:
    assert [size_stratum(v) for v in (30, 64, 200, 300)] == ["0-64 px", "64-128 px", "128-256 px", ">= 256 px"]
    frontal = yaw_of(((30.0, 40.0), (50.0, 40.0), (40.0, 50.0), (33.0, 60.0), (47.0, 60.0)))
    turned = yaw_of(((30.0, 40.0), (50.0, 40.0), (45.0, 50.0), (33.0, 60.0), (47.0, 60.0)))
    assert yaw_stratum(frontal) == "frontal" and frontal == 0.0 and turned == pytest.approx(0.5) and yaw_stratum(turned) == "profile"
    assert sharpness_strata([1, 2, 3, 4, 5, 6]) == ["low", "low", "mid", "mid", "high", "high"]
