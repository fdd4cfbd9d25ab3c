"""Scoring a candidate inside a face's region, and searching a family's parameters on one face."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from redteam.anonymizers.base import Anonymizer, FitAxis, FitVariant, axis_value
from redteam.core.geometry import FaceGeometry
from redteam.engine.identification.codec import _jpeg
from redteam.engine.identification.evidence import _Measure, _Work

# -- scoring -----------------------------------------------------------------------------------------


def _reach(method: Anonymizer, box: tuple[int, int, int, int]) -> int:
    """Pixels around `box` that `method` reads (every stage's context)."""
    return max(stage.context(box) for stage in method.stages)


def _produce(method: Anonymizer, work: _Work, quality: int | None, box: tuple[int, int, int, int], window: tuple[int, int, int, int]) -> np.ndarray:
    """The crop's `window` (x0, y0, x1, y1; its origin on the 16-pixel grid) after `method` inside the
    face's region, and after the tool's JPEG on the blocks around the region (the only ones it changes)."""
    import torch

    wx0, wy0, wx1, wy1 = window
    local = (box[0] - wx0, box[1] - wy0, box[2] - wx0, box[3] - wy0)
    face = FaceGeometry(
        box=(work.face.box[0] - wx0, work.face.box[1] - wy0, work.face.box[2] - wx0, work.face.box[3] - wy0),
        landmarks=tuple((x - wx0, y - wy0) for x, y in work.face.landmarks),
        score=work.face.score,
    )
    produced = method.apply_regions(work.original[wy0:wy1, wx0:wx1], [(local, work.region_mask(box), face)], torch.Generator().manual_seed(0))
    if quality is not None:
        height, width = produced.shape[:2]
        x0, y0 = max(0, (local[0] - 16) // 16 * 16), max(0, (local[1] - 16) // 16 * 16)
        x1, y1 = min(width, local[2] + 24), min(height, local[3] + 24)
        produced[y0:y1, x0:x1] = _jpeg(produced[y0:y1, x0:x1], quality)
    return produced


def _residual(method: Anonymizer, work: _Work, quality: int | None, measure: _Measure, box: tuple[int, int, int, int] | None = None) -> float:
    """Mean |method(original) - anonymized| in grey levels over `measure`, with the face's region at `box`
    (default: its fitted box)."""
    height, width = work.original.shape[:2]
    bx0, by0, bx1, by1 = box or work.box  # a box moved past the image's edge (refined, snapped to a grid) stops there
    box = (max(0, bx0), max(0, by0), min(width, bx1), min(height, by1))
    mx0, my0, mx1, my1 = measure.box
    if mx1 <= mx0 or box[2] <= box[0] or box[3] <= box[1]:
        return math.inf
    reach = _reach(method, box) + (32 if quality is not None else 2)
    x0 = max(0, min(mx0, box[0] - reach)) // 16 * 16
    y0 = max(0, min(my0, box[1] - reach)) // 16 * 16
    x1, y1 = min(width, max(mx1, box[2] + reach)), min(height, max(my1, box[3] + reach))
    produced = _produce(method, work, quality, box, (x0, y0, x1, y1))
    inside = measure.mask[my0:my1, mx0:mx1]
    difference = np.abs(
        produced[my0 - y0 : my1 - y0, mx0 - x0 : mx1 - x0][inside].astype(np.int16) - work.anonymized[my0:my1, mx0:mx1][inside].astype(np.int16)
    )
    return float(difference.mean())


def _build(cls: type[Anonymizer], params: Mapping[str, Any]) -> Anonymizer | None:
    try:
        return cls(**{k: v for k, v in params.items() if not k.startswith("_")})
    except Exception:  # noqa: BLE001 - a parameter set outside the method's declared ranges is no candidate
        return None


def _score(cls: type[Anonymizer], params: Mapping[str, Any], work: _Work, quality: int | None) -> float:
    """The interior residual of `cls(**params)` on one face (remembered per box)."""
    key = (cls, tuple(sorted((k, str(v)) for k, v in params.items())), quality, work.box)
    if key not in work.memo:
        method = _build(cls, params)
        work.memo[key] = math.inf if method is None else _residual(method, work, quality, work.inside)
    return work.memo[key]


def _coarse_to_fine(score: Callable[[int], float], low: int, high: int, steps: Sequence[int], odd: bool = False, finish: bool = True) -> tuple[int, float]:
    """Best integer in [low, high]: every steps[0]-th value, then every steps[1]-th around the best, and
    so on down to single steps (residuals are unimodal enough in these parameters). `odd`: odd values
    only; `finish=False` stops before the single steps."""
    scored: dict[int, float] = {}
    unit = 2 if odd else 1
    centre, span = (low + high) // 2, high - low
    for step in (*(s * unit for s in steps), *((unit,) if finish else ())):
        start = max(low, centre - span)
        if odd:
            start |= 1
        for v in range(start, min(high, centre + span) + 1, step):
            if v not in scored:
                scored[v] = score(v)
        centre = min(scored, key=scored.__getitem__)
        span = step - unit
    return centre, scored[centre]


def _golden(score: Callable[[float], float], low: float, high: float, log: bool, coarse: int = 8, steps: int = 9) -> tuple[float, float]:
    """Best value in [low, high]: a coarse scan (log-spaced for `log`), then golden-section search in the
    bracket around its best point."""
    to, back = (math.log, math.exp) if log else (float, float)
    grid = np.linspace(to(low), to(high), coarse)
    values = [score(back(float(g))) for g in grid]
    best = int(np.argmin(values))
    if steps == 0:
        return back(float(grid[best])), values[best]
    a, b = float(grid[max(0, best - 1)]), float(grid[min(coarse - 1, best + 1)])
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = score(back(c)), score(back(d))
    for _ in range(steps):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = score(back(c))
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = score(back(d))
    found = [(values[best], back(float(grid[best]))), (fc, back(c)), (fd, back(d))]
    value, where = min(found)
    return where, value


def _axis_range(axis: FitAxis, work: _Work) -> tuple[float, float]:
    high = axis.high
    if axis.fraction is not None:  # a strength in pixels: no further than the axis reaches into the region
        high = min(high, max(axis.low * 4, axis.reach * max(work.evidence.width, work.evidence.height)))
    return axis.low, high


def _search_face(cls: type[Anonymizer], variant: FitVariant, work: _Work, quality: int | None, coarse: bool = False) -> tuple[dict[str, Any], float]:
    """The variant's parameters fitted on one face: proposed by the method from the evidence, or searched
    (on the face's shrunk copy when it has one and the axes are lengths or unitless: the parameters are
    returned at full size, the residual is the searched copy's)."""
    proposals = cls.fit_proposals(variant, work.evidence)
    if proposals is not None:
        scored = [(_score(cls, {**variant.fixed, **p}, work, quality), i) for i, p in enumerate(proposals)]
        if not scored:
            return dict(variant.fixed), math.inf
        value, best = min(scored)
        return {**variant.fixed, **proposals[best]}, value
    target, target_quality = work, quality
    if work.small is not None and all(axis.unit is not None for axis in variant.axes):
        target, target_quality = work.small, None  # the tool's JPEG does not commute with shrinking: left out
    params: dict[str, Any] = dict(variant.fixed)
    for axis in variant.axes:  # start every axis in the middle of its range
        low, high = _axis_range(axis, target)
        params[axis.name] = axis_value(axis, math.sqrt(low * high) if axis.scale == "log" else (low + high) / 2)
    value = math.inf
    rounds = 1 if len(variant.axes) <= 1 else 2
    for _ in range(rounds):
        for axis in variant.axes:
            low, high = _axis_range(axis, target)

            def score(v: float, axis: FitAxis = axis) -> float:
                return _score(cls, {**params, axis.name: axis_value(axis, v)}, target, target_quality)

            if axis.scale in ("int", "odd"):
                odd = axis.scale == "odd"
                span = int(high) - int(low)
                steps = (max(1, span // 8), max(1, span // 40)) if span > 40 else (max(1, span // 8),)
                where, value = _coarse_to_fine(lambda v: score(float(v)), int(low), int(high), steps[:1] if coarse else steps, odd, finish=not coarse)
                params[axis.name] = axis_value(axis, where)
            else:
                where_f, value = _golden(score, low, high, axis.scale == "log", steps=0 if coarse else 9)
                params[axis.name] = axis_value(axis, where_f)
    if target is not work:
        params = {**params, **{a.name: axis_value(a, float(params[a.name]) / target.scale) for a in variant.axes if a.unit == "px"}}
    return params, value


def _shrunk_params(variant: FitVariant, params: Mapping[str, Any], scale: float) -> dict[str, Any]:
    """`params` for a copy shrunk by `scale`: the lengths scaled with it."""
    return {**params, **{a.name: axis_value(a, float(params[a.name]) * scale) for a in variant.axes if a.unit == "px" and a.name in params}}


def _refine_face(cls: type[Anonymizer], variant: FitVariant, work: _Work, quality: int | None, params: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """Parameters found on a shrunk copy, refined at full size: each length stepped by 6% (integers by
    one unit) downhill from the estimate, then the vertex of the parabola through the last three points."""
    params = dict(params)
    value = _score(cls, params, work, quality)
    for axis in variant.axes:
        if axis.unit != "px":
            continue
        unit = 2 if axis.scale == "odd" else 1
        integral = axis.scale in ("int", "odd")

        def at(position: float, axis: FitAxis = axis) -> float | int:
            return axis_value(axis, position)

        def score(v: float | int, axis: FitAxis = axis) -> float:
            return _score(cls, {**params, axis.name: v}, work, quality)

        centre = float(params[axis.name])
        step = unit if integral else 0.06 * centre
        points = {at(centre): value}
        for direction in (1, -1):
            position = centre
            for _ in range(6):
                position += direction * step
                v = at(position)
                if v < axis.low or v in points:
                    break
                points[v] = score(v)
                if points[v] >= min(points.values()) and points[v] > points[at(position - direction * step)]:
                    break
        best = min(points, key=points.__getitem__)
        if not integral:  # the parabola's vertex through the best point and its neighbours
            below, above = [v for v in points if v < best], [v for v in points if v > best]
            if below and above:
                a, c = max(below), min(above)
                fa, fb, fc = points[a], points[best], points[c]
                denominator = (best - a) * (fb - fc) - (best - c) * (fb - fa)
                if abs(denominator) > 1e-12:
                    vertex = best - 0.5 * ((best - a) ** 2 * (fb - fc) - (best - c) ** 2 * (fb - fa)) / denominator
                    if a < vertex < c:
                        v = at(vertex)
                        points[v] = score(v)
                        best = min(points, key=points.__getitem__)
        params[axis.name], value = best, points[best]
    return params, value
