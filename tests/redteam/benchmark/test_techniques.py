"""Techniques: the sweep grammar, reference specs and tools, and what is refused."""

from __future__ import annotations

import pytest

from redteam.benchmark.techniques import sweep, techniques, tool
from redteam.core.errors import ConfigError


def test_a_range_with_a_step_and_a_list() -> None:
    assert [t.value for t in sweep("mosaic:block=4..32:4")] == [4, 8, 12, 16, 20, 24, 28, 32]
    assert [t.value for t in sweep("gaussian_blur:sigma=2..16")] == [2, 4, 6, 8, 10, 12, 14, 16]  # 8 settings
    assert [t.value for t in sweep("mosaic:block=4..32")] == [4, 8, 12, 16, 20, 24, 28, 32]  # integers too: 8, not 29
    assert [t.value for t in sweep("mosaic:block=4..10")] == [4, 5, 6, 7, 8, 9, 10]  # fewer whole numbers than 8: each
    assert [t.value for t in sweep("mosaic:block=4..20")] == [4, 6, 9, 11, 13, 15, 18, 20]  # rounded even steps
    assert [t.value for t in sweep("gaussian_blur:sigma=3,1.5")] == [1.5, 3.0]
    settings = sweep("mosaic:margin=0.3,block=8..16:8")
    assert [t.spec for t in settings] == ["mosaic:block=8,margin=0.3", "mosaic:margin=0.3"]  # block=16 is the default
    assert [t.name for t in settings] == ["mosaic:margin=0.3,block=8", "mosaic:margin=0.3,block=16"]  # named as swept
    assert {t.family for t in settings} == {"mosaic"} and {t.parameter for t in settings} == {"block"}


@pytest.mark.parametrize(
    "text",
    ["mosaic", "nosuch:block=1..2", "mosaic:nosuch=1..2", "mosaic:block=32..4", "mosaic:block=4..8:0", "mosaic:block=1.5..4", "mosaic:block=0..4"],
)
def test_a_bad_sweep_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError):
        sweep(text)


def test_tools_need_both_placeholders_and_names_are_unique() -> None:
    with pytest.raises(ConfigError, match="lacks"):
        tool("python x.py {input}", 1)
    found = techniques(["box", "box", "mosaic:block=16"], ["mosaic:block=8,16"], ["python tools/a.py {input} {output}"])
    assert [t.name for t in found] == ["mosaic:block=8", "mosaic:block=16", "box", "tool1_a"]  # box and block 16 once each
    with pytest.raises(ConfigError, match="nothing to compare"):
        techniques([], [], [])
