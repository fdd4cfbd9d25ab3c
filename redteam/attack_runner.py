"""One attack on the faces of one image: the reconstruction loop that `redteam audit` and `redteam attack`
share, so an attack's output is the same byte for byte whichever command ran it.

Per face: the window (the known method's region grown by a quarter, or the face box grown by half), the
face's own operator where identification fitted one (`redteam.engine.face_operator`), the scale cap for
attacks that work at any scale, the shape check, and the failure capture (a failing attack costs that
face's evidence, never the run). The seed of an image's attack is derived from the run's seed, the
method's name, the attack's spec and the image's path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from attacks import Attack, AttackNotApplicable, MethodInfo
from metrics.columns import METRIC_CROP
from redteam.anonymizers.base import Anonymizer
from redteam.core.geometry import Box, FaceGeometry, attack_window
from redteam.core.seeds import derived_seed
from redteam.core.tensors import to_tensor, to_uint8

#: Attacks marked `works_at_any_scale` see a face at most this many times the largest chip the
#: recognizers (and the quality columns) consume; larger faces are attacked on a shrunk window.
SCALE_CAP = 2.0
#: Prefix of the refusal reason of a face whose attack raised an unexpected error (never cached).
FAILED = "the attack failed: "
#: Prefix of the refusal reason of a face whose anonymized pixels hold nothing of the face to restore (a
#: constant fill): the attack is not run there, and the face counts as covered (the naive tier scores it).
NO_INFORMATION = "no information to restore: "
#: A face box (its inner 80%) whose grey levels spread less than this is a constant fill.
FILL_SPREAD = 2.0


def attack_generator(seed: int, method: str, attack: str, image: str) -> torch.Generator:
    """The generator of one attack on one image of one method (the same in the audit and `redteam attack`)."""
    return torch.Generator().manual_seed(derived_seed(seed, method, attack, image))


@dataclass(frozen=True)
class AttackRunner:
    """Runs attacks on faces' windows and pastes the reconstructions back.

    Attributes:
        largest_chip: the largest crop any consumer of the result takes (recognizers, quality columns),
            in pixels: the scale cap's reference.
    """

    largest_chip: int = METRIC_CROP

    def reconstruct(
        self,
        attack: Attack,
        info: MethodInfo,
        pixels: np.ndarray,
        faces: Sequence[FaceGeometry],
        generator: torch.Generator,
        operators: Mapping[int, tuple[Anonymizer, Box]] | None = None,
    ) -> tuple[np.ndarray, dict[int, str]]:
        """`pixels` with each face's window attacked and pasted back, and face index -> the reason for the
        faces the attack refused or failed on (nothing is pasted there). An attack that needs the operator
        gets a face's own where there is one (`operators`: face index -> (method, its region in the image),
        `redteam.engine.face_operator`)."""
        if not attack.reconstructs:
            return pixels, {}
        out: np.ndarray | None = None  # the copy made when the first face is pasted
        refused: dict[int, str] = {}
        for index, face in enumerate(faces):
            spread = inner_spread(pixels, face)
            if spread < FILL_SPREAD:
                refused[index] = f"{NO_INFORMATION}the face region is a constant fill (spread {spread:.1f} grey levels): no pixel of the face is left"
                continue
            operator = (operators or {}).get(index) if attack.needs_known_method else None
            reference, region = operator if operator is not None else (info.reference, None)
            x0, y0, x1, y1 = attack_window(pixels.shape, face, reference, region)
            context = replace(info, reference=reference, face=face, origin=(x0, y0), image_shape=pixels.shape, region=region)
            try:
                restored = self._window(attack, context, pixels[y0:y1, x0:x1], face, generator)
            except AttackNotApplicable as reason:
                refused[index] = str(reason)
                continue
            except Exception as error:  # noqa: BLE001 - a failing attack costs that face's evidence, not the audit
                refused[index] = f"{FAILED}{type(error).__name__}: {error}"  # the caller logs it
                continue
            out = np.array(pixels, copy=True) if out is None else out
            out[y0:y1, x0:x1] = restored
        return (pixels if out is None else out), refused

    def _window(self, attack: Attack, context: MethodInfo, window: np.ndarray, face: FaceGeometry, generator: torch.Generator) -> np.ndarray:
        """One face's window attacked (uint8 in, uint8 out): shrunk first for an attack that works at any
        scale when the face is larger than SCALE_CAP times the largest chip (what it recovers beyond that
        is never seen). The shrink and the return are resampled in 8 bits (antialiased bilinear down,
        bicubic back: torch's vectorised uint8 path, a tenth of the float path's time on a window of a
        large photo); the attack sees the shrunk window as floats, as any other input."""
        cap = attack.scale_cap if attack.scale_cap is not None else SCALE_CAP
        scale = cap * self.largest_chip / max(face.width, 1.0)
        if not (attack.works_at_any_scale and scale < 1.0):
            tensor = to_tensor(window)
            return to_uint8(_checked(attack, attack.reconstruct(tensor, method=context, generator=generator), tensor.shape))
        height, width = window.shape[:2]
        size = (max(1, int(height * scale)), max(1, int(width * scale)))
        whole = torch.from_numpy(np.array(window)).permute(2, 0, 1)[None]  # uint8, its pixels interleaved (the fast path's layout)
        small = torch.nn.functional.interpolate(whole, size=size, mode="bilinear", antialias=True, align_corners=False)
        shrunk = resampled(context, size[1] / width, size[0] / height)
        tensor = small.float() / 255.0
        restored = to_uint8(_checked(attack, attack.reconstruct(tensor, method=shrunk, generator=generator), tensor.shape))
        back = torch.from_numpy(np.ascontiguousarray(restored)).permute(2, 0, 1)[None]
        return torch.nn.functional.interpolate(back, size=(height, width), mode="bicubic", antialias=True, align_corners=False)[0].permute(1, 2, 0).numpy()


def _checked(attack: Attack, restored: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """`restored`, refused when the attack did not return the shape it was given."""
    if restored.shape != shape:
        raise RuntimeError(f"attack {attack.name} returned shape {tuple(restored.shape)} for {tuple(shape)}")
    return restored


def resampled(info: MethodInfo, sx: float, sy: float) -> MethodInfo:
    """`info` for a window resampled by `sx` across and `sy` down: the face, the window's corner and the
    image's shape in the coordinates of the pixels the attack is given."""
    shape = info.image_shape
    return replace(
        info,
        face=info.face.scaled(sx, sy) if info.face is not None else None,
        origin=(round(info.origin[0] * sx), round(info.origin[1] * sy)),
        image_shape=(round(shape[0] * sy), round(shape[1] * sx), *shape[2:]) if shape is not None else None,
        region=_scaled_box(info.region, sx, sy) if info.region is not None else None,
    )


def _scaled_box(box: Box, sx: float, sy: float) -> Box:
    return (round(box[0] * sx), round(box[1] * sy), round(box[2] * sx), round(box[3] * sy))


def inner_spread(pixels: np.ndarray, face: FaceGeometry) -> float:
    """The standard deviation of the grey levels inside the inner 80% of the face box (the edge, where a
    fill meets the image or a codec rings, left out)."""
    x0, y0, x1, y1 = face.box
    dx, dy = 0.1 * (x1 - x0), 0.1 * (y1 - y0)
    height, width = pixels.shape[:2]
    cx0, cy0 = max(0, int(x0 + dx)), max(0, int(y0 + dy))
    cx1, cy1 = min(width, int(np.ceil(x1 - dx))), min(height, int(np.ceil(y1 - dy)))
    if cx1 <= cx0 or cy1 <= cy0:
        return float("inf")
    return float(pixels[cy0:cy1, cx0:cx1].astype(np.float64).std())
