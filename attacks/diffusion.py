"""Diffusion attacks through diffusers: SDEdit (img2img at a configurable strength), the Stable
Diffusion x4 upscaler, and inpainting of masked faces (where an audit should show hallucination rather
than restoration).

Models load lazily from the local hub cache (`redteam.core.hub`); a missing model, or diffusers and
transformers not installed (the `diffusion` extra: `pip install 'face-anon-redteam[diffusion]'`), makes the
attack inapplicable in `--attacks auto` (with the reason and the command that fixes it) rather than failing
the run; an attack that was asked for by name then makes the audit exit 4.

References:
    Meng et al., "SDEdit: Guided Image Synthesis and Editing with Stochastic Differential Equations",
    ICLR 2022; Lugmayr et al., "RePaint", CVPR 2022; Rombach et al., "Latent Diffusion Models", CVPR 2022.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from attacks.base import Applicability, Attack, MethodInfo
from redteam.anonymizers.base import Parameter
from redteam.core.devices import pick_device
from redteam.core.errors import ModelUnavailableError
from redteam.core.hub import diffusion_parameters, get_pipeline, model_provenance
from redteam.core.tiers import ThreatTier

DEFAULT_IMG2IMG_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
DEFAULT_INPAINT_MODEL = "stable-diffusion-v1-5/stable-diffusion-inpainting"
DEFAULT_UPSCALE_MODEL = "stabilityai/stable-diffusion-x4-upscaler"


def _to_pil(image: torch.Tensor, size: int) -> Image.Image:
    array = (image.permute(1, 2, 0).clamp(0, 1).numpy() * 255.0).round().astype(np.uint8)
    return Image.fromarray(array).resize((size, size), Image.Resampling.BICUBIC)


def _from_array(result: np.ndarray, height: int, width: int) -> torch.Tensor:
    array = np.clip(np.round(result * 255.0), 0, 255).astype(np.uint8)
    resized = np.asarray(Image.fromarray(array).resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32) / 255.0
    return torch.from_numpy(resized).permute(2, 0, 1)


#: The optional dependencies of each extra (pyproject's [project.optional-dependencies]).
EXTRAS = {"diffusion": ("diffusers", "transformers"), "sr": ("spandrel",)}


def missing_extra(extra: str, modules: tuple[str, ...] | None = None) -> str | None:
    """Why an attack cannot run without the optional dependencies of `extra` (None when they import):
    "needs `pip install 'face-anon-redteam[EXTRA]'` (MODULE is not installed)". Nothing is imported."""
    for module in modules or EXTRAS[extra]:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a module set to None in sys.modules, or a broken install
            found = False
        if not found:
            return f"needs `pip install 'face-anon-redteam[{extra}]'` ({module} is not installed)"
    return None


def unavailable_reason(model: str, error: ModelUnavailableError) -> str:
    """Why a diffusion model could not be loaded, in one line with the command that fixes it. A hub model
    not in the local hub cache names `redteam models download NAME` (an audit never downloads) and the
    folder to copy from a connected machine; nothing mentions an environment variable the user did not set."""
    from redteam.core.hub import hub_cache, local_snapshot
    from redteam.core.weights import HUB_MODELS, hub_id

    resolved = hub_id(model)
    if Path(resolved).is_dir() or resolved.startswith(("/", ".", "~")) or resolved.count("/") != 1:
        return f"{error.message}; fix: {error.fix}" if error.fix else error.message
    names = [entry.name for entry in HUB_MODELS.values() if entry.hub_id == resolved]
    label = f"{names[0]} ({resolved})" if names else resolved
    if local_snapshot(resolved) is None:
        command = f"redteam models download {names[0]}" if names else f"hf download {resolved}"
        return (
            f"model {label} is not on this machine (hub cache {hub_cache()}); fix: `{command}` where the network allows "
            "(an audit never downloads), then copy that hub cache folder here, or give model=/path/to/a/local/diffusers/folder"
        )
    cause = error.__cause__
    detail = f" ({type(cause).__name__}: {cause})" if cause is not None else ""
    again = f"redteam models download {names[0]}" if names else f"hf download {resolved}"
    return f"model {label} is in the hub cache {hub_cache()} but could not be loaded{detail}; fix: `{again}` again"


class _Diffusion(Attack):
    kind = "img2img"

    def _device(self) -> torch.device:
        return pick_device(str(self.values["device"]))

    def _pipeline(self):  # noqa: ANN202 - a diffusers pipeline
        return get_pipeline(self.kind, str(self.values["model"]), self._device())  # type: ignore[arg-type]

    def applicable(self, method: MethodInfo) -> Applicability:
        extra = missing_extra("diffusion")
        if extra is not None:
            return Applicability(False, extra, model_missing=True)
        try:
            self._pipeline()
        except ModelUnavailableError as error:
            return Applicability(False, unavailable_reason(str(self.values["model"]), error), model_missing=True)
        return Applicability(True)

    def provenance(self, method: MethodInfo) -> dict[str, str]:
        return model_provenance(str(self.values["model"]))

    def _seed(self, generator: torch.Generator) -> torch.Generator:
        return torch.Generator(device="cpu").manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))

    def _each_image(self, images: torch.Tensor, generator: torch.Generator, input_size: int, **arguments: object) -> torch.Tensor:
        """Run the pipeline on every window (resized to `input_size`) with the shared prompt, steps and
        guidance plus `arguments`, and resize each result back to its window."""
        pipeline, out = self._pipeline(), []
        for image in images:
            result = pipeline(
                prompt=str(self.values["prompt"]),
                image=_to_pil(image, input_size),
                num_inference_steps=int(self.values["steps"]),
                guidance_scale=float(self.values["guidance"]),
                generator=self._seed(generator),
                output_type="np",
                **arguments,
            ).images[0]
            out.append(_from_array(result, *image.shape[-2:]))
        return torch.stack(out)


class SDEdit(_Diffusion):
    """SDEdit: noise the anonymized face to `strength` and denoise it with a diffusion model.

    References:
        Meng et al., "SDEdit", ICLR 2022 (img2img with Stable Diffusion through diffusers).
    """

    name = "sdedit"
    tier = ThreatTier.RECONSTRUCTION
    kind = "img2img"
    parameters = (
        Parameter("strength", float, 0.4, "how much of the diffusion to redo (0 = nothing, 1 = everything)", 0.05, 1.0),
        *diffusion_parameters(DEFAULT_IMG2IMG_MODEL, steps=30, guidance=5.0, prompt="a sharp high quality photo of the face of a person"),
    )

    def reconstruct(self, images: torch.Tensor, *, method: MethodInfo, generator: torch.Generator) -> torch.Tensor:
        return self._each_image(images, generator, int(self.values["size"]), strength=float(self.values["strength"]))


class SDUpscale(_Diffusion):
    """Stable Diffusion x4 upscaler: shrink the face window to size/4 and let the model upscale it 4x.

    Mosaic and downsampled faces are low-resolution images in disguise; the upscaler hallucinates the
    missing detail from its text-and-image prior (Hao et al., FG 2020, show super-resolution restores
    identification of low-resolution faces).

    References:
        Rombach et al., "High-Resolution Image Synthesis with Latent Diffusion Models", CVPR 2022
        (stabilityai/stable-diffusion-x4-upscaler through diffusers' StableDiffusionUpscalePipeline).
    """

    name = "sd_upscale"
    tier = ThreatTier.RECONSTRUCTION
    kind = "upscale"
    parameters = (
        Parameter("noise_level", int, 20, "noise added to the low-resolution input (the model's augmentation level)", 0, 350),
        *diffusion_parameters(DEFAULT_UPSCALE_MODEL, steps=30, guidance=7.5, prompt="a sharp high quality photo of the face of a person"),
    )

    def reconstruct(self, images: torch.Tensor, *, method: MethodInfo, generator: torch.Generator) -> torch.Tensor:
        return self._each_image(images, generator, max(8, int(self.values["size"]) // 4), noise_level=int(self.values["noise_level"]))


class DiffusionInpaint(_Diffusion):
    """Inpaint a masked face (box, eye bar) with a diffusion model: shows hallucination, not restoration.

    References:
        Lugmayr et al., "RePaint", CVPR 2022; Stable Diffusion inpainting (Rombach et al., CVPR 2022).
    """

    name = "inpaint"
    tier = ThreatTier.RECONSTRUCTION
    kind = "inpaint"
    parameters = diffusion_parameters(DEFAULT_INPAINT_MODEL, steps=30, guidance=7.5, prompt="a photo of the face of a person")

    def applicable(self, method: MethodInfo) -> Applicability:
        if method.is_known and method.stage_of("mask") is None:
            return Applicability(False, f"'{method.name}' masks nothing (no box or eye-bar stage)")
        return super().applicable(method)

    @staticmethod
    def mask(image: torch.Tensor, method: MethodInfo) -> np.ndarray:
        """The masked pixels: the known stage's mask, else the window's most common exact colour."""
        height, width = image.shape[-2:]
        stage = method.stage_of("mask")
        mask = np.zeros((height, width), dtype=bool)
        if stage is not None and method.region_of(stage) is not None:
            return method.changed_pixels(stage, (height, width))
        pixels = (image.permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8).reshape(-1, 3)
        colours, counts = np.unique(pixels, axis=0, return_counts=True)
        if counts.max() >= 0.05 * len(pixels):
            mask = np.all(pixels == colours[counts.argmax()], axis=1).reshape(height, width)
        return mask

    def reconstruct(self, images: torch.Tensor, *, method: MethodInfo, generator: torch.Generator) -> torch.Tensor:
        pipeline, size = self._pipeline(), int(self.values["size"])
        out = []
        for image in images:
            mask = self.mask(image, method)
            if not mask.any():
                out.append(image.clone())
                continue
            result = pipeline(
                prompt=str(self.values["prompt"]),
                image=_to_pil(image, size),
                mask_image=Image.fromarray(mask.astype(np.uint8) * 255).resize((size, size), Image.Resampling.NEAREST),
                num_inference_steps=int(self.values["steps"]),
                guidance_scale=float(self.values["guidance"]),
                height=size,
                width=size,
                generator=self._seed(generator),
                output_type="np",
            ).images[0]
            filled = _from_array(result, *image.shape[-2:])
            keep = torch.from_numpy(~mask)[None]
            out.append(torch.where(keep, image.float(), filled))
        return torch.stack(out)
