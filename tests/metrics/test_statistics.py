import math

import pytest

from metrics.statistics import clopper_pearson_interval, rate_interval, wilson_interval
from redteam.core.errors import ConfigError


def test_wilson_matches_published_values():
    # Brown, Cai and DasGupta (2001) style check: 5/5 and 0/5 at 95%.
    full = wilson_interval(5, 5, 0.95)
    assert full.low == pytest.approx(0.5655, abs=1e-4)
    assert full.high == 1.0
    empty = wilson_interval(0, 5, 0.95)
    assert empty.low == 0.0
    assert empty.high == pytest.approx(0.4345, abs=1e-4)
    middle = wilson_interval(10, 20, 0.95)
    assert middle.low == pytest.approx(0.2993, abs=1e-4)
    assert middle.high == pytest.approx(0.7007, abs=1e-4)


def test_clopper_pearson_is_exact_and_wider_than_wilson():
    exact = clopper_pearson_interval(0, 30, 0.95)
    assert exact.high == pytest.approx(1 - 0.025 ** (1 / 30), rel=1e-6)
    assert exact.high > wilson_interval(0, 30, 0.95).high
    both = clopper_pearson_interval(3, 10, 0.95)
    assert both.low == pytest.approx(0.0667, abs=1e-4)
    assert both.high == pytest.approx(0.6525, abs=1e-4)


def test_no_trials_means_no_evidence():
    estimate = rate_interval(0, 0, 0.95, "wilson")
    assert math.isnan(estimate.rate)
    assert (estimate.low, estimate.high) == (0.0, 1.0)


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError):
        wilson_interval(6, 5)
    with pytest.raises(ConfigError):
        rate_interval(1, 5, 0.95, "bayes")
    with pytest.raises(ConfigError):
        wilson_interval(1, 5, 1.5)
