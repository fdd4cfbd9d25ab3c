"""Distractor faces for the video audit's gallery (`--gallery DIR`): every face MTCNN finds in the folder's
images, embedded by each recognizer. Unreadable files are input issues, as in the still audit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from metrics.recognizers import Recognizer
from redteam.core.errors import InputError
from redteam.datasets import discover_images
from redteam.engine.context import RunContext
from redteam.images import load_image


def distractor_embeddings(
    ctx: RunContext, folder: Path, recognizers: dict[str, Recognizer], embed: Callable[[str, list[np.ndarray]], np.ndarray]
) -> dict[str, list[tuple[str, np.ndarray]]]:
    """recognizer -> (label, embedding) of every face in `folder` (label: the file's path and face number)."""
    found: dict[str, list[tuple[str, np.ndarray]]] = {name: [] for name in recognizers}
    for entry in discover_images(folder, role="gallery").entries:
        try:
            pixels = load_image(entry.path).pixels
        except InputError as error:
            ctx.issue(error.issue_kind, f"gallery:{entry.rel}", None, error.message, "skipped", error.fix)
            continue
        for number, face in enumerate(ctx.detector.detect(pixels)):
            for name, recognizer in recognizers.items():
                chip = recognizer.crop(pixels, recognizer.locate(pixels, face))
                found[name].append((f"gallery:{entry.rel}#{number}", embed(name, [chip])[0]))
    return found
