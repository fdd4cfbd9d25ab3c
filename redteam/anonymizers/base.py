"""The interface of a reference anonymization method and its declared parameters."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from redteam.errors import ConfigError
from redteam.faces import FaceGeometry, enlarged_box


@dataclass(frozen=True)
class Parameter:
    """One declared parameter of a method, with its type, default and valid range or choices."""

    name: str
    kind: type
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None

    def describe(self) -> str:
        if self.choices:
            valid = "one of " + ", ".join(self.choices)
        else:
            valid = f"{self.kind.__name__} in [{self.minimum}, {self.maximum}]"
        return f"{self.name}={self.default} ({valid}): {self.help}"

    def coerce(self, method: str, raw: str) -> Any:
        try:
            value = self.kind(raw)
        except ValueError:
            raise ConfigError(
                f"method '{method}': parameter '{self.name}' must be a {self.kind.__name__}, got '{raw}'",
                fix=self.describe(),
            ) from None
        if self.choices is not None and value not in self.choices:
            raise ConfigError(
                f"method '{method}': parameter '{self.name}' must be one of {', '.join(self.choices)}, got '{raw}'",
                fix=self.describe(),
            )
        if (self.minimum is not None and value < self.minimum) or (self.maximum is not None and value > self.maximum):
            raise ConfigError(
                f"method '{method}': parameter '{self.name}'={raw} is outside [{self.minimum}, {self.maximum}]",
                fix=self.describe(),
            )
        return value


MARGIN = Parameter(
    "margin", float, 0.2, "grow each detected face box by this fraction of its size on every side", 0.0, 3.0
)


class Anonymizer(ABC):
    """A reference anonymization method: reproducible from its name and parameters.

    Subclasses declare `parameters`; instances hold validated values as attributes. `apply` changes
    only the pixels inside each face's region and returns a new 8-bit image (quantization is part of
    the method, as a real redaction tool writes 8-bit files).
    """

    name: ClassVar[str]
    parameters: ClassVar[tuple[Parameter, ...]]
    reference: ClassVar[str]

    def __init__(self, **values: Any) -> None:
        declared = {p.name: p for p in self.parameters}
        for key in values:
            if key not in declared:
                raise ConfigError(
                    f"method '{self.name}' has no parameter '{key}'",
                    fix="valid parameters: " + "; ".join(p.describe() for p in self.parameters),
                )
        self.values: dict[str, Any] = {p.name: values.get(p.name, p.default) for p in self.parameters}
        for key, value in self.values.items():
            setattr(self, key, value)

    @property
    def spec(self) -> str:
        """The canonical spec string, e.g. ``gaussian_blur:margin=0.2,sigma=2.0``."""
        return f"{self.name}:" + ",".join(f"{k}={self.values[k]}" for k in sorted(self.values))

    def regions(self, shape: tuple[int, ...], faces: Sequence[FaceGeometry]) -> list[tuple[int, int, int, int]]:
        """Integer (x0, y0, x1, y1) regions, clipped to the image, one per face."""
        height, width = shape[:2]
        regions = []
        for face in faces:
            x0, y0, x1, y1 = enlarged_box(face.box, float(self.values.get("margin", 0.0)))
            region = (
                max(0, int(np.floor(x0))),
                max(0, int(np.floor(y0))),
                min(width, int(np.ceil(x1))),
                min(height, int(np.ceil(y1))),
            )
            if region[2] > region[0] and region[3] > region[1]:
                regions.append(region)
        return regions

    def apply(
        self, pixels: np.ndarray, faces: Sequence[FaceGeometry], generator: torch.Generator | None = None
    ) -> np.ndarray:
        """Anonymize every face of an H x W x 3 uint8 image; pixels outside the regions are untouched."""
        out = np.array(pixels, dtype=np.uint8, copy=True)
        for region in self.regions(out.shape, faces):
            out = self.apply_region(out, region, generator)
        return out

    @abstractmethod
    def apply_region(
        self, pixels: np.ndarray, region: tuple[int, int, int, int], generator: torch.Generator | None
    ) -> np.ndarray:
        """Return a copy of `pixels` with `region` anonymized."""
