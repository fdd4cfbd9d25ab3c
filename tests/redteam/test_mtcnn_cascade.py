"""MTCNN's cascade with its resampling read from one integral image gives facenet-pytorch's detections bit
for bit: every area resampling equals torch's `interpolate(mode="area")` in value and layout, and the whole
detector (with the channels-last pools the audit gives it) equals `MTCNN.detect` on real photos, alone and
in a batch."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn.functional import interpolate

from redteam.core.pooling import with_channels_last_max_pools
from redteam.images import load_image
from redteam.mtcnn_cascade import AreaSampler, run_cascade


def _batch(seed: int, shape: tuple[int, int, int, int]) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _as_facenet_sees_it(pixels: np.ndarray) -> torch.Tensor:
    """facenet-pytorch's input: the uint8 batch permuted to B x 3 x H x W and made float (channels-last)."""
    return torch.as_tensor(pixels.copy()).permute(0, 3, 1, 2).float()


@pytest.mark.parametrize("size", [(665, 542), (111, 91), (34, 28), (13, 12), (300, 400)])
def test_a_pyramid_level_is_torchs_area_resampling_in_value_and_layout(size: tuple[int, int]) -> None:
    pixels = _batch(0, (2, 317, 263, 3))
    expected = interpolate(_as_facenet_sees_it(pixels), size=size, mode="area")
    level = AreaSampler(pixels, torch.float32, torch.device("cpu")).resize(*size)
    assert torch.equal(level, expected)
    assert level.stride() == expected.stride()  # P-Net's convolutions round by layout


def test_box_sums_stay_exact_where_the_summed_area_table_wraps() -> None:
    """A bright 17.6 MP photo: the table's entries pass 2^31 (int32's sign) and 2^32 (they wrap), and every
    resampling still equals torch's."""
    pixels = np.random.default_rng(3).integers(240, 256, (1, 4200, 4200, 3), dtype=np.uint8)
    assert int(pixels[0, :, :, 0].sum(dtype=np.int64)) > 2**32
    images = _as_facenet_sees_it(pixels)
    sampler = AreaSampler(pixels, torch.float32, torch.device("cpu"))
    for size in ((2521, 2521), (37, 38)):
        assert torch.equal(sampler.resize(*size), interpolate(images, size=size, mode="area"))
    regions = torch.tensor([[0, 0, 4200, 0, 4200], [0, 3000, 4200, 3100, 4199], [0, 10, 40, 4000, 4050]])
    expected = torch.cat([interpolate(images[:, :, t:b, le:r], size=(48, 48), mode="area") for _, t, b, le, r in regions.tolist()])
    assert torch.equal(sampler.crops(regions, 48), expected)


def test_crops_are_torchs_area_resampling_of_each_box_in_value_and_layout() -> None:
    pixels = _batch(1, (2, 240, 300, 3))
    images = _as_facenet_sees_it(pixels)
    rng = np.random.default_rng(2)
    regions = []
    for _ in range(700):  # more than one gathering chunk
        top, left = int(rng.integers(0, 239)), int(rng.integers(0, 299))
        regions.append([int(rng.integers(0, 2)), top, int(rng.integers(top + 1, 241)), left, int(rng.integers(left + 1, 301))])
    sampler = AreaSampler(pixels, torch.float32, torch.device("cpu"))
    for size in (24, 48):
        got = sampler.crops(torch.tensor(regions), size)
        # facenet-pytorch resamples each box on its own and concatenates them (contiguous layout)
        expected = torch.cat(
            [interpolate(images[i, :, top:bottom, left:right].unsqueeze(0), size=(size, size), mode="area") for i, top, bottom, left, right in regions]
        )
        assert torch.equal(got, expected) and got.stride() == expected.stride()
    assert sampler.crops(torch.zeros(0, 5, dtype=torch.int64), 24).shape == (0, 3, 24, 24)


def _facenet_detect(model, images: list[np.ndarray], min_face_size: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    from PIL import Image

    model.min_face_size = min_face_size
    boxes, scores, marks = model.detect([Image.fromarray(image) for image in images], landmarks=True)
    found = []
    for b, s, m in zip(boxes, scores, marks, strict=True):
        if b is None:
            found.append((np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)))
        else:
            found.append((np.array(b.tolist(), np.float32), np.array(list(s), np.float32), np.array(m.tolist(), np.float32)))
    return found


def test_the_detections_are_facenet_pytorchs_bit_for_bit(sample_dir: Path) -> None:
    """Real photos, two search sizes, and a batch (with a mirrored and a blank image): boxes, probabilities
    and landmarks equal to facenet-pytorch 2.5.3's `MTCNN.detect`, including the candidates below the
    audit's score threshold."""
    from facenet_pytorch import MTCNN

    model = MTCNN(keep_all=True, min_face_size=20, post_process=False)
    ours = with_channels_last_max_pools(copy.deepcopy(model))  # as `FaceDetector` builds it
    photos = [load_image(path).pixels for path in sorted(sample_dir.rglob("*.jpg"))[:3]]
    assert photos
    for photo in photos:
        for min_face_size in (20, 60):
            expected = _facenet_detect(model, [photo], min_face_size)
            got = run_cascade(ours, [photo], min_face_size)
            for e, g in zip(expected[0], got[0], strict=True):
                assert np.array_equal(e, g)
    batch = [photos[0], np.ascontiguousarray(photos[0][:, ::-1]), np.zeros_like(photos[0])]
    expected = _facenet_detect(model, batch, 20)
    got = run_cascade(ours, batch, 20)
    assert len(got[0][0]) > 0 and len(got[2][0]) == 0
    for e_image, g_image in zip(expected, got, strict=True):
        for e, g in zip(e_image, g_image, strict=True):
            assert np.array_equal(e, g)
