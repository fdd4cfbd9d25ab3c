"""Compute cost of the `diffpir` attack at the real prior's size, offline.

    python benchmarks/bench_diffpir.py [--steps 10] [--device cpu] [--model FOLDER_OR_HUB_ID]

Without --model, builds the google/ddpm-celebahq-256 U-Net architecture (UNet2DModel, 6 levels,
128-512 channels, attention at 16 px) with random weights in a temporary diffusers folder, so the time
per face and per step is measured on any machine; identity numbers need the real weights
(`redteam models download ddpm_celebahq`). Runs one mosaic, one blur and one box face of the demo
sample through the attack and prints seconds per face, per step, and the prior's parameter count.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from importlib import resources
from pathlib import Path

import torch

from attacks import MethodInfo, build_attack
from attacks.posterior import window_operator
from redteam.anonymizers import build_method
from redteam.core.geometry import attack_window
from redteam.core.tensors import to_tensor
from redteam.faces import FaceDetector
from redteam.images import load_image

SPECS = ("mosaic:block=12", "gaussian_blur:sigma=4", "box")


def celebahq_architecture(folder: Path) -> Path:
    """The google/ddpm-celebahq-256 U-Net configuration with random weights, saved as a DDPM pipeline."""
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=256,
        in_channels=3,
        out_channels=3,
        layers_per_block=2,
        block_out_channels=(128, 128, 256, 256, 512, 512),
        down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"),
    )
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=1000)).save_pretrained(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--model", default=None, help="prior folder or hub id (default: the real architecture, random weights)")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    sample = Path(str(resources.files("redteam.data").joinpath("sample"))) / "barack_obama"
    image = load_image(sorted(sample.glob("*.jpg"))[0]).pixels
    face = FaceDetector().detect(image)[0]
    with tempfile.TemporaryDirectory() as folder:
        model = args.model or str(celebahq_architecture(Path(folder) / "prior"))
        attack = build_attack(f"diffpir:model={model},steps={args.steps},device={args.device}")
        prior = attack._prior()  # noqa: SLF001 - the benchmark reports the prior's size
        parameters = sum(p.numel() for p in prior.parameters())
        print(f"prior: {model if args.model else 'ddpm-celebahq-256 architecture, random weights'}, {parameters / 1e6:.1f}M parameters")
        print(f"face: {face.width:.0f} px wide in {image.shape[1]}x{image.shape[0]}; {args.steps} steps on {args.device}\n")
        print("| method | attack window | prior works on | seconds/face | seconds/step |")
        print("|---|---|---|---|---|")
        for spec in SPECS:
            method = build_method(spec)
            anonymized = method.apply(image, [face], torch.Generator().manual_seed(0))
            x0, y0, x1, y1 = attack_window(anonymized.shape, face, method)
            info = MethodInfo(spec, method, face, (x0, y0), anonymized.shape)
            window = to_tensor(anonymized[y0:y1, x0:x1])
            _, (bx0, by0, bx1, by1) = window_operator(info, tuple(window.shape[-2:]))
            began = time.perf_counter()
            attack.reconstruct(window, method=info, generator=torch.Generator().manual_seed(0))
            spent = time.perf_counter() - began
            print(f"| {spec} | {x1 - x0}x{y1 - y0} | {bx1 - bx0}x{by1 - by0} | {spent:.1f} | {spent / args.steps:.2f} |")


if __name__ == "__main__":
    main()
