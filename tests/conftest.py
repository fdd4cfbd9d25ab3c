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
