"""Red-team harness for face anonymization: attack anonymized faces, measure surviving identity."""

__version__ = "0.1.0"
