"""Redacted video: frames read by timestamp, faces tracked on the original, leaked frames, tracks as
identities and the attacks that use many frames of one track (`redteam audit-video`)."""
