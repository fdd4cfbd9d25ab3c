"""Tests with the real downloaded weights (marker `weights`); they skip with the reason when absent.

Run them on a machine prepared with `redteam models download facenet_vggface2 alexnet_trunk`:
    pytest -m weights
"""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from metrics.perceptual import LPIPSMetric
from metrics.recognizers.facenet import FaceNetRecognizer
from redteam.faces import FaceDetector
from redteam.images import load_image

pytestmark = pytest.mark.weights


@pytest.fixture
def real_torch_home(monkeypatch):
    """The user's TORCH_HOME (the autouse fixture points tests at an empty one)."""
    home = os.environ.get("REDTEAM_REAL_TORCH_HOME") or str(Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "torch")
    monkeypatch.setenv("TORCH_HOME", home)
    return Path(home)


def test_real_facenet_matches_the_same_person_and_not_another(real_torch_home, sample_dir):
    availability = FaceNetRecognizer.availability()
    if not availability.available:
        pytest.skip(f"real FaceNet weights absent: {availability.reason}")
    recognizer, detector = FaceNetRecognizer(), FaceDetector()
    chips = []
    for rel in ("barack_obama/obama.jpg", "barack_obama/obama2.jpg", "joe_biden/biden.jpg"):
        pixels = load_image(sample_dir / rel).pixels
        chips.append(recognizer.crop(pixels, recognizer.locate(pixels, detector.detect(pixels)[0])))
    embeddings = recognizer.embed(torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float() / 255.0)
    distances = recognizer.distances(embeddings, embeddings)
    assert distances[0, 1] < recognizer.threshold.value < distances[0, 2]


def test_real_lpips_orders_distortions(real_torch_home):
    availability = LPIPSMetric.availability()
    if not availability.available:
        pytest.skip(f"real LPIPS AlexNet trunk absent: {availability.reason}")
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    slightly, heavily = (x + 0.02).clamp(0, 1), torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    metric = LPIPSMetric()
    assert metric(x, slightly).item() < metric(x, heavily).item()


def test_real_esrgan_checkpoint_loads_and_upscales(real_torch_home):
    from attacks import MethodInfo, build_attack
    from redteam.anonymizers import build_method

    attack = build_attack("sr")
    ok, reason = attack.applicable(MethodInfo("m", build_method("mosaic:block=8")))
    if not ok:
        pytest.skip(f"real Real-ESRGAN checkpoint absent: {reason}")
    window = torch.rand(1, 3, 96, 80, generator=torch.Generator().manual_seed(0))
    assert attack.reconstruct(window, method=MethodInfo("m", None), generator=torch.Generator()).shape == window.shape
