"""Shared fixtures. Tests run offline: hub calls fail fast, TORCH_HOME points at an empty folder."""

from __future__ import annotations

import hashlib
import shutil
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_FACES = PROJECT_ROOT.parent / "shared" / "faces"


@pytest.fixture(autouse=True)
def offline_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """No network, and no user weights leaking into a test: TORCH_HOME is a fresh empty folder."""
    torch_home = tmp_path_factory.mktemp("torch_home")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    return torch_home


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the session, so detections and original embeddings are computed once."""
    return tmp_path_factory.mktemp("redteam_cache")


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The bundled public-domain demo sample (5 faces, 3 people)."""
    return Path(str(resources.files("redteam.data").joinpath("sample")))


@pytest.fixture
def originals(tmp_path: Path, sample_dir: Path) -> Path:
    """A private copy of the demo sample, so tests may add files next to it."""
    target = tmp_path / "originals"
    shutil.copytree(sample_dir, target)
    return target


@pytest.fixture(scope="session")
def shared_faces() -> Path:
    if not SHARED_FACES.is_dir():
        pytest.skip(f"shared test faces not found at {SHARED_FACES} (CI places ../shared beside the project)")
    return SHARED_FACES


def tree_hashes(root: Path) -> dict[str, str]:
    """SHA-256 and mtime of every file under root, to prove a command modified nothing."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() + f":{p.stat().st_mtime_ns}"
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def hashes_of():
    return tree_hashes


def save_rgb(path: Path, pixels: np.ndarray, **kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, **kwargs)
    return path


def build_tiny_inpainting_pipeline(folder: Path):
    """A Stable Diffusion inpainting pipeline with random tiny weights, built offline (diffusers' own test recipe)."""
    import json

    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8), layers_per_block=1, sample_size=16, in_channels=9, out_channels=4,
        cross_attention_dim=8, norm_num_groups=4, attention_head_dim=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    )
    vae = AutoencoderKL(
        block_out_channels=(4,), in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",), latent_channels=4, norm_num_groups=2, layers_per_block=1,
    )
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = {t: i for i, t in enumerate(letters + [c + "</w>" for c in letters] + ["<unk>", "<|startoftext|>", "<|endoftext|>"])}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=16)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=8, intermediate_size=16, num_attention_heads=2, num_hidden_layers=1,
            vocab_size=len(vocab), max_position_embeddings=16, projection_dim=8,
        )
    )
    pipeline = StableDiffusionInpaintPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=DDIMScheduler(num_train_timesteps=100, steps_offset=1),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def build_tiny_img2img_pipeline(inpaint):
    """An img2img pipeline sharing the tiny text encoder and VAE, with a 4-channel tiny UNet."""
    import torch
    from diffusers import StableDiffusionImg2ImgPipeline, UNet2DConditionModel

    torch.manual_seed(1)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        cross_attention_dim=8, norm_num_groups=4, attention_head_dim=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    )
    pipeline = StableDiffusionImg2ImgPipeline(
        vae=inpaint.vae, text_encoder=inpaint.text_encoder, tokenizer=inpaint.tokenizer, unet=unet,
        scheduler=inpaint.scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.fixture
def tiny_inpainting(tmp_path_factory: pytest.TempPathFactory):
    """Inject a tiny random inpainting pipeline as the `synthetic` method's model; records the calls."""
    from redteam import diffusion

    inpaint = build_tiny_inpainting_pipeline(tmp_path_factory.mktemp("tiny_sd"))
    img2img = build_tiny_img2img_pipeline(inpaint)
    calls: list[tuple[str, str]] = []

    def loader(kind, model, device):
        calls.append((kind, model))
        return inpaint if kind == "inpaint" else img2img

    diffusion.set_pipeline_loader(loader)
    yield calls
    diffusion.set_pipeline_loader(None)
