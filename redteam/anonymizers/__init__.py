"""Registry of reference anonymization methods, extended by the `redteam.methods` entry points."""

from __future__ import annotations

from redteam.anonymizers.base import Anonymizer, Parameter
from redteam.anonymizers.blur import GaussianBlur
from redteam.anonymizers.box import SolidBox
from redteam.anonymizers.mosaic import Mosaic
from redteam.anonymizers.spec import parse_method_spec
from redteam.plugins import load_entry_points

METHODS: dict[str, type[Anonymizer]] = {
    GaussianBlur.name: GaussianBlur,
    Mosaic.name: Mosaic,
    SolidBox.name: SolidBox,
}
METHODS.update(load_entry_points("redteam.methods", Anonymizer))

__all__ = ["METHODS", "Anonymizer", "Parameter", "build_method", "parse_method_spec"]


def build_method(spec: str) -> Anonymizer:
    """Parse and validate a spec such as ``gaussian_blur:sigma=2`` into a ready method."""
    return parse_method_spec(spec, METHODS)
