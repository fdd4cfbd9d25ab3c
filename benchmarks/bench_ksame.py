"""k-Same on real faces: rank-1 identification against the originals must stay near or below 1/k.

    python benchmarks/bench_ksame.py [FACES_DIR] [--k 2 4 8]

FACES_DIR defaults to ../shared/faces/dev/identities (one folder per person). Uses the dlib
recognizer (offline). Prints, per k: faces, rank-1 rate with its 95% Wilson interval, the chance level
1/G, and the k-Same bound 1/k (Newton, Sweeney and Malin 2005).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from redteam.core.config import AuditConfig, MethodSource
from redteam.engine import AuditRun

DEFAULT_FACES = Path(__file__).resolve().parents[1].parent / "shared" / "faces" / "dev" / "identities"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("faces", nargs="?", type=Path, default=DEFAULT_FACES)
    parser.add_argument("--k", type=int, nargs="+", default=[2, 4, 8])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        config = AuditConfig(
            originals=args.faces,
            out=Path(folder) / "report",
            methods=tuple(MethodSource(f"k_same_{k}", "reference", spec=f"k_same:k={k}") for k in args.k),
            recognizers=("dlib",),
            attacks=("none",),
            cache_dir=Path(folder) / "cache",
        )
        result = AuditRun(config).run()
    print(f"{'method':>10} {'faces':>5} {'rank-1':>8} {'95% CI':>16} {'chance':>7} {'1/k':>6}  within bound")
    for k in args.k:
        (verdict,) = [v for v in result.metric_verdicts if v.method == f"k_same_{k}" and v.metric == "rank1"]
        e = verdict.estimate
        within = "yes" if e.low <= 1.0 / k else "NO"
        print(f"{'k_same_' + str(k):>10} {e.trials:>5} {e.rate:>8.1%} [{e.low:6.1%}, {e.high:6.1%}] {verdict.chance:>7.1%} {1 / k:>6.1%}  {within}")


if __name__ == "__main__":
    main()
