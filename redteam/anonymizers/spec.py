"""Method spec grammar.

    spec     := stage ( "|" stage )*
    stage    := NAME [ ":" param ( "," param )* ]
    param    := KEY "=" VALUE

e.g. ``mosaic:block=12``, ``downsample:factor=4 | jpeg:quality=15 | noise:sigma=0.05``.
"""

from __future__ import annotations

import re
from typing import Mapping

from redteam.anonymizers.base import Anonymizer
from redteam.anonymizers.pipeline import Pipeline
from redteam.errors import ConfigError

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def parse_stage(text: str, spec: str, registry: Mapping[str, type[Anonymizer]]) -> Anonymizer:
    name, _, arguments = text.strip().partition(":")
    name = name.strip()
    if not name:
        raise ConfigError(f"empty stage in spec '{spec}'", fix="write NAME[:key=value,...] between each '|'")
    if not _NAME.match(name):
        raise ConfigError(f"malformed method spec '{spec}': bad method name '{name}'", fix="write NAME:key=value,...")
    if name not in registry:
        raise ConfigError(f"unknown method '{name}' in spec '{spec}'", fix="choose one of: " + ", ".join(sorted(registry)))
    method_class = registry[name]
    declared = {p.name: p for p in method_class.all_parameters()}
    values = {}
    if arguments.strip():
        for token in arguments.split(","):
            key, equals, raw = token.partition("=")
            key, raw = key.strip(), raw.strip()
            if not equals or not key or not raw:
                raise ConfigError(f"malformed token '{token.strip()}' in spec '{spec}'", fix="write key=value, e.g. sigma=2")
            if key not in declared:
                raise ConfigError(
                    f"method '{name}' has no parameter '{key}' (in spec '{spec}')",
                    fix="valid parameters: " + "; ".join(p.describe() for p in method_class.all_parameters()),
                )
            if key in values:
                raise ConfigError(f"parameter '{key}' given twice in spec '{spec}'", fix="give each parameter once")
            values[key] = declared[key].coerce(name, raw)
    return method_class(**values)


def parse_method_spec(spec: str, registry: Mapping[str, type[Anonymizer]]) -> Anonymizer:
    """Build the method (or pipeline) a spec names, with validated parameters.

    Raises:
        ConfigError: naming the bad token and listing the valid choices and ranges.
    """
    if not spec.strip():
        raise ConfigError("empty method spec", fix="e.g. gaussian_blur:sigma=6")
    stages = [parse_stage(part, spec, registry) for part in spec.split("|")]
    return stages[0] if len(stages) == 1 else Pipeline(stages)
