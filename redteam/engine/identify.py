"""Identify the operator of an observed method from (original, anonymized) pairs.

Kerckhoffs' principle: assume the attacker knows the redaction tool. The auditor holds the originals and
the tool's output, so the method can be fitted from the evidence, whatever tool made it:

1. **The region, from the difference.** Per face, the changed region is the connected set of pixels
   that differ around the face (after removing what the tool's own JPEG re-encoding changed everywhere),
   closed and filled morphologically. Its box, its shape (rectangle, ellipse or free-form) and its size
   relative to the face box are reported per face, and so is a face the region does not cover (an eye
   or the mouth outside it, or no region at all: the tool's detector missed the face). The operator is
   fitted inside each face's own region, never through this project's margin model, so a tool that
   places its regions with another detector (dlib, CenterFace) is fitted as well as one of ours.
2. **The codec.** A tool that saves JPEG re-encodes the whole image: the quality is fitted on the pixels
   far from the faces (there the tool's output is the original re-encoded) and every candidate is then
   scored after the same re-encoding.
3. **The family, from the registry.** Every registered method that declares a `fit_space` (the
   built-in ones, the library-exact tools of `redteam.anonymizers.tools`, and plugins alike) is a
   candidate when the region's evidence suits it (a flat colour, a grid of cells, or anything smooth):
   its parameters are searched per face (or proposed from the evidence, e.g. a mosaic's cell count), the
   per-face fits are summarised into specs for the folder (a value in pixels, or a fraction of the region
   for a tool that scales with the face), and each spec is scored on every face. The best family's boxes
   are then refined by a pixel or two where the tool put them, and its variants (e.g. whether it read
   the pixels around the region) decided on the region's edge.

The residual is the mean absolute difference, in grey levels, between the candidate's output and the
published image inside each face's region. For noise, the comparison is of the noise's strength and
whiteness, not of its draw (the one family fitted statistically). A method whose best candidate stays
within MAX_RESIDUAL on most faces counts as declared: the adaptive tier runs against it, and the spec
goes into summary.json and the report.

References:
    Kerckhoffs, "La cryptographie militaire", 1883; Hao et al., FG 2020 (attacker who knows the
    obfuscation); McPherson, Shokri and Shmatikov 2016 (attacker who trains on the same obfuscation).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from redteam.anonymizers import METHODS, build_method
from redteam.anonymizers.base import Anonymizer
from redteam.core.results import FaceFit, Identification
from redteam.engine.identification.codec import _codec_quality, _outside_change
from redteam.engine.identification.evidence import MAX_PAIRS, MAX_RESIDUAL, MIN_CONSISTENT, SEARCH_FACES, Fit, Pair, RegionFinding, _Work
from redteam.engine.identification.families import _Candidate, _noise_candidate, _refine_boxes, _region_spec, _screen, _with_region
from redteam.engine.identification.record import code_fingerprint, from_record, to_record
from redteam.engine.identification.regions import _evidence
from redteam.engine.identification.search import _build, _coarse_to_fine, _refine_face, _residual, _search_face

__all__ = ["MAX_PAIRS", "MAX_RESIDUAL", "Fit", "Pair", "RegionFinding", "code_fingerprint", "from_record", "identify", "identify_detailed", "to_record"]


# -- identification ----------------------------------------------------------------------------------


def identify(pairs: Sequence[Pair]) -> Identification:
    """Fit the method behind `pairs` (the first MAX_PAIRS with faces are used)."""
    return identify_detailed(pairs).identification


@dataclass
class _Outcome:
    """The fit so far: the best spec (None: none), its median and per-face residuals, each face's own
    residual and parameters, the other candidates, and the folder's region parameters."""

    works: list[_Work]
    region: str
    best_spec: str | None = None
    best: float = math.inf
    per_face: list[float] = field(default_factory=list)
    own: list[float] = field(default_factory=list)
    face_parameters: tuple[tuple[str, int, dict[str, Any]], ...] = ()
    others: list[tuple[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.per_face = self.per_face or [math.inf] * len(self.works)
        self.own = self.own or [math.inf] * len(self.works)


def identify_detailed(pairs: Sequence[Pair], registry: Mapping[str, type[Anonymizer]] | None = None) -> Fit:
    """Fit the method behind `pairs`, with the per-face regions and findings (`Fit`).

    Args:
        pairs: (original, anonymized) pairs with the faces found on the originals.
        registry: the methods to consider (default: every registered method with a `fit_space`).
    """
    started = time.perf_counter()
    usable = [p for p in pairs if p.faces and p.original.shape == p.anonymized.shape][:MAX_PAIRS]
    if not usable:
        return Fit(Identification(None, math.nan, False, (), (), "no pair with a face and a same-size counterpart to fit on", MAX_RESIDUAL))
    quality, _, _ = _codec_quality(usable)
    whole_image = quality is None and float(np.median([_outside_change(p) for p in usable])) > 4
    works, findings = _evidence(usable, quality, whole_image)

    def done(identification: Identification, codec: str | None = None, face_parameters: tuple[tuple[str, int, dict[str, Any]], ...] = ()) -> Fit:
        return Fit(identification, tuple(findings), codec, face_parameters, time.perf_counter() - started)

    if not works:
        if findings and all(not f.found for f in findings) and quality is None:
            return done(Identification("none (unchanged)", 0.0, False, (), (), "the faces are unchanged: nothing was anonymized", MAX_RESIDUAL))
        return done(Identification(None, math.nan, False, (), (), "no anonymized region large enough to fit on around the faces", MAX_RESIDUAL))
    kinds = [w.kind for w in works]
    # The evidence most faces show; on a tie every tied kind's families compete on their residuals (a set's
    # order would otherwise decide, and it changes between runs with the string hash seed).
    tied = sorted(k for k in set(kinds) if kinds.count(k) == max(kinds.count(c) for c in kinds))
    outcome = _Outcome(works, _region_spec(works, whole_image))
    candidates = _candidates(dict(METHODS if registry is None else registry), tied, works, quality)
    if candidates:
        _decide(outcome, candidates, quality, whole_image)
    _try_noise(outcome, quality)
    _try_region_jpeg(outcome, quality)
    codec = f"jpeg:quality={quality},region=image" if quality is not None else None
    if outcome.best_spec is None:
        reason = f"no registered method can explain the {'/'.join(tied)} regions around the faces"
        return done(Identification(None, math.nan, False, (), (), reason, MAX_RESIDUAL))
    return done(_identification(outcome, findings, quality, codec, whole_image), codec, outcome.face_parameters)


def _candidates(registry: Mapping[str, type[Anonymizer]], tied: Sequence[str], works: Sequence[_Work], quality: int | None) -> list[_Candidate]:
    """Every family the evidence suits, screened on every face, best first (the costlier fallback
    families too when the best is a near miss)."""
    families = [
        cls for cls in registry.values() if cls.fit_space is not None and (any(k in cls.fit_space.evidence for k in tied) or "any" in cls.fit_space.evidence)
    ]
    candidates = _screen([c for c in families if not c.fit_space.fallback], works, quality)  # type: ignore[union-attr]
    if candidates and MAX_RESIDUAL < candidates[0].median <= 4 * MAX_RESIDUAL:  # a near miss: a costlier family may explain it
        candidates = sorted(candidates + _screen([c for c in families if c.fit_space.fallback], works, quality), key=lambda c: c.median)  # type: ignore[union-attr]
    return candidates


def _decide(outcome: _Outcome, candidates: list[_Candidate], quality: int | None, whole_image: bool) -> None:
    """The best family's boxes refined, its variants (and close rivals) decided on the whole region, edge
    included, and each face fitted on its own with the chosen variant."""
    works = outcome.works
    boxes = [w.box for w in works]
    if not whole_image and candidates[0].median <= 4 * MAX_RESIDUAL:  # the boxes of a family that nearly fits
        _refine_boxes(candidates[0], works, quality)
    if [w.box for w in works] != boxes:  # the boxes moved: the close families fitted again on them
        top = candidates[0].median
        close = list(dict.fromkeys(c.cls for c in candidates if c.median <= max(3.0 * top, top + 3.0)))[:4]
        candidates = _screen(close, works, quality) or candidates
    outcome.region = _region_spec(works, whole_image)
    top = candidates[0].median
    rescored: list[tuple[float, int, _Candidate, list[float]]] = []
    seen: set[tuple[type[Anonymizer], int]] = set()
    for candidate in candidates:  # the best summary of each variant close to the best
        key = (candidate.cls, id(candidate.variant))
        if candidate.median > max(1.5 * top, top + 0.5) or key in seen or len(seen) >= 6:
            continue
        seen.add(key)
        method = _build(candidate.cls, candidate.params)
        if method is not None:
            values = [_residual(method, work, quality, work.band()) for work in works]
            rescored.append((float(np.median(values)), id(candidate), candidate, values))
    rescored.sort(key=lambda item: item[:2])
    outcome.best, _, chosen, outcome.per_face = rescored[0]
    outcome.best_spec = _with_region(chosen.cls(**chosen.params), outcome.region)
    _fit_each_face(outcome, chosen, quality)
    for candidate in candidates:
        spec = _with_region(candidate.cls(**candidate.params), outcome.region)
        if spec != outcome.best_spec and spec not in dict(outcome.others) and len(outcome.others) < 5:
            outcome.others.append((spec, candidate.median))


def _fit_each_face(outcome: _Outcome, chosen: _Candidate, quality: int | None) -> None:
    """Each face fitted on its own with the chosen variant: one family explains every face even where the
    folder's single spec cannot (a tool's integer rounding of a per-face cell count)."""
    works, fitted_params = outcome.works, []
    proposed = any(chosen.cls.fit_proposals(chosen.variant, w.evidence) is not None for w in works)
    for index, work in enumerate(works):
        reuse = index < len(chosen.fits) and not proposed
        params = chosen.fits[index][0] if reuse else _search_face(chosen.cls, chosen.variant, work, quality)[0]
        if not reuse and not proposed and work.small is not None:
            params = _refine_face(chosen.cls, chosen.variant, work, quality, params)[0]
        params = {**params, **chosen.variant.fixed}
        method = _build(chosen.cls, params)
        outcome.own[index] = outcome.per_face[index] if method is None else min(outcome.per_face[index], _residual(method, work, quality, work.band()))
        fitted_params.append(params)
    outcome.face_parameters = tuple((w.label, w.index, p) for w, p in zip(works, fitted_params, strict=True))


def _try_noise(outcome: _Outcome, quality: int | None) -> None:
    """Additive noise, fitted statistically, replaces the best family when it explains the faces better."""
    noise = _noise_candidate(outcome.works, outcome.region) if quality is None and outcome.best > 1.0 else None
    if noise is not None and noise[1] < outcome.best:
        outcome.others = [(outcome.best_spec, outcome.best)] + outcome.others if outcome.best_spec else outcome.others
        outcome.best_spec, outcome.best = noise
        outcome.per_face, outcome.own, outcome.face_parameters = [noise[1]] * len(outcome.works), [noise[1]] * len(outcome.works), ()


def _try_region_jpeg(outcome: _Outcome, quality: int | None) -> None:
    """A project-style pipeline: the region re-encoded as JPEG after the stage (grid at the region's corner);
    not when no single spec fits but each face's own parameters replay it (a tool that sets its strength
    per face)."""
    best_spec, best, works = outcome.best_spec, outcome.best, outcome.works
    family = best_spec.split(":")[0] if best_spec else ""
    if not best_spec or quality is not None or not 1.0 < best <= 12.0 or family in ("noise", "box", "jpeg"):
        return
    if best > MAX_RESIDUAL and _fits_every_face(outcome.own, outcome.face_parameters):
        return

    def piped(q: int) -> float:
        method = build_method(f"{best_spec} | jpeg:quality={q},{outcome.region}")
        return float(np.median([_residual(method, w, None, w.band()) for w in works[:SEARCH_FACES]]))

    q, value = _coarse_to_fine(piped, 20, 95, (10, 3))
    if value < 0.7 * best:
        outcome.best_spec = f"{best_spec} | jpeg:quality={q},{outcome.region}"
        method = build_method(outcome.best_spec)
        outcome.per_face = [_residual(method, w, None, w.band()) for w in works]
        outcome.best = float(np.median(outcome.per_face))
        outcome.own = outcome.per_face


def _identification(outcome: _Outcome, findings: Sequence[RegionFinding], quality: int | None, codec: str | None, whole_image: bool) -> Identification:
    """The `Identification` of a fit with a best spec: identified or not, and the reason in one line."""
    works, best, own = outcome.works, outcome.best, outcome.own
    canonical = build_method(f"{outcome.best_spec} | {codec}" if codec is not None else str(outcome.best_spec)).spec
    consistent = float(np.mean([r <= 2 * MAX_RESIDUAL for r in own]))
    identified = best <= MAX_RESIDUAL and consistent >= MIN_CONSISTENT
    per_face = outcome.per_face
    if not identified and best > MAX_RESIDUAL and _fits_every_face(own, outcome.face_parameters):
        # the family replays every face exactly, each with its own strength (a tool that sets it per face)
        spread = _parameter_spread(outcome.face_parameters)
        reason = (
            f"identified per face as {canonical.split(':')[0]} (each face's own parameters leave at most {max(own):.2f} grey levels"
            f"{'; ' + spread if spread else ''}); no single spec reproduces every face (the folder's best, {canonical}, leaves "
            f"{best:.2f}): the spec is that best single fit"
        )
        identified, best, per_face = True, float(np.median(own)), list(own)
    elif identified:
        reason = f"identified as {canonical} (median residual {best:.2f} grey levels over {len(works)} faces"
        reason += f"; the tool re-encoded the image as JPEG quality {quality})" if quality is not None else ")"
    elif best <= MAX_RESIDUAL:
        reason = f"{canonical} fits only {consistent:.0%} of the faces within {2 * MAX_RESIDUAL} grey levels: not one operator, treated as unknown"
    else:
        reason = f"unknown operator: the best fit, {canonical}, leaves {best:.2f} grey levels (> {MAX_RESIDUAL}): not identified, treated as unknown"
    reason += _region_notes(works, findings, whole_image)
    candidate_list = [(canonical, best)] + [(build_method(s + (f" | {codec}" if codec else "")).spec, v) for s, v in outcome.others]
    return Identification(
        max_residual=MAX_RESIDUAL,
        spec=canonical,
        residual=best,
        identified=identified,
        faces=tuple(FaceFit(w.label, w.index, r) for w, r in zip(works, per_face, strict=True)),
        candidates=tuple(candidate_list),
        reason=reason,
    )


def _region_notes(works: Sequence[_Work], findings: Sequence[RegionFinding], whole_image: bool) -> str:
    """What the regions showed, for the reason: their shapes and size, faces they leave uncovered."""
    notes = ""
    if not whole_image:
        scale = np.median([f.scale for f in findings if f.fitted], axis=0)
        notes += f"; regions found in the difference: {'/'.join(sorted({w.shape for w in works}))}, {scale[0]:.2f} x {scale[1]:.2f} the face box"
    leaks = [f.finding for f in findings if f.finding]
    if leaks:
        notes += f"; {len(leaks)} face(s) not covered: " + "; ".join(leaks[:3]) + ("; ..." if len(leaks) > 3 else "")
    missed = [f for f in findings if not f.fitted]
    if missed and not leaks:
        notes += f"; {len(missed)} face(s) left out of the fit"
    return notes


def _fits_every_face(own: Sequence[float], face_parameters: Sequence[tuple[str, int, dict[str, Any]]]) -> bool:
    """Whether the chosen family, fitted on each face alone, reproduces every face within MAX_RESIDUAL
    (at least two faces: one face alone says nothing about a tool's rule)."""
    return len(own) >= 2 and len(face_parameters) == len(own) and all(r <= MAX_RESIDUAL for r in own)


def _parameter_spread(face_parameters: Sequence[tuple[str, int, dict[str, Any]]]) -> str:
    """The parameters that differ between faces and their range, e.g. "cells 24 to 28"."""
    values: dict[str, list[Any]] = {}
    for _, _, params in face_parameters:
        for name, value in params.items():
            values.setdefault(name, []).append(value)
    parts = []
    for name, seen in values.items():
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in seen):
            continue
        numbers = [v for v in seen if v != 0]  # 0: unset (cells, ksize)
        if len(set(numbers)) > 1:
            parts.append(f"{name} {min(numbers):.4g} to {max(numbers):.4g}")
    return ", ".join(parts)
