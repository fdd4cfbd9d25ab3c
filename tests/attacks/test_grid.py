"""Blind mosaic grid estimation: sub-pixel pitch and phase, integer and resize-based mosaics, whole face
regions and parts of them; no grid on photos that are not mosaics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attacks.grid import AxisGrid, estimate_grid, resample_grid
from redteam.anonymizers import build_method
from redteam.faces import FaceDetector
from redteam.images import load_image


@pytest.fixture(scope="module")
def sample_faces(sample_dir: Path) -> list[tuple[np.ndarray, tuple[float, float, float, float]]]:
    detector = FaceDetector()
    faces = []
    for path in sorted(sample_dir.rglob("*.jpg")):
        image = load_image(path)
        faces.append((image.pixels, detector.detect(image.pixels)[0].box))
    return faces


def synthetic_mosaic(pixels: np.ndarray, box: tuple[float, ...], pitch: float, integer: bool, part: bool, rng: np.random.Generator):
    """A face mosaicked the way tools do it: integer cells anchored at the region's corner, or the region
    resized down to round(size / pitch) cells (box filter) and back up with nearest neighbours; the
    window around it is the face box grown by half with a random shift (random phase)."""
    x0, y0, x1, y1 = box
    width = x1 - x0
    scale = max(1.0, 7.0 * pitch / (width * 1.4))
    image = Image.fromarray(pixels)
    image = image.resize((int(image.width * scale), int(image.height * scale)), Image.Resampling.BICUBIC)
    array = np.asarray(image).copy()
    bx0, by0, bx1, by1 = (int(v * scale) for v in box)
    margin = int(0.2 * width * scale)
    rx0, ry0 = max(0, bx0 - margin), max(0, by0 - margin)
    rx1, ry1 = min(array.shape[1], bx1 + margin), min(array.shape[0], by1 + margin)
    if part:  # the upper half of the face only
        ry1 = ry0 + (ry1 - ry0) // 2 + 2 * int(pitch)
    region = array[ry0:ry1, rx0:rx1]
    height, wide = region.shape[:2]
    if integer:
        block = int(pitch)
        spec = build_method(f"mosaic:block={block},region=image")
        mosaic = spec.transform(region.astype(np.float64) / 255.0, (0, 0, wide, height), None, region, None) * 255.0
        true = (float(block), float(block))
    else:
        columns, rows = max(2, round(wide / pitch)), max(2, round(height / pitch))
        mosaic = np.asarray(Image.fromarray(region).resize((columns, rows), Image.Resampling.BOX).resize((wide, height), Image.Resampling.NEAREST))
        true = (wide / columns, height / rows)
    array[ry0:ry1, rx0:rx1] = np.clip(np.round(mosaic), 0, 255).astype(np.uint8)
    grow = (bx1 - bx0) // 2
    wx0, wy0 = max(0, bx0 - grow + int(rng.integers(-7, 8))), max(0, by0 - grow + int(rng.integers(-7, 8)))
    return array[wy0 : by1 + grow, wx0 : bx1 + grow], true


def test_pitch_within_two_percent_on_at_least_95_percent_of_synthetic_mosaics(sample_faces) -> None:
    rng = np.random.default_rng(2026)
    cases = 60
    within = []
    for case in range(cases):
        pixels, box = sample_faces[case % len(sample_faces)]
        integer = case % 2 == 0
        pitch = float(rng.uniform(6.0, 48.0))
        pitch = float(round(pitch)) if integer else pitch
        window, (true_x, true_y) = synthetic_mosaic(pixels, box, pitch, integer, part=case % 4 == 1, rng=rng)
        grid = estimate_grid(window)
        within.append(grid is not None and abs(grid.x.pitch / true_x - 1) <= 0.02 and abs(grid.y.pitch / true_y - 1) <= 0.02)
    assert sum(within) >= 0.95 * cases, f"{sum(within)}/{cases}"


def test_phase_puts_the_lines_on_the_steps(sample_faces) -> None:
    pixels, box = sample_faces[0]
    window, (pitch, _) = synthetic_mosaic(pixels, box, 12.4, integer=False, part=False, rng=np.random.default_rng(1))
    grid = estimate_grid(window)
    assert grid is not None
    steps = np.nonzero(np.abs(np.diff(window.astype(int), axis=1)).max(axis=2).mean(axis=0) > 0)[0] + 1
    lines = grid.x.phase + grid.x.pitch * np.arange(grid.x.lines)
    assert np.abs(lines[:, None] - steps[None, :]).min(axis=1).max() <= 0.75


@pytest.mark.parametrize("spec", ["none", "gaussian_blur:sigma=4", "gaussian_blur:sigma=12", "box:margin=0.5", "noise:sigma=0.1"])
def test_no_grid_shows_where_there_is_no_mosaic(sample_faces, spec: str) -> None:
    from redteam.core.geometry import FaceGeometry

    found = []
    for pixels, box in sample_faces:
        face = FaceGeometry(box=box, landmarks=(), score=1.0)
        image = pixels if spec == "none" else build_method(spec).apply(pixels, [face])
        x0, y0, x1, y1 = (int(v) for v in box)
        grow = (x1 - x0) // 2
        found.append(estimate_grid(image[max(0, y0 - grow) : y1 + grow, max(0, x0 - grow) : x1 + grow]))
    assert found == [None] * len(sample_faces)


def test_resampling_a_known_fractional_grid_reproduces_a_smooth_image() -> None:
    # A smooth ramp sampled at cell centres (pitch 7.5) and shown as a mosaic comes back close to the ramp.
    height, width, pitch = 60, 75, 7.5
    ramp = np.tile(np.linspace(0.1, 0.9, width)[None, :, None], (height, 1, 3))
    cells = [(k * pitch, (k + 1) * pitch) for k in range(10)]
    mosaic = ramp.copy()
    for low, high in cells:
        columns = slice(int(np.ceil(low)), int(np.ceil(high)))
        mosaic[:, columns] = ramp[:, int(np.ceil(low)) : int(np.ceil(high))].mean(axis=1, keepdims=True)
    grid_x, grid_y = AxisGrid(pitch, 0.0, 1.0, 11), AxisGrid(7.5, 0.0, 1.0, 9)
    restored = resample_grid(mosaic, grid_x, grid_y, (0, 0, width, height), "bicubic")
    assert restored is not None
    inner = slice(8, 67)
    assert np.abs(restored[:, inner] - ramp[:, inner]).mean() < 0.25 * np.abs(mosaic[:, inner] - ramp[:, inner]).mean()
