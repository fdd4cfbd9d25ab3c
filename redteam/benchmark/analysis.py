"""What a benchmark concludes from the audit's rates: the worst case per technique, the privacy-utility
frontier, the minimal safe setting of each swept family, and risk by stratum of face.

Every rate carries its sample size, its 95% interval (Wilson, as the audit's) and the chance level of
the ranking it comes from (`metrics.statistics`, `metrics.identity`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from metrics.statistics import rate_interval

#: The rates a technique is ranked by: another photo of the person ranked first (the strongest
#: re-identification the gallery allows) and verification against the own original.
RISK_METRICS = ("rank1_other", "verify")


@dataclass(frozen=True)
class WorstCase:
    """A technique's highest rate of one metric over every tier, attack and recognizer that ran."""

    technique: str
    metric: str
    rate: float
    low: float
    high: float
    n: int
    chance: float | None
    tier: str
    attack: str
    recognizer: str


def worst_cases(verdicts: pd.DataFrame, metric: str) -> dict[str, WorstCase]:
    """Per method of an audit's verdict frame (`reports.table.verdict_frame`): the row of `metric` with the
    highest upper bound (ties: the highest rate, then more samples), i.e. what a careful adversary reaches."""
    rows = verdicts[(verdicts["metric"] == metric) & (verdicts["n"] > 0)] if not verdicts.empty else verdicts
    found: dict[str, WorstCase] = {}
    for method, group in rows.groupby("method") if not rows.empty else ():
        best = group.sort_values(["ci_high", "rate", "n"], ascending=False).iloc[0]
        chance = best["chance"]
        found[str(method)] = WorstCase(
            str(method), metric, float(best["rate"]), float(best["ci_low"]), float(best["ci_high"]), int(best["n"]),
            None if chance is None or (isinstance(chance, float) and math.isnan(chance)) else float(chance),
            str(best["tier"]), str(best["attack"]), str(best["recognizer"]),
        )  # fmt: skip
    return found


@dataclass(frozen=True)
class UtilityAxis:
    """A utility column the frontier can be drawn against (`--utility`)."""

    column: str
    higher_is_better: bool
    label: str

    def value(self, raw: float) -> float:
        """The column's value oriented so that higher keeps more (what `pareto_front` takes)."""
        return raw if self.higher_is_better else -raw


#: The frontier's utility axes, by the name `--utility` takes (the first is the default).
UTILITY_AXES: dict[str, UtilityAxis] = {
    axis.column: axis
    for axis in (
        UtilityAxis("ssim_image", True, "SSIM of the whole image (higher keeps more)"),
        UtilityAxis("ssim_outside", True, "SSIM outside the faces (higher keeps more)"),
        UtilityAxis("psnr_image", True, "PSNR of the whole image, dB (higher keeps more)"),
        UtilityAxis("psnr_outside", True, "PSNR outside the faces, dB (higher keeps more)"),
        UtilityAxis("lpips_image", False, "LPIPS of the whole image (lower keeps more)"),
        UtilityAxis("lpips_outside", False, "LPIPS outside the faces (lower keeps more)"),
        UtilityAxis("changed_fraction", False, "fraction of the pixels changed (lower keeps more)"),
        UtilityAxis("detectable", True, "faces still detected as faces (higher keeps more)"),
    )
}


def pareto_front(points: Sequence[tuple[str, float, float]]) -> list[str]:
    """The names of the points (name, risk, utility) that no other point beats: none has risk at most as
    high and utility at least as high with one of them strictly better. Lower risk and higher utility are
    better; points with a NaN coordinate are never on the front."""
    finite = [(name, risk, utility) for name, risk, utility in points if not (math.isnan(risk) or math.isnan(utility))]
    front = []
    for name, risk, utility in finite:
        dominated = any(r <= risk and u >= utility and (r < risk or u > utility) for other, r, u in finite if other != name)
        if not dominated:
            front.append(name)
    return front


@dataclass(frozen=True)
class MinimalSetting:
    """The weakest setting of a swept family that is safe, with every stronger setting safe too.

    Attributes:
        value: that setting (None: no setting in the sweep is safe in that sense).
        high: the upper bound of its worst-case rate (None with `value`).
        stronger_when: "larger" or "smaller": which way the parameter strengthens the family, read from the
            sweep's ends (the end with the lower worst-case rate is the stronger).
        first_safe: the weakest setting whose own bound is below the limit, monotone or not.
        note: what the search saw (a safe setting below an unsafe one: the risk is not monotone there).
    """

    family: str
    parameter: str
    limit: float
    value: float | None
    high: float | None
    stronger_when: str
    first_safe: float | None
    note: str


def minimal_safe(family: str, parameter: str, points: Sequence[tuple[float, float, float]], limit: float) -> MinimalSetting:
    """The minimal safe setting of a sweep from its points (value, worst-case rate, upper bound).

    Safe means the upper bound is below `limit`. The search walks from the strongest setting towards the
    weakest and stops at the first unsafe one: the answer is the last safe setting before it, so that
    every stronger setting is safe too. A safe setting beyond that unsafe one (a non-monotone curve) is
    reported in `note`, never taken as the answer.
    """
    ordered = sorted(points)
    if not ordered:
        return MinimalSetting(family, parameter, limit, None, None, "larger", None, "no setting was measured")
    larger = ordered[-1][1] <= ordered[0][1]
    strongest_first = list(reversed(ordered)) if larger else ordered
    answer: tuple[float, float] | None = None
    for value, _, high in strongest_first:
        if high >= limit:
            break
        answer = (value, high)
    safe = [(value, high) for value, _, high in strongest_first if high < limit]
    first_safe = safe[-1][0] if safe else None
    note = ""
    if answer is None:
        note = f"no setting in [{ordered[0][0]:g}, {ordered[-1][0]:g}] is safe at {limit:g}" + (
            f" (the strongest, {strongest_first[0][0]:g}, reaches {strongest_first[0][2]:.3f})" if strongest_first else ""
        )
    elif first_safe is not None and first_safe != answer[0]:
        note = f"not monotone: {first_safe:g} is safe on its own, but a stronger setting between it and {answer[0]:g} is not"
    return MinimalSetting(
        family, parameter, limit, answer[0] if answer else None, answer[1] if answer else None, "larger" if larger else "smaller", first_safe, note
    )


@dataclass(frozen=True)
class Stratum:
    """A technique's worst-case rate on the faces of one stratum."""

    technique: str
    factor: str
    stratum: str
    successes: int
    n: int
    rate: float
    low: float
    high: float


def strata_rates(outcomes: pd.DataFrame, confidence: float = 0.95) -> list[Stratum]:
    """Per technique, factor and stratum: the rate of `success` over the faces there, with its interval.

    Args:
        outcomes: one row per face of a technique's worst-case rows, with columns technique, factor,
            stratum and success (bool).
    """
    found = []
    for (technique, factor, stratum), group in outcomes.groupby(["technique", "factor", "stratum"], sort=True):
        successes, n = int(group["success"].sum()), len(group)
        estimate = rate_interval(successes, n, confidence, "wilson")
        found.append(Stratum(str(technique), str(factor), str(stratum), successes, n, estimate.rate, estimate.low, estimate.high))
    return found


#: Face size strata: the shorter side of the face box in the original, in pixels.
SIZE_EDGES = (64, 128, 256)
#: Yaw strata: |yaw| as a fraction (the nose's offset from the eyes' midpoint over the eye distance;
#: 0 is frontal, about 0.5 is a half profile).
YAW_EDGES = (0.15, 0.35)


def size_stratum(pixels: float) -> str:
    low = 0
    for edge in SIZE_EDGES:
        if pixels < edge:
            return f"{low}-{edge} px"
        low = edge
    return f">= {SIZE_EDGES[-1]} px"


def yaw_of(landmarks: Sequence[tuple[float, float]]) -> float:
    """|yaw| from MTCNN's five landmarks (eyes, nose, mouth corners): the nose's horizontal offset from the
    eyes' midpoint over half the eye distance, clipped to [0, 1]."""
    (lx, _), (rx, _), (nx, _) = landmarks[0], landmarks[1], landmarks[2]
    half = abs(rx - lx) / 2
    return min(1.0, abs(nx - (lx + rx) / 2) / half) if half > 0 else 1.0


def yaw_stratum(yaw: float) -> str:
    if yaw < YAW_EDGES[0]:
        return "frontal"
    return "turned" if yaw < YAW_EDGES[1] else "profile"


def sharpness_strata(values: Sequence[float]) -> list[str]:
    """Tertiles of the source faces' sharpness (variance of the Laplacian) over the dataset: low, mid, high."""
    series = pd.Series(values, dtype=float)
    if series.empty:
        return []
    low, high = series.quantile(1 / 3), series.quantile(2 / 3)
    return ["low" if v <= low else ("mid" if v <= high else "high") for v in series]
