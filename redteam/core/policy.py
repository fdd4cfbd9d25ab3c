"""The audit policy (TOML): what re-identification rate each threat tier may show, and how sure we
must be. See README "The policy file" for the meaning of each default number."""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from redteam.core.errors import ConfigError, InputError
from redteam.core.tiers import TIER_NAMES

#: Interval methods a policy may name (metrics.statistics computes them).
INTERVAL_METHODS = ("wilson", "clopper-pearson")
#: Rate metrics a policy may limit (columns of the results table holding per-row booleans).
RATE_METRICS: dict[str, str] = {
    "verify": "verified as the same person as its own original (distance below the recognizer's threshold)",
    "rank1": "own original ranked first in the gallery (same photo)",
    "rank5": "own original in the top 5 of the gallery (same photo)",
    "rank1_other": "another photo of the same person ranked first (own original removed)",
    "rank5_other": "another photo of the same person in the top 5 (own original removed)",
}
PERCEPTUAL_METRICS = ("ssim", "psnr", "lpips")
#: Rate metrics that a tier cannot measure by design: in the parrot tier the gallery is anonymized
#: too, and matching an anonymized face to its own anonymized original is trivial.
NOT_MEASURED_IN_TIER: dict[str, frozenset[str]] = {"parrot": frozenset({"verify", "rank1", "rank5"})}
#: The `[limits.default]` table applies to every tier that has no table of its own.
DEFAULT_LIMITS = "default"
KNOWN_KEYS = {
    "name",
    "description",
    "confidence",
    "interval",
    "min_samples",
    "required_recognizers",
    "required_metrics",
    "required_tiers",
    "required_tiers_if_declared",
    "required_attacks",
    "keep_implausible_faces",
    "limits",
}


@dataclass(frozen=True)
class Policy:
    """A frozen audit policy.

    Attributes:
        limits: (tier, metric, maximum rate) triples; a verdict is computed for each.
        required_recognizers: names that must run; empty means every available one (at least one).
        required_metrics: perceptual metrics that must be computed (e.g. "lpips").
        required_tiers: tiers that must have run for a method to PASS.
        required_tiers_if_declared: tiers that must also have run when the method is known (a reference
            method, a declared spec or an identified operator), e.g. "adaptive".
        required_attacks: attacks that must have run on every face of a method for it to PASS.
        default_limits: (metric, maximum rate) pairs for every tier without its own `[limits.<tier>]`
            table (`[limits.default]`); empty when the policy has none.
        keep_implausible_faces: audit detections that `redteam.plausibility` rejects as not faces (a
            shoulder, a hand) instead of listing and skipping them.
        source: the file it came from, or "built-in:<name>".
    """

    name: str
    description: str
    confidence: float
    interval: str
    min_samples: int
    required_recognizers: tuple[str, ...]
    required_metrics: tuple[str, ...]
    required_tiers: tuple[str, ...]
    limits: tuple[tuple[str, str, float], ...]
    source: str
    required_tiers_if_declared: tuple[str, ...] = ()
    required_attacks: tuple[str, ...] = ()
    default_limits: tuple[tuple[str, float], ...] = ()
    keep_implausible_faces: bool = False

    def limits_for(self, tier: str) -> dict[str, float] | None:
        """The limits that judge `tier`: its own table, else `[limits.default]` (without the metrics the
        tier cannot measure), else None: the tier has no limits and a method it ran on cannot PASS."""
        own = {metric: limit for t, metric, limit in self.limits if t == tier}
        if own:
            return own
        if not self.default_limits:
            return None
        excluded = NOT_MEASURED_IN_TIER.get(tier, frozenset())
        return {metric: limit for metric, limit in self.default_limits if metric not in excluded}

    def tiers_required(self, declared: bool) -> tuple[str, ...]:
        """The tiers a method must have run to PASS (more when its operator is known)."""
        extra = self.required_tiers_if_declared if declared else ()
        return tuple(dict.fromkeys(self.required_tiers + extra))

    def to_json(self) -> dict[str, Any]:
        limits: dict[str, dict[str, float]] = {}
        for tier, metric, limit in self.limits:
            limits.setdefault(tier, {})[metric] = limit
        return {
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "confidence": self.confidence,
            "interval": self.interval,
            "min_samples": self.min_samples,
            "required_recognizers": list(self.required_recognizers),
            "required_metrics": list(self.required_metrics),
            "required_tiers": list(self.required_tiers),
            "required_tiers_if_declared": list(self.required_tiers_if_declared),
            "required_attacks": list(self.required_attacks),
            "keep_implausible_faces": self.keep_implausible_faces,
            "limits": limits | ({DEFAULT_LIMITS: dict(self.default_limits)} if self.default_limits else {}),
        }


def _string_list(data: dict[str, Any], key: str, where: str, valid: tuple[str, ...] | None) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: '{key}' must be a list of strings", fix=f'e.g. {key} = ["{(valid or ("x",))[0]}"]')
    if valid is not None:
        for item in value:
            if item not in valid:
                raise ConfigError(f"{where}: unknown {key} entry '{item}'", fix="valid: " + ", ".join(valid))
    return tuple(value)


#: The largest `min_samples` a policy may ask for: beyond it no audit could ever reach it (a typo, not a policy).
MAX_MIN_SAMPLES = 1_000_000


def _non_finite(value: object, key: str) -> str | None:
    """The key (dotted, with list indices) of the first NaN or infinite number in `value`, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return key
    if isinstance(value, dict):
        return next((found for k, v in value.items() if (found := _non_finite(v, f"{key}.{k}" if key else str(k))) is not None), None)
    if isinstance(value, list):
        return next((found for i, v in enumerate(value) if (found := _non_finite(v, f"{key}[{i}]")) is not None), None)
    return None


def parse_policy(data: dict[str, Any], source: str, known_recognizers: tuple[str, ...], known_attacks: tuple[str, ...] | None = None) -> Policy:
    """Validate a policy mapping (a parsed TOML file).

    Every number must be finite and in range: `confidence` in [0.5, 1), `min_samples` an integer in
    [1, MAX_MIN_SAMPLES], every limit a rate in [0, 1]; `name` and `description` are text.

    Raises:
        ConfigError: the first key that is unknown, of the wrong type or out of range, named with its fix.
    """
    where = f"policy {source}"
    unknown = sorted(set(data) - KNOWN_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}", fix="valid keys: " + ", ".join(sorted(KNOWN_KEYS)))
    bad = _non_finite(data, "")
    if bad is not None:
        raise ConfigError(f"{where}: '{bad}' is not a finite number (NaN or infinity)", fix="give a finite number (see README, The policy file)")
    for key in ("name", "description"):
        if key in data and not isinstance(data[key], str):
            raise ConfigError(f"{where}: '{key}' must be text, got {data[key]!r}", fix=f'{key} = "newsroom"')
    confidence = data.get("confidence", 0.95)
    if not isinstance(confidence, float) or not 0.5 <= confidence < 1.0:
        raise ConfigError(f"{where}: confidence must be a number in [0.5, 1), got {confidence!r}", fix="confidence = 0.95")
    interval = data.get("interval", "wilson")
    if interval not in INTERVAL_METHODS:
        raise ConfigError(f"{where}: interval must be one of {', '.join(INTERVAL_METHODS)}, got {interval!r}", fix='interval = "wilson"')
    min_samples = data.get("min_samples", 30)
    if not isinstance(min_samples, int) or isinstance(min_samples, bool) or not 1 <= min_samples <= MAX_MIN_SAMPLES:
        raise ConfigError(
            f"{where}: min_samples must be an integer from 1 to {MAX_MIN_SAMPLES:,} (no audit reaches more), got {min_samples!r}", fix="min_samples = 30"
        )
    keep_implausible = data.get("keep_implausible_faces", False)
    if not isinstance(keep_implausible, bool):
        raise ConfigError(f"{where}: keep_implausible_faces must be true or false, got {keep_implausible!r}", fix="keep_implausible_faces = false")
    tiers = TIER_NAMES
    raw_limits = data.get("limits", {})
    if not isinstance(raw_limits, dict) or not raw_limits:
        raise ConfigError(f"{where}: needs a [limits.<tier>] table with at least one metric", fix="[limits.naive]\nrank1 = 0.10")
    limits: list[tuple[str, str, float]] = []
    default_limits: list[tuple[str, float]] = []
    for tier, metrics in raw_limits.items():
        if tier not in tiers and tier != DEFAULT_LIMITS:
            raise ConfigError(f"{where}: unknown tier '{tier}' in [limits]", fix="tiers: " + ", ".join((*tiers, DEFAULT_LIMITS)))
        if not isinstance(metrics, dict) or not metrics:
            raise ConfigError(f"{where}: [limits.{tier}] must be a table with at least one metric", fix=f"[limits.{tier}]\nrank1 = 0.10")
        for metric, limit in metrics.items():
            if metric not in RATE_METRICS:
                raise ConfigError(f"{where}: unknown metric '{metric}' in [limits.{tier}]", fix="metrics: " + ", ".join(RATE_METRICS))
            if metric in NOT_MEASURED_IN_TIER.get(tier, frozenset()):
                raise ConfigError(
                    f"{where}: [limits.{tier}] limits '{metric}', which the {tier} tier cannot measure "
                    "(matching an anonymized face to its own anonymized original is trivial)",
                    fix=f"limit rank1_other or rank5_other in [limits.{tier}]",
                )
            if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not 0.0 <= float(limit) <= 1.0:
                raise ConfigError(f"{where}: limit {tier}.{metric} must be a rate in [0, 1], got {limit!r}", fix=f"{metric} = 0.10")
            if tier == DEFAULT_LIMITS:
                default_limits.append((metric, float(limit)))
            else:
                limits.append((tier, metric, float(limit)))
    return Policy(
        name=str(data.get("name", Path(source).stem)),
        description=str(data.get("description", "")),
        confidence=float(confidence),
        interval=str(interval),
        min_samples=int(min_samples),
        required_recognizers=_string_list(data, "required_recognizers", where, known_recognizers),
        required_metrics=_string_list(data, "required_metrics", where, PERCEPTUAL_METRICS),
        required_tiers=_string_list(data, "required_tiers", where, tiers),
        limits=tuple(limits),
        source=source,
        required_tiers_if_declared=_string_list(data, "required_tiers_if_declared", where, tiers),
        required_attacks=_string_list(data, "required_attacks", where, known_attacks),
        default_limits=tuple(default_limits),
        keep_implausible_faces=keep_implausible,
    )


def load_policy(
    path: Path | None,
    known_recognizers: tuple[str, ...],
    builtin: str = "default_policy.toml",
    known_attacks: tuple[str, ...] | None = None,
) -> Policy:
    """Read a policy file, or the built-in default when `path` is None."""
    if path is None:
        text = resources.files("redteam.data").joinpath(builtin).read_text(encoding="utf-8")
        source = f"built-in:{builtin}"
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise InputError(f"policy file {path} cannot be read ({error.strerror})", fix="check the path") from error
        except UnicodeDecodeError as error:
            raise ConfigError(f"policy {path} is not UTF-8 text (byte {error.start})", fix="save the policy as UTF-8 TOML") from error
        source = str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"policy {source} is not valid TOML: {error}", fix="fix the syntax (see README, policy file)") from error
    except RecursionError as error:
        raise ConfigError(f"policy {source} nests tables or arrays too deeply to read", fix="a policy is a few flat tables (README, policy file)") from error
    return parse_policy(data, source, known_recognizers, known_attacks)
