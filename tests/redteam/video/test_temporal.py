"""Multi-frame attacks: the mosaic grid found blind, and the multi-frame reconstruction of a moving mosaic
against one frame's block means."""

from __future__ import annotations

import numpy as np
import skimage.data
from PIL import Image, ImageFilter

from redteam.video.temporal import Observation, average_chips, estimate_grid, multiframe_mosaic
from tests.redteam.video.clips import mosaic

FACE = skimage.data.astronaut()[20:200, 160:320]  # the public-domain NASA portrait's face


def frame_with_face(x: int, y: int, size: tuple[int, int] = (480, 320)) -> np.ndarray:
    frame = np.full((size[1], size[0], 3), 120, np.uint8)
    frame[y : y + FACE.shape[0], x : x + FACE.shape[1]] = FACE
    return frame


def test_the_grid_of_a_frame_fixed_mosaic_is_found_with_its_phase() -> None:
    frame = mosaic(frame_with_face(53, 41), (53, 41, 53 + FACE.shape[1], 41 + FACE.shape[0]), 11)
    region = frame[30:230, 40:230]
    grid = estimate_grid(region, origin=(40, 30))
    assert grid is not None and (grid.block, grid.phase_x, grid.phase_y) == (11, 0, 0)


def test_no_grid_is_found_in_a_blur() -> None:
    blurred = np.asarray(Image.fromarray(FACE).filter(ImageFilter.GaussianBlur(6)))
    assert estimate_grid(blurred) is None


def test_many_shifted_mosaic_frames_recover_the_face_better_than_one() -> None:
    block, observations = 10, []
    height, width = FACE.shape[:2]
    for t in range(12):
        x, y = 100 + 3 * t, 60 + 2 * t
        frame = mosaic(frame_with_face(x, y), (x, y, x + width, y + height), block)
        observations.append(Observation(frame[y - 20 : y + height + 20, x - 20 : x + width + 20], (3 * t, 2 * t), (x - 20, y - 20)))
    grid = estimate_grid(observations[0].frame, observations[0].origin)
    assert grid is not None and grid.block == block
    restored, phases, used = multiframe_mosaic(observations, (100, 60, 100 + width, 60 + height), grid)
    single = mosaic(frame_with_face(100, 60), (100, 60, 100 + width, 60 + height), block)[60 : 60 + height, 100 : 100 + width]
    error = np.abs(restored.astype(float) - FACE).mean()
    assert phases == 10 and used == 12
    assert error < 0.7 * np.abs(single.astype(float) - FACE).mean()


def test_average_chips_is_the_rounded_mean() -> None:
    chips = [np.full((4, 4, 3), v, np.uint8) for v in (10, 11, 13)]
    assert int(average_chips(chips)[0, 0, 0]) == 11
