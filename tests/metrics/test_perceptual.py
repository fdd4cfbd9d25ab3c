import math

import lpips
import pytest
import torch
import torchvision

from metrics.perceptual import LPIPSMetric, load_alexnet_trunk, psnr, ssim
from redteam.core.errors import InputError, ModelUnavailableError


def test_ssim_and_psnr_are_per_image():
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 32, 32, generator=generator)
    y = x.clone()
    y[1] = (y[1] + 0.1).clamp(0, 1)
    values = ssim(x, y)
    assert values.shape == (3,)
    assert values[0].item() == pytest.approx(1.0)
    assert values[1].item() < 1.0
    peaks = psnr(x, y)
    assert math.isinf(peaks[0].item())
    assert 15.0 < peaks[1].item() < 30.0


def test_lpips_with_injected_random_model_is_per_image_and_zero_on_identity():
    model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
    metric = LPIPSMetric(model=model)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    values = metric(x, x)
    assert values.shape == (2,)
    assert torch.allclose(values, torch.zeros(2), atol=1e-6)


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
