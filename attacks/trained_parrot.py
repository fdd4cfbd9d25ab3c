"""Trained parrot (parrot tier): a recognizer adapted to faces anonymized with the method, matching in the
anonymized domain.

The plain parrot (attacks/parrot.py) anonymizes the gallery the same way and matches with an off-the-shelf
recognizer, which was never shown an anonymized face. The trained parrot adds what Hao et al. (FG 2020)
and McPherson, Shokri and Shmatikov (2016) showed matters most: a recognizer trained on faces obscured
with the same operator. Here it is a small head on the frozen recognizer's embedding (a residual MLP,
one per recognizer), trained with a margin softmax on identities of a labelled research corpus
anonymized with the exact method (`redteam.parrot_training.train_parrot`), never on the audited faces.
Probes and gallery are both anonymized, as for the plain parrot, and both pass through the head before
ranking: the engine's cached parrot embeddings are reused, so the trained parrot costs nothing beyond the
plain parrot at audit time.

The engine scores an attack in its own embedding space through `embedding_space` (a hook the engine
calls when it supports it, `MethodInfo.attack_embeddings`); an engine without that hook would score the
plain parrot's numbers under this name, so the attack does not apply there.

References:
    Newton, Sweeney and Malin, IEEE TKDE 2005 ("parrot recognition"); McPherson, Shokri and Shmatikov,
    "Defeating Image Obfuscation with Deep Learning", 2016; Hao et al., FG 2020 (a recognizer trained on
    obscured faces); Wang et al., "Additive Margin Softmax for Face Verification", IEEE SPL 2018.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from attacks.base import Applicability, Attack, MethodInfo
from attacks.learned import checkpoint_refusal
from redteam.core.errors import InputError, ModelUnavailableError
from redteam.core.provenance import cached_sha256
from redteam.core.tiers import ThreatTier

PARROT_SCHEMA = "redteam-parrot/1"
HIDDEN = 512


class ParrotHead(nn.Module):
    """A recognizer's embedding of an anonymized face -> an embedding where the same person's anonymized
    photos lie together: (x - centre) through a linear map (initialised to the identity) plus a residual
    MLP, normalised to the sphere of radius `scale` (the recognizer's own distance scale, so its
    collapse rule keeps its meaning)."""

    centre: torch.Tensor
    scale: torch.Tensor

    def __init__(self, dim: int, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, dim)
        last = nn.Linear(hidden, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), last)
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(dim))
            self.linear.bias.zero_()
            last.weight.zero_()
            last.bias.zero_()
        self.register_buffer("centre", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(()))

    def direction(self, x: torch.Tensor) -> torch.Tensor:
        """Unit-norm output (what the training loss sees)."""
        x = x.float() - self.centre
        return F.normalize(self.linear(x) + self.mlp(x), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.direction(x) * self.scale


def parrot_dir() -> Path:
    from redteam.core.paths import default_cache_dir

    return default_cache_dir() / "parrot"


def parrot_path(spec: str, folder: Path | None = None) -> Path:
    """Where the trained parrot for a canonical method spec is saved and looked up (safetensors; its
    training record beside it as `.json`)."""
    key = hashlib.sha256(spec.encode()).hexdigest()[:16]
    return (folder or parrot_dir()) / f"parrot-{key}.safetensors"


def train_command(spec: str) -> str:
    return f'redteam models train-parrot --method "{spec}" --faces LABELLED_CORPUS'


def load_heads(path: Path, record: dict) -> dict[str, ParrotHead]:
    """The heads of a checkpoint, one per recognizer named in its record (safetensors only: tensors,
    nothing to unpickle)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise InputError(
            f"{path}: not a readable safetensors checkpoint ({error})", fix=f"retrain with `{train_command(record.get('spec', 'SPEC'))}`"
        ) from error
    heads = {}
    for name, details in record.get("recognizers", {}).items():
        head = ParrotHead(int(details["dim"]), int(details.get("hidden", HIDDEN)))
        prefix = f"{name}."
        head.load_state_dict({key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)})
        heads[name] = head.eval()
    return heads


def read_record(path: Path) -> dict:
    try:
        record = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelUnavailableError(f"{path}: training record missing or unreadable ({error})", fix="retrain the parrot") from error
    if record.get("schema") != PARROT_SCHEMA:
        raise ModelUnavailableError(f"{path}: not a trained-parrot record (schema {record.get('schema')!r})", fix="retrain the parrot")
    return record


class TrainedParrot(Attack):
    """Parrot with a recognizer head trained on faces anonymized with the method (`redteam models train-parrot`).

    Only other photos of the same person count (as for `parrot`). The head is trained on a labelled corpus
    the attacker holds; a checkpoint whose corpus shares a file, or an identity folder name, with the
    audited originals is refused. A recognizer the checkpoint has no head for is matched as by the plain
    parrot.

    References:
        McPherson, Shokri and Shmatikov 2016; Hao et al., FG 2020; Wang et al., IEEE SPL 2018.
    """

    name = "trained_parrot"
    tier = ThreatTier.PARROT
    gallery_domain = "anonymized"
    reconstructs = False
    needs_known_method = True

    def __init__(self, **values: object) -> None:
        super().__init__(**values)
        self._heads: dict[str, dict[str, ParrotHead]] = {}

    def applicable(self, method: MethodInfo) -> Applicability:
        if method.reference is None:
            return Applicability(False, f"needs a known method; '{method.name}' is an observed folder without a spec")
        spec = method.reference.spec
        path = parrot_path(spec)
        if not path.is_file():
            return Applicability(False, f"no trained parrot for '{spec}': run `{train_command(spec)}`", model_missing=True)
        record = read_record(path)
        refusal = checkpoint_refusal(path, record, method, f"`{train_command(spec)}`")
        if refusal:
            return Applicability(False, refusal, model_missing=True)
        people = set(record.get("identities", [])) & set(getattr(method, "audited_identities", frozenset()))
        if people:
            shown = ", ".join(sorted(people)[:3]) + (", ..." if len(people) > 3 else "")
            return Applicability(
                False, f"{path} was trained on {len(people)} of the audited people (identity folders {shown}); train on other people", model_missing=True
            )
        if not getattr(method, "attack_embeddings", False):
            return Applicability(False, "this engine does not score attacks in their own embedding space (the trained parrot's hook)")
        return Applicability(True)

    def provenance(self, method: MethodInfo) -> dict[str, str]:
        if method.reference is None:
            return {}
        path = parrot_path(method.reference.spec)
        if not path.is_file():
            return {}
        record = read_record(path)
        return {
            "checkpoint": str(path),
            "sha256": cached_sha256(path),
            "corpus_files": str(len(record.get("corpus_files", []))),
            "identities": str(len(record.get("identities", []))),
            "recognizers": ",".join(sorted(record.get("recognizers", {}))),
            "steps": str(record.get("steps", "?")),
        }

    def heads(self, spec: str) -> dict[str, ParrotHead]:
        path = parrot_path(spec)
        key = f"{path}:{cached_sha256(path)}"
        if key not in self._heads:
            self._heads[key] = load_heads(path, read_record(path))
        return self._heads[key]

    def embedding_space(self, method: MethodInfo, recognizer: str, fingerprint: str) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """The map the engine applies to this attack's probe embeddings and to its (anonymized) gallery's
        before ranking them with `recognizer` (and to the clean gallery, for the similarity column); None
        when the checkpoint has no head for this recognizer, or one trained on other weights (then the
        match is the plain parrot's)."""
        if method.reference is None:
            return None
        record = read_record(parrot_path(method.reference.spec))
        details = record.get("recognizers", {}).get(recognizer)
        if details is None or details.get("fingerprint") != fingerprint:
            return None
        head = self.heads(method.reference.spec)[recognizer]

        def project(embeddings: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return head(embeddings.float()).to(embeddings.dtype)

        return project

    def reconstruct(self, images: torch.Tensor, *, method: MethodInfo, generator: torch.Generator) -> torch.Tensor:
        return images.clone()  # the probe is the anonymized face itself, as for the plain parrot
