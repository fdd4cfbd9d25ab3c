"""Third-party components through Python entry points (`redteam.attacks`, `redteam.methods`,
`redteam.recognizers`), so a plugin adds to a registry without forking."""

from __future__ import annotations

import sys
from importlib.metadata import entry_points
from typing import TypeVar

T = TypeVar("T")


def load_entry_points(group: str, base: type[T]) -> dict[str, type[T]]:
    """Classes registered under `group` that subclass `base`, keyed by their `name` attribute.

    A plugin that fails to import or is not a `base` subclass is reported on stderr and left out;
    it never breaks the built-in registry.
    """
    found: dict[str, type[T]] = {}
    for entry in entry_points(group=group):
        try:
            component = entry.load()
        except Exception as error:  # noqa: BLE001 - a broken plugin must not break the tool
            print(f"redteam: plugin {entry.name!r} in {group} failed to load: {error}", file=sys.stderr)
            continue
        if not (isinstance(component, type) and issubclass(component, base)):
            print(f"redteam: plugin {entry.name!r} in {group} is not a {base.__name__}; ignored", file=sys.stderr)
            continue
        found[getattr(component, "name", entry.name)] = component
    return found
