"""The one spec grammar, for methods and attacks alike.

    spec     := stage ( "|" stage )*
    stage    := NAME [ ":" param ( "," param )* ]
    param    := KEY "=" VALUE

e.g. ``mosaic:block=12``, ``downsample:factor=4 | jpeg:quality=15``, ``wiener|denoise``,
``sr:checkpoint=/models/x.pth,tile=256``. Every error is a ConfigError (exit 3) that names the bad
token and lists the valid choices and ranges.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TypeVar

from redteam.core.errors import ConfigError
from redteam.core.params import Configurable

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
C = TypeVar("C", bound=Configurable)


def parse_stages(spec: str, what: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """The stages of a spec as (name, [(key, raw value), ...]), checked for grammar only."""
    if not spec.strip():
        raise ConfigError(f"empty {what} spec", fix="e.g. gaussian_blur:sigma=6" if what == "method" else "e.g. bicubic")
    stages = []
    for part in spec.split("|"):
        name, _, arguments = part.strip().partition(":")
        name = name.strip()
        if not name:
            raise ConfigError(f"empty stage in {what} spec '{spec}'", fix="write NAME[:key=value,...] between each '|'")
        if not _NAME.match(name):
            raise ConfigError(f"malformed {what} spec '{spec}': bad {what} name '{name}'", fix="write NAME:key=value,... (lower-case name)")
        pairs: list[tuple[str, str]] = []
        if arguments.strip():
            for token in arguments.split(","):
                key, equals, raw = token.partition("=")
                key, raw = key.strip(), raw.strip()
                if not equals or not key or not raw:
                    raise ConfigError(f"malformed token '{token.strip()}' in {what} spec '{spec}'", fix="write key=value, e.g. sigma=2")
                if key in dict(pairs):
                    raise ConfigError(f"parameter '{key}' given twice in {what} spec '{spec}'", fix="give each parameter once")
                pairs.append((key, raw))
        stages.append((name, pairs))
    return stages


def build_stages(spec: str, registry: Mapping[str, type[C]], what: str) -> list[C]:
    """Instantiate each stage of `spec` from `registry` with validated, typed parameters."""
    built = []
    for name, pairs in parse_stages(spec, what):
        if name not in registry:
            raise ConfigError(f"unknown {what} '{name}' in '{spec}'", fix="choose one of: " + ", ".join(sorted(registry)))
        component = registry[name]
        declared = {p.name: p for p in component.all_parameters()}
        values = {}
        for key, raw in pairs:
            if key not in declared:
                raise ConfigError(
                    f"{what} '{name}' has no parameter '{key}' (in '{spec}')",
                    fix="valid parameters: " + ("; ".join(p.describe() for p in component.all_parameters()) or "none"),
                )
            values[key] = declared[key].coerce(name, raw, what)
        built.append(component(**values))
    return built
