"""Method specs: the one grammar (`redteam.core.spec`) over the method registry, e.g.
``mosaic:block=12`` or ``downsample:factor=4 | jpeg:quality=15 | noise:sigma=0.05``."""

from __future__ import annotations

from typing import Mapping

from redteam.anonymizers.base import Anonymizer
from redteam.anonymizers.pipeline import Pipeline
from redteam.core.spec import build_stages


def parse_method_spec(spec: str, registry: Mapping[str, type[Anonymizer]]) -> Anonymizer:
    """Build the method (or pipeline) a spec names, with validated parameters.

    Raises:
        ConfigError: naming the bad token and listing the valid choices and ranges.
    """
    stages = build_stages(spec, registry, "method")
    return stages[0] if len(stages) == 1 else Pipeline(stages)
