"""Registry of face recognizers, extended by the `redteam.recognizers` entry-point group."""

from __future__ import annotations

from metrics.recognizers.base import Availability, Recognizer, Threshold
from metrics.recognizers.dlib_resnet import DlibRecognizer
from metrics.recognizers.facenet import FaceNetRecognizer
from redteam.core.plugins import load_entry_points

RECOGNIZERS: dict[str, type[Recognizer]] = {
    DlibRecognizer.name: DlibRecognizer,
    FaceNetRecognizer.name: FaceNetRecognizer,
}
RECOGNIZERS.update(load_entry_points("redteam.recognizers", Recognizer))  # type: ignore[type-abstract]  # plugins subclass it

__all__ = ["RECOGNIZERS", "Availability", "Recognizer", "Threshold"]
