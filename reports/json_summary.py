"""summary.json: verdicts with intervals, every parameter, versions, model and input hashes."""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from redteam.core.atomic import write_text_atomically
from redteam.core.results import AuditResult
from redteam.core.text import decodable
from reports.decision import decision
from reports.table import verdict_frame


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinity as null; text with lone surrogates (undecodable bytes of a file name, quoted
    in a message) shown as ``\\xNN`` escapes, which every JSON parser accepts."""
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, str):
        return decodable(value)
    if isinstance(value, dict):
        return {decodable(k) if isinstance(k, str) else k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def unlabelled_faces(result: AuditResult) -> list[dict[str, Any]]:
    """Each unlabelled face of the originals (not the named person of its photo): its size, whether it
    competes in other probes' rankings, and its effect: per method/attack/recognizer, how many probes
    have it as their nearest gallery face other than their own photo (a hub draws many)."""
    drawn: dict[str, Counter[str]] = {}
    for row in result.rows:
        if row.nearest_other is not None:
            drawn.setdefault(row.nearest_other, Counter())[f"{row.method}/{row.attack}/{row.recognizer}"] += 1
    return [
        {
            "face_id": face.face_id,
            "size_px": round(min(face.geometry.width, face.geometry.height), 1),
            "competes": face.competes,
            "nearest_of": dict(sorted(drawn.get(face.face_id, Counter()).items())),
        }
        for face in result.faces
        if face.identity is None
    ]


def summary_dict(result: AuditResult) -> dict[str, Any]:
    issues = Counter(issue.kind for issue in result.issues)
    return _clean(
        {
            "schema": "redteam-summary/1",
            "overall": result.overall.value,
            "exit_code": int(result.exit_code),
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "leaks": [leak.to_json() for leak in result.leaks],
            "decision": asdict(decision(result)),
            "regression": result.regression,
            "methods": [
                {
                    "method": m.method,
                    "verdict": m.verdict.value,
                    "tiers": {tier: verdict.value for tier, verdict in m.tiers},
                    "reasons": list(m.reasons),
                }
                for m in result.method_verdicts
            ],
            "verdicts": verdict_frame(result).to_dict(orient="records"),
            "sample": {
                "faces": len(result.faces),
                "images": len({f.image for f in result.faces}),
                "identities": len({f.identity for f in result.faces if f.identity is not None}),
                "gallery_size": result.gallery_size,
                "rows": len(result.rows),
                "unlabelled_faces": unlabelled_faces(result),
            },
            "input_issues": {"counts": dict(sorted(issues.items())), "items": [issue.__dict__ for issue in result.issues]},
            "conversions": result.conversions,
            "skipped_attacks": [s.__dict__ for s in result.skipped_attacks],
            "unavailable": result.unavailable,
            "blockers": list(result.blockers),
            "policy": result.policy.to_json(),
            "config": result.config.to_json(),
            "method_specs": {
                m.name: {
                    "kind": m.kind,
                    "spec": m.spec,
                    "spec_origin": m.spec_origin,
                    "folder": str(m.folder) if m.folder else None,
                    "stages": result.method_stages.get(m.name) or None,
                    "identification": result.identifications[m.name].to_json() if m.name in result.identifications else None,
                    # face id -> the operator the adaptive attacks used on that face (fitted on it: an identified folder)
                    "face_operators": result.face_operators.get(m.name) or None,
                }
                for m in result.methods
            },
            "models": result.recognizers,
            "environment": result.environment,
            "input_hashes": result.input_hashes,
            "timings_seconds": result.timings,
            "attack_seconds": result.attack_seconds,
            # the image-quality columns of the results table (metrics.columns), with their report headings
            "quality_columns": {name: result.quality_headings.get(name, name) for name in result.quality_columns},
            "attack_models": result.attack_models,
            "cache": result.cache_stats,
        }
    )


def write_summary(result: AuditResult, out: Path) -> Path:
    text = json.dumps(summary_dict(result), indent=2, sort_keys=False, default=str)
    return write_text_atomically(out / "summary.json", text + "\n")
