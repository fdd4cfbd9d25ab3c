"""The families that compete for a folder: screened on every face, their boxes refined, noise, and the
region as a spec."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from redteam.anonymizers.base import Anonymizer, FaceEvidence, FitVariant
from redteam.engine.identification.evidence import MAX_RESIDUAL, SEARCH_FACES, _Measure, _Work
from redteam.engine.identification.search import _build, _refine_face, _residual, _score, _search_face, _shrunk_params


@dataclass
class _Candidate:
    cls: type[Anonymizer]
    variant: FitVariant
    params: dict[str, Any]
    per_face: list[float]
    fits: list[tuple[dict[str, Any], FaceEvidence]]

    @property
    def median(self) -> float:
        return float(np.median(self.per_face)) if self.per_face else math.inf


def _groups(cls: type[Anonymizer]) -> list[list[FitVariant]]:
    """`cls`'s variants, grouped where they differ only in `context`: those agree inside the region, so
    they are fitted once (on its interior) and told apart on its edge."""
    groups: dict[tuple[Any, ...], list[FitVariant]] = {}
    for variant in cls.fit_space.variants if cls.fit_space is not None else ():
        key = (tuple(sorted((k, str(v)) for k, v in variant.fixed.items() if k != "context")), tuple(a.name for a in variant.axes))
        groups.setdefault(key, []).append(variant)
    return list(groups.values())


@dataclass
class _Group:
    cls: type[Anonymizer]
    variants: list[FitVariant]
    fits: list[tuple[dict[str, Any], float]]  # per search face: parameters, interior residual


def _screen(families: Sequence[type[Anonymizer]], works: Sequence[_Work], quality: int | None) -> list[_Candidate]:
    """Every family's variants scanned on the first face; those close to the best fitted on the search
    faces (large ones on their shrunk copies, the best few then refined at full size), summarised into
    folder specs (`fit_summaries`) and scored on every face's interior at full size."""
    groups = [_Group(cls, variants, [_search_face(cls, variants[0], works[0], quality)]) for cls in families for variants in _groups(cls)]
    groups = [g for g in groups if math.isfinite(g.fits[0][1])]
    if not groups:
        return []
    first = min(g.fits[0][1] for g in groups)
    kept = [g for g in groups if g.fits[0][1] <= max(2.0 * first, first + 2.0, 0.5)]
    for group in kept:
        group.fits = [_search_face(group.cls, group.variants[0], work, quality) for work in works[:SEARCH_FACES]]
    hopeless = False  # no family comes near: nothing is refined at full size
    if any(w.small is not None for w in works[:SEARCH_FACES]):  # only the best few are refined at full size
        medians = {id(g): float(np.median([v for _, v in g.fits])) for g in kept}
        best = min(medians.values())
        hopeless = best > 4 * MAX_RESIDUAL
        kept = sorted((g for g in kept if medians[id(g)] <= max(1.5 * best, best + 1.0)), key=lambda g: medians[id(g)])[:3]
        for group in [] if hopeless else kept:
            group.fits = [
                _refine_face(group.cls, group.variants[0], work, quality, params)
                if work.small is not None and group.cls.fit_proposals(group.variants[0], work.evidence) is None
                else (params, value)
                for (params, value), work in zip(group.fits, works, strict=False)
            ]
    candidates = []
    for group in kept:
        scored: dict[int, list[float]] = {}
        for variant in group.variants:
            fits = [({**params, **variant.fixed}, work.evidence) for (params, _), work in zip(group.fits, works, strict=False)]
            for index, summary in enumerate(group.cls.fit_summaries(variant, fits)):
                if _build(group.cls, summary) is not None:
                    # The group's variants agree inside the regions: their interiors are scored once.
                    if index not in scored:
                        scored[index] = [
                            _score(group.cls, _shrunk_params(variant, summary, work.small.scale), work.small, None)
                            if hopeless and work.small
                            else _score(group.cls, summary, work, quality)
                            for work in works
                        ]
                    candidates.append(_Candidate(group.cls, variant, dict(summary), scored[index], fits))
    candidates.sort(key=lambda c: c.median)
    return candidates


def _refine_boxes(candidate: _Candidate, works: Sequence[_Work], quality: int | None) -> None:
    """Move each face's box edges to where the candidate reproduces the region best: by up to 3 pixels
    (the changed pixels can stop short of the tool's box where the image is flat), or 8 after a JPEG
    re-encoding (its blocks across the region's edge change too)."""
    from scipy import ndimage

    if _build(candidate.cls, candidate.params) is None:
        return

    def method_for(work: _Work, box: tuple[int, int, int, int]) -> Anonymizer | None:
        """The candidate on this face's box: with the parameters the evidence proposes for a box of that
        size (a mosaic's cell count follows its pitch), else the folder's."""
        proposals = candidate.cls.fit_proposals(candidate.variant, work.evidence.resized(box[2] - box[0], box[3] - box[1]))
        params = {**proposals[0], **candidate.variant.fixed} if proposals else candidate.params
        return _build(candidate.cls, params)

    reach = 8 if quality is not None else 3
    deltas = [d for d in range(-reach, reach + 1, 2 if quality is not None else 1) if d]
    for work in works:
        x0, y0, x1, y1 = work.box
        height, width = work.changed.shape
        frame = np.zeros((height, width), dtype=bool)
        frame[max(0, y0 - reach - 1) : y1 + reach + 1, max(0, x0 - reach - 1) : x1 + reach + 1] = True
        core = np.zeros_like(frame)
        core[y0:y1, x0:x1] = True
        measure = _Measure.of(frame & ~ndimage.binary_erosion(core, iterations=max(reach + 2, int(0.15 * work.face.width))))
        if work.shape == "free-form" or measure.mask.sum() < 16:
            continue
        start = method_for(work, work.box)
        if start is None:
            continue
        best_box, best = work.box, _residual(start, work, quality, measure)
        if best < (0.05 if quality is not None else 0.3):  # without a JPEG, the changed pixels give the box
            continue

        def trial(box: list[int], work: _Work = work, measure: _Measure = measure, width: int = width, height: int = height) -> float:
            tx0, ty0, tx1, ty1 = box
            method = method_for(work, (tx0, ty0, tx1, ty1))
            if method is None or not (0 <= tx0 < tx1 <= width and 0 <= ty0 < ty1 <= height):
                return math.inf
            return _residual(method, work, quality, measure, (tx0, ty0, tx1, ty1))

        for _ in range(2):
            moved = False
            for side in range(4):
                tried = {0: best}
                for step in (deltas, (-1, 1)):
                    centre = min(tried, key=tried.__getitem__)
                    for delta in step:
                        shift = centre + delta if step != deltas else delta
                        if shift not in tried:
                            box = list(best_box)
                            box[side] += shift
                            tried[shift] = trial(box)
                shift = min(tried, key=tried.__getitem__)
                if shift and tried[shift] < best - 1e-6:
                    box = list(best_box)
                    box[side] += shift
                    best_box, best, moved = (box[0], box[1], box[2], box[3]), tried[shift], True
            if not moved:
                break
        if best_box != work.box:
            work.box = best_box
            work.evidence = work.evidence.resized(best_box[2] - best_box[0], best_box[3] - best_box[1])


def _noise_candidate(works: Sequence[_Work], region: str) -> tuple[str, float] | None:
    """Additive white noise: the difference is zero-mean and uncorrelated between neighbours. The
    residual is the mean of the difference's low-pass part (what a draw of the same noise would not
    explain) plus the mismatch of its strength."""
    differences = [(w.anonymized.astype(np.float64) - w.original.astype(np.float64))[w.interior] for w in works]
    sigma = float(np.sqrt(np.mean([d.var() for d in differences])))
    if sigma < 2.0:
        return None
    correlations = []
    for work in works:
        diff = work.anonymized.astype(np.float64) - work.original.astype(np.float64)
        both = work.interior[:, :-1] & work.interior[:, 1:]
        a, b = diff[:, :-1][both], diff[:, 1:][both]
        correlations.append(float(np.corrcoef(a.ravel(), b.ravel())[0, 1]))
    if float(np.median(correlations)) > 0.2:
        return None
    spec = f"noise:sigma={sigma / 255.0:.4f},{region}"
    smoothed = [abs(float(d.mean())) for d in differences]
    return spec, float(np.median(smoothed)) + abs(float(np.median(correlations))) * sigma


# -- the region as a spec ----------------------------------------------------------------------------


def _region_spec(works: Sequence[_Work], whole_image: bool) -> str:
    """The region parameters that reproduce the fitted regions on average against the auditor's face
    boxes (a spec cannot carry each face's own region): margin and shape."""
    if whole_image:
        return "region=image"
    margins = []
    for work in works:
        x0, y0, x1, y1 = work.box
        margins.append(((x1 - x0) / max(1.0, work.face.width) - 1) / 2)
        margins.append(((y1 - y0) / max(1.0, work.face.height) - 1) / 2)
    margin = round(float(np.clip(np.median(margins), 0.0, 3.0)), 2) if margins else 0.2
    shapes = [w.shape for w in works]
    shape = "ellipse" if shapes.count("ellipse") > len(shapes) / 2 else "rect"
    return f"margin={margin},shape={shape}"


def _with_region(method: Anonymizer, region: str) -> str:
    """`method`'s spec with the folder's region parameters (the fitted regions replace the defaults)."""
    stage = method.spec
    name, _, arguments = stage.partition(":")
    kept = [a for a in arguments.split(",") if a and a.split("=")[0] not in ("margin", "shape", "region", "feather")]
    return f"{name}:" + ",".join(kept + region.split(","))
