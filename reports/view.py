"""The view model shared by the Markdown and HTML templates (numbers formatted once, here)."""

from __future__ import annotations

import base64
import math
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from redteam.core.results import AuditResult
from reports.decision import decision
from reports.plots import distance_figure, png_bytes
from reports.table import format_limit, format_rate, results_frame, verdict_frame


def _mean(series: pd.Series) -> str:
    values = pd.to_numeric(series, errors="coerce").replace([math.inf, -math.inf], math.nan).dropna()
    return f"{values.mean():.3f}" if len(values) else "n/a"


def encode(pixels: np.ndarray) -> str:
    """A uint8 image as base64 PNG for a data URI."""
    return base64.b64encode(png_bytes(pixels)).decode()


def build_view(result: AuditResult, *, figures: bool) -> dict[str, Any]:
    frame = results_frame(result)
    verdicts = verdict_frame(result)
    kinds = {m.name: m for m in result.methods}
    methods = []
    for m in result.method_verdicts:
        source = kinds[m.method]
        methods.append(
            {
                "name": m.method,
                "kind": source.kind,
                "spec": source.spec or (str(source.folder) if source.folder else "manifest"),
                "spec_origin": source.spec_origin if source.kind == "observed" else "reference",
                "verdict": m.verdict.value,
                "tiers": dict((tier, v.value) for tier, v in m.tiers),
                "reasons": list(m.reasons),
            }
        )
    rates = []
    for _, v in verdicts.iterrows():
        rates.append(
            {
                "method": v["method"],
                "tier": v["tier"],
                "attack": v["attack"],
                "recognizer": v["recognizer"],
                "metric": v["metric"],
                "n": int(v["n"]),
                "rate": format_rate(int(v["successes"]), int(v["n"]), float(v["ci_low"]), float(v["ci_high"])),
                "chance": "n/a" if v["chance"] is None or pd.isna(v["chance"]) else f"{float(v['chance']):.1%}",
                "limit": format_limit(v["limit"]),
                "verdict": v["verdict"],
                "reason": v["reason"],
            }
        )
    quality = []
    if not frame.empty:
        per_face = frame.drop_duplicates(["method", "attack", "face_id"])
        for (method, attack), group in per_face.groupby(["method", "attack"], sort=True):
            quality.append(
                {
                    "method": method,
                    "attack": attack,
                    "n": len(group),
                    "detected": f"{group['anonymized_face_detected'].mean():.0%} ({int(group['anonymized_face_detected'].sum())}/{len(group)})",
                    # every image-quality column of the run, in its order (metrics.columns: a new column is one class)
                    "values": [_mean(group[c]) if c in group and group[c].notna().any() else "not computed" for c in result.quality_columns],
                    "seconds": f"{result.attack_seconds.get(method, {}).get(attack, float('nan')):.2f}",
                }
            )
    view: dict[str, Any] = {
        "decision": asdict(decision(result)),
        "regression": result.regression,
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "policy": result.policy.to_json(),
        "methods": methods,
        "rates": rates,
        "quality": quality,
        "quality_headings": [result.quality_headings.get(c, c) for c in result.quality_columns],
        "sample": {
            "faces": len(result.faces),
            "images": len({f.image for f in result.faces}),
            "identities": len({f.identity for f in result.faces if f.identity is not None}),
            "gallery_size": result.gallery_size,
        },
        "issue_counts": dict(sorted(Counter(i.kind for i in result.issues).items())),
        "issues": [i.__dict__ for i in result.issues],
        "conversions": result.conversions,
        "skipped_attacks": [s.__dict__ for s in result.skipped_attacks],
        "unavailable": result.unavailable,
        "blockers": list(result.blockers),
        "models": result.recognizers,
        "attack_models": [
            {"method": method, "attack": attack, "details": "; ".join(f"{key}={value}" for key, value in details.items())}
            for method, per_attack in sorted(result.attack_models.items())
            for attack, details in sorted(per_attack.items())
        ],
        "identifications": [
            {
                "method": name,
                "spec": found.spec or "-",
                "residual": "n/a" if found.residual != found.residual else f"{found.residual:.2f}",
                "identified": found.identified,
                "faces": len(found.faces),
                "worst_face": f"{max(f.residual for f in found.faces):.2f}" if found.faces else "n/a",
                "reason": found.reason,
            }
            for name, found in sorted(result.identifications.items())
        ],
        "include_originals": result.config.include_originals_in_report,
        "histograms": {},
        "examples": [],
    }
    if figures and not frame.empty:
        for m in result.method_verdicts:
            if (frame["method"] == m.method).any() and frame.loc[frame["method"] == m.method, "verify"].notna().any():
                view["histograms"][m.method] = distance_figure(frame, m.method, result.impostor_distances)
        for example in result.examples:
            view["examples"].append(
                {
                    "method": example.method,
                    "face_id": example.face_id,
                    "original": encode(example.original) if result.config.include_originals_in_report else None,
                    "anonymized": encode(example.anonymized),
                    "reconstructions": [(name, encode(pixels)) for name, pixels in example.reconstructions if name != "none"],  # none: the anonymized copy
                    "similarity": [f"{attack}/{recognizer}: cos {value:.2f}" for attack, recognizer, value in example.similarity],
                }
            )
    return view
