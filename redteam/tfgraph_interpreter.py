"""Execute a TensorFlow frozen GraphDef with torch ops, node by node, as TensorFlow would.

This is a reference to check a converted model against, not a runtime: it evaluates the nodes an output
depends on in topological order, from the placeholders fed to it, keeping TensorFlow's data layout
(NHWC unless a node says NCHW), its SAME padding (the odd pixel goes to the bottom/right), its pooling
(padded cells are -inf for max pooling and not counted by average pooling) and its attr defaults. It
knows the ops of an inference graph of a CNN; any other op raises `UnsupportedOpError` naming it.
Control inputs ("^node") only order execution in TensorFlow and are ignored here (the graph is pure).

References:
    TensorFlow, "tf.nn.convolution" (padding rules) and tensorflow/core/ops/nn_ops.cc, math_ops.cc,
    array_ops.cc (op definitions and attr defaults).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from redteam.core.errors import InputError
from redteam.tfgraph import AttrValue, GraphDef, NodeDef, parse_input

__all__ = ["GraphInterpreter", "UnsupportedOpError", "same_padding", "SUPPORTED_OPS"]


class UnsupportedOpError(InputError):
    """The graph uses an op (or an attr value of an op) the interpreter does not implement."""


Outputs = tuple[torch.Tensor, ...]
OpFunction = Callable[[NodeDef, list[torch.Tensor]], Outputs]


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's SAME padding of one spatial dimension: (before, after).

    The output has ceil(size / stride) cells; the padding needed to reach it is split with the extra
    cell, if any, after (bottom/right), unlike PyTorch's symmetric `padding=`.
    """
    out = -(-size // stride)
    effective = (kernel - 1) * dilation + 1
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


# --- attrs with TensorFlow's defaults ------------------------------------------------------------


def _attr(node: NodeDef, name: str) -> AttrValue | None:
    return node.attrs.get(name)


def _string(node: NodeDef, name: str, default: str) -> str:
    value = _attr(node, name)
    return value.s.decode("ascii", "replace") if value is not None and value.s is not None else default


def _ints(node: NodeDef, name: str, default: Sequence[int]) -> list[int]:
    value = _attr(node, name)
    return list(value.list.i) if value is not None and value.list is not None and value.list.i else list(default)


def _bool(node: NodeDef, name: str, default: bool) -> bool:
    value = _attr(node, name)
    return value.b if value is not None and value.b is not None else default


def _float(node: NodeDef, name: str, default: float) -> float:
    value = _attr(node, name)
    return value.f if value is not None and value.f is not None else default


def _data_format(node: NodeDef) -> str:
    layout = _string(node, "data_format", "NHWC")
    if layout not in ("NHWC", "NCHW"):
        raise UnsupportedOpError(f"node {node.name} ({node.op}) has data_format {layout}", fix="only NHWC and NCHW graphs are supported")
    return layout


def _spatial(node: NodeDef, name: str, layout: str, default: Sequence[int]) -> tuple[int, int]:
    """(height, width) entries of a 4-element attr (strides, ksize, dilations) in the node's layout."""
    values = _ints(node, name, default)
    if len(values) != 4:
        raise UnsupportedOpError(f"node {node.name} ({node.op}) has {name}={values}", fix="only 4-element (2-D) strides, ksize and dilations are supported")
    return (values[1], values[2]) if layout == "NHWC" else (values[2], values[3])


def _to_nchw(x: torch.Tensor, layout: str) -> torch.Tensor:
    return x.permute(0, 3, 1, 2) if layout == "NHWC" else x


def _from_nchw(x: torch.Tensor, layout: str) -> torch.Tensor:
    return x.permute(0, 2, 3, 1).contiguous() if layout == "NHWC" else x


def _pads(node: NodeDef, x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int, int, int]:
    """F.pad's (left, right, top, bottom) for an NCHW input under the node's padding attr."""
    padding = _string(node, "padding", "VALID")
    if padding == "VALID":
        return 0, 0, 0, 0
    if padding != "SAME":
        raise UnsupportedOpError(f"node {node.name} ({node.op}) has padding {padding}", fix="only SAME and VALID padding are supported")
    top, bottom = same_padding(x.shape[2], kernel[0], stride[0], dilation[0])
    left, right = same_padding(x.shape[3], kernel[1], stride[1], dilation[1])
    return left, right, top, bottom


# --- ops -----------------------------------------------------------------------------------------


def _conv2d(node: NodeDef, inputs: list[torch.Tensor]) -> Outputs:
    x, filters = inputs
    layout = _data_format(node)
    stride = _spatial(node, "strides", layout, (1, 1, 1, 1))
    dilation = _spatial(node, "dilations", layout, (1, 1, 1, 1))
    weight = filters.permute(3, 2, 0, 1)  # HWIO -> OIHW
    x = _to_nchw(x, layout)
    x = F.pad(x, _pads(node, x, (weight.shape[2], weight.shape[3]), stride, dilation))
    return (_from_nchw(F.conv2d(x, weight, stride=stride, dilation=dilation), layout),)


def _bias_add(node: NodeDef, inputs: list[torch.Tensor]) -> Outputs:
    x, bias = inputs
    if _data_format(node) == "NCHW":
        return (x + bias.reshape(1, -1, *([1] * (x.dim() - 2))),)
    return (x + bias,)


def _fused_batch_norm(node: NodeDef, inputs: list[torch.Tensor]) -> Outputs:
    x, scale, offset, mean, variance = inputs[:5]
    if _bool(node, "is_training", True):
        raise UnsupportedOpError(f"node {node.name} ({node.op}) normalises with batch statistics (is_training)", fix="give a frozen inference graph")
    epsilon = _float(node, "epsilon", 1e-4)
    layout = _data_format(node)
    shape = (1, -1, 1, 1) if layout == "NCHW" else (1, 1, 1, -1)
    factor = scale * torch.rsqrt(variance + epsilon)
    y = (x - mean.reshape(shape)) * factor.reshape(shape) + offset.reshape(shape)
    return (y, mean, variance, mean, variance, torch.zeros(0))


def _pool(node: NodeDef, inputs: list[torch.Tensor]) -> Outputs:
    (x,) = inputs
    layout = _data_format(node)
    kernel = _spatial(node, "ksize", layout, (1, 1, 1, 1))
    stride = _spatial(node, "strides", layout, (1, 1, 1, 1))
    for what, values in (("ksize", _ints(node, "ksize", (1, 1, 1, 1))), ("strides", _ints(node, "strides", (1, 1, 1, 1)))):
        batch, channel = (values[0], values[3]) if layout == "NHWC" else (values[0], values[1])
        if (batch, channel) != (1, 1):
            raise UnsupportedOpError(
                f"node {node.name} ({node.op}) pools across the batch or channels ({what}={values})", fix="only spatial pooling is supported"
            )
    x = _to_nchw(x, layout)
    pads = _pads(node, x, kernel, stride, (1, 1))
    if node.op == "MaxPool":
        y = F.max_pool2d(F.pad(x, pads, value=-math.inf), kernel, stride)
    else:
        # TensorFlow divides by the number of real (unpadded) cells in each window.
        total = F.avg_pool2d(F.pad(x, pads), kernel, stride) * (kernel[0] * kernel[1])
        count = F.avg_pool2d(F.pad(torch.ones_like(x[:1, :1]), pads), kernel, stride) * (kernel[0] * kernel[1])
        y = total / count
    return (_from_nchw(y, layout),)


def _axis(value: torch.Tensor, rank: int) -> int:
    axis = int(value.item())
    return axis + rank if axis < 0 else axis


def _concat(node: NodeDef, inputs: list[torch.Tensor]) -> Outputs:
    *values, axis = inputs
    return (torch.cat(values, dim=_axis(axis, values[0].dim())),)


def _reduce(node: NodeDef, inputs: list[torch.Tensor]) -> Outputs:
    x, indices = inputs
    dims = [int(v) + x.dim() if int(v) < 0 else int(v) for v in indices.reshape(-1).tolist()]
    keep = _bool(node, "keep_dims", False)
    if not dims:
        return (x,)
    if node.op == "Sum":
        return (torch.sum(x, dim=dims, keepdim=keep),)
    return (torch.mean(x, dim=dims, keepdim=keep),)


def _reshape(node: NodeDef, inputs: list[torch.Tensor]) -> Outputs:
    x, shape = inputs
    target = [int(v) for v in shape.reshape(-1).tolist()]
    try:
        return (x.reshape(target),)
    except RuntimeError:
        raise InputError(
            f"node {node.name} (Reshape) cannot reshape {list(x.shape)} to {target}", fix="feed the input shape the graph was frozen for"
        ) from None


def _matmul(node: NodeDef, inputs: list[torch.Tensor]) -> Outputs:
    a, b = inputs
    if _bool(node, "transpose_a", False):
        a = a.transpose(0, 1)
    if _bool(node, "transpose_b", False):
        b = b.transpose(0, 1)
    return (a @ b,)


def _squeeze(node: NodeDef, inputs: list[torch.Tensor]) -> Outputs:
    (x,) = inputs
    dims = _ints(node, "squeeze_dims", ())
    if not dims:
        return (x.squeeze(),)
    for dim in sorted((d + x.dim() if d < 0 else d for d in dims), reverse=True):
        x = x.squeeze(dim)
    return (x,)


def _pack(node: NodeDef, inputs: list[torch.Tensor]) -> Outputs:
    axis = _attr(node, "axis")
    return (torch.stack(inputs, dim=axis.i if axis is not None and axis.i is not None else 0),)


def _unary(function: Callable[[torch.Tensor], torch.Tensor]) -> OpFunction:
    return lambda node, inputs: (function(inputs[0]),)


def _binary(function: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> OpFunction:
    return lambda node, inputs: (function(inputs[0], inputs[1]),)


_OPS: dict[str, OpFunction] = {
    "Identity": _unary(lambda x: x),
    "Conv2D": _conv2d,
    "BiasAdd": _bias_add,
    "FusedBatchNorm": _fused_batch_norm,
    "FusedBatchNormV2": _fused_batch_norm,
    "FusedBatchNormV3": _fused_batch_norm,
    "Relu": _unary(torch.relu),
    "Relu6": _unary(lambda x: torch.clamp(x, 0.0, 6.0)),
    "Sigmoid": _unary(torch.sigmoid),
    "Tanh": _unary(torch.tanh),
    "Rsqrt": _unary(torch.rsqrt),
    "Sqrt": _unary(torch.sqrt),
    "Square": _unary(torch.square),
    "MaxPool": _pool,
    "AvgPool": _pool,
    "ConcatV2": _concat,
    "Add": _binary(torch.add),
    "AddV2": _binary(torch.add),
    "Sub": _binary(torch.sub),
    "Mul": _binary(torch.mul),
    "RealDiv": _binary(torch.div),
    "Maximum": _binary(torch.maximum),
    "Minimum": _binary(torch.minimum),
    "Sum": _reduce,
    "Mean": _reduce,
    "Reshape": _reshape,
    "MatMul": _matmul,
    "Squeeze": _squeeze,
    "Shape": lambda node, inputs: (torch.tensor(list(inputs[0].shape), dtype=torch.int32),),
    "Pack": _pack,
}

#: The ops `GraphInterpreter` executes (besides Const and Placeholder).
SUPPORTED_OPS = frozenset(_OPS)


def _const_tensor(node: NodeDef) -> torch.Tensor:
    value = _attr(node, "value")
    if value is None or value.tensor is None:
        raise InputError(f"Const node {node.name} has no value", fix="give a complete frozen graph")
    array = value.tensor
    if array.dtype == object:
        raise UnsupportedOpError(f"Const node {node.name} holds strings", fix="string tensors are not supported")
    if array.dtype in (np.float64, np.float16):
        array = array.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(array))


class GraphInterpreter:
    """Runs a decoded GraphDef on torch tensors.

    Args:
        graph: the decoded graph (`redteam.tfgraph.parse_graph_def`).
        device: where to compute.

    Example:
        >>> interpreter = GraphInterpreter(graph)
        >>> embedding = interpreter.run({"input": crops_nhwc}, "embeddings")  # doctest: +SKIP
    """

    def __init__(self, graph: GraphDef, device: str | torch.device = "cpu") -> None:
        self.graph = graph
        self.device = torch.device(device)
        self.nodes = graph.by_name()
        self._constants: dict[str, torch.Tensor] = {}

    def ops(self, output: str) -> set[str]:
        """The op types the evaluation of `output` needs."""
        return {self.nodes[name].op for name in self.order(output)}

    def order(self, output: str) -> list[str]:
        """The names of the nodes `output` depends on (itself last), in an order that evaluates each
        node after its data inputs.

        Raises:
            InputError: a node or input is missing, or the graph has a cycle.
        """
        name = parse_input(output)[0]
        if name not in self.nodes:
            raise InputError(f"the graph has no node {name!r}", fix="name an existing output node")
        order: list[str] = []
        state: dict[str, int] = {}  # 1: on the stack, 2: done
        stack: list[tuple[str, bool]] = [(name, False)]
        while stack:
            current, expanded = stack.pop()
            if expanded:
                state[current] = 2
                order.append(current)
                continue
            if state.get(current) == 2:
                continue
            if state.get(current) == 1:
                raise InputError(f"the graph has a cycle through {current!r}", fix="give a frozen inference graph")
            state[current] = 1
            stack.append((current, True))
            for source in self.nodes[current].inputs:
                dependency, _, control = parse_input(source)
                if control:
                    continue
                if dependency not in self.nodes:
                    raise InputError(f"node {current!r} reads {dependency!r}, which the graph does not have", fix="give a complete frozen graph")
                if state.get(dependency) == 1:
                    raise InputError(f"the graph has a cycle through {dependency!r}", fix="give a frozen inference graph")
                if state.get(dependency) != 2:
                    stack.append((dependency, False))
        return order

    def run(self, feeds: Mapping[str, torch.Tensor], output: str) -> torch.Tensor:
        """Evaluate `output` ("node" or "node:k") given the placeholders' values.

        Args:
            feeds: placeholder name -> tensor in the graph's layout (e.g. N x H x W x C float32).
            output: the node (and output index) to return.

        Raises:
            UnsupportedOpError: a needed node's op is not implemented (the message names it).
            InputError: a placeholder is not fed, or a fed shape contradicts the placeholder's.
        """
        order = self.order(output)
        unknown = sorted({self.nodes[name].op for name in order} - SUPPORTED_OPS - {"Const", "Placeholder"})
        if unknown:
            first = next(name for name in order if self.nodes[name].op in unknown)
            raise UnsupportedOpError(
                f"the graph uses the op(s) {', '.join(unknown)} (first at node {first!r}), which the interpreter does not implement",
                fix="extend redteam.tfgraph_interpreter or choose another output node",
            )
        values: dict[str, Outputs] = {}
        with torch.no_grad():
            for name in order:
                node = self.nodes[name]
                if node.op == "Const":
                    values[name] = (self._constant(node),)
                elif node.op == "Placeholder":
                    values[name] = (self._feed(node, feeds),)
                else:
                    arguments = []
                    for source in node.inputs:
                        dependency, index, control = parse_input(source)
                        if control:
                            continue
                        produced = values[dependency]
                        if index >= len(produced):
                            raise UnsupportedOpError(f"node {name!r} reads output {index} of {dependency!r}, which has {len(produced)}", fix="")
                        arguments.append(produced[index])
                    values[name] = _OPS[node.op](node, arguments)
        node_name, index, _ = parse_input(output)
        return values[node_name][index]

    def _constant(self, node: NodeDef) -> torch.Tensor:
        if node.name not in self._constants:
            self._constants[node.name] = _const_tensor(node).to(self.device)
        return self._constants[node.name]

    def _feed(self, node: NodeDef, feeds: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if node.name not in feeds:
            raise InputError(f"placeholder {node.name!r} is not fed", fix=f"pass feeds={{{node.name!r}: tensor}}")
        value = feeds[node.name].to(self.device)
        dtype = _attr(node, "dtype")
        if dtype is None or dtype.type in (None, 1):
            value = value.float()
        shape = _attr(node, "shape")
        if shape is not None and shape.shape is not None and not shape.shape.unknown_rank:
            expected = shape.shape.dims
            if len(expected) != value.dim() or any(e not in (-1, v) for e, v in zip(expected, value.shape, strict=True)):
                raise InputError(
                    f"placeholder {node.name!r} has shape {list(expected)}; fed {list(value.shape)}",
                    fix="feed the shape the graph was frozen for (-1 is any size)",
                )
        return value
