"""Lazy, injectable loading of diffusion models: diffusers pipelines (inpainting for the `synthetic`
method and the `inpaint` attack; img2img for `sdedit`; the x4 upscaler for `sd_upscale`) and an
unconditional DDPM as a deepinv denoiser (the face prior of `diffpir`).

Weights resolve through HF_HOME; with HF_HUB_OFFLINE=1 only the local cache is used. A model is either
a hub id or a local diffusers folder (`save_pretrained` layout). Tests build tiny random models and
either save them to a folder or inject them with `set_pipeline_loader`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal

from redteam.core.errors import ModelUnavailableError

if TYPE_CHECKING:  # torch loads on first use: `redteam --help` and `redteam models` start without it
    import torch

PipelineKind = Literal["inpaint", "img2img", "upscale", "prior"]
PipelineLoader = Callable[[PipelineKind, str, "torch.device"], Any]
_loaded: dict[tuple[str, str, str], Any] = {}
_failed: dict[tuple[str, str, str], ModelUnavailableError] = {}  # try the hub once per process


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("0", "", "false", "no")


@contextmanager
def no_downloads() -> Iterator[None]:
    """Within this block nothing is fetched from the model hub, whatever the environment says: an audit
    uses only what is already cached, and reports a missing model once, with the command that fetches it
    (`redteam models download NAME` on a connected machine), instead of retrying the network."""
    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    previous_constant = getattr(constants, "HF_HUB_OFFLINE", None)
    if constants is not None:
        setattr(constants, "HF_HUB_OFFLINE", True)  # noqa: B010 - read once at import by huggingface_hub's own helpers
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous
        if constants is not None:
            setattr(constants, "HF_HUB_OFFLINE", previous_constant)  # noqa: B010


@contextmanager
def _quiet_diffusers() -> Iterator[None]:
    """diffusers warns on every load (no `accelerate`, old scheduler configs); errors still raise."""
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()  # "Loading pipeline components" would interleave with our progress display
    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(level)


def hub_cache() -> Path:
    """The hub cache folder, as huggingface_hub resolves it now: HF_HUB_CACHE, else HF_HOME/hub, else
    $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or str(Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "huggingface")
    return Path(home).expanduser() / "hub"


def local_snapshot(repository: str) -> Path | None:
    """The snapshot folder of a hub repository in the local hub cache (`refs/main` -> `snapshots/<commit>`),
    or None: read from the cache's layout on disk, without calling huggingface_hub or diffusers, so nothing
    can try the network (their lookups, even with `local_files_only`, go through `hf_hub_download`)."""
    folder = hub_cache() / f"models--{repository.replace('/', '--')}"
    try:
        commit = (folder / "refs" / "main").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    snapshot = folder / "snapshots" / commit
    return snapshot if commit and "/" not in commit and snapshot.is_dir() else None


def _source(model: str) -> str:
    """What to load `model` from: a local folder as given; a hub id offline (during an audit) as its local
    snapshot folder, so that no hub client call is made at all.

    Raises:
        FileNotFoundError: offline, and the hub id is not in the local hub cache.
    """
    if Path(model).is_dir() or not _offline():
        return model
    snapshot = local_snapshot(model)
    if snapshot is None:
        raise FileNotFoundError(f"{model} is not in the local hub cache {hub_cache()}")
    return str(snapshot)


def _build(kind: PipelineKind, model: str) -> Any:
    """Load one model of `kind` (no caching, no device placement); `model` may be a catalog name. Offline
    (during an audit) a hub id is read from its local snapshot folder: neither diffusers nor deepinv is
    handed a hub id, so neither calls `hf_hub_download`."""
    from redteam.core.weights import hub_id

    model = hub_id(model)
    if kind == "prior":
        from deepinv.models import DiffusersDenoiserWrapper

        folder = _source(model)
        if not Path(folder).is_dir():  # online, a hub id: the wrapper cannot be told where to look, so fetch it first
            from huggingface_hub import snapshot_download

            folder = snapshot_download(model)
        return DiffusersDenoiserWrapper(mode_id=folder, device="cpu").eval()
    source = _source(model)
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting, StableDiffusionUpscalePipeline

    factory = {"inpaint": AutoPipelineForInpainting, "img2img": AutoPipelineForImage2Image, "upscale": StableDiffusionUpscalePipeline}[kind]
    options = {} if kind == "upscale" else {"safety_checker": None, "requires_safety_checker": False}
    pipeline = factory.from_pretrained(source, local_files_only=_offline(), **options)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def load_pipeline(kind: PipelineKind, model: str, device: torch.device) -> Any:
    """A model of `kind` from a hub id or a local folder, cached per process (failures too)."""
    key = (kind, model, str(device))
    if key in _failed:
        raise _failed[key]
    if key not in _loaded:
        try:
            import deepinv  # noqa: F401
            import diffusers  # noqa: F401
        except ImportError as error:
            raise ModelUnavailableError("diffusers or deepinv is not installed", fix="pip install diffusers transformers deepinv") from error
        try:
            with _quiet_diffusers():
                loaded = _build(kind, model)
        except Exception as error:  # noqa: BLE001 - any hub/cache failure means the model is unavailable
            _failed[key] = ModelUnavailableError(f"{kind} model '{model}' {_failure(model, error)}", fix=_download_hint(model))
            raise _failed[key] from error
        _loaded[key] = loaded.to(device)
    return _loaded[key]


def _path_like(model: str) -> bool:
    return not Path(model).is_dir() and (model.startswith(("/", ".", "~")) or model.count("/") != 1)


def _failure(model: str, error: Exception) -> str:
    """Why a model did not load, in one line: the library's own message only when it says more."""
    from redteam.core.weights import hub_id

    resolved = hub_id(model)
    if Path(resolved).is_dir():
        return f"could not be loaded from its folder ({type(error).__name__}: {error})"
    if _path_like(resolved):
        return "is neither a local folder nor a hub id (org/name)"
    if _offline():
        return "is not in the local hub cache (HF_HOME), and nothing is downloaded here (audits never download; HF_HUB_OFFLINE=1)"
    return f"could not be downloaded ({type(error).__name__}: {error})"


def _download_hint(model: str) -> str:
    from redteam.core.weights import HUB_MODELS, hub_id

    resolved = hub_id(model)
    if _path_like(resolved):
        return "give model= an existing diffusers folder (with model_index.json), a catalog name (`redteam models`) or a hub id"
    names = [entry.name for entry in HUB_MODELS.values() if entry.hub_id == resolved]
    fetch = f"`redteam models download {names[0]}`" if names else f"`hf download {resolved}`"
    return f"on a connected machine run {fetch} and copy HF_HOME here (with HF_HUB_OFFLINE=1), or give model=/path/to/a/local/diffusers/folder"


_loader: PipelineLoader = load_pipeline


def get_pipeline(kind: PipelineKind, model: str, device: torch.device) -> Any:
    return _loader(kind, model, device)


def set_pipeline_loader(loader: PipelineLoader | None) -> None:
    """Inject a pipeline loader (tests build tiny random pipelines); None restores the default."""
    global _loader
    _loader = loader or load_pipeline


def folder_digest(folder: Path) -> str:
    """One SHA-256 over a local diffusers folder's weight and config files (relative path + file hash)."""
    import hashlib

    from redteam.core.provenance import cached_sha256

    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix in (".safetensors", ".bin", ".json", ".txt", ".model"):
            digest.update(f"{path.relative_to(folder).as_posix()}:{cached_sha256(path)}\n".encode())
    return digest.hexdigest()


def model_provenance(model: str) -> dict[str, str]:
    """Which diffusion model exactly: a local folder as given, or a hub id with its cached snapshot commit."""
    from redteam.core.weights import hub_id

    resolved = hub_id(model)
    if Path(resolved).is_dir():
        return {"model": str(Path(resolved).resolve()), "weights_sha256": folder_digest(Path(resolved))}
    snapshot = local_snapshot(resolved)  # None for a model not cached here (e.g. a test's injected one)
    return {"model": resolved, "revision": snapshot.name if snapshot else "unknown (not in the local hub cache)"}


def diffusion_parameters(model: str, *, steps: int, guidance: float, prompt: str) -> tuple:
    """The parameters every diffusion-backed method or attack declares (model, steps, guidance, size,
    prompt, device), with its own defaults."""
    from redteam.core.params import Parameter

    return (
        Parameter("model", str, model, "catalog name (`redteam models`), hub id or local folder of a diffusers pipeline"),
        Parameter("steps", int, steps, "denoising steps", 1, 500),
        Parameter("guidance", float, guidance, "classifier-free guidance scale", 0.0, 30.0),
        Parameter("size", int, 512, "the model's working resolution (square)", 32, 2048),
        Parameter("prompt", str, prompt, "text prompt (no commas)"),
        Parameter("device", str, "auto", "cpu, cuda or auto", choices=("auto", "cpu", "cuda")),
    )
