"""Devices: CPU here, a GPU when one is present and asked for."""

from __future__ import annotations

from typing import TYPE_CHECKING

from redteam.core.errors import UsageError

if TYPE_CHECKING:
    import torch


def resolve_device(device: str) -> torch.device:
    """'auto' picks CUDA when present; asking for CUDA without one is a usage error."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise UsageError(f"unknown device '{device}'", fix="use cpu, cuda, cuda:N or auto") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device '{device}' requested but no CUDA GPU is available", fix="use --device cpu or auto")
    return resolved


def pick_device(choice: str) -> torch.device:
    """An attack's own `device=` parameter: auto, cpu or cuda."""
    import torch

    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)
