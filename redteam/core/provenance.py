"""Provenance: file digests (remembered per process for large checkpoints) and the versions of every
package that shaped a number, recorded with each run."""

from __future__ import annotations

import hashlib
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGES = (
    "face-anon-redteam", "torch", "torchvision", "facenet-pytorch", "dlib-bin", "lpips", "scikit-image", "numpy", "pillow",
    "deepinv", "diffusers", "transformers", "spandrel", "kornia",
)  # fmt: skip


def environment() -> dict[str, str]:
    """Python, platform and the installed versions of the packages behind the numbers."""
    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for package in PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


_digests: dict[tuple[str, int, int], str] = {}


def cached_sha256(path: Path) -> str:
    """sha256_file, remembered per (path, size, mtime) for the process: large checkpoints hash once."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _digests:
        _digests[key] = sha256_file(path)
    return _digests[key]
