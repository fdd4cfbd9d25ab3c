"""The files a video audit publishes beside the reports: video.json (the videos, tracks, leaked intervals
and what each attack used) and one filmstrip per method with a leak (its longest leaked interval: the
original's face above the published one, frame by frame, with the time)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from redteam.video.run import VideoAudit, VideoConfig

Writer = Callable[[Path], Path]


def file_slug(name: str) -> str:
    """A file-name-safe form of a method name (hostile names stay harmless), unique by a short hash."""
    clean = re.sub(r"[^A-Za-z0-9_-]+", "_", name)[:40].strip("_") or "method"
    return f"{clean}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def filmstrip(frames: list[tuple[np.ndarray, np.ndarray, str]], originals: bool = True) -> Image.Image:
    """Original crops (top, unless `originals` is False) over the published ones, captioned with their times."""
    side, caption, rows = frames[0][1].shape[0], 14, 2 if originals else 1
    strip = Image.new("RGB", (side * len(frames), rows * side + caption), "white")
    draw = ImageDraw.Draw(strip)
    for i, (original, published, label) in enumerate(frames):
        if originals:
            strip.paste(Image.fromarray(original), (i * side, 0))
        strip.paste(Image.fromarray(published), (i * side, (rows - 1) * side))
        draw.text((i * side + 4, rows * side + 1), label, fill="black")
    return strip


def video_files(audit: VideoAudit, config: VideoConfig) -> dict[str, Writer]:
    """name -> writer of each extra file, for `reports.ReportStage.add`."""

    def write_json(folder: Path) -> Path:
        path = folder / "video.json"
        data = audit.to_json(config)
        data["filmstrips"] = {method: f"filmstrip-{file_slug(method)}.png" for method in audit.filmstrip}
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    writers: dict[str, Writer] = {"video": write_json}
    for method, frames in audit.filmstrip.items():

        def write_strip(folder: Path, frames: list[tuple[np.ndarray, np.ndarray, str]] = frames, method: str = method) -> Path:
            path = folder / f"filmstrip-{file_slug(method)}.png"
            filmstrip(frames, config.include_originals_in_report).save(path)
            return path

        writers[f"filmstrip:{method}"] = write_strip
    return writers
