"""Contract tests over every registered attack: shape, dtype, range, determinism, CPU, applicability."""

import numpy as np
import pytest
import torch
from skimage.filters import gaussian

from attacks import ATTACKS, AttackNotApplicable, MethodInfo, ThreatTier, build_attack
from redteam.anonymizers import build_method
from redteam.core.errors import ConfigError
from redteam.core.geometry import FaceGeometry, attack_window
from redteam.core.tensors import to_tensor

FACE = FaceGeometry(box=(30.0, 24.0, 94.0, 104.0), landmarks=((50, 55), (74, 55), (62, 70), (52, 88), (72, 88)), score=0.99)
CANDIDATES = ("gaussian_blur:sigma=2", "mosaic:block=8", "noise:sigma=0.1", "jpeg:quality=10", "box:margin=0.1")
#: Small settings where an attack's defaults would be slow with the tiny test models.
SMALL = {
    "sdedit": "sdedit:size=32,steps=4",
    "inpaint": "inpaint:size=32,steps=2",
    "sd_upscale": "sd_upscale:size=32,steps=2",
    "diffpir": "diffpir:size=32,steps=4",
}


def save_random_esrgan(path=None, scale=4):
    from spandrel.architectures.ESRGAN import ESRGAN

    from redteam.core.weights import get_model_file

    target = path or get_model_file("realesrgan_x4plus").path()
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(ESRGAN(num_filters=8, num_blocks=1, scale=scale).state_dict(), target)
    return target


def scene(seed=0, smooth=2.0):
    rng = np.random.default_rng(seed)
    return np.clip(np.round(gaussian(rng.random((128, 120, 3)), sigma=smooth, channel_axis=2) * 255), 0, 255).astype(np.uint8)


def window_for(spec, smooth=2.0):
    method = build_method(spec)
    pixels = scene(smooth=smooth)
    anonymized = method.apply(pixels, [FACE], torch.Generator().manual_seed(0))
    x0, y0, x1, y1 = attack_window(anonymized.shape, FACE, method)
    info = MethodInfo("m", method, FACE, (x0, y0), anonymized.shape)
    return info, to_tensor(anonymized[y0:y1, x0:x1]), to_tensor(pixels[y0:y1, x0:x1])


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_contract(name, monkeypatch, tmp_path, sample_dir, tiny_inpainting):
    if name == "learned":  # needs a trained checkpoint for the method: train one for two steps
        from redteam.training import train_inversion

        monkeypatch.setenv("REDTEAM_CACHE", str(tmp_path))
        train_inversion(sample_dir / "joe_biden", "mosaic:block=8", minutes=5, max_steps=2)
    spec = SMALL.get(name, name)
    if name == "sr":  # a random-weight Real-ESRGAN-architecture checkpoint given as a file
        spec = f"sr:checkpoint={save_random_esrgan(tmp_path / 'x4.pth')}"
    attack = build_attack(spec)
    assert isinstance(attack.tier, ThreatTier)
    assert attack.summary() and attack.__doc__ and "References" in attack.__doc__
    spec = next((s for s in CANDIDATES if attack.applicable(MethodInfo("m", build_method(s)))[0]), None)
    if spec is None:  # needs a model trained for the method (trained_parrot): its probe is the anonymized face itself
        assert not attack.reconstructs, f"{name} applies to none of the candidate methods"
        spec = CANDIDATES[0]
    info, images, _ = window_for(spec)
    first = attack.reconstruct(images, method=info, generator=torch.Generator().manual_seed(1))
    second = attack.reconstruct(images, method=info, generator=torch.Generator().manual_seed(1))
    assert first.shape == images.shape and first.dtype == torch.float32 and first.device.type == "cpu"
    assert 0.0 <= first.min().item() and first.max().item() <= 1.0
    assert torch.equal(first, second)


def test_known_operator_attacks_need_a_known_method():
    observed = MethodInfo("observed", None)
    for name in ("wiener", "richardson_lucy", "tv_deconv"):
        ok, reason = ATTACKS[name]().applicable(observed)
        assert not ok and "observed" in reason
    for name in ("none", "parrot", "bicubic", "lanczos", "blind_deconv", "denoise", "jpeg_deblock"):  # parrot: the folder's own files
        assert ATTACKS[name]().applicable(observed)[0], name
    ok, reason = ATTACKS["wiener"]().applicable(MethodInfo("px", build_method("mosaic")))
    assert not ok and "no blur stage" in reason


def psnr(a, b):
    return float(10 * torch.log10(1.0 / ((a - b) ** 2).mean()))


@pytest.mark.parametrize(
    "attack, spec, smooth",
    [
        ("wiener", "gaussian_blur:sigma=2", 1.0),
        ("richardson_lucy", "gaussian_blur:sigma=2", 1.0),
        ("tv_deconv", "gaussian_blur:sigma=2", 1.0),
        ("bicubic", "mosaic:block=8", 4.0),
        ("lanczos", "mosaic:block=8", 4.0),
        ("denoise", "noise:sigma=0.1", 2.0),
    ],
)
def test_attacks_bring_the_face_closer_to_the_original(attack, spec, smooth):
    info, anonymized, original = window_for(spec, smooth=smooth)
    restored = build_attack(attack).reconstruct(anonymized, method=info, generator=torch.Generator().manual_seed(0))
    x0, y0, x1, y1 = info.region_of(info.reference)
    before, after = psnr(anonymized[..., y0:y1, x0:x1], original[..., y0:y1, x0:x1]), psnr(restored[..., y0:y1, x0:x1], original[..., y0:y1, x0:x1])
    assert after > before + 0.3, (attack, after, before)


def test_blind_grid_estimate_finds_the_mosaic():
    from attacks.grid import estimate_grid

    info, anonymized, _ = window_for("mosaic:block=8")
    window = (anonymized[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    region = info.region_of(info.reference)
    grid = estimate_grid(window)
    assert grid is not None and grid.x.pitch == pytest.approx(8, abs=0.02) and grid.y.pitch == pytest.approx(8, abs=0.02)
    assert (grid.x.phase - region[0]) % 8 == pytest.approx(0, abs=0.05) or (grid.x.phase - region[0]) % 8 == pytest.approx(8, abs=0.05)
    assert estimate_grid(scene()) is None
    blind = MethodInfo("observed", None)
    restored = build_attack("bicubic").reconstruct(anonymized, method=blind, generator=torch.Generator())
    assert not torch.equal(restored, anonymized)
    with pytest.raises(AttackNotApplicable, match="no mosaic grid"):
        build_attack("bicubic").reconstruct(torch.from_numpy(scene()).permute(2, 0, 1)[None].float() / 255, method=blind, generator=torch.Generator())


def test_chains_apply_in_order_and_take_the_strongest_tier():
    chain = build_attack("wiener|denoise")
    assert chain.name == "wiener|denoise" and chain.tier is ThreatTier.ADAPTIVE
    info, anonymized, _ = window_for("gaussian_blur:sigma=2")
    generator = torch.Generator().manual_seed(0)
    deconvolved = build_attack("wiener").reconstruct(anonymized, method=info, generator=generator)
    staged = build_attack("denoise").reconstruct(deconvolved, method=info, generator=generator)
    assert torch.allclose(chain.reconstruct(anonymized, method=info, generator=generator), staged)
    assert not chain.applicable(MethodInfo("px", build_method("mosaic")))[0]
    with pytest.raises(ConfigError, match="unknown attack 'magic'"):
        build_attack("wiener|magic")


def test_super_resolution_loads_any_spandrel_checkpoint_and_tiles(tmp_path):
    info, anonymized, _ = window_for("mosaic:block=8")
    assert not build_attack("sr").applicable(info)[0]  # no checkpoint yet: skipped with the reason
    assert "redteam models" in build_attack("sr").applicable(info)[1]
    save_random_esrgan()  # other weights where the catalog's Real-ESRGAN belongs: refused, not used
    ok, reason = build_attack("sr").applicable(info)
    assert not ok and "does not match the published" in reason and "redteam models import realesrgan_x4plus" in reason
    path = save_random_esrgan(tmp_path / "x2.pth", scale=2)
    whole = build_attack(f"sr:checkpoint={path}")
    tiled = build_attack(f"sr:checkpoint={path},tile=32")
    assert whole.name == f"sr:checkpoint={path}" and whole.applicable(info)[0]
    first = whole.reconstruct(anonymized, method=info, generator=torch.Generator())
    assert first.shape == anonymized.shape and 0 <= first.min() and first.max() <= 1
    assert torch.equal(first, whole.reconstruct(anonymized, method=info, generator=torch.Generator()))
    pieces = tiled.reconstruct(anonymized, method=info, generator=torch.Generator())
    assert pieces.shape == anonymized.shape and (pieces - first).abs().mean() < 0.05  # tiles stitch to about the same
    broken = tmp_path / "broken.pth"
    torch.save({"not": torch.zeros(2)}, broken)
    from redteam.core.errors import ModelUnavailableError

    with pytest.raises(ModelUnavailableError, match="spandrel cannot load"):
        build_attack(f"sr:checkpoint={broken}").reconstruct(anonymized, method=info, generator=torch.Generator())


def test_diffusion_attacks_run_end_to_end_with_tiny_pipelines(tiny_inpainting):
    info, anonymized, _ = window_for("box:margin=0.1")
    inpaint = build_attack("inpaint:size=32,steps=2")
    restored = inpaint.reconstruct(anonymized, method=info, generator=torch.Generator().manual_seed(0))
    mask = torch.from_numpy(inpaint.mask(anonymized[0], info))
    assert mask.any() and torch.equal(restored[0][:, ~mask], anonymized[0][:, ~mask])  # only the masked pixels change
    assert not torch.equal(restored[0][:, mask], anonymized[0][:, mask])
    blind = MethodInfo("observed", None)
    assert torch.equal(torch.from_numpy(inpaint.mask(anonymized[0], blind)), mask)  # the solid fill is found blindly
    sdedit = build_attack("sdedit:size=32,steps=4,strength=0.5")
    edited = sdedit.reconstruct(anonymized, method=info, generator=torch.Generator().manual_seed(0))
    again = sdedit.reconstruct(anonymized, method=info, generator=torch.Generator().manual_seed(0))
    assert edited.shape == anonymized.shape and torch.equal(edited, again)
    assert ("img2img", "stable-diffusion-v1-5/stable-diffusion-v1-5") in tiny_inpainting
    assert not build_attack("inpaint").applicable(MethodInfo("px", build_method("mosaic")))[0]


def test_the_x4_upscaler_loads_from_a_saved_folder_and_keeps_the_window_size(tiny_upscaler_folder):
    from redteam.core import hub as diffusion

    folder = tiny_upscaler_folder
    diffusion.set_pipeline_loader(None)
    info, anonymized, _ = window_for("mosaic:block=8")
    attack = build_attack(f"sd_upscale:model={folder},size=32,steps=2")
    assert attack.applicable(info)[0] and attack.tier is ThreatTier.RECONSTRUCTION
    first = attack.reconstruct(anonymized, method=info, generator=torch.Generator().manual_seed(0))
    assert first.shape == anonymized.shape and not torch.equal(first, anonymized)
    assert torch.equal(first, attack.reconstruct(anonymized, method=info, generator=torch.Generator().manual_seed(0)))
    assert not torch.equal(first, attack.reconstruct(anonymized, method=info, generator=torch.Generator().manual_seed(5)))


@pytest.mark.parametrize(
    "spec, size",
    [
        ("mosaic:block=8", 64),
        ("gaussian_blur:sigma=2", 64),
        ("box:margin=0.1", 64),
        ("noise:sigma=0.1", 64),
        ("mosaic:block=8", 200),
        ("gaussian_blur:sigma=2", 48),
    ],  # integer upsampling of the region; bilinear from below
)
def test_diffpir_samples_a_face_consistent_with_the_method_operator(spec, size, tiny_ddpm):
    """A random prior knows nothing of faces, so the data step carries the result: under the method's
    operator the reconstruction must reproduce the anonymized measurement, only inside the region."""
    from attacks.posterior import window_operator

    info, anonymized, _ = window_for(spec)
    attack = build_attack(f"diffpir:model={tiny_ddpm},size={size},steps=16,weight=0.01")  # weight: trust the data over a random prior
    assert attack.applicable(info)[0] and attack.tier is ThreatTier.ADAPTIVE
    restored = attack.reconstruct(anonymized, method=info, generator=torch.Generator().manual_seed(0))
    x0, y0, x1, y1 = info.region_of(info.reference)
    outside = torch.ones(anonymized.shape[-2:], dtype=torch.bool)
    outside[y0:y1, x0:x1] = False
    assert torch.equal(restored[..., outside], anonymized[..., outside])  # nothing outside the region changes
    assert not torch.equal(restored, anonymized)
    physics, (bx0, by0, bx1, by1) = window_operator(info, tuple(anonymized.shape[-2:]))
    before, after = anonymized[..., by0:by1, bx0:bx1], restored[..., by0:by1, bx0:bx1]
    measured = physics.A(before)
    target = measured if measured.shape != before.shape else before
    error = (physics.A(after) - target).abs().mean().item()
    noise = (physics.A(torch.rand_like(before)) - target).abs().mean().item()
    assert error < noise / 4, (spec, error, noise)
    again = attack.reconstruct(anonymized, method=info, generator=torch.Generator().manual_seed(0))
    assert torch.equal(restored, again)


def test_diffpir_needs_a_linear_known_operator_and_the_prior(tiny_ddpm):
    attack = build_attack(f"diffpir:model={tiny_ddpm}")
    assert "observed" in attack.applicable(MethodInfo("observed", None))[1]
    assert "non-linear" in attack.applicable(MethodInfo("q", build_method("jpeg:quality=10")))[1]
    assert "no known operator" in attack.applicable(MethodInfo("k", build_method("k_same")))[1]
    missing = build_attack("diffpir:model=/nonexistent/prior").applicable(MethodInfo("m", build_method("mosaic")))
    assert not missing[0] and "neither a local folder nor a hub id" in missing[1] and "existing diffusers folder" in missing[1]
    default = build_attack("diffpir").applicable(MethodInfo("m", build_method("mosaic")))  # the catalog's prior, not cached here
    assert not default[0] and "redteam models download ddpm_celebahq" in default[1]


def test_diffusion_attacks_are_skipped_with_the_reason_when_the_model_is_missing(monkeypatch):
    from redteam.core import hub as diffusion

    diffusion.set_pipeline_loader(None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ok, reason = build_attack("sdedit:model=/nonexistent/model").applicable(MethodInfo("m", None))
    assert not ok and "neither a local folder nor a hub id" in reason


@pytest.mark.parametrize("spec", ["mosaic:block=8", "gaussian_blur:sigma=2", "box:margin=0.1,shape=ellipse", "downsample:factor=4", "motion_blur"])
def test_diffpir_measurement_model_explains_the_anonymized_window(spec):
    """The operator DiffPIR inverts maps the original window to what the method published (up to 8-bit
    rounding and the blur's border), and a different image to something else."""
    from attacks.posterior import window_operator

    info, anonymized, original = window_for(spec)
    physics, (x0, y0, x1, y1) = window_operator(info, tuple(anonymized.shape[-2:]))
    published, truth = anonymized[..., y0:y1, x0:x1], original[..., y0:y1, x0:x1]
    measured = physics.A(published)
    target = measured if measured.shape != published.shape else published
    explained = (physics.A(truth) - target).abs().mean().item()
    other = (physics.A(torch.flip(truth, dims=(-1,))) - target).abs().mean().item()
    assert explained < 0.015 < other, (spec, explained, other)  # downsample: bicubic display, cell means only about right


def test_attacks_follow_the_run_device_unless_their_spec_chose_one():
    chain = build_attack("sr|diffpir:device=cpu").use_device(torch.device("cuda:1"))
    assert [stage.values["device"] for stage in chain.stages] == ["cuda:1", "cpu"]
    assert build_attack("sdedit").use_device(torch.device("cpu")).values["device"] == "cpu"
    assert build_attack("wiener").use_device(torch.device("cpu")).values == {}  # no device parameter: unchanged


def test_diffusion_provenance_names_the_exact_weights(tiny_ddpm, tmp_path):
    import shutil

    first = build_attack(f"diffpir:model={tiny_ddpm}").provenance(MethodInfo("m", build_method("mosaic")))
    assert first["model"] == str(tiny_ddpm.resolve()) and len(first["weights_sha256"]) == 64
    copy = shutil.copytree(tiny_ddpm, tmp_path / "copy")
    assert build_attack(f"diffpir:model={copy}").provenance(MethodInfo("m", None))["weights_sha256"] == first["weights_sha256"]
    weights = next(copy.rglob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    assert build_attack(f"diffpir:model={copy}").provenance(MethodInfo("m", None))["weights_sha256"] != first["weights_sha256"]
    hub = build_attack("sd_upscale").provenance(MethodInfo("m", None))
    assert hub == {"model": "stabilityai/stable-diffusion-x4-upscaler", "revision": "unknown (not in the local hub cache)"}


@pytest.mark.parametrize("kernel_shape", [(7, 7), (9, 5), (5, 11)])
def test_valid_blur_fft_is_the_valid_convolution_and_its_adjoint(kernel_shape: tuple[int, int]) -> None:
    """Square or not (a method's region narrower than its kernel truncates it), the FFT operator is the
    'valid' convolution, and A_adjoint is its adjoint."""
    from scipy.signal import convolve2d

    from attacks.deconvolution import valid_blur_fft

    rng = np.random.default_rng(1)
    kernel = rng.random(kernel_shape)
    measured = (13, 17)
    physics = valid_blur_fft(torch.from_numpy(kernel)[None, None], measured)
    x = torch.from_numpy(rng.random((1, 1, measured[0] + kernel_shape[0] - 1, measured[1] + kernel_shape[1] - 1))).float()
    expected = convolve2d(x[0, 0].double().numpy(), kernel, mode="valid")
    assert np.allclose(physics.A(x)[0, 0].numpy(), expected, atol=1e-4)
    y = torch.from_numpy(rng.random((1, 1, *measured))).float()
    assert float((physics.A(x) * y).sum()) == pytest.approx(float((x * physics.A_adjoint(y)).sum()), rel=1e-4)


def test_denoise_leaves_a_flat_face_unchanged_without_a_nan():
    """A solid box has no measurable noise: scikit-image's estimate ignores zero wavelet coefficients and
    returns NaN on it, which must not reach the denoiser (it returned NaN pixels)."""
    import warnings

    window = torch.rand(1, 3, 128, 120, generator=torch.Generator().manual_seed(3))
    window[..., 24:104, 30:94] = 0.0  # the face box, filled black
    info = MethodInfo("box", build_method("box"), FACE, (0, 0), (128, 120, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        restored = build_attack("denoise").reconstruct(window, method=info, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(restored).all()
    assert torch.allclose(restored, window)
