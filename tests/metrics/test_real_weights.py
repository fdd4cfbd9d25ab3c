"""Tests with the real downloaded weights (marker `weights`); they skip with the reason when absent.

Run them on a machine prepared with `redteam models download facenet_vggface2 alexnet_trunk`
(and `realesrgan_x4plus`, `ddpm_celebahq`, `sd_x4_upscaler` for the attacks):
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


def _runnable_or_skip(spec, info, what):
    from attacks import build_attack

    attack = build_attack(spec)
    ok, reason = attack.applicable(info)
    if not ok:
        pytest.skip(f"{what} absent: {reason}")
    return attack


def _demo_face_window(sample_dir, spec):
    from attacks import MethodInfo
    from redteam.anonymizers import build_method
    from redteam.core.geometry import attack_window
    from redteam.core.tensors import to_tensor

    pixels = load_image(sample_dir / "barack_obama" / "obama.jpg").pixels
    face = FaceDetector().detect(pixels)[0]
    method = build_method(spec)
    anonymized = method.apply(pixels, [face], torch.Generator().manual_seed(0))
    x0, y0, x1, y1 = attack_window(anonymized.shape, face, method)
    info = MethodInfo("m", method, face, (x0, y0), anonymized.shape)
    return info, to_tensor(anonymized[y0:y1, x0:x1])


def test_real_ddpm_face_prior_reconstructs_a_mosaic_consistent_with_its_cells(sample_dir):
    """google/ddpm-celebahq-256 from HF_HOME (`redteam models download ddpm_celebahq`)."""
    from attacks.posterior import window_operator

    info, window = _demo_face_window(sample_dir, "mosaic:block=12")
    attack = _runnable_or_skip("diffpir:steps=20", info, "real DDPM face prior")
    restored = attack.reconstruct(window, method=info, generator=torch.Generator().manual_seed(0))
    physics, (x0, y0, x1, y1) = window_operator(info, tuple(window.shape[-2:]))
    cells = physics.A(window[..., y0:y1, x0:x1])
    assert (physics.A(restored[..., y0:y1, x0:x1]) - cells).abs().mean() < 0.02
    assert not torch.equal(restored, window)


def test_real_x4_upscaler_runs(sample_dir):
    """stabilityai/stable-diffusion-x4-upscaler from HF_HOME (`redteam models download sd_x4_upscaler`)."""
    info, window = _demo_face_window(sample_dir, "mosaic:block=12")
    attack = _runnable_or_skip("sd_upscale:steps=5,size=256", info, "real x4 upscaler")
    restored = attack.reconstruct(window, method=info, generator=torch.Generator().manual_seed(0))
    assert restored.shape == window.shape and 0 <= restored.min() and restored.max() <= 1
    assert not torch.equal(restored, window)


@pytest.mark.parametrize(
    "spec, method, what",
    [
        ("sdedit:steps=5", "mosaic:block=12", "real Stable Diffusion 1.5 (`redteam models download sd15`)"),
        ("inpaint:steps=5", "box", "real SD inpainting (`redteam models download sd15_inpainting`)"),
    ],
)
def test_real_stable_diffusion_attacks_run(sample_dir, spec, method, what):
    info, window = _demo_face_window(sample_dir, method)
    attack = _runnable_or_skip(spec, info, what)
    restored = attack.reconstruct(window, method=info, generator=torch.Generator().manual_seed(0))
    assert restored.shape == window.shape and 0 <= restored.min() and restored.max() <= 1
    assert not torch.equal(restored, window)
