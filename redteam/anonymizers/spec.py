"""Method spec grammar: ``NAME[:KEY=VALUE[,KEY=VALUE...]]``, e.g. ``mosaic:block=12``."""

from __future__ import annotations

import re
from collections.abc import Mapping

from redteam.anonymizers.base import Anonymizer
from redteam.errors import ConfigError

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def parse_method_spec(spec: str, registry: Mapping[str, type[Anonymizer]]) -> Anonymizer:
    """Build the method a spec names, with validated parameters.

    Raises:
        ConfigError: naming the bad token and listing the valid choices and ranges.
    """
    text = spec.strip()
    name, _, arguments = text.partition(":")
    name = name.strip()
    if not _NAME.match(name):
        raise ConfigError(f"malformed method spec '{spec}': bad method name '{name}'", fix="write NAME:key=value,...")
    if name not in registry:
        raise ConfigError(f"unknown method '{name}' in spec '{spec}'", fix="choose one of: " + ", ".join(sorted(registry)))
    method_class = registry[name]
    declared = {p.name: p for p in method_class.parameters}
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
                    fix="valid parameters: " + "; ".join(p.describe() for p in method_class.parameters),
                )
            if key in values:
                raise ConfigError(f"parameter '{key}' given twice in spec '{spec}'", fix="give each parameter once")
            values[key] = declared[key].coerce(name, raw)
    return method_class(**values)
