"""Contract tests over every registered attack: shape, dtype, range, determinism, CPU."""

import pytest
import torch

from attacks import ATTACKS, MethodInfo, ThreatTier
from redteam.anonymizers import build_method


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_contract(name):
    attack = ATTACKS[name]()
    assert isinstance(attack.tier, ThreatTier)
    assert attack.summary() and attack.__doc__ and "References" in attack.__doc__
    method = MethodInfo("blur", build_method("gaussian_blur:sigma=2"))
    images = torch.rand(2, 3, 48, 40, generator=torch.Generator().manual_seed(0))
    first = attack.reconstruct(images, method=method, generator=torch.Generator().manual_seed(1))
    second = attack.reconstruct(images, method=method, generator=torch.Generator().manual_seed(1))
    assert first.shape == images.shape and first.dtype == torch.float32 and first.device.type == "cpu"
    assert 0.0 <= first.min().item() and first.max().item() <= 1.0
    assert torch.equal(first, second)


def test_parrot_needs_a_known_method():
    parrot = ATTACKS["parrot"]()
    ok, reason = parrot.applicable(MethodInfo("observed", None))
    assert not ok and "known method" in reason
    assert parrot.applicable(MethodInfo("ref", build_method("mosaic")))[0]
    assert ATTACKS["none"]().applicable(MethodInfo("observed", None))[0]
