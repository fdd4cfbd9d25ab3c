"""Seeds derived from the run's seed, independent of processing order (and of the worker a piece of
work lands on), so the same audit gives the same bytes sequentially, in processes or on a cluster."""

from __future__ import annotations

import hashlib


def image_seed(seed: int, rel: str) -> int:
    """The seed for one image: the same in `redteam anonymize` and in an on-the-fly audit."""
    digest = hashlib.sha256(f"{seed}:anonymize:{rel}".encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def derived_seed(seed: int, *parts: str) -> int:
    """A per-(method, attack, image) seed."""
    return int.from_bytes(hashlib.sha256(":".join([str(seed), *parts]).encode("utf-8", "surrogateescape")).digest()[:8], "little") & (2**63 - 1)
