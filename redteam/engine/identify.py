"""Identify the operator of an observed method from (original, anonymized) pairs.

Kerckhoffs' principle: assume the attacker knows the redaction tool. The auditor holds the originals and
the tool's output, so the method can be fitted: the region (margin and shape around each face), then
the family and its parameters, each candidate scored by how well it reproduces the published pixels:

- solid fill (its colour), Gaussian / box / motion blur (sigma, size, length and angle), mosaic (integer
  block, or a resize-based pixelate with a fractional pitch, from the blind grid estimate), additive
  noise (sigma), JPEG (quality), and a stage followed by JPEG where that fits better.

The residual is the mean absolute difference, in grey levels, between the candidate's output and the
published image inside the interior of each face's region (its edge is left out: the tool's own face
detector puts the region a few pixels elsewhere). For noise, the comparison is of the noise's strength
and whiteness, not of its draw. A method whose best candidate stays within MAX_RESIDUAL counts as
declared: the adaptive tier runs against it, and the spec goes into summary.json and the report.

References:
    Kerckhoffs, "La cryptographie militaire", 1883; Hao et al., FG 2020 (attacker who knows the
    obfuscation); McPherson, Shokri and Shmatikov 2016 (attacker who trains on the same obfuscation).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from redteam.anonymizers import build_method
from redteam.core.geometry import FaceGeometry
from redteam.core.results import FaceFit, Identification

#: A candidate whose median residual (mean absolute, grey levels, inside the regions) is within this,
#: and which fits at least MIN_CONSISTENT of the faces within twice it, counts as identified.
MAX_RESIDUAL = 3.0
MIN_CONSISTENT = 0.8
#: Pixels differing by more than this between original and anonymized image are "changed".
CHANGED = 6
#: Pairs used for the fit (the first ones with a face and a counterpart), and faces used for the
#: coarse parameter searches (all the pairs' faces score the final spec).
MAX_PAIRS = 6
SEARCH_FACES = 3


@dataclass(frozen=True)
class Pair:
    """One original with its anonymized counterpart (same size) and its faces' geometry."""

    label: str
    original: np.ndarray
    anonymized: np.ndarray
    faces: tuple[FaceGeometry, ...]


@dataclass(frozen=True)
class _Face:
    pair: Pair
    index: int
    interior: np.ndarray  # H x W bool: the region's interior, where residuals are measured


def _crop(pair: Pair) -> Pair:
    """The pair cut to its faces (each box grown by its size and 48 px: regions of margin up to 1 and the
    context a blur reads fit), with the geometry moved along: every candidate is then tried on the faces'
    surroundings only."""
    if not pair.faces:
        return pair
    height, width = pair.original.shape[:2]
    boxes = [f.box for f in pair.faces]
    grow = max(max(b[2] - b[0], b[3] - b[1]) for b in boxes) + 48
    x0 = max(0, int(min(b[0] for b in boxes) - grow))
    y0 = max(0, int(min(b[1] for b in boxes) - grow))
    x1 = min(width, int(math.ceil(max(b[2] for b in boxes) + grow)))
    y1 = min(height, int(math.ceil(max(b[3] for b in boxes) + grow)))
    moved = tuple(
        FaceGeometry(
            box=(f.box[0] - x0, f.box[1] - y0, f.box[2] - x0, f.box[3] - y0),
            landmarks=tuple((px - x0, py - y0) for px, py in f.landmarks),
            score=f.score,
        )
        for f in pair.faces
    )
    return Pair(pair.label, pair.original[y0:y1, x0:x1], pair.anonymized[y0:y1, x0:x1], moved)


def _changed(pair: Pair) -> np.ndarray:
    return np.abs(pair.anonymized.astype(np.int16) - pair.original.astype(np.int16)).max(axis=2) > CHANGED


def _grown(face: FaceGeometry, grow: float, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = face.box
    width, height = x1 - x0, y1 - y0
    return (
        max(0, int(x0 - grow * width)),
        max(0, int(y0 - grow * height)),
        min(shape[1], int(math.ceil(x1 + grow * width))),
        min(shape[0], int(math.ceil(y1 + grow * height))),
    )


def fit_region(pairs: Sequence[Pair]) -> tuple[float, str, str]:
    """(margin, shape, region) of the changed area around each face: the margin that reproduces the
    changed box's size relative to the face box, an ellipse when the box's corners are unchanged.

    "Changed" is measured against the noise floor away from the faces (a tool that saves its output as
    JPEG changes every pixel a little); the whole image counts as the region when the typical pixel far
    from the faces changed too."""
    from scipy import ndimage  # imported when a folder is identified, not by every audit

    margins, corners, whole = [], [], []
    for pair in pairs:
        difference = np.abs(pair.anonymized.astype(np.int16) - pair.original.astype(np.int16)).max(axis=2)
        outside = np.ones(difference.shape, dtype=bool)
        for face in pair.faces:
            x0, y0, x1, y1 = _grown(face, 1.5, difference.shape)
            outside[y0:y1, x0:x1] = False
        floor = float(np.percentile(difference[outside], 99)) if outside.any() else 0.0
        whole.append(float(np.median(difference[outside])) if outside.any() else 0.0)
        changed = difference > floor + 2
        for face in pair.faces:
            x0, y0, x1, y1 = _grown(face, 1.5, changed.shape)
            labels, count = ndimage.label(ndimage.binary_closing(changed[y0:y1, x0:x1], iterations=2))
            if count == 0:
                continue
            fx0, fy0, fx1, fy1 = (int(v) for v in face.box)
            centre = labels[min(max(0, (fy0 + fy1) // 2 - y0), labels.shape[0] - 1), min(max(0, (fx0 + fx1) // 2 - x0), labels.shape[1] - 1)]
            if centre == 0:
                continue
            rows, cols = np.nonzero(labels == centre)
            width, height = face.box[2] - face.box[0], face.box[3] - face.box[1]
            margins.append(((cols.max() - cols.min() + 1) / width - 1) / 2)
            margins.append(((rows.max() - rows.min() + 1) / height - 1) / 2)
            box = labels[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] == centre
            k = max(2, min(box.shape) // 8)
            corners.append(np.mean([box[:k, :k].mean(), box[:k, -k:].mean(), box[-k:, :k].mean(), box[-k:, -k:].mean()]))
    if whole and float(np.median(whole)) > 4:
        return 0.2, "rect", "image"
    margin = float(np.clip(np.median(margins), 0.0, 3.0)) if margins else 0.2
    shape = "ellipse" if corners and float(np.median(corners)) < 0.3 else "rect"
    return round(margin, 2), shape, "face"


def _interiors(pairs: Sequence[Pair], region_spec: str) -> list[_Face]:
    """Each face's region interior under the fitted region (eroded by 6% of the face size)."""
    from scipy import ndimage  # imported when a folder is identified, not by every audit

    method = build_method(f"box:{region_spec}")
    faces = []
    for pair in pairs:
        for index, face in enumerate(pair.faces):
            mask = np.zeros(pair.original.shape[:2], dtype=bool)
            for x0, y0, x1, y1 in method.regions(pair.original.shape, [face]):
                inside = method.region_mask((x0, y0, x1, y1), face) >= 1.0
                mask[y0:y1, x0:x1] |= inside
            erosion = max(2, int(0.06 * (face.box[2] - face.box[0])))
            interior = ndimage.binary_erosion(mask, iterations=erosion)
            if interior.sum() >= 64:
                faces.append(_Face(pair, index, interior))
    return faces


def _residuals(spec: str, faces: Sequence[_Face]) -> list[float]:
    """Per face: mean |method(original) - anonymized| in grey levels over the region interior."""
    method = build_method(spec)
    values = []
    for face in faces:
        import torch

        produced = method.apply(face.pair.original, list(face.pair.faces), torch.Generator().manual_seed(0))
        difference = np.abs(produced.astype(np.int16) - face.pair.anonymized.astype(np.int16)).mean(axis=2)
        values.append(float(difference[face.interior].mean()))
    return values


def _median(spec: str, faces: Sequence[_Face]) -> float:
    return float(np.median(_residuals(spec, faces)))


def _search(make: Callable[[float], str], low: float, high: float, faces: Sequence[_Face], steps: int = 14) -> tuple[str, float]:
    """Golden-section search of a one-parameter family over [low, high] (residuals are unimodal in it)."""
    ratio = (math.sqrt(5) - 1) / 2
    a, b = low, high
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = _median(make(c), faces), _median(make(d), faces)
    for _ in range(steps):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = _median(make(c), faces)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = _median(make(d), faces)
    best = c if fc < fd else d
    return make(best), min(fc, fd)


def _integer_search(make: Callable[[int], str], values: Sequence[int], faces: Sequence[_Face]) -> tuple[str, float]:
    scored = [(_median(make(v), faces), make(v)) for v in values]
    value, spec = min(scored)
    return spec, value


def _coarse_to_fine(make: Callable[[int], str], low: int, high: int, steps: Sequence[int], faces: Sequence[_Face]) -> tuple[str, int, float]:
    """Best integer parameter in [low, high]: every steps[0]-th value, then every steps[1]-th around the
    best, and so on down to single steps (residuals are unimodal enough in these parameters)."""
    scored: dict[int, float] = {}
    centre, span = (low + high) // 2, high - low
    for step in (*steps, 1):
        for v in range(max(low, centre - span), min(high, centre + span) + 1, step):
            if v not in scored:
                scored[v] = _median(make(v), faces)
        centre = min(scored, key=scored.__getitem__)
        span = step - 1
    return make(centre), centre, scored[centre]


def _fill_candidate(faces: Sequence[_Face], region: str) -> tuple[str, float] | None:
    colours = np.concatenate([face.pair.anonymized[face.interior] for face in faces])
    if colours.std(axis=0).max() > 3:
        return None
    from redteam.anonymizers.box import COLOURS

    mean = colours.mean(axis=0)
    name = min(COLOURS, key=lambda c: float(np.abs(np.array(COLOURS[c]) - mean).sum()))
    spec = f"box:color={name},{region}"
    return spec, _median(spec, faces)


def _mosaic_candidates(faces: Sequence[_Face], region: str) -> list[tuple[str, float]]:
    from attacks.grid import estimate_grid

    pitches = []
    for face in faces[:4]:
        x0, y0, x1, y1 = _grown(face.pair.faces[face.index], 0.6, face.pair.anonymized.shape)
        grid = estimate_grid(face.pair.anonymized[y0:y1, x0:x1], tolerances=(0, 3, 8, 14))
        if grid is not None:
            pitches.append((grid.x.pitch + grid.y.pitch) / 2)
    if not pitches:
        return []
    pitch = float(np.median(pitches))
    candidates = []
    for block in sorted({max(2, math.floor(pitch)), max(2, round(pitch)), max(2, math.ceil(pitch))}):
        spec = f"mosaic:block={block},{region}"
        candidates.append((spec, _median(spec, faces[:SEARCH_FACES])))
    # A resize-based mosaic: its regions hold round(size / pitch) cells; the pitch that reproduces
    # them is the median cell width, which a short search around the blind estimate then confirms.
    spec, value = _search(lambda p: f"pixelate:pitch={p:.2f},{region}", pitch * 0.97, pitch * 1.03, faces[:SEARCH_FACES], steps=8)
    fitted = float(spec.split("pitch=")[1].split(",")[0])
    method = build_method(spec)
    widths = [
        size / max(1, round(size / fitted))
        for face in faces
        for x0, y0, x1, y1 in method.regions(face.pair.original.shape, [face.pair.faces[face.index]])
        for size in (x1 - x0, y1 - y0)
    ]
    centred = f"pixelate:pitch={float(np.median(widths)):.2f},{region}"
    centred_value = _median(centred, faces[:SEARCH_FACES])
    candidates.append((centred, centred_value) if centred_value <= value + 0.05 else (spec, value))
    return candidates


def _noise_candidate(faces: Sequence[_Face], region: str) -> tuple[str, float] | None:
    """Additive white noise: the difference is zero-mean and uncorrelated between neighbours. The
    residual is the mean of the difference's low-pass part (what a draw of the same noise would not
    explain) plus the mismatch of its strength."""
    differences = [(face.pair.anonymized.astype(np.float64) - face.pair.original.astype(np.float64))[face.interior] for face in faces]
    sigma = float(np.sqrt(np.mean([d.var() for d in differences])))
    if sigma < 2.0:
        return None
    correlations = []
    for face in faces:
        diff = face.pair.anonymized.astype(np.float64) - face.pair.original.astype(np.float64)
        a, b = diff[:, :-1][face.interior[:, :-1] & face.interior[:, 1:]], diff[:, 1:][face.interior[:, :-1] & face.interior[:, 1:]]
        correlations.append(float(np.corrcoef(a.ravel(), b.ravel())[0, 1]))
    if float(np.median(correlations)) > 0.2:
        return None
    spec = f"noise:sigma={sigma / 255.0:.4f},{region}"
    smoothed = [abs(float(d.mean())) for d in differences]
    return spec, float(np.median(smoothed)) + abs(float(np.median(correlations))) * sigma


def identify(pairs: Sequence[Pair]) -> Identification:
    """Fit the method behind `pairs` (the first MAX_PAIRS with faces are used)."""
    usable = [_crop(p) for p in pairs if p.faces and p.original.shape == p.anonymized.shape][:MAX_PAIRS]
    if not usable:
        return Identification(None, math.nan, False, (), (), "no pair with a face and a same-size counterpart to fit on")
    margin, shape, region_kind = fit_region(usable)
    region = f"margin={margin},shape={shape}" if region_kind == "face" else "region=image"
    faces = _interiors(usable, region)
    if not faces:
        return Identification(None, math.nan, False, (), (), "no face region large enough to fit on")
    changed = np.mean([(np.abs(f.pair.anonymized.astype(np.int16) - f.pair.original.astype(np.int16)).max(axis=2) > CHANGED)[f.interior].mean() for f in faces])
    if changed < 0.02:
        return Identification("none (unchanged)", 0.0, False, (), (), "the faces are unchanged: nothing was anonymized")
    candidates: list[tuple[str, float]] = []
    fill = _fill_candidate(faces, region)
    if fill is not None:
        candidates.append(fill)
    candidates += _mosaic_candidates(faces, region)
    few = faces[:SEARCH_FACES]
    candidates.append(_search(lambda s: f"gaussian_blur:sigma={s:.2f},{region}", 0.3, 40.0, few))
    box_spec, _, box_value = _coarse_to_fine(lambda k: f"box_blur:size={k},{region}", 2, 62, (6, 2), few)
    candidates.append((box_spec, box_value))
    jpeg_spec, _, jpeg_value = _coarse_to_fine(lambda q: f"jpeg:quality={q},{region}", 5, 100, (10, 3), few)
    candidates.append((jpeg_spec, jpeg_value))
    noise = _noise_candidate(faces, region)
    if noise is not None:
        candidates.append(noise)
    candidates.sort(key=lambda item: item[1])
    best_spec, best = candidates[0]
    family = best_spec.split(":")[0]
    plausible = 1.0 < best <= 12.0  # a near miss: a related kernel, or the tool's own JPEG, may explain it
    if family in ("gaussian_blur", "box_blur") and plausible:  # a line kernel fits where neither disc does
        motion = _integer_search(
            lambda code: f"motion_blur:length={code // 12},angle={15 * (code % 12)},{region}",
            [length * 12 + angle for length in range(5, 42, 4) for angle in range(12)],
            faces[:2],
        )
        if motion[1] < 0.7 * best:
            length, angle = int(motion[0].split("length=")[1].split(",")[0]), int(motion[0].split("angle=")[1].split(",")[0])
            best_spec, best = _integer_search(
                lambda code: f"motion_blur:length={code // 1000},angle={code % 1000},{region}",
                [(length + dl) * 1000 + (angle + da) % 180 for dl in (-2, -1, 0, 1, 2) for da in (-6, -3, 0, 3, 6)],
                few,
            )
    if plausible and family not in ("noise", "box", "jpeg"):  # the tool may have saved its output as JPEG
        stage = best_spec
        piped = _integer_search(lambda q: f"{stage} | jpeg:quality={q},{region}", range(20, 96, 5), few)
        if piped[1] < 0.7 * best:
            best_spec, best = piped
    if family == "noise":
        per_face = [best] * len(faces)
    else:
        per_face = _residuals(best_spec, faces)
        best = float(np.median(per_face))
    canonical = build_method(best_spec).spec
    consistent = float(np.mean([r <= 2 * MAX_RESIDUAL for r in per_face]))
    identified = best <= MAX_RESIDUAL and consistent >= MIN_CONSISTENT
    if identified:
        reason = f"identified as {canonical} (median residual {best:.2f} grey levels over {len(faces)} faces)"
    elif best <= MAX_RESIDUAL:
        reason = f"{canonical} fits only {consistent:.0%} of the faces within {2 * MAX_RESIDUAL} grey levels: not one operator, treated as unknown"
    else:
        reason = f"best fit {canonical} leaves {best:.2f} grey levels (> {MAX_RESIDUAL}): not identified, treated as unknown"
    return Identification(
        max_residual=MAX_RESIDUAL,
        spec=canonical,
        residual=best,
        identified=identified,
        faces=tuple(FaceFit(f.pair.label, f.index, r) for f, r in zip(faces, per_face, strict=True)),
        candidates=tuple((build_method(spec).spec, value) for spec, value in [(best_spec, best)] + [c for c in candidates if c[0] != best_spec]),
        reason=reason,
    )


@functools.cache
def code_fingerprint() -> str:
    """A digest of the code a fit depends on (this module, the anonymizers it replays and the shared
    vocabulary in redteam/core they build on: geometry, parameters, specs): a cached identification is
    reused only by the code that made it."""
    import hashlib
    from pathlib import Path

    import redteam.anonymizers
    import redteam.core

    digest = hashlib.sha256()
    packages = [Path(redteam.anonymizers.__file__).parent, Path(redteam.core.__file__).parent]
    for path in [Path(__file__), *(p for package in packages for p in sorted(package.glob("*.py")))]:
        digest.update(f"{path.parent.name}/{path.name}".encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def to_record(result: Identification) -> dict[str, object]:
    """`result` at full precision, for the cache (`from_record` reads it back unchanged)."""
    return {
        "spec": result.spec,
        "residual": result.residual,
        "identified": result.identified,
        "faces": [[f.image, f.face_index, f.residual] for f in result.faces],
        "candidates": [[spec, value] for spec, value in result.candidates],
        "reason": result.reason,
        "max_residual": result.max_residual,
    }


def from_record(record: object) -> Identification | None:
    """An identification written by `to_record`, or None if `record` is not one (a damaged entry)."""
    if not isinstance(record, dict):
        return None
    spec, reason, identified = record.get("spec"), record.get("reason"), record.get("identified")
    if not (spec is None or isinstance(spec, str)) or not isinstance(reason, str) or not isinstance(identified, bool):
        return None
    try:
        faces = tuple(FaceFit(str(image), int(index), float(value)) for image, index, value in record["faces"])
        candidates = tuple((str(name), float(value)) for name, value in record["candidates"])
        return Identification(spec, float(record["residual"]), identified, faces, candidates, reason, float(record["max_residual"]))
    except (KeyError, TypeError, ValueError):
        return None
