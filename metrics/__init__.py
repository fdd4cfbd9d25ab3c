"""Recognizers, identity metrics, perceptual metrics and statistics."""
