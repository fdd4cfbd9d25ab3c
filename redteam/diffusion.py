"""Lazy, injectable loading of diffusers pipelines (inpainting for the `synthetic` method and the
`inpaint` attack; img2img for the `sdedit` attack).

Weights resolve through HF_HOME; with HF_HUB_OFFLINE=1 only the local cache is used. Tests inject a
tiny random pipeline with `set_pipeline_loader`.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Literal

import torch

from redteam.errors import ModelUnavailableError

PipelineKind = Literal["inpaint", "img2img"]
PipelineLoader = Callable[[PipelineKind, str, torch.device], Any]
_loaded: dict[tuple[str, str, str], Any] = {}
_failed: dict[tuple[str, str, str], ModelUnavailableError] = {}  # try the hub once per process


def load_pipeline(kind: PipelineKind, model: str, device: torch.device) -> Any:
    """A diffusers pipeline of `kind` from a hub id or a local folder, cached per process."""
    key = (kind, model, str(device))
    if key in _failed:
        raise _failed[key]
    if key not in _loaded:
        try:
            from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting
        except ImportError as error:
            raise ModelUnavailableError("diffusers is not installed", fix="pip install diffusers transformers") from error
        factory = AutoPipelineForInpainting if kind == "inpaint" else AutoPipelineForImage2Image
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")
        try:
            pipeline = factory.from_pretrained(model, safety_checker=None, requires_safety_checker=False, local_files_only=offline)
        except Exception as error:  # noqa: BLE001 - any hub/cache failure means the model is unavailable
            _failed[key] = ModelUnavailableError(
                f"{kind} model '{model}' could not be loaded ({type(error).__name__}: {error})",
                fix=f"on a connected machine run `huggingface-cli download {model}` and copy HF_HOME, "
                "or give model=/path/to/a/local/diffusers/folder",
            )
            raise _failed[key] from error
        pipeline.set_progress_bar_config(disable=True)
        _loaded[key] = pipeline.to(device)
    return _loaded[key]


_loader: PipelineLoader = load_pipeline


def get_pipeline(kind: PipelineKind, model: str, device: torch.device) -> Any:
    return _loader(kind, model, device)


def set_pipeline_loader(loader: PipelineLoader | None) -> None:
    """Inject a pipeline loader (tests build tiny random pipelines); None restores the default."""
    global _loader
    _loader = loader or load_pipeline


def diffusion_parameters(model: str, *, steps: int, guidance: float, prompt: str) -> tuple:
    """The parameters every diffusion-backed method or attack declares (model, steps, guidance, size,
    prompt, device), with its own defaults."""
    from redteam.anonymizers.base import Parameter

    return (
        Parameter("model", str, model, "hub id or local folder of a diffusers pipeline"),
        Parameter("steps", int, steps, "denoising steps", 1, 500),
        Parameter("guidance", float, guidance, "classifier-free guidance scale", 0.0, 30.0),
        Parameter("size", int, 512, "the model's working resolution (square)", 32, 2048),
        Parameter("prompt", str, prompt, "text prompt (no commas)"),
        Parameter("device", str, "auto", "cpu, cuda or auto", choices=("auto", "cpu", "cuda")),
    )


def pick_device(choice: str) -> torch.device:
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)
