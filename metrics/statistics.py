"""Binomial confidence intervals for re-identification rates.

References:
    Wilson, "Probable inference, the law of succession, and statistical inference", JASA 1927;
    Clopper and Pearson, "The use of confidence or fiducial limits illustrated in the case of the
    binomial", Biometrika 1934; Brown, Cai and DasGupta, "Interval Estimation for a Binomial
    Proportion", Statistical Science 2001.
"""

from __future__ import annotations

import math

from scipy.special import betaincinv, ndtri  # the inverses scipy.stats' beta.ppf and norm.ppf call (0.4 s less to import)

from redteam.core.errors import ConfigError
from redteam.core.policy import INTERVAL_METHODS
from redteam.core.results import RateEstimate


def _check(successes: int, trials: int, confidence: float) -> None:
    if trials < 0 or successes < 0 or successes > trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes}/{trials}")
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence}", fix="use e.g. confidence = 0.95")


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> RateEstimate:
    """Wilson score interval (two-sided)."""
    _check(successes, trials, confidence)
    if trials == 0:
        return RateEstimate(successes, trials, 0.0, 1.0, confidence, "wilson")
    z = float(ndtri(1.0 - (1.0 - confidence) / 2.0))  # the normal quantile
    p = successes / trials
    denominator = 1.0 + z * z / trials
    centre = (p + z * z / (2.0 * trials)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / trials + z * z / (4.0 * trials * trials)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return RateEstimate(successes, trials, low, high, confidence, "wilson")


def clopper_pearson_interval(successes: int, trials: int, confidence: float = 0.95) -> RateEstimate:
    """Exact Clopper-Pearson interval (two-sided)."""
    _check(successes, trials, confidence)
    if trials == 0:
        return RateEstimate(successes, trials, 0.0, 1.0, confidence, "clopper-pearson")
    alpha = 1.0 - confidence
    low = 0.0 if successes == 0 else float(betaincinv(successes, trials - successes + 1, alpha / 2.0))  # beta quantile
    high = 1.0 if successes == trials else float(betaincinv(successes + 1, trials - successes, 1.0 - alpha / 2.0))
    return RateEstimate(successes, trials, low, high, confidence, "clopper-pearson")


def rate_interval(successes: int, trials: int, confidence: float, method: str) -> RateEstimate:
    """Dispatch on the interval method named in the policy."""
    if method == "wilson":
        return wilson_interval(successes, trials, confidence)
    if method == "clopper-pearson":
        return clopper_pearson_interval(successes, trials, confidence)
    raise ConfigError(f"unknown interval method '{method}'", fix="use one of: " + ", ".join(INTERVAL_METHODS))
