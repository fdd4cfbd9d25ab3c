"""Reading and pairing videos: frames by time, and every unreadable or mismatched file as an InputError
that names the file and the fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from redteam.core.errors import InputError
from redteam.video.pairing import pair_frames
from redteam.video.reader import VideoInfo, check_video_argument, probe_video, read_frames
from tests.redteam.video.clips import encode


def ramp(count: int, size: tuple[int, int] = (64, 48)) -> list[np.ndarray]:
    width, height = size
    return [np.full((height, width, 3), (10 + 20 * i) % 250, np.uint8) for i in range(count)]


def test_probe_and_read_give_every_frame_with_its_time(tmp_path: Path) -> None:
    path = encode(ramp(8), tmp_path / "clip.mp4", fps=10, crf=0)
    info = probe_video(path)
    assert (info.frames, info.width, info.height, info.codec) == (8, 64, 48, "h264")
    assert info.fps == pytest.approx(10.0)
    assert info.times == pytest.approx(tuple(i / 10 for i in range(8)))
    frames = list(read_frames(path, {2, 5}))
    assert [index for index, _, _ in frames] == [2, 5]
    assert [float(pixels.mean()) for _, _, pixels in frames] == pytest.approx([50, 110], abs=3)


def test_a_truncated_file_is_an_input_error_naming_it(tmp_path: Path) -> None:
    path = encode(ramp(30, (160, 120)), tmp_path / "clip.mp4", fps=10)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(InputError) as error:
        probe_video(path)
    assert str(path) in error.value.message and error.value.fix


def test_a_file_that_is_not_a_video_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("not a video at all\n" * 50)
    with pytest.raises(InputError, match="notes.mp4") as error:
        probe_video(path)
    assert "re-export" in (error.value.fix or "")


def test_audio_only_is_an_input_error_saying_so(tmp_path: Path) -> None:
    import av

    path = tmp_path / "sound.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(InputError, match="no video stream"):
        probe_video(path)


def test_command_line_paths_are_checked(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        check_video_argument(tmp_path / "missing.mp4", "ORIGINAL")
    with pytest.raises(InputError, match="not a file"):
        check_video_argument(tmp_path, "ORIGINAL")
    (tmp_path / "photo.png").write_bytes(b"x")
    with pytest.raises(InputError, match="not a video file"):
        check_video_argument(tmp_path / "photo.png", "ORIGINAL")


def info(times: tuple[float, ...], fps: float = 10.0, size: tuple[int, int] = (64, 48), name: str = "x.mp4") -> VideoInfo:
    return VideoInfo(Path(name), size[0], size[1], fps, "h264", times)


def test_frames_are_paired_by_time_from_each_file_start() -> None:
    original = info(tuple(i / 10 for i in range(5)))
    shifted = info(tuple(1.0 + i / 10 for i in range(5)), name="redacted.mp4")  # the container starts at 1 s
    assert pair_frames(original, shifted, "blur") == tuple((i, i) for i in range(5))


@pytest.mark.parametrize(
    ("redacted", "message"),
    [
        (info(tuple(i / 10 for i in range(5)), size=(32, 48), name="r.mp4"), "32 x 48"),
        (info(tuple(i / 12 for i in range(5)), fps=12.0, name="r.mp4"), "frames per second"),
        (info(tuple(i / 10 for i in range(4)), name="r.mp4"), "4 frames"),
        (info((0.0, 0.1, 0.2, 0.3, 0.55), name="r.mp4"), "no frame at 0.400 s"),
    ],
)
def test_a_different_cut_is_an_input_error_naming_the_redacted_file(redacted: VideoInfo, message: str) -> None:
    original = info(tuple(i / 10 for i in range(5)))
    with pytest.raises(InputError, match=message) as error:
        pair_frames(original, redacted, "blur")
    assert "blur=r.mp4" in error.value.message and error.value.fix
