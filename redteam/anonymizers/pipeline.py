"""A pipeline of methods applied in order (`a | b | c`), each quantized to 8 bits like a real tool chain."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from redteam.anonymizers.base import Anonymizer, ExplicitRegion, FaceSet
from redteam.core.geometry import FaceGeometry


class Pipeline(Anonymizer):
    """Stages applied left to right; the operator is their composition (deepinv `*`)."""

    name = "pipeline"
    reference = "composition of the stages"
    parameters = ()

    def __init__(self, stages: Sequence[Anonymizer]) -> None:  # noqa: D107 - stages, not parameters
        from redteam.core.errors import ConfigError

        for position, stage in enumerate(stages):
            if stage.needs_fit and position > 0:
                raise ConfigError(
                    f"'{stage.name}' replaces faces of the original set and must be the first stage of a pipeline",
                    fix=f"write '{stage.name}:... | other stages'",
                )
        self._stages = tuple(stages)
        self.values = {}

    @property
    def stages(self) -> tuple[Anonymizer, ...]:
        return self._stages

    @property
    def spec(self) -> str:
        return " | ".join(stage.spec for stage in self._stages)

    @property
    def parameters_json(self) -> list[dict[str, Any]]:
        return [entry for stage in self._stages for entry in stage.parameters_json]

    @property
    def needs_fit(self) -> bool:  # type: ignore[override]
        return any(stage.needs_fit for stage in self._stages)

    @property
    def linear(self) -> bool:  # type: ignore[override]
        return all(stage.linear for stage in self._stages)

    def fit(self, faces: FaceSet, generator: torch.Generator | None = None) -> None:
        for stage in self._stages:
            stage.fit(faces, generator)

    def apply(self, pixels: np.ndarray, faces: Sequence[FaceGeometry], generator: torch.Generator | None = None) -> np.ndarray:
        out = pixels
        for stage in self._stages:
            out = stage.apply(out, faces, generator)
        return out

    def apply_regions(self, pixels: np.ndarray, regions: Sequence[ExplicitRegion], generator: torch.Generator | None = None) -> np.ndarray:
        """Each stage inside the given regions, except a whole-image stage (a tool's own JPEG), which
        covers the image as it does in `apply`."""
        faces = [face for _, _, face in regions if face is not None]
        out = pixels
        for stage in self._stages:
            out = stage.apply(out, faces, generator) if stage.values.get("region") == "image" else stage.apply_regions(out, regions, generator)
        return out

    def transform(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise TypeError("a pipeline applies its stages; it has no single transform")

    def physics(self, window_shape: tuple[int, int]) -> Any:
        """The composed operator, or None if a stage has none or the stages' regions differ."""
        operators = [stage.physics(window_shape) for stage in self._stages]
        regions = {(s.values.get("margin"), s.values.get("shape"), s.values.get("region")) for s in self._stages}
        if any(op is None for op in operators) or len(regions) > 1:
            return None
        composed = operators[0]
        for operator in operators[1:]:
            composed = operator * composed
        return composed
