"""Synthetic replacement: inpaint the face region with a diffusion model (diffusers), seeded.

The default checkpoint is a Stable Diffusion inpainting model from the Hugging Face hub, loaded lazily
through HF_HOME (set HF_HUB_OFFLINE=1 on an offline machine that has it cached); see
`redteam.core.hub`, where tests inject a tiny pipeline. Pipelines such as ``synthetic | gaussian_blur:sigma=4``
("replace, then blur") compose like any other stages.

References:
    Rombach et al., "High-Resolution Image Synthesis with Latent Diffusion Models", CVPR 2022;
    Hukkelås and Lindseth, "DeepPrivacy2: Towards Realistic Full-Body Anonymization", WACV 2023
    (replacing faces with synthetic ones).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from redteam.anonymizers.base import Anonymizer, Box
from redteam.core.devices import pick_device
from redteam.core.geometry import FaceGeometry
from redteam.core.hub import diffusion_parameters, get_pipeline

DEFAULT_INPAINTING_MODEL = "stable-diffusion-v1-5/stable-diffusion-inpainting"


class SyntheticFace(Anonymizer):
    """Replace each face region by a diffusion-inpainted synthetic face (seeded, lazily loaded model)."""

    name = "synthetic"
    operator_kind = "replace"
    reference = "Diffusion inpainting (Stable Diffusion inpainting via diffusers); DeepPrivacy2-style replacement"
    operator_note = "generative replacement: no forward operator; identity should not survive by design"
    region_defaults = {"margin": 0.1, "shape": "ellipse"}
    parameters = diffusion_parameters(DEFAULT_INPAINTING_MODEL, steps=30, guidance=7.5, prompt="a photo of the face of a person")

    def context(self, region: Box) -> int:
        x0, y0, x1, y1 = region
        return max(x1 - x0, y1 - y0) // 4  # some surroundings so the fill matches the scene

    def transform(self, window, region: Box, face: FaceGeometry | None, image, generator) -> np.ndarray:
        pipeline = get_pipeline("inpaint", str(self.values["model"]), pick_device(str(self.values["device"])))
        size = int(self.values["size"])
        height, width = window.shape[:2]
        x0, y0, x1, y1 = region
        mask = np.zeros((height, width), dtype=np.uint8)
        mask[y0:y1, x0:x1] = (self.region_mask(region if face is None else self.regions(image.shape, [face])[0], face) > 0) * 255
        source = Image.fromarray(np.clip(np.round(window * 255.0), 0, 255).astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC)
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator or torch.Generator().manual_seed(0)))
        result = pipeline(
            prompt=str(self.values["prompt"]),
            image=source,
            mask_image=Image.fromarray(mask).resize((size, size), Image.Resampling.NEAREST),
            num_inference_steps=int(self.values["steps"]),
            guidance_scale=float(self.values["guidance"]),
            height=size,
            width=size,
            generator=torch.Generator(device="cpu").manual_seed(seed),
            output_type="np",
        ).images[0]
        resized = Image.fromarray(np.clip(np.round(result * 255.0), 0, 255).astype(np.uint8)).resize((width, height), Image.Resampling.BICUBIC)
        return np.asarray(resized, dtype=np.float64) / 255.0
