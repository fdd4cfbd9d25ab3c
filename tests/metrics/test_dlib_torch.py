"""The PyTorch port of dlib's ResNet face recognizer gives dlib's own descriptors, from the same weight file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from metrics.recognizers.dlib_torch import load_dlib_resnet

dlib = pytest.importorskip("dlib", reason="dlib is not installed (pip install dlib-bin)")
face_recognition_models = pytest.importorskip("face_recognition_models", reason="face_recognition_models is not installed")

SAMPLE_PHOTOS = sorted((Path(__file__).resolve().parents[2] / "redteam" / "data" / "sample").glob("*/*.jpg"))
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def model_path() -> Path:
    path = Path(face_recognition_models.face_recognition_model_location())
    if not path.is_file():
        pytest.skip(f"dlib ResNet weights not found at {path}")
    return path


def real_chips() -> list[np.ndarray]:
    """150 x 150 chips cut by dlib itself: HOG detector, 5-point landmarks, get_face_chip(padding=0.25)."""
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
    chips = []
    for photo in SAMPLE_PHOTOS:
        image = dlib.load_rgb_image(str(photo))
        for box in detector(image, 1):
            chips.append(dlib.get_face_chip(image, predictor(image, box), size=150, padding=0.25))
    return chips


def synthetic_chips() -> list[np.ndarray]:
    rng = np.random.default_rng(20240601)
    return [rng.integers(0, 256, (150, 150, 3), dtype=np.uint8) for _ in range(3)] + [np.full((150, 150, 3), 128, np.uint8)]


def test_torch_port_matches_dlib_descriptors(model_path: Path) -> None:
    chips = real_chips()
    assert len(chips) >= len(SAMPLE_PHOTOS), f"dlib found only {len(chips)} faces in {len(SAMPLE_PHOTOS)} sample photos"
    chips += synthetic_chips()

    recognizer = dlib.face_recognition_model_v1(str(model_path))
    expected = np.array([recognizer.compute_face_descriptor(chip) for chip in chips], dtype=np.float64)

    model = load_dlib_resnet(model_path)
    batch = torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float()
    with torch.inference_mode():
        got = model(batch).double().numpy()
        single = model(batch[:1]).double().numpy()

    assert got.shape == (len(chips), 128)
    diff = float(np.abs(got - expected).max())
    assert diff < TOLERANCE, f"max abs difference to dlib {diff:.3g} over {len(chips)} chips"
    assert float(np.abs(single - got[:1]).max()) < 1e-5, "batch size changes the descriptor"


def test_parser_rejects_damaged_files(model_path: Path, tmp_path: Path) -> None:
    data = model_path.read_bytes()
    damaged = {
        "truncated.dat": data[: len(data) // 2],
        "wrong_loss.dat": data.replace(b"loss_metric_2", b"loss_metric_9", 1),
        "trailing.dat": data + b"\x00",
        "empty.dat": b"",
    }
    for name, content in damaged.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ValueError, match=name):
            load_dlib_resnet(path)
