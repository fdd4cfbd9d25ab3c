"""Learned inversion (adaptive tier): a small U-Net trained on pairs (method(x), x) made with the exact
method, or with a whole family of it (one model for every blur sigma in a range, the parameter given to
the network as an extra input channel), from a face corpus the attacker holds, never from the audited
originals.

`redteam attack train --method SPEC --faces DIR` trains a model for one spec for a fixed time;
`redteam.training.train_until_plateau` (`redteam models train FAMILY`) trains one for a family such as
``gaussian_blur:sigma=3..24`` until its validation split stops improving. Both save the weights with a
training record (spec, corpus file hashes, steps, losses, seed, versions; the family model also its
training curve) under the cache, keyed by the canonical spec, where the `learned` attack finds them: the newest of the
exact spec's model and a family model whose range holds the method's parameter. The audit refuses
a checkpoint whose corpus shares a file with the audited originals.

References:
    McPherson, Shokri and Shmatikov, "Defeating Image Obfuscation with Deep Learning", 2016 (networks
    trained on obfuscated faces); Ronneberger, Fischer and Brox, "U-Net", MICCAI 2015.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from attacks.base import Applicability, Attack, MethodInfo
from redteam.anonymizers.base import Anonymizer
from redteam.core.errors import ConfigError, InputError, ModelUnavailableError
from redteam.core.provenance import cached_sha256
from redteam.core.tiers import ThreatTier
from redteam.core.weights import load_plain_checkpoint

TRAINING_SIZE = 96
FAMILY_SCHEMA = "redteam-inversion-family/1"


class TinyUNet(nn.Module):
    """Three-level U-Net predicting a residual correction of the anonymized face (input + output in [0, 1]).

    With `conditioned`, a fourth input channel holds the method's strength at the network's scale
    (`condition_value`), so one model inverts a whole family of the method.
    """

    def __init__(self, width: int = 24, conditioned: bool = False) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(inplace=True))

        self.conditioned = conditioned
        self.down1, self.down2, self.down3 = block(4 if conditioned else 3, width), block(width, 2 * width), block(2 * width, 4 * width)
        self.up2, self.up1 = block(6 * width, 2 * width), block(3 * width, width)
        self.head = nn.Conv2d(width, 3, 1)

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """x: N x 3 x H x W in [0, 1]; condition: N values (`condition_value`), for a conditioned model."""
        inputs = x
        if self.conditioned:
            if condition is None:
                raise ValueError("a conditioned inversion needs the method's strength")
            inputs = torch.cat([x, condition.to(x).view(-1, 1, 1, 1).expand(-1, 1, *x.shape[-2:])], dim=1)
        d1 = self.down1(inputs)
        d2 = self.down2(F.avg_pool2d(d1, 2))
        d3 = self.down3(F.avg_pool2d(d2, 2))
        u2 = self.up2(torch.cat([F.interpolate(d3, size=d2.shape[-2:], mode="bilinear", align_corners=False), d2], dim=1))
        u1 = self.up1(torch.cat([F.interpolate(u2, size=d1.shape[-2:], mode="bilinear", align_corners=False), d1], dim=1))
        return (x + self.head(u1)).clamp(0.0, 1.0)


def condition_value(parameter: float, window_width: int) -> float:
    """The strength a conditioned model sees: the method's parameter (a length in pixels: blur sigma,
    mosaic cell) at the network's scale (the window resampled to TRAINING_SIZE), on a log scale. The same
    face blurred with sigma 10 in a 240 px window and sigma 5 in a 120 px one looks alike to the network."""
    return math.log2(max(parameter * TRAINING_SIZE / max(window_width, 1), 1e-3)) / 4.0


@dataclass(frozen=True)
class FamilySpec:
    """A method family: one method with one numeric parameter over a range, the others fixed.

    Written ``NAME:PARAM=LOW..HIGH[,key=value...]``, e.g. ``gaussian_blur:sigma=3..24`` or
    ``mosaic:block=6..24,shape=ellipse``.
    """

    method: str
    parameter: str
    low: float
    high: float
    fixed: tuple[tuple[str, Any], ...]  # every other parameter's value (defaults included)

    @classmethod
    def parse(cls, spec: str) -> FamilySpec:
        """Parse and validate a family spec (ConfigError, exit 3, naming the fix)."""
        from redteam.anonymizers import build_method
        from redteam.core.spec import parse_stages

        stages = parse_stages(spec, "method")
        if len(stages) != 1:
            raise ConfigError(f"family spec '{spec}' has {len(stages)} stages", fix="a family is one method, e.g. gaussian_blur:sigma=3..24")
        name, pairs = stages[0]
        ranged = [(key, raw) for key, raw in pairs if ".." in raw]
        if len(ranged) != 1:
            raise ConfigError(f"family spec '{spec}' needs exactly one parameter range LOW..HIGH", fix="e.g. gaussian_blur:sigma=3..24 or mosaic:block=6..24")
        key, raw = ranged[0]
        low_raw, _, high_raw = raw.partition("..")
        rest = ",".join(f"{k}={v}" for k, v in pairs if k != key)
        low_method = build_method(f"{name}:{key}={low_raw.strip()}" + (f",{rest}" if rest else ""))  # validates name, keys, ranges
        high_method = build_method(f"{name}:{key}={high_raw.strip()}" + (f",{rest}" if rest else ""))
        declared = {p.name: p for p in low_method.all_parameters()}
        if declared[key].kind not in (int, float):
            raise ConfigError(f"family spec '{spec}': parameter '{key}' is not numeric", fix="give a range of a numeric parameter")
        low, high = float(low_method.values[key]), float(high_method.values[key])
        if not 0 < low < high:
            raise ConfigError(f"family spec '{spec}': the range {raw} is empty or not positive", fix="write LOW..HIGH with 0 < LOW < HIGH")
        fixed = tuple(sorted((k, v) for k, v in low_method.values.items() if k != key))
        return cls(name, key, low, high, fixed)

    @property
    def spec(self) -> str:
        """Canonical: the range, then every fixed parameter that differs from its default, sorted."""
        low = self.method_at(self.low)
        kind = {p.name: p.kind for p in low.all_parameters()}[self.parameter]
        extra = [token for token in low.spec.partition(":")[2].split(",") if token and token.partition("=")[0] != self.parameter]
        return f"{self.method}:{self.parameter}={kind(self.low)}..{kind(self.high)}" + ("," + ",".join(extra) if extra else "")

    def method_at(self, value: float) -> Anonymizer:
        """The family's method with its parameter at `value` (rounded for an integer parameter)."""
        from redteam.anonymizers import build_method

        method = build_method(self.method)
        kind = {p.name: p.kind for p in method.all_parameters()}[self.parameter]
        values = dict(self.fixed) | {self.parameter: kind(round(value)) if kind is int else float(value)}
        return type(method)(**values)

    def value_of(self, method: Anonymizer | None) -> float | None:
        """The family parameter's value if `method` belongs to the family and lies in its range, else None."""
        if method is None or len(method.stages) != 1:
            return None
        stage = method.stages[0]
        if stage.name != self.method or self.parameter not in stage.values:
            return None
        if any(stage.values.get(k) != v for k, v in self.fixed):
            return None
        value = float(stage.values[self.parameter])
        return value if self.low <= value <= self.high else None


def checkpoint_dir() -> Path:
    from redteam.core.paths import default_cache_dir

    return default_cache_dir() / "inversion"


def checkpoint_path(spec: str, folder: Path | None = None) -> Path:
    """Where the inversion network for a canonical method spec is saved and looked up: a safetensors
    file (tensors only, nothing to unpickle), its training record beside it (`.json`)."""
    key = hashlib.sha256(spec.encode()).hexdigest()[:16]
    return (folder or checkpoint_dir()) / f"unet-{key}.safetensors"


def family_checkpoint_path(family: FamilySpec, folder: Path | None = None) -> Path:
    """Where the inversion of a method family (`FamilySpec.spec`) is saved and looked up."""
    key = hashlib.sha256(family.spec.encode()).hexdigest()[:16]
    return (folder or checkpoint_dir()) / f"family-{key}.safetensors"


def family_checkpoints(folder: Path | None = None) -> list[tuple[Path, FamilySpec]]:
    """The family inversions saved under `folder` (the cache), newest first; unreadable records skipped."""
    found = []
    for record_path in (folder or checkpoint_dir()).glob("family-*.json"):
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
            if record.get("schema") != FAMILY_SCHEMA:
                continue
            family = FamilySpec.parse(record["spec"])
        except (OSError, ValueError, KeyError, ConfigError):
            continue
        path = record_path.with_suffix(".safetensors")
        if path.is_file():
            found.append((path.stat().st_mtime, path, family))
    return [(path, family) for _, path, family in sorted(found, key=lambda item: (-item[0], str(item[1])))]


def find_checkpoint(method: Anonymizer) -> tuple[Path, FamilySpec | None] | None:
    """The inversion for `method`: the newest of the model trained on its exact spec and the family models
    whose range holds its parameter (a later training is the user's latest choice; `provenance` names the
    one used); None when there is none."""
    candidates: list[tuple[float, Path, FamilySpec | None]] = []
    exact = checkpoint_path(method.spec)
    if exact.is_file():
        candidates.append((exact.stat().st_mtime, exact, None))
    for path, family in family_checkpoints():
        if family.value_of(method) is not None:
            candidates.append((path.stat().st_mtime, path, family))
            break  # family_checkpoints is newest first
    if not candidates:
        return None
    _, newest, which = max(candidates, key=lambda item: item[0])
    return newest, which


def load_inversion_weights(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of a trained inversion: safetensors (what `redteam attack train` writes, whatever the
    file is named); a plain PyTorch checkpoint is read with restricted unpickling (a pickle payload is
    refused, nothing in it run)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(9)
    except OSError as error:
        raise InputError(f"{path}: cannot be read ({error.strerror})", fix="retrain with `redteam attack train`") from error
    if head[8:9] != b"{":  # a safetensors file opens with its header's length, then the JSON header
        return load_plain_checkpoint(path)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise InputError(f"{path}: not a readable safetensors checkpoint ({error})", fix="retrain with `redteam attack train`") from error


def preprocess(window: torch.Tensor, method: MethodInfo) -> torch.Tensor:
    """What the network sees: for a mosaic or downsampling, the Lanczos-resampled cell grid (the
    network learns what interpolation cannot undo); otherwise, or when the grid cannot be placed (no
    face geometry and no grid showing), the anonymized window itself."""
    from attacks.base import AttackNotApplicable
    from attacks.interpolation import LanczosUpscale

    if method.stage_of("cells") is not None:
        try:
            return LanczosUpscale().reconstruct(window, method=method, generator=torch.Generator())
        except AttackNotApplicable:
            return window
    return window


def read_record(path: Path) -> dict:
    """The training record beside a checkpoint (ModelUnavailableError when missing or unreadable)."""
    try:
        return json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelUnavailableError(f"{path}: training record missing or unreadable ({error})", fix="retrain with `redteam attack train`") from error


def checkpoint_refusal(path: Path, record: dict, method: MethodInfo, retrain: str) -> str | None:
    """Why a trained checkpoint must not be used for `method`, or None: its bytes differ from the SHA-256
    its training record holds, or it was trained on any of the audited originals (an attacker that saw
    the answer measures nothing)."""
    if record.get("checkpoint_sha256") != cached_sha256(path):
        return f"{path} does not match the SHA-256 in its training record; retrain with {retrain}"
    overlap = {f["sha256"] for f in record.get("corpus_files", [])} & method.audited_hashes
    if overlap:
        return f"{path} was trained on {len(overlap)} of the audited originals; train on other faces"
    return None


def training_curve(record: dict, points: int = 12) -> str:
    """The validation curve of a family record in one line for the report: ``monitored: step=value ...``
    (at most `points` evaluations, evenly spaced, the last and the best always shown), with the
    anonymized input's own score."""
    monitored = record.get("monitored", "val_l1")
    curve = [p for p in record.get("curve", []) if isinstance(p.get(monitored), (int, float)) and math.isfinite(p[monitored])]
    if not curve:
        return "none recorded"
    stride = max(1, math.ceil(len(curve) / points))
    chosen = {id(p): p for p in curve[::stride]}
    best = min(curve, key=lambda p: p[monitored])
    chosen |= {id(curve[-1]): curve[-1], id(best): best}
    shown = " ".join(f"{p['step']}={p[monitored]:.4f}" for p in sorted(chosen.values(), key=lambda p: p["step"]))
    baseline = record.get("anonymized_input_scores", {}).get(monitored)
    return f"{monitored} by step: {shown}" + (f" (anonymized input: {baseline:.4f})" if isinstance(baseline, (int, float)) else "")


class LearnedInversion(Attack):
    """A U-Net trained on pairs made with the exact method or its family (`redteam attack train`), on the attacker's faces.

    References:
        McPherson, Shokri and Shmatikov 2016; Ronneberger, Fischer and Brox, MICCAI 2015.
    """

    name = "learned"
    tier = ThreatTier.ADAPTIVE
    needs_known_method = True

    def __init__(self, **values: object) -> None:
        super().__init__(**values)
        self._models: dict[str, TinyUNet] = {}

    def applicable(self, method: MethodInfo) -> Applicability:
        if method.reference is None:
            return Applicability(False, f"needs a known method; '{method.name}' is an observed folder without a spec")
        found = find_checkpoint(method.reference)
        if found is None:
            return Applicability(
                False,
                f"no trained inversion for '{method.reference.spec}': run `redteam attack train --method \"{method.reference.spec}\" --faces DIR`"
                ' (or train its family: `redteam models train "NAME:PARAM=LOW..HIGH" --faces DIR`)',
                model_missing=True,
            )
        path, _ = found
        refusal = checkpoint_refusal(path, read_record(path), method, "`redteam attack train`")
        return Applicability(False, refusal, model_missing=True) if refusal else Applicability(True)

    def provenance(self, method: MethodInfo) -> dict[str, str]:
        if method.reference is None:
            return {}
        found = find_checkpoint(method.reference)
        if found is None:
            return {}
        path, family = found
        record = read_record(path)
        details = {
            "checkpoint": str(path),
            "sha256": cached_sha256(path),
            "corpus_files": str(len(record.get("corpus_files", []))),
            "steps": str(record.get("steps", "?")),
        }
        if family is not None:
            details |= {
                "family": family.spec,
                "stopped": str(record.get("stopped", "?")),
                "seconds": str(record.get("seconds", "?")),
                "training_curve": training_curve(record),
            }
        return details

    def _model(self, path: Path, conditioned: bool) -> TinyUNet:
        key = f"{path}:{cached_sha256(path)}"
        if key not in self._models:
            model = TinyUNet(conditioned=conditioned)
            model.load_state_dict(load_inversion_weights(path))
            self._models[key] = model.eval()
        return self._models[key]

    def reconstruct(self, images: torch.Tensor, *, method: MethodInfo, generator: torch.Generator) -> torch.Tensor:
        if method.reference is None:
            raise ModelUnavailableError("the learned inversion needs a known method", fix="declare the method")
        found = find_checkpoint(method.reference)
        if found is None:
            raise ModelUnavailableError(f"no trained inversion for '{method.reference.spec}'", fix="train one with `redteam attack train`")
        path, family = found
        model = self._model(path, conditioned=family is not None)
        height, width = images.shape[-2:]
        images = preprocess(images.float(), method)
        small = F.interpolate(images, size=(TRAINING_SIZE, TRAINING_SIZE), mode="bicubic", align_corners=False, antialias=True)
        condition = None
        if family is not None:
            value = family.value_of(method.reference)
            condition = torch.full((len(images),), condition_value(float(value if value is not None else family.low), width))
        with torch.no_grad():
            restored_small = model(small.clamp(0.0, 1.0), condition)
        # apply the learned correction at full resolution
        correction = F.interpolate(restored_small - small, size=(height, width), mode="bicubic", align_corners=False)
        return (images + correction).clamp(0.0, 1.0)
