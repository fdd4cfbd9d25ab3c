"""One parameter system for every configurable component (methods, attacks): declared parameters
with type, default, range or choices, validated the same way everywhere, and a canonical spec."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from redteam.core.errors import ConfigError


@dataclass(frozen=True)
class Parameter:
    """One declared parameter, with its type, default and valid range or choices."""

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
        elif self.kind is str:
            valid = "text"
        else:
            valid = f"{self.kind.__name__} in [{self.minimum}, {self.maximum}]"
        return f"{self.name}={self.default} ({valid}): {self.help}"

    def coerce(self, owner: str, raw: str, what: str = "method") -> Any:
        """The typed value of `raw` for component `owner` (a `what`: method or attack), validated."""
        try:
            value = self.kind(raw)
        except ValueError:
            raise ConfigError(f"{what} '{owner}': parameter '{self.name}' must be a {self.kind.__name__}, got '{raw}'", fix=self.describe()) from None
        self.check(owner, value, what, shown=raw)
        return value

    def check(self, owner: str, value: Any, what: str = "method", shown: str | None = None) -> None:
        """Raise ConfigError unless `value` is finite and within the declared range or choices."""
        shown = str(value) if shown is None else shown
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{what} '{owner}': parameter '{self.name}' must be a finite number, got '{shown}'", fix=self.describe())
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{what} '{owner}': parameter '{self.name}' must be one of {', '.join(self.choices)}, got '{shown}'", fix=self.describe())
        if (self.minimum is not None and value < self.minimum) or (self.maximum is not None and value > self.maximum):
            raise ConfigError(f"{what} '{owner}': parameter '{self.name}'={shown} is outside [{self.minimum}, {self.maximum}]", fix=self.describe())


class Configurable:
    """A component built from a name and declared parameters (a method or an attack).

    Subclasses set `name`, `parameters` and `what` ("method" or "attack", for messages); values are
    validated on construction, and `spec` is the canonical name plus every non-default value.
    """

    name: ClassVar[str]
    what: ClassVar[str] = "component"
    parameters: ClassVar[tuple[Parameter, ...]] = ()

    @classmethod
    def all_parameters(cls) -> tuple[Parameter, ...]:
        return cls.parameters

    def __init__(self, **values: Any) -> None:
        declared = {p.name: p for p in self.all_parameters()}
        for key, value in values.items():
            if key not in declared:
                raise ConfigError(
                    f"{self.what} '{self.name}' has no parameter '{key}'",
                    fix="valid parameters: " + ("; ".join(p.describe() for p in self.all_parameters()) or "none"),
                )
            declared[key].check(self.name, value, self.what)
        self.values: dict[str, Any] = {p.name: values.get(p.name, p.default) for p in self.all_parameters()}

    @property
    def spec(self) -> str:
        """The canonical spec: the name and every non-default value, sorted, e.g. ``gaussian_blur:sigma=2.0``."""
        defaults = {p.name: p.default for p in self.all_parameters()}
        changed = [f"{k}={self.values[k]}" for k in sorted(self.values) if self.values[k] != defaults[k]]
        return type(self).name + (":" + ",".join(changed) if changed else "")
