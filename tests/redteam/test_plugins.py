"""Plugins through entry points: the registries add them on first use, whatever was imported first."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from redteam.core import plugins
from redteam.core.plugins import PluginRegistry
from tests.conftest import plugin_environment


class Base:
    name = "base"


class BuiltIn(Base):
    name = "built_in"


def _registry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, modules: dict[str, str], entries: list[tuple[str, str]]) -> PluginRegistry[Base]:
    """A registry of `BuiltIn` whose group lists `entries` (name, "module:attr"), the modules written to disk."""
    for module, source in modules.items():
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    group = "redteam.test_group"
    listed = [EntryPoint(name, value, group) for name, value in entries]
    monkeypatch.setattr(plugins, "entry_points", lambda group: listed if group == "redteam.test_group" else [])
    return PluginRegistry(group, Base, (BuiltIn,))


def test_plugins_are_added_on_first_use_and_a_broken_one_is_reported_and_left_out(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    modules = {
        "good_plugin": f"""
            from {__name__} import Base

            class Good(Base):
                name = "good"

            class NotAComponent:
                name = "stranger"
            """,
        "broken_plugin": "raise ImportError('needs a library that is not installed')\n",
    }
    entries = [("good", "good_plugin:Good"), ("broken", "broken_plugin:Anything"), ("stranger", "good_plugin:NotAComponent")]
    registry = _registry(monkeypatch, tmp_path, modules, entries)
    assert capsys.readouterr().err == ""  # nothing loaded when the registry is built
    assert sorted(registry) == ["built_in", "good"]
    assert registry["good"].__module__ == "good_plugin" and registry["built_in"] is BuiltIn and len(registry) == 2
    err = capsys.readouterr().err
    assert "plugin 'broken' in redteam.test_group failed to load: needs a library that is not installed" in err
    assert "plugin 'stranger' in redteam.test_group is not a Base; ignored" in err
    list(registry)
    assert capsys.readouterr().err == ""  # loaded once


def test_a_plugin_named_like_a_built_in_replaces_it_and_one_reading_the_registry_while_loading_sees_the_built_ins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    modules = {
        "curious_plugin": f"""
            from {__name__} import Base
            import {__name__} as host

            SEEN = sorted(host.REGISTRY)  # read while the registry loads its plugins

            class Replacement(Base):
                name = "built_in"
            """
    }
    registry = _registry(monkeypatch, tmp_path, modules, [("built_in", "curious_plugin:Replacement")])
    monkeypatch.setattr(sys.modules[__name__], "REGISTRY", registry, raising=False)
    assert registry["built_in"].__module__ == "curious_plugin"
    assert sys.modules["curious_plugin"].SEEN == ["built_in"]


def test_a_plugin_module_imported_before_the_registries_is_in_them(tmp_path: Path) -> None:
    """Loading at import left such a plugin out (its module half-initialised when the registry loaded it),
    with a "failed to load" line on stderr."""
    (tmp_path / "early_plugin.py").write_text(
        textwrap.dedent(
            """
            from attacks.base import Attack, ThreatTier
            from redteam.anonymizers.base import Anonymizer


            class EarlyMethod(Anonymizer):
                name = "early_method"

                def transform(self, window, region, face, image, generator):
                    return window * 0


            class EarlyAttack(Attack):
                name = "early_attack"
                tier = ThreatTier.RECONSTRUCTION

                def reconstruct(self, images, *, method, generator):
                    return images
            """
        )
    )
    script = (
        "import early_plugin\n"
        "from attacks import ATTACKS\n"
        "from redteam.anonymizers import METHODS\n"
        "assert METHODS['early_method'] is early_plugin.EarlyMethod, sorted(METHODS)\n"
        "assert ATTACKS['early_attack'] is early_plugin.EarlyAttack, sorted(ATTACKS)\n"
    )
    listed = {"redteam.methods": {"early_method": "early_plugin:EarlyMethod"}, "redteam.attacks": {"early_attack": "early_plugin:EarlyAttack"}}
    env = plugin_environment(tmp_path, "early-plugin", listed)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "failed to load" not in done.stderr
