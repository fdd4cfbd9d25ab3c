"""The benchmark's findings as tables and figures: the leaderboard (CSV, Parquet, Markdown, HTML), the
privacy-utility frontier and the per-parameter curves (PNG), the minimal safe settings, the strata, and
the reproducibility record (JSON). Every file is written atomically."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from redteam.benchmark import analysis, utility
from redteam.benchmark.run import BenchmarkConfig, Prepared, describe_split
from redteam.core.atomic import write_bytes_atomically, write_text_atomically
from redteam.datasets import Counterparts
from redteam.images import load_image

#: Bump when what a technique's stored utility holds, or how it is computed, changes.
UTILITY_VERSION = "utility/1"


def measure(result: Any, prepared: Prepared, lpips: object | None) -> tuple[dict[str, utility.Utility], pd.DataFrame]:
    """Each technique's utility (from its folder against the originals) and each audited face's strata
    (size, yaw, sharpness of its original). A technique's per-pair utility is stored in its folder (made
    once, never changed) under the faces it was measured on and the LPIPS weights: a re-run with one more
    technique measures only that one."""
    import hashlib
    import json

    from scipy import ndimage
    from skimage.color import rgb2gray

    by_image: dict[str, list[Any]] = {}
    probes = set(prepared.probes)
    for face in result.faces:
        if face.in_run and face.image in probes:
            by_image.setdefault(face.image, []).append(face)
    geometry = json.dumps([[rel, [f.geometry.to_json() for f in records]] for rel, records in sorted(by_image.items())], sort_keys=True)
    weights = getattr(lpips, "fingerprint", None) if lpips is not None else "no-lpips"
    key = hashlib.sha256(f"{UTILITY_VERSION}\0{geometry}\0{weights}".encode()).hexdigest()
    stored = {name: folder / f".utility-{key[:16]}.json" for name, folder in prepared.folders.items()}
    per_pair: dict[str, list[dict[str, float]]] = {name: json.loads(path.read_text()) for name, path in stored.items() if path.is_file()}
    todo = [name for name in prepared.folders if name not in per_pair]
    listings = {name: Counterparts(prepared.folders[name]) for name in todo}  # each sub-folder listed once
    faces = []
    for rel, records in sorted(by_image.items()):
        original = load_image(prepared.originals / rel).pixels
        grey = rgb2gray(original)
        for face in records:
            x0, y0, x1, y1 = (int(max(0, v)) for v in face.geometry.box)
            crop = grey[y0 : max(y0 + 1, y1), x0 : max(x0 + 1, x1)]
            faces.append(
                {
                    "face_id": face.face_id,
                    "size": analysis.size_stratum(min(face.geometry.width, face.geometry.height)),
                    "yaw": analysis.yaw_stratum(analysis.yaw_of(face.geometry.landmarks)),
                    "sharpness_value": float(ndimage.laplace(crop * 255.0).var()) if crop.size else 0.0,
                }
            )
        for name in todo:
            path = listings[name].find(rel)
            anonymized = load_image(path).pixels if path is not None else None
            if anonymized is not None and anonymized.shape == original.shape:
                per_pair.setdefault(name, []).append(utility.pair_utility(original, anonymized, [f.geometry for f in records], lpips))
    for name in todo:
        write_text_atomically(stored[name], json.dumps(per_pair.setdefault(name, [])))  # NaN and inf as JSON's extensions, read back alike
    frame = pd.DataFrame(faces)
    if not frame.empty:
        frame["sharpness"] = analysis.sharpness_strata(list(frame["sharpness_value"]))
    return {name: utility.summarise(name, per_pair.get(name, [])) for name in prepared.folders}, frame


def leaderboard(result: Any, prepared: Prepared, utilities: dict[str, utility.Utility]) -> pd.DataFrame:
    """One row per technique, ranked by its worst-case rank-1 upper bound (then verification's)."""
    from reports.table import verdict_frame

    verdicts = verdict_frame(result)
    worst = {metric: analysis.worst_cases(verdicts, metric) for metric in analysis.RISK_METRICS}
    detected: dict[str, list[bool]] = {}
    for row in result.rows:
        if row.attack == "none" and row.tier == "naive":
            detected.setdefault(row.method, []).append(bool(row.anonymized_face_detected))
    records = []
    for name, technique in prepared.names.items():
        record: dict[str, Any] = {"technique": technique.name, "audit_name": name, "kind": technique.kind, "family": technique.family}
        record["parameter"], record["value"] = technique.parameter, technique.value
        for metric in analysis.RISK_METRICS:
            case = worst[metric].get(name)
            record.update(
                {
                    f"{metric}_rate": case.rate if case else math.nan,
                    f"{metric}_low": case.low if case else math.nan,
                    f"{metric}_high": case.high if case else math.nan,
                    f"{metric}_n": case.n if case else 0,
                    f"{metric}_chance": case.chance if case and case.chance is not None else math.nan,
                    f"{metric}_by": f"{case.tier}/{case.attack}/{case.recognizer}" if case else "not measured",
                }
            )
        ran = verdicts[(verdicts["method"] == name) & (verdicts["n"] > 0)] if not verdicts.empty else verdicts
        record["attacks"] = " ".join(sorted(set(ran["attack"]))) if not ran.empty else ""
        flags = detected.get(name, [])
        record["detectable"] = float(np.mean(flags)) if flags else math.nan
        record.update(utilities[name].means if name in utilities else dict.fromkeys(utility.COLUMNS, math.nan))
        record["pairs"] = utilities[name].pairs if name in utilities else 0
        records.append(record)
    frame = pd.DataFrame(records)
    order = frame.sort_values(["rank1_other_high", "verify_high", "technique"], ascending=[True, True, True], na_position="last")
    return order.reset_index(drop=True)


def strata(result: Any, board: pd.DataFrame, faces: pd.DataFrame) -> list[analysis.Stratum]:
    """Each technique's worst-case rank-1 (the tier, attack and recognizer of its leaderboard row) by
    face size, yaw and sharpness."""
    if faces.empty:
        return []
    attributes = faces.set_index("face_id")
    by_method: dict[str, list[Any]] = {}
    for row in result.rows:
        by_method.setdefault(row.method, []).append(row)
    records = []
    for _, entry in board.iterrows():
        by = str(entry["rank1_other_by"]).split("/")
        if len(by) != 3:
            continue
        for row in by_method.get(entry["audit_name"], []):
            if (row.tier, row.attack, row.recognizer) == tuple(by) and row.rank1_other is not None:
                if row.face_id in attributes.index:
                    for factor in ("size", "yaw", "sharpness"):
                        records.append(
                            {"technique": entry["technique"], "factor": factor, "stratum": attributes.loc[row.face_id, factor], "success": row.rank1_other}
                        )
    return analysis.strata_rates(pd.DataFrame(records)) if records else []


def minimal_settings(board: pd.DataFrame, limit: float) -> list[analysis.MinimalSetting]:
    found = []
    swept = board[board["parameter"].notna()]
    for (family, parameter), group in swept.groupby(["family", "parameter"]):
        points = [
            (float(r["value"]), float(r["rank1_other_rate"]), float(r["rank1_other_high"]))
            for _, r in group.iterrows()
            if not math.isnan(r["rank1_other_high"])
        ]
        found.append(analysis.minimal_safe(str(family), str(parameter), points, limit))
    return found


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def frontier_png(board: pd.DataFrame, front: Sequence[str], axis: analysis.UtilityAxis) -> bytes:
    """Worst-case rank-1 against the utility `axis`, one point per technique, the Pareto front joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7.5, 5.5))
    for _, row in board.iterrows():
        on_front = row["technique"] in front
        rate = row["rank1_other_rate"]
        spread = [[rate - row["rank1_other_low"]], [row["rank1_other_high"] - rate]]
        axes.errorbar(row[axis.column], rate, yerr=spread, fmt="o", color="tab:red" if on_front else "tab:grey", capsize=2, markersize=5)
        axes.annotate(str(row["technique"]), (row[axis.column], row["rank1_other_rate"]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    points = board[board["technique"].isin(front)].sort_values(axis.column)
    axes.plot(points[axis.column], points["rank1_other_rate"], color="tab:red", linewidth=1, label="Pareto front")
    axes.set_xlabel(f"utility: {axis.label}")
    axes.set_ylabel("privacy risk: worst-case rank-1 re-identification (95% CI)")
    axes.legend(loc="upper left")
    data = _png(figure)
    plt.close(figure)
    return data


def curves_png(result: Any, board: pd.DataFrame) -> bytes | None:
    """Rank-1 against the swept parameter, one panel per family and one line per attack (best recognizer)."""
    swept = board[board["parameter"].notna()]
    if swept.empty:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from reports.table import verdict_frame

    verdicts = verdict_frame(result)
    rank1 = verdicts[(verdicts["metric"] == "rank1_other") & (verdicts["n"] > 0)]
    families = list(swept.groupby(["family", "parameter"]))
    figure, panels = plt.subplots(1, len(families), figsize=(5.5 * len(families), 4.2), squeeze=False)
    for axes, ((family, parameter), group) in zip(panels[0], families, strict=True):
        values = dict(zip(group["audit_name"], group["value"], strict=True))
        lines = rank1[rank1["method"].isin(list(values))].copy()
        lines["value"] = lines["method"].map(values)
        for attack, per_attack in lines.groupby("attack"):
            best = per_attack.sort_values("rate").groupby("value").tail(1).sort_values("value")
            axes.plot(best["value"], best["rate"], marker="o", markersize=3, label=str(attack))
        axes.set_title(f"{family}: rank-1 against {parameter}")
        axes.set_xlabel(str(parameter))
        axes.set_ylabel("rank-1 re-identification")
        axes.legend(fontsize=6)
    data = _png(figure)
    plt.close(figure)
    return data


def markdown(
    config: BenchmarkConfig,
    prepared: Prepared,
    board: pd.DataFrame,
    front: Sequence[str],
    minimal: Sequence[analysis.MinimalSetting],
    layers: Sequence[analysis.Stratum],
    seconds: float,
) -> str:
    """The benchmark's report in Markdown (the HTML report renders the same text)."""
    from reports.templating import markdown_text as md

    dataset = prepared.dataset
    split = describe_split(config)
    lines = [
        "# Anonymization benchmark",
        "",
        f"Dataset {md(str(config.dataset))} ({dataset.layout}): {len(dataset.photos)} photos of {dataset.identities} people "
        f"(checksum {dataset.checksum[:16]}), every one in the gallery; {len(prepared.probes)} probes "
        f"({split}). {len(board)} techniques; attacks {md(', '.join(config.attacks))}; wall time {seconds:.0f} s.",
        "",
        "Ranked by the upper bound of the worst-case rank-1 re-identification (another photo of the same person ranked first, over every "
        "tier, attack and recognizer that ran), then verification's. Rates are shown with their 95% Wilson interval, sample size and chance level.",
        "",
        "| # | technique | rank-1 worst case | by (tier/attack/recognizer) | chance | verify worst case | by | detectable "
        "| SSIM image / face / outside | PSNR image / outside | LPIPS image / face / outside | changed | front | attacks that ran |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for index, row in board.iterrows():
        lines.append(
            f"| {index + 1} | {md(row['technique'])} | {_rate(row, 'rank1_other')} | {md(row['rank1_other_by'])} | {_number(row['rank1_other_chance'], 4)} "
            f"| {_rate(row, 'verify')} | {md(row['verify_by'])} | {_number(row['detectable'], 2)} "
            f"| {_number(row['ssim_image'], 3)} / {_number(row['ssim_face'], 3)} / {_number(row['ssim_outside'], 3)} "
            f"| {_number(row['psnr_image'], 1)} / {_number(row['psnr_outside'], 1)} "
            f"| {_number(row['lpips_image'], 3)} / {_number(row['lpips_face'], 3)} / {_number(row['lpips_outside'], 3)} "
            f"| {_number(row['changed_fraction'], 3)} | {'yes' if row['technique'] in front else ''} | {md(row['attacks'])} |"
        )
    lines += ["", f"## Minimal safe settings (worst-case rank-1 upper bound below {config.risk_limit:g})", ""]
    for setting in minimal:
        found = f"{setting.parameter}={setting.value:g} (upper bound {setting.high:.3f})" if setting.value is not None else "none in the sweep"
        lines.append(f"- {md(setting.family)}: {found}; stronger when {setting.stronger_when}" + (f"; {md(setting.note)}" if setting.note else ""))
    if not minimal:
        lines.append("- no family was swept")
    lines += ["", "## Worst-case rank-1 by stratum of face", "", "| technique | factor | stratum | rank-1 | n |", "|---|---|---|---|---|"]
    for layer in layers:
        lines.append(f"| {md(layer.technique)} | {layer.factor} | {md(layer.stratum)} | {layer.rate:.3f} [{layer.low:.3f}, {layer.high:.3f}] | {layer.n} |")
    lines += [
        "",
        f"Figures: frontier.png (worst-case rank-1 against {analysis.UTILITY_AXES[config.utility].label}, the Pareto front in red; "
        "the column front marks it), curves.png (rank-1 against each swept parameter).",
    ]
    return "\n".join(lines) + "\n"


def _rate(row: Any, metric: str) -> str:
    if row[f"{metric}_n"] == 0:
        return "not measured"
    return f"{row[f'{metric}_rate']:.3f} [{row[f'{metric}_low']:.3f}, {row[f'{metric}_high']:.3f}] (n={int(row[f'{metric}_n'])})"


def _number(value: Any, digits: int) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def write_all(out: Path, files: dict[str, bytes | str]) -> list[Path]:
    """Each file written atomically under `out`."""
    written = []
    for name, content in files.items():
        path = out / name
        if isinstance(content, str):
            write_text_atomically(path, content)
        else:
            write_bytes_atomically(path, content)
        written.append(path)
    return written


def record(config: BenchmarkConfig, prepared: Prepared, result: Any, seconds: float) -> str:
    """The reproducibility record: the command, versions, models, seeds, the dataset checksum."""
    return (
        json.dumps(
            {
                "schema": "redteam-benchmark/1",
                "command": config.command,
                "dataset": {
                    "path": str(config.dataset),
                    "layout": prepared.dataset.layout,
                    "checksum": prepared.dataset.checksum,
                    "photos": len(prepared.dataset.photos),
                    "probes": list(prepared.probes),
                    "probes_per_person": config.probes_per_person if config.probes_per_person is not None else "all",
                    "probe_people": config.probe_people,
                },
                "techniques": [asdict(t) for t in config.techniques],
                "seed": config.seed,
                "attacks": list(config.attacks),
                "models": result.recognizers,
                "attack_models": result.attack_models,
                "environment": result.environment,
                "wall_seconds": round(seconds, 1),
                "folder_seconds": {name: round(s, 1) for name, s in prepared.seconds.items()},
            },
            indent=2,
            default=str,
        )
        + "\n"
    )
