"""Reading video files with PyAV (FFmpeg's libraries in the wheel: no system ffmpeg needed).

Every failure to open or decode a file becomes an `InputError` naming the file and the fix: a truncated
file, a codec FFmpeg cannot decode, a file with no video stream (audio only), or something that is not a
video at all. Frames are RGB uint8 H x W x 3, each with its presentation time in seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from redteam.core.errors import InputError
from redteam.images import VIDEO_SUFFIXES

#: Largest frame the audit reads (pixels): 8K UHD.
MAX_FRAME_PIXELS = 7680 * 4320
#: Re-encode fix shown for any file FFmpeg cannot read.
REENCODE_FIX = "re-export it as H.264 MP4 (for example `ffmpeg -i FILE -c:v libx264 -crf 18 out.mp4`), or check that the download finished"


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video's first video stream.

    Attributes:
        frames: frames decoded (counted by decoding, not trusted from the header).
        fps: the stream's average frame rate.
        times: presentation time of every frame, seconds, in decoding order.
    """

    path: Path
    width: int
    height: int
    fps: float
    codec: str
    times: tuple[float, ...]

    @property
    def frames(self) -> int:
        return len(self.times)

    @property
    def duration(self) -> float:
        return self.times[-1] + 1.0 / self.fps if self.times else 0.0

    def to_json(self) -> dict[str, object]:
        return {"path": str(self.path), "width": self.width, "height": self.height, "fps": round(self.fps, 4), "codec": self.codec, "frames": self.frames}


def _open(path: Path):  # type: ignore[no-untyped-def]  # av.container.InputContainer
    import av

    if not path.is_file():
        raise InputError(f"{path}: no such video file", fix="give the path of an existing video file")
    try:
        container = av.open(str(path), mode="r")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as error:
        raise InputError(f"{path}: not a readable video ({type(error).__name__}: {error})", fix=REENCODE_FIX) from None
    if not container.streams.video:
        kinds = sorted({str(stream.type) for stream in container.streams})
        container.close()
        raise InputError(f"{path}: holds no video stream (only {', '.join(kinds) or 'nothing'})", fix="give the video file itself, not its audio track")
    return container


def _frames(path: Path) -> Iterator[tuple[float, np.ndarray | None, tuple[int, int]]]:
    """(time, pixels or None, (width, height)) of every frame of the first video stream."""
    import av

    container = _open(path)
    try:
        stream = container.streams.video[0]
        if stream.codec_context is None or not stream.codec_context.name:
            raise InputError(f"{path}: its video codec is unknown to FFmpeg", fix=REENCODE_FIX)
        base = stream.time_base or Fraction(1, 1)
        index = 0
        try:
            for frame in container.decode(stream):
                if frame.width * frame.height > MAX_FRAME_PIXELS:
                    raise InputError(
                        f"{path}: frames of {frame.width} x {frame.height} px exceed 8K", fix="downscale the video (faces are audited at a few hundred pixels)"
                    )
                time = float(frame.pts * base) if frame.pts is not None else index / float(stream.average_rate or 25)
                yield time, frame, (frame.width, frame.height)
                index += 1
        except av.error.FFmpegError as error:
            raise InputError(
                f"{path}: decoding failed after {index} frame(s) ({type(error).__name__}: {error}); the file may be truncated", fix=REENCODE_FIX
            ) from None
        if index == 0:
            raise InputError(f"{path}: no frame could be decoded (truncated, or a codec FFmpeg cannot decode)", fix=REENCODE_FIX)
    finally:
        container.close()


def _declared_frames(stream: Any, fps: float) -> int | None:
    """The frame count the container declares for `stream` (its frame count, else its duration times the
    frame rate), or None when it declares neither: a file cut between two frames still opens and decodes,
    and only this tells that frames are missing."""
    if stream.frames:
        return int(stream.frames)
    if stream.duration and stream.time_base and fps > 0:
        return int(float(stream.duration * stream.time_base) * fps + 0.5)
    return None


def probe_video(path: Path) -> VideoInfo:
    """Open and decode `path` once (without converting frames), checking that every frame decodes."""
    import av

    container = _open(path)
    try:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        codec = stream.codec_context.name if stream.codec_context is not None else "?"
        fps = float(rate) if rate else 0.0
        declared = _declared_frames(stream, fps)
    except av.error.FFmpegError as error:
        raise InputError(f"{path}: not a readable video ({error})", fix=REENCODE_FIX) from None
    finally:
        container.close()
    times, sizes = [], set()
    for time, _, size in _frames(path):
        times.append(time)
        sizes.add(size)
    if len(sizes) > 1:
        raise InputError(f"{path}: its frame size changes within the file ({sorted(sizes)})", fix="re-export it at one frame size")
    if declared is not None and len(times) < declared:
        raise InputError(f"{path}: {len(times)} frame(s) decode of the {declared} its header declares; the file is truncated", fix=REENCODE_FIX)
    if fps <= 0:
        fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 25.0
    width, height = sizes.pop()
    return VideoInfo(path, width, height, fps, codec, tuple(times))


def read_frames(path: Path, wanted: set[int] | None = None) -> Iterator[tuple[int, float, np.ndarray]]:
    """(index, time, RGB uint8 pixels) of every frame, or of the frame indices in `wanted`, in order."""
    for index, (time, frame, _) in enumerate(_frames(path)):
        if wanted is not None and index not in wanted:
            continue
        yield index, time, frame.to_ndarray(format="rgb24")  # type: ignore[union-attr]
        if wanted is not None and index >= max(wanted):
            return


def check_video_argument(path: Path, what: str) -> Path:
    """A video path given on the command line: it exists and is a file with a video suffix."""
    if not path.exists():
        raise InputError(f"{what}: {path} does not exist", fix="give the path of the video file")
    if not path.is_file():
        raise InputError(f"{what}: {path} is not a file", fix="give a video file (a folder of images is audited with `redteam audit`)")
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise InputError(f"{what}: {path} is not a video file by its suffix", fix="give a video file: " + ", ".join(VIDEO_SUFFIXES))
    return path
