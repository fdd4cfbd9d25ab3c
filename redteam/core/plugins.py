"""Third-party components through Python entry points (`redteam.attacks`, `redteam.methods`,
`redteam.recognizers`), so a plugin adds to a registry without forking."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, MutableMapping
from importlib.metadata import entry_points
from typing import Generic, TypeVar

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


class PluginRegistry(MutableMapping[str, type[T]], Generic[T]):
    """The built-in classes of one kind, keyed by `name`, and the plugins of an entry-point group,
    added on first use rather than when the registry's module is imported.

    Loading them at import broke a plugin imported first: its module imports the base class, which
    imports the registry, whose entry point then loads the plugin's own half-initialized module (no
    class yet), so the plugin was reported as failed and left out. A registry is first read by a
    command or a test, after the imports that led to it have finished. A plugin of a built-in's name
    replaces it, as before. A plugin module that reads the registry while it is being loaded sees what
    is there so far (no recursion).
    """

    def __init__(self, group: str, base: type[T], built_in: Iterable[type[T]]) -> None:
        self._group, self._base = group, base
        self._items: dict[str, type[T]] = {getattr(cls, "name"): cls for cls in built_in}  # noqa: B009 - every registered class declares it
        self._plugins_read = False  # set before they are read, so a read during the loading does not recurse

    def _loaded(self) -> dict[str, type[T]]:
        if not self._plugins_read:
            self._plugins_read = True
            self._items.update(load_entry_points(self._group, self._base))
        return self._items

    def __getitem__(self, name: str) -> type[T]:
        return self._loaded()[name]

    def __setitem__(self, name: str, component: type[T]) -> None:
        self._loaded()[name] = component

    def __delitem__(self, name: str) -> None:
        del self._loaded()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaded())

    def __len__(self) -> int:
        return len(self._loaded())

    def __repr__(self) -> str:
        return f"PluginRegistry({self._group!r}, {sorted(self._loaded())})"
