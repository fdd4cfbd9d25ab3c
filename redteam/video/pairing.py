"""Matching a redacted video to its original frame by frame, by presentation time.

The redacted file must be the same cut as the original: the same frame size, frame rate and number of
frames. Each original frame is paired with the redacted frame shown at the same time (both clocks counted
from their first frame, since containers may start at any offset), within half a frame interval. Anything
else is an input error with its fix, never a guess: a frame paired with the wrong one would audit the
wrong face.
"""

from __future__ import annotations

from redteam.core.errors import InputError
from redteam.video.reader import VideoInfo

#: Frame rates that differ by less than this fraction are the same rate (containers round them).
FPS_TOLERANCE = 0.01
SAME_CUT_FIX = "export the redacted video from the same cut as the original: the same start, length, frame rate and size"


def pair_frames(original: VideoInfo, redacted: VideoInfo, name: str) -> tuple[tuple[int, int], ...]:
    """(original frame index, redacted frame index) for every original frame.

    Raises:
        InputError: naming the redacted file, when its size, frame rate or frame count differs, or when a
            frame has no counterpart at its time.
    """
    where = f"{name}={redacted.path}"
    if (redacted.width, redacted.height) != (original.width, original.height):
        raise InputError(
            f"{where}: frames are {redacted.width} x {redacted.height} px, the original's {original.width} x {original.height} px",
            fix="publish the redacted video at the original's size (crop, pad or scale nothing)",
        )
    if abs(redacted.fps - original.fps) > FPS_TOLERANCE * original.fps:
        raise InputError(f"{where}: {redacted.fps:.3f} frames per second, the original {original.fps:.3f}", fix=SAME_CUT_FIX)
    if redacted.frames != original.frames:
        raise InputError(f"{where}: {redacted.frames} frames, the original {original.frames}", fix=SAME_CUT_FIX)
    half = 0.5 / original.fps
    start_o, start_r = original.times[0], redacted.times[0]
    by_time = sorted((t - start_r, j) for j, t in enumerate(redacted.times))
    pairs, cursor = [], 0
    for i, time in sorted(enumerate(original.times), key=lambda item: item[1]):
        offset = time - start_o
        while cursor < len(by_time) and by_time[cursor][0] < offset - half:
            cursor += 1
        if cursor >= len(by_time) or abs(by_time[cursor][0] - offset) > half:
            raise InputError(f"{where}: no frame at {offset:.3f} s, where the original shows frame {i}", fix=SAME_CUT_FIX)
        pairs.append((i, by_time[cursor][1]))
        cursor += 1
    return tuple(sorted(pairs))
