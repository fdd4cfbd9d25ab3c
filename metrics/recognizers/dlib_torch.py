"""dlib's ResNet face recognizer (dlib_face_recognition_resnet_model_v1) ported to PyTorch.

The network is ``anet_type`` of dlib's examples/dnn_face_recognition_ex.cpp (King, "Dlib-ml: A Machine
Learning Toolkit", JMLR 2009): a 29-layer residual network (He et al., "Deep Residual Learning for Image
Recognition", CVPR 2016) with ``affine`` (frozen batch-norm) layers, mapping a 150 x 150 RGB face chip to a
128-d descriptor. ``load_dlib_resnet`` reads dlib's own binary serialization of that network (the .dat file
shipped by face_recognition_models) and returns a module whose output equals
``dlib.face_recognition_model_v1(path).compute_face_descriptor(chip)`` up to float rounding.

dlib semantics reproduced here (dlib/dnn/layers.h, dlib/cuda/cpu_dlib.cpp, dlib/dnn/input.h):
    * input: ``(pixel - mean) / 256`` with the per-channel means stored in the file (122.782, 117.001, 104.298);
    * ``con`` and the pooling layers pad ``k // 2`` at stride 1 and 0 at stride 2 (the values in the file are
      checked); output sizes are ``1 + (n + 2 p - k) // s``, as in torch;
    * ``affine``: per-channel ``gamma * x + beta``;
    * ``add_prev`` adds tensors of different shapes by zero-padding both to the larger size (channels, rows
      and columns, aligned at index 0). This happens in the down-sampling blocks: e.g. 128 channels 4 x 4 from
      the avg-pooled input plus 256 channels 3 x 3 from the strided convolutions gives 256 channels 4 x 4,
      and the last block leaves 256 x 2 x 2 (1 x 1 plus 2 x 2), which avg_pool_everything then averages;
    * ``fc_no_bias``: ``x @ W`` with W stored as (inputs, outputs); ``loss_metric`` returns it unnormalized.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from redteam.core.pooling import max_pool2d

CHIP_SIZE = 150


# ----------------------------------------------------------------------------------------------------------
# Parser of dlib's serialization format (dlib/serialize.h, dlib/dnn/core.h, dlib/cuda/tensor.h).


class _Reader:
    """Sequential reader of dlib's serialized primitives; every error is a ValueError naming the file."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.path, self.pos = data, path, 0

    def fail(self, what: str) -> NoReturn:
        raise ValueError(f"{self.path}: not a dlib face recognition ResNet v1 file: {what} (at byte {self.pos})")

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            self.fail("unexpected end of file")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def integer(self, signed: bool = True) -> int:
        """dlib's integer format: a control byte (bit 7 = negative, low 4 bits = byte count), then little-endian bytes."""
        control = self.take(1)[0]
        size = control & 0x0F
        if control & 0x70 or size == 0 or size > 8 or (control & 0x80 and not signed):
            self.fail(f"bad integer control byte 0x{control:02x}")
        value = int.from_bytes(self.take(size), "little")
        return -value if control & 0x80 else value

    def floating(self) -> float:
        """A float is stored as mantissa then exponent (two dlib integers): mantissa * 2**exponent."""
        mantissa, exponent = self.integer(), self.integer()
        if exponent >= 32000:  # is_inf, is_ninf, is_nan markers of dlib's float_details
            self.fail("non-finite float")
        return math.ldexp(mantissa, exponent)

    def boolean(self) -> bool:
        byte = self.take(1)
        if byte not in (b"0", b"1"):
            self.fail(f"bad bool byte {byte!r}")
        return byte == b"1"

    def string(self) -> str:
        return self.take(self.integer(signed=False)).decode("latin-1")

    def expect_string(self, *allowed: str) -> str:
        value = self.string()
        if value not in allowed:
            self.fail(f"found version string {value!r}, expected one of {allowed}")
        return value

    def expect_int(self, allowed: tuple[int, ...], what: str) -> int:
        value = self.integer()
        if value not in allowed:
            self.fail(f"{what} is {value}, expected one of {allowed}")
        return value

    def shape(self) -> tuple[int, int, int, int]:
        n, k, nr, nc = (self.integer() for _ in range(4))
        if min(n, k, nr, nc) < 0:
            self.fail("negative tensor dimension")
        return n, k, nr, nc

    def tensor(self) -> np.ndarray:
        """resizable_tensor: version 2, the four dimensions, then little-endian float32 values."""
        self.expect_int((2,), "tensor version")
        shape = self.shape()
        count = int(np.prod(shape))
        return np.frombuffer(self.take(4 * count), dtype="<f4").astype(np.float32).reshape(shape)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        self.expect_int((1,), "alias_tensor version")
        return self.shape()


@dataclass
class _Conv:
    weight: np.ndarray  # (out, in, kh, kw)
    bias: np.ndarray | None
    stride: int
    padding: int


@dataclass
class _Affine:
    gamma: np.ndarray  # (channels,)
    beta: np.ndarray


# The network outermost first, as dlib serializes it: (kind, parameters). A residual block
# relu<add_prev<block<tag1<...>>>> reads, from the outside in:
_BLOCK = [("relu", ()), ("add_prev", ()), ("affine", ()), ("con", (3, 1)), ("relu", ()), ("affine", ())]
_DOWN_BLOCK = [("relu", ()), ("add_prev", ()), ("avg_pool", (2, 2)), ("skip", ()), ("tag", ())] + _BLOCK[2:]
# (channels, down-sampling) of the residual blocks, outermost first: alevel0 ... alevel4.
_BLOCKS = [(256, True), (256, False), (256, False), (256, True), (128, False), (128, False), (128, True)]
_BLOCKS += [(64, False)] * 3 + [(64, True)] + [(32, False)] * 3


def _layout() -> list[tuple[str, tuple[int, ...]]]:
    layers: list[tuple[str, tuple[int, ...]]] = [("fc", (128,)), ("avg_pool", (0, 1))]
    for _, down in _BLOCKS:
        layers += (_DOWN_BLOCK if down else _BLOCK) + [("con", (3, 2 if down else 1)), ("tag", ())]
    return layers + [("max_pool", (3, 2)), ("relu", ()), ("affine", ()), ("con", (7, 2))]


def _read_pool(r: _Reader, name: str, size: int, stride: int) -> None:
    r.expect_string(f"{name}_2")
    nr, nc, sy, sx, py, px = (r.integer() for _ in range(6))
    padding = size // 2 if stride == 1 else 0
    if (nr, nc, sy, sx, py, px) != (size, size, stride, stride, padding, padding):
        r.fail(f"{name} is {nr}x{nc}/{sy},{sx} pad {py},{px}; expected {size}x{size}/{stride} pad {padding}")


def _read_con(r: _Reader, size: int, stride: int) -> _Conv:
    version = r.expect_string("con_4", "con_5", "con_6")
    params = r.tensor().ravel()
    num_filters = r.integer()
    geometry = tuple(r.integer() for _ in range(6))  # nr, nc, stride_y, stride_x, padding_y, padding_x
    padding = size // 2 if stride == 1 else 0
    if geometry != (size, size, stride, stride, padding, padding):
        r.fail(f"con geometry {geometry}, expected {(size, size, stride, stride, padding, padding)}")
    filters, biases = r.alias_tensor(), r.alias_tensor()
    for _ in range(4):  # learning-rate and weight-decay multipliers
        r.floating()
    use_bias = r.boolean() if version in ("con_5", "con_6") else True
    if version == "con_6" and r.boolean():
        r.fail("con with a fused relu")
    n_weights = int(np.prod(filters))
    n_bias = num_filters if use_bias else 0
    if filters[0] != num_filters or filters[2:] != (size, size) or params.size != n_weights + n_bias:
        r.fail(f"con parameter sizes {filters}, {params.size} for {num_filters} filters")
    if use_bias and int(np.prod(biases)) != num_filters:
        r.fail(f"con bias shape {biases}")
    bias = params[n_weights:].copy() if use_bias else None
    return _Conv(params[:n_weights].reshape(filters).copy(), bias, stride, padding)


def _read_affine(r: _Reader) -> _Affine:
    version = r.expect_string("affine_", "affine_2")
    params = r.tensor().ravel()
    gamma_shape, beta_shape = r.alias_tensor(), r.alias_tensor()
    channels = gamma_shape[1]
    if gamma_shape != (1, channels, 1, 1) or beta_shape != gamma_shape or params.size != 2 * channels:
        r.fail(f"affine layer not in per-channel (conv) mode: gamma {gamma_shape}, {params.size} parameters")
    if r.integer() != 0:
        r.fail("affine layer not in CONV_MODE")
    if version == "affine_2" and r.boolean():
        r.fail("disabled affine layer")
    return _Affine(params[:channels].copy(), params[channels:].copy())


def _read_fc(r: _Reader, outputs: int) -> np.ndarray:
    version = r.expect_string("fc_2", "fc_3")
    num_outputs, num_inputs = r.integer(signed=False), r.integer(signed=False)
    params = r.tensor().ravel()
    weights, _ = r.alias_tensor(), r.alias_tensor()
    if r.integer() != 1:
        r.fail("fc layer with a bias, expected fc_no_bias")
    for _ in range(4):
        r.floating()
    if version == "fc_3":
        r.boolean()  # use_bias; ignored without a bias vector
    if num_outputs != outputs or weights[:2] != (num_inputs, num_outputs) or params.size != num_inputs * num_outputs:
        r.fail(f"fc shape {weights}, {params.size} parameters, expected {outputs} outputs")
    return params.reshape(num_inputs, num_outputs).copy()


def _read_layer_tail(r: _Reader, version: int) -> None:
    """Training state after each layer's details: 3 bools, x_grad, cached_output (and params_grad)."""
    for _ in range(3):
        r.boolean()
    r.tensor(), r.tensor()
    if version == 2:
        r.tensor()


def _parse(path: Path) -> tuple[np.ndarray, list[_Conv], list[_Affine], np.ndarray]:
    """Returns the input means, the convolutions and affine layers from the input up, and the fc weights."""
    r = _Reader(path.read_bytes(), path)
    r.expect_int((1,), "add_loss_layer version")
    if r.expect_string("loss_metric_", "loss_metric_2") == "loss_metric_2":
        r.floating(), r.floating()  # margin, distance threshold: training only
    layout = _layout()
    versions = [r.expect_int((1,) if kind in ("tag", "skip") else (1, 2), f"{kind} layer version") for kind, _ in layout[:-1]]
    # The innermost add_layer wraps the input layer and is serialized with its own version (2 or 3).
    input_version = r.expect_int((2, 3), "input add_layer version")
    r.expect_string("input_rgb_image_sized")
    means = np.array([r.floating() for _ in range(3)], dtype=np.float32)
    if (r.integer(signed=False), r.integer(signed=False)) != (CHIP_SIZE, CHIP_SIZE):
        r.fail(f"input size is not {CHIP_SIZE} x {CHIP_SIZE}")
    convs, affines = [_read_con(r, *layout[-1][1])], []
    for _ in range(3):
        r.boolean()
    r.tensor(), r.tensor(), r.tensor()  # x_grad, cached_output, grad_final
    if input_version == 3 and r.integer(signed=False) != 1:
        r.fail("sample expansion factor is not 1")
    fc = np.empty(0, dtype=np.float32)
    # Unwind: each add_layer's details follow its (already read) sub-network, innermost first.
    for (kind, args), version in zip(reversed(layout[:-1]), reversed(versions), strict=True):
        if kind in ("tag", "skip"):
            continue
        if kind == "con":
            convs.append(_read_con(r, *args))
        elif kind == "affine":
            affines.append(_read_affine(r))
        elif kind == "relu":
            if r.expect_string("relu_", "relu_2") == "relu_2" and r.boolean():
                r.fail("disabled relu layer")
        elif kind == "add_prev":
            r.expect_string("add_prev_")
        elif kind == "fc":
            fc = _read_fc(r, *args)
        else:
            _read_pool(r, kind, *args)
        _read_layer_tail(r, version)
    if r.pos != len(r.data):
        r.fail(f"{len(r.data) - r.pos} trailing bytes")
    return means, convs, affines, fc


# ----------------------------------------------------------------------------------------------------------
# The network.


def _conv(spec: _Conv) -> nn.Conv2d:
    out_ch, in_ch, size, _ = spec.weight.shape
    conv = nn.Conv2d(in_ch, out_ch, size, stride=spec.stride, padding=spec.padding, bias=spec.bias is not None)
    conv.weight.data.copy_(torch.from_numpy(spec.weight))
    if conv.bias is not None and spec.bias is not None:
        conv.bias.data.copy_(torch.from_numpy(spec.bias))
    return conv


class _AffineLayer(nn.Module):
    """dlib's affine layer in CONV_MODE: y = gamma[c] * x + beta[c]."""

    gamma: torch.Tensor
    beta: torch.Tensor

    def __init__(self, spec: _Affine) -> None:
        super().__init__()
        self.register_buffer("gamma", torch.from_numpy(spec.gamma).view(-1, 1, 1))
        self.register_buffer("beta", torch.from_numpy(spec.beta).view(-1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma + self.beta


def _add_zero_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: shapes may differ; both are zero-padded (at the end) to the larger one."""
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def pad(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return pad(a) + pad(b)


class _ResBlock(nn.Module):
    """relu(block(x) + skip(x)); block = affine(con3x3(relu(affine(con3x3/stride(x))))), skip = x or avg_pool 2x2/2."""

    def __init__(self, convs: list[_Conv], affines: list[_Affine], down: bool) -> None:
        super().__init__()
        self.conv1, self.affine1 = _conv(convs[0]), _AffineLayer(affines[0])
        self.conv2, self.affine2 = _conv(convs[1]), _AffineLayer(affines[1])
        self.down = down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        skip = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(_add_zero_padded(y, skip))


class DlibFaceResNet(nn.Module):
    """N x 3 x 150 x 150 RGB in 0..255 (float) -> N x 128 descriptors, as dlib's compute_face_descriptor."""

    mean: torch.Tensor
    fc: torch.Tensor

    def __init__(self, means: np.ndarray, convs: list[_Conv], affines: list[_Affine], fc: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("mean", torch.from_numpy(means).view(1, 3, 1, 1))
        self.stem_conv, self.stem_affine = _conv(convs[0]), _AffineLayer(affines[0])
        downs = [down for _, down in reversed(_BLOCKS)]
        self.blocks = nn.ModuleList(_ResBlock(convs[1 + 2 * i : 3 + 2 * i], affines[1 + 2 * i : 3 + 2 * i], down) for i, down in enumerate(downs))
        self.register_buffer("fc", torch.from_numpy(fc))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1:] != (3, CHIP_SIZE, CHIP_SIZE):
            raise ValueError(f"expected N x 3 x {CHIP_SIZE} x {CHIP_SIZE} RGB chips, got {tuple(x.shape)}")
        x = (x.float() - self.mean) / 256.0
        x = max_pool2d(F.relu(self.stem_affine(self.stem_conv(x))), 3, 2)
        for block in self.blocks:
            x = block(x)
        return x.mean(dim=(2, 3)) @ self.fc


def load_dlib_resnet(path: Path) -> torch.nn.Module:
    """Parse dlib_face_recognition_resnet_model_v1.dat (no pickle) into an eval-mode DlibFaceResNet."""
    path = Path(path)
    means, convs, affines, fc = _parse(path)
    # Channel counts, from the input up: (out, in) of every convolution, then the fc's (in, out).
    expected, channels = [(32, 3)], 32
    for width, _ in reversed(_BLOCKS):
        expected += [(width, channels), (width, width)]
        channels = max(width, channels)  # add_prev zero-pads the narrower input
    found = [c.weight.shape[:2] for c in convs]
    if found != expected or [a.gamma.size for a in affines] != [e[0] for e in expected] or fc.shape != (channels, 128):
        raise ValueError(f"{path}: layer widths {found}, fc {fc.shape} do not match dlib_face_recognition_resnet_model_v1")
    return DlibFaceResNet(means, convs, affines, fc).eval()
