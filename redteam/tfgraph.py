"""Read a TensorFlow frozen GraphDef (`.pb`) without TensorFlow or a protobuf library.

The protobuf wire format is small: each field is a varint key (field number << 3 | wire type) followed
by a varint (type 0), 8 bytes (type 1), a varint length and that many bytes (type 2: strings, bytes,
sub-messages and packed repeated scalars) or 4 bytes (type 5). This module decodes exactly the messages
a frozen graph needs: `GraphDef` -> `NodeDef` (name, op, inputs, attrs) -> `AttrValue` (s, i, f, b,
type, shape, tensor, list) -> `TensorProto` (as a numpy array) and `TensorShapeProto`. Unknown fields
are skipped, as protobuf requires; anything malformed or truncated raises `InputError` naming the file.

References:
    Google, "Protocol Buffers: Encoding" (protobuf.dev/programming-guides/encoding);
    tensorflow/core/framework/{graph,node_def,attr_value,tensor,tensor_shape,types,versions}.proto.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from redteam.core.errors import InputError

__all__ = [
    "AttrValue",
    "GraphDef",
    "ListValue",
    "NodeDef",
    "TensorShape",
    "parse_graph_def",
    "parse_input",
    "DTYPES",
]

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5
#: The most elements one constant may declare (2**28: 1 GiB of float32), so a corrupt shape cannot
#: make the reader allocate without bound.
MAX_ELEMENTS = 1 << 28

#: TensorFlow DataType enum (types.proto) -> (name, numpy dtype). `_REF` types (100 + n) map like n.
DTYPES: dict[int, tuple[str, np.dtype[Any]]] = {
    1: ("float32", np.dtype("<f4")),
    2: ("float64", np.dtype("<f8")),
    3: ("int32", np.dtype("<i4")),
    4: ("uint8", np.dtype("u1")),
    5: ("int16", np.dtype("<i2")),
    6: ("int8", np.dtype("i1")),
    7: ("string", np.dtype(object)),
    8: ("complex64", np.dtype("<c8")),
    9: ("int64", np.dtype("<i8")),
    10: ("bool", np.dtype("?")),
    14: ("bfloat16", np.dtype("<f4")),  # widened to float32 on reading
    17: ("uint16", np.dtype("<u2")),
    18: ("complex128", np.dtype("<c16")),
    19: ("float16", np.dtype("<f2")),
    22: ("uint32", np.dtype("<u4")),
    23: ("uint64", np.dtype("<u8")),
}
_DTYPES_BY_NAME: dict[str, np.dtype[Any]] = {name: dtype for name, dtype in DTYPES.values()}


class _Malformed(Exception):
    """Internal: the bytes do not decode; turned into an `InputError` naming the file."""


@dataclass(frozen=True)
class TensorShape:
    """A `TensorShapeProto`: the dimensions (-1 where unknown), or `unknown_rank`."""

    dims: tuple[int, ...] = ()
    unknown_rank: bool = False


@dataclass(frozen=True, eq=False)
class ListValue:
    """`AttrValue.ListValue`: the repeated values of a `list(...)` attr (only one kind is filled)."""

    s: tuple[bytes, ...] = ()
    i: tuple[int, ...] = ()
    f: tuple[float, ...] = ()
    b: tuple[bool, ...] = ()
    type: tuple[int, ...] = ()
    shape: tuple[TensorShape, ...] = ()
    tensor: tuple[np.ndarray, ...] = ()


@dataclass(frozen=True, eq=False)
class AttrValue:
    """One `AttrValue` (attr_value.proto): the field of its oneof that is set, the others None.

    Attributes:
        s: bytes ("string" attrs such as `padding` or `data_format`).
        i: int. f: float. b: bool.
        type: a DataType enum value (see `DTYPES`).
        shape: a `TensorShape`.
        tensor: a `TensorProto` decoded to a numpy array.
        list: a `ListValue` (`strides`, `ksize`, `dilations` ...).
        func: the name of a `NameAttrList` (its attrs are not decoded). placeholder: a function attr's name.
    """

    s: bytes | None = None
    i: int | None = None
    f: float | None = None
    b: bool | None = None
    type: int | None = None
    shape: TensorShape | None = None
    tensor: np.ndarray | None = None
    list: ListValue | None = None
    func: str | None = None
    placeholder: str | None = None


@dataclass(frozen=True, eq=False)
class NodeDef:
    """One node: its name, op, inputs ("node", "node:1", or "^node" for a control input) and attrs."""

    name: str
    op: str
    inputs: tuple[str, ...] = ()
    device: str = ""
    attrs: dict[str, AttrValue] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class GraphDef:
    """A decoded `GraphDef`: its nodes in file order and the producer version (0 when absent)."""

    nodes: tuple[NodeDef, ...]
    producer: int = 0

    def by_name(self) -> dict[str, NodeDef]:
        """The nodes keyed by name."""
        return {node.name: node for node in self.nodes}


def parse_input(name: str) -> tuple[str, int, bool]:
    """Split a NodeDef input into (node name, output index, is a control input).

    Args:
        name: "conv1/Relu", "split:1" or "^init".
    """
    if name.startswith("^"):
        return name[1:], 0, True
    node, colon, index = name.rpartition(":")
    if colon and index.isdigit():
        return node, int(index), False
    return name, 0, False


# --- wire format ------------------------------------------------------------------------------


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise _Malformed("a varint runs past the end of its message")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise _Malformed("a varint is longer than 10 bytes")


def _signed64(value: int) -> int:
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def _fields(data: bytes, start: int, end: int) -> list[tuple[int, int, Any]]:
    """The fields of the message in data[start:end] as (number, wire type, value): an int for varints,
    a (start, end) span for length-delimited and fixed-width fields."""
    out: list[tuple[int, int, Any]] = []
    pos = start
    while pos < end:
        key, pos = _varint(data, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Malformed("a field has number 0")
        if wire == _VARINT:
            value, pos = _varint(data, pos, end)
            out.append((number, wire, value))
        elif wire == _LENGTH:
            length, pos = _varint(data, pos, end)
            if length > end - pos:
                raise _Malformed(f"field {number} declares {length} bytes but only {end - pos} remain")
            out.append((number, wire, (pos, pos + length)))
            pos += length
        elif wire in (_FIXED64, _FIXED32):
            size = 8 if wire == _FIXED64 else 4
            if size > end - pos:
                raise _Malformed(f"field {number} is cut off")
            out.append((number, wire, (pos, pos + size)))
            pos += size
        else:
            raise _Malformed(f"field {number} has the unsupported wire type {wire}")
    return out


def _text(data: bytes, span: tuple[int, int]) -> str:
    try:
        return data[span[0] : span[1]].decode("utf-8")
    except UnicodeDecodeError:
        raise _Malformed("a string field is not UTF-8") from None


def _expect(wire: int, wanted: int, what: str) -> None:
    if wire != wanted:
        raise _Malformed(f"{what} has wire type {wire}, expected {wanted}")


def _varints(data: bytes, fields: list[tuple[int, int, Any]], number: int) -> list[int]:
    """A repeated varint field, packed (one length-delimited run) or not (one field per value)."""
    values: list[int] = []
    for num, wire, value in fields:
        if num != number:
            continue
        if wire == _VARINT:
            values.append(value)
        elif wire == _LENGTH:
            pos, end = value
            while pos < end:
                item, pos = _varint(data, pos, end)
                values.append(item)
        else:
            raise _Malformed(f"repeated varint field {number} has wire type {wire}")
    return values


def _fixed(data: bytes, fields: list[tuple[int, int, Any]], number: int, dtype: str) -> np.ndarray:
    """A repeated fixed-width field (float, double), packed or not, as a little-endian numpy array."""
    width = np.dtype(dtype).itemsize
    wire_wanted = _FIXED32 if width == 4 else _FIXED64
    chunks: list[bytes] = []
    for num, wire, (pos, end) in ((n, w, v) for n, w, v in fields if n == number):
        if wire == _LENGTH and (end - pos) % width:
            raise _Malformed(f"packed field {number} holds {end - pos} bytes, not a multiple of {width}")
        if wire not in (_LENGTH, wire_wanted):
            raise _Malformed(f"repeated field {num} has wire type {wire}")
        chunks.append(data[pos:end])
    return np.frombuffer(b"".join(chunks), dtype=dtype)


# --- messages -----------------------------------------------------------------------------------


def _shape(data: bytes, start: int, end: int) -> TensorShape:
    dims: list[int] = []
    unknown = False
    for number, wire, value in _fields(data, start, end):
        if number == 2:
            _expect(wire, _LENGTH, "TensorShapeProto.dim")
            size = 0
            for dim_number, dim_wire, dim_value in _fields(data, *value):
                if dim_number == 1:
                    _expect(dim_wire, _VARINT, "Dim.size")
                    size = _signed64(dim_value)
            dims.append(size)
        elif number == 3:
            _expect(wire, _VARINT, "TensorShapeProto.unknown_rank")
            unknown = bool(value)
    return TensorShape(tuple(dims), unknown)


def _tensor(data: bytes, start: int, end: int) -> np.ndarray:
    """A `TensorProto` as a numpy array of its dtype and shape (bfloat16 widened to float32)."""
    fields = _fields(data, start, end)
    dtype_enum = 0
    shape = TensorShape()
    content: tuple[int, int] | None = None
    for number, wire, value in fields:
        if number == 1:
            _expect(wire, _VARINT, "TensorProto.dtype")
            dtype_enum = value
        elif number == 2:
            _expect(wire, _LENGTH, "TensorProto.tensor_shape")
            shape = _shape(data, *value)
        elif number == 4:
            _expect(wire, _LENGTH, "TensorProto.tensor_content")
            content = value
    if dtype_enum > 100:
        dtype_enum -= 100
    if dtype_enum not in DTYPES:
        raise _Malformed(f"a tensor has the unsupported dtype enum {dtype_enum}")
    if shape.unknown_rank or any(d < 0 for d in shape.dims):
        raise _Malformed(f"a constant tensor has an unknown shape {shape.dims}")
    name, dtype = DTYPES[dtype_enum]
    dims = shape.dims
    count = math.prod(dims)
    if count > MAX_ELEMENTS:
        raise _Malformed(f"a tensor declares the shape {list(dims)} ({count} elements, more than {MAX_ELEMENTS})")
    if content is not None and content[1] > content[0]:
        raw = data[content[0] : content[1]]
        if name == "string":
            raise _Malformed("string tensors in tensor_content are not supported")
        wire_dtype = np.dtype("<u2") if name == "bfloat16" else dtype
        if len(raw) != count * wire_dtype.itemsize:
            raise _Malformed(f"a {name} tensor of shape {list(dims)} needs {count * wire_dtype.itemsize} bytes of tensor_content, has {len(raw)}")
        array = np.frombuffer(raw, dtype=wire_dtype)
        if name == "bfloat16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        return array.reshape(dims).copy()
    values = _typed_values(data, fields, name)
    if len(values) > count:
        raise _Malformed(f"a {name} tensor of shape {list(dims)} lists {len(values)} values")
    out = np.zeros(count, dtype=dtype) if name != "string" else np.full(count, b"", dtype=object)
    if len(values):
        # TensorFlow's Tensor::FromProto: the values given, then the last one repeated to fill the shape.
        out[: len(values)] = values
        out[len(values) :] = values[-1]
    return out.reshape(dims)


def _typed_values(data: bytes, fields: list[tuple[int, int, Any]], name: str) -> np.ndarray:
    if name == "float32":
        return _fixed(data, fields, 5, "<f4")
    if name == "float64":
        return _fixed(data, fields, 6, "<f8")
    if name in ("complex64", "complex128"):
        pairs = _fixed(data, fields, 9, "<f4") if name == "complex64" else _fixed(data, fields, 12, "<f8")
        if len(pairs) % 2:
            raise _Malformed(f"a {name} tensor lists an odd number ({len(pairs)}) of real and imaginary parts")
        return pairs[0::2] + 1j * pairs[1::2]
    if name in ("int32", "int16", "int8", "uint8", "uint16"):
        return np.array([_signed64(v) for v in _varints(data, fields, 7)], dtype=np.int64).astype(_DTYPES_BY_NAME[name])
    if name == "int64":
        return np.array([_signed64(v) for v in _varints(data, fields, 10)], dtype=np.int64)
    if name == "bool":
        return np.array([bool(v) for v in _varints(data, fields, 11)], dtype=bool)
    if name == "float16":
        return np.array([v & 0xFFFF for v in _varints(data, fields, 13)], dtype=np.uint16).view(np.float16)
    if name == "bfloat16":
        return (np.array([v & 0xFFFF for v in _varints(data, fields, 13)], dtype=np.uint32) << 16).view(np.float32)
    if name == "uint32":
        return np.array([v & 0xFFFFFFFF for v in _varints(data, fields, 16)], dtype=np.uint32)
    if name == "uint64":
        return np.array([v & 0xFFFFFFFFFFFFFFFF for v in _varints(data, fields, 17)], dtype=np.uint64)
    strings = [data[v[0] : v[1]] for n, w, v in fields if n == 8 and w == _LENGTH]
    array = np.empty(len(strings), dtype=object)
    array[:] = strings
    return array


def _float32(data: bytes, span: tuple[int, int]) -> float:
    return float(struct.unpack_from("<f", data, span[0])[0])


def _list_value(data: bytes, start: int, end: int) -> ListValue:
    fields = _fields(data, start, end)
    strings = tuple(data[v[0] : v[1]] for n, w, v in fields if n == 2 and w == _LENGTH)
    ints = tuple(_signed64(v) for v in _varints(data, fields, 3))
    floats = tuple(float(v) for v in _fixed(data, fields, 4, "<f4"))
    bools = tuple(bool(v) for v in _varints(data, fields, 5))
    types = tuple(_varints(data, fields, 6))
    shapes = tuple(_shape(data, *v) for n, w, v in fields if n == 7 and w == _LENGTH)
    tensors = tuple(_tensor(data, *v) for n, w, v in fields if n == 8 and w == _LENGTH)
    return ListValue(strings, ints, floats, bools, types, shapes, tensors)


def _attr_value(data: bytes, start: int, end: int) -> AttrValue:
    values: dict[str, Any] = {}
    for number, wire, value in _fields(data, start, end):
        if number == 1:
            _expect(wire, _LENGTH, "AttrValue.list")
            values["list"] = _list_value(data, *value)
        elif number == 2:
            _expect(wire, _LENGTH, "AttrValue.s")
            values["s"] = data[value[0] : value[1]]
        elif number == 3:
            _expect(wire, _VARINT, "AttrValue.i")
            values["i"] = _signed64(value)
        elif number == 4:
            _expect(wire, _FIXED32, "AttrValue.f")
            values["f"] = _float32(data, value)
        elif number == 5:
            _expect(wire, _VARINT, "AttrValue.b")
            values["b"] = bool(value)
        elif number == 6:
            _expect(wire, _VARINT, "AttrValue.type")
            values["type"] = value
        elif number == 7:
            _expect(wire, _LENGTH, "AttrValue.shape")
            values["shape"] = _shape(data, *value)
        elif number == 8:
            _expect(wire, _LENGTH, "AttrValue.tensor")
            values["tensor"] = _tensor(data, *value)
        elif number == 9:
            _expect(wire, _LENGTH, "AttrValue.placeholder")
            values["placeholder"] = _text(data, value)
        elif number == 10:
            _expect(wire, _LENGTH, "AttrValue.func")
            names = [_text(data, v) for n, w, v in _fields(data, *value) if n == 1 and w == _LENGTH]
            values["func"] = names[-1] if names else ""
    return AttrValue(**values)


def _node(data: bytes, start: int, end: int) -> NodeDef:
    name = op = device = ""
    inputs: list[str] = []
    attrs: dict[str, AttrValue] = {}
    for number, wire, value in _fields(data, start, end):
        if number == 1:
            _expect(wire, _LENGTH, "NodeDef.name")
            name = _text(data, value)
        elif number == 2:
            _expect(wire, _LENGTH, "NodeDef.op")
            op = _text(data, value)
        elif number == 3:
            _expect(wire, _LENGTH, "NodeDef.input")
            inputs.append(_text(data, value))
        elif number == 4:
            _expect(wire, _LENGTH, "NodeDef.device")
            device = _text(data, value)
        elif number == 5:
            _expect(wire, _LENGTH, "NodeDef.attr")
            key = ""
            attr = AttrValue()
            for entry_number, entry_wire, entry_value in _fields(data, *value):
                if entry_number == 1:
                    _expect(entry_wire, _LENGTH, "NodeDef.attr key")
                    key = _text(data, entry_value)
                elif entry_number == 2:
                    _expect(entry_wire, _LENGTH, "NodeDef.attr value")
                    attr = _attr_value(data, *entry_value)
            attrs[key] = attr
    if not name or not op:
        raise _Malformed(f"a node has no {'name' if not name else 'op'}" + (f" (node {name!r})" if name else ""))
    return NodeDef(name, op, tuple(inputs), device, attrs)


def parse_graph_def(data: bytes, source: str) -> GraphDef:
    """Decode a serialized `GraphDef`.

    Args:
        data: the bytes of a frozen graph (`.pb`).
        source: where they came from, for messages (a file name).

    Returns:
        The graph's nodes in file order, with their attrs and constant tensors decoded.

    Raises:
        InputError: the bytes are not a GraphDef (truncated, garbage, an unsupported tensor dtype, no
            node, or duplicate node names).
    """
    try:
        nodes: list[NodeDef] = []
        producer = 0
        for number, wire, value in _fields(data, 0, len(data)):
            if number == 1:
                _expect(wire, _LENGTH, "GraphDef.node")
                nodes.append(_node(data, *value))
            elif number == 4:
                _expect(wire, _LENGTH, "GraphDef.versions")
                for version_number, version_wire, version_value in _fields(data, *value):
                    if version_number == 1 and version_wire == _VARINT:
                        producer = _signed64(version_value)
            elif number == 3:
                _expect(wire, _VARINT, "GraphDef.version")
    except (_Malformed, ValueError, OverflowError) as error:  # numpy refusing a value is malformed input too
        raise InputError(
            f"{source}: not a valid TensorFlow GraphDef ({error})", fix="give the frozen graph (.pb) file itself, complete and unmodified"
        ) from None
    if not nodes:
        raise InputError(f"{source}: not a TensorFlow GraphDef (it has no node)", fix="give the frozen graph (.pb) file itself")
    names = [node.name for node in nodes]
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise InputError(f"{source}: the GraphDef has two nodes named {duplicate!r}", fix="give the frozen graph (.pb) file itself, unmodified")
    return GraphDef(tuple(nodes), producer)
