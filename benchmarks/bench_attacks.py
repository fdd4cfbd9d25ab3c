"""Rank-1 re-identification per method x attack x tier on real faces, with sample sizes and intervals.

    python benchmarks/bench_attacks.py [FACES_DIR]

FACES_DIR defaults to ../shared/faces/dev/identities (one folder per person). Every photo is first
rescaled so its face is 160 px wide (so "mosaic block 12" means 12 px on a 160 px face), then audited
with dlib under every applicable attack (`--attacks auto`). The learned inversion of mosaic_12 is
first trained for `--train-minutes` on CPU on `--corpus` (default ../shared/faces/dev/multi-face,
photos never audited here). Printed per row: tier, rank-1 against the
same photo and against other photos of the same person, each as k/n with its 95% Wilson interval and
the chance level. A method's risk is its maximum over attacks: an attack that lowers the rate (e.g.
deconvolution hurting a blur-robust recognizer) is shown as it is.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from redteam.core.config import AuditConfig, MethodSource

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import normalise  # noqa: E402

from redteam.engine import AuditRun
from redteam.training import train_inversion
from reports.table import results_frame

DEFAULT_FACES = Path(__file__).resolve().parents[1].parent / "shared" / "faces" / "dev" / "identities"
#: The attacker's corpus for the learned inversion: photos that are never audited here.
DEFAULT_CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "faces" / "dev" / "multi-face"
METHODS = {
    "blur_s4": "gaussian_blur:sigma=4",
    "blur_s8": "gaussian_blur:sigma=8",
    "mosaic_12": "mosaic:block=12",
    "mosaic_16": "mosaic:block=16",
    "noise_0.15": "noise:sigma=0.15",
    "layered": "downsample:factor=4 | jpeg:quality=15 | noise:sigma=0.05",
    "box": "box",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("faces", nargs="?", type=Path, default=DEFAULT_FACES)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="attacker's faces for the learned inversion")
    parser.add_argument("--train-minutes", type=float, default=3.0, help="CPU minutes to train the inversion of mosaic_12")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models missing here are skipped at once, not retried; set 0 to download
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        os.environ["REDTEAM_CACHE"] = str(work / "cache")
        if args.train_minutes > 0:
            corpus = normalise(args.corpus, work / "corpus")
            train_inversion(corpus, METHODS["mosaic_12"], minutes=args.train_minutes, seed=0, log=print)
        config = AuditConfig(
            originals=normalise(args.faces, work / "faces"),
            out=work / "report",
            methods=tuple(MethodSource(name, "reference", spec=spec) for name, spec in METHODS.items()),
            recognizers=("dlib",),
            attacks=("auto",),
            cache_dir=work / "cache",
        )
        result = AuditRun(config).run()
    seconds = results_frame(result).groupby(["method", "attack"])["attack_seconds"].mean()
    table = {}
    for v in result.metric_verdicts:
        if v.metric in ("rank1", "rank1_other"):
            table.setdefault((v.method, v.attack, v.tier), {})[v.metric] = v
    print(f"\n{len(result.faces)} faces, gallery {result.gallery_size}, recognizer dlib; k/n rate [95% Wilson CI] (chance)\n")
    print("| method | attack | tier | rank-1, same photo | rank-1, other photo | s/face |")
    print("|---|---|---|---|---|---|")
    for (method, attack, tier), metrics in table.items():
        cells = []
        for metric in ("rank1", "rank1_other"):
            v = metrics.get(metric)
            if v is None or v.estimate.trials == 0:
                cells.append("n/a")
                continue
            e = v.estimate
            cells.append(f"{e.successes}/{e.trials} {e.rate:.0%} [{e.low:.0%}, {e.high:.0%}] ({v.chance:.0%})")
        print(f"| {method} | {attack} | {tier} | {cells[0]} | {cells[1]} | {seconds.get((method, attack), float('nan')):.2f} |")
    print("\nskipped:")
    for s in result.skipped_attacks:
        print(f"- {s.method} / {s.attack}: {s.reason}")


if __name__ == "__main__":
    main()
