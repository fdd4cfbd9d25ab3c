"""Registry of face recognizers, extended by the `redteam.recognizers` entry-point group."""

from __future__ import annotations

from metrics.recognizers.base import Availability, Recognizer, Threshold
from metrics.recognizers.dlib_resnet import DlibRecognizer
from metrics.recognizers.facenet import FaceNetRecognizer
from redteam.core.plugins import PluginRegistry

RECOGNIZERS: PluginRegistry[Recognizer] = PluginRegistry("redteam.recognizers", Recognizer, (DlibRecognizer, FaceNetRecognizer))  # type: ignore[type-abstract]  # plugins subclass it

__all__ = ["RECOGNIZERS", "Availability", "Recognizer", "Threshold"]
