"""Registry of reference anonymization methods, extended by the `redteam.methods` entry points."""

from __future__ import annotations

from redteam.anonymizers.base import Anonymizer, FaceSet, Parameter
from redteam.anonymizers.blur import BoxBlur, GaussianBlur, MotionBlur
from redteam.anonymizers.box import EyeBar, SolidBox
from redteam.anonymizers.jpeg import Jpeg
from redteam.anonymizers.ksame import KSame
from redteam.anonymizers.mosaic import Downsample, Mosaic, Pixelate
from redteam.anonymizers.noise import Noise
from redteam.anonymizers.pipeline import Pipeline
from redteam.anonymizers.spec import parse_method_spec
from redteam.anonymizers.synthetic import SyntheticFace
from redteam.anonymizers.tools import TOOL_METHODS
from redteam.core.plugins import PluginRegistry

_BUILT_IN: tuple[type[Anonymizer], ...] = (GaussianBlur, BoxBlur, MotionBlur, Mosaic, Pixelate, Downsample, SolidBox, EyeBar, Noise, Jpeg, KSame, SyntheticFace)
METHODS: PluginRegistry[Anonymizer] = PluginRegistry("redteam.methods", Anonymizer, (*_BUILT_IN, *TOOL_METHODS))  # type: ignore[type-abstract]  # plugins subclass it

__all__ = ["METHODS", "Anonymizer", "FaceSet", "Parameter", "Pipeline", "parse_method_spec", "build_method"]


def build_method(spec: str) -> Anonymizer:
    """Parse and validate a spec such as ``gaussian_blur:sigma=2`` or ``downsample:factor=4 | jpeg:quality=15``."""
    return parse_method_spec(spec, METHODS)
