"""Can the audit's harness work hide under model inference on this machine?

The engine benchmark's overhead target (end-to-end <= 1.15x model inference) needs the work around the
models (decoding PNGs, SSIM/PSNR of the face crops, encoding the cached crops) either to cost under 15%
of inference inline, or to run beside it on another core without slowing it. This measures the second
option directly, with the engine's own models and the harness's own operations:

- the inference load: for each of N CelebA photos, MTCNN on the photo and the dlib recognizer on one
  150 px chip (what the naive tier runs per image), with torch's default threads;
- the harness load: decode an observed PNG, crop two 160 px faces, SSIM and PSNR between them, encode
  the crop as the cache's JPEG, in a loop;
- each configuration in a fresh process, interleaved, `--runs` times (medians):
  inference alone (2 threads, 1 thread); inference beside a harness process that works without pause
  (at nice 0, at nice 19, and at nice 19 with OMP_WAIT_POLICY=PASSIVE, whose inference-alone time is
  measured too);
- the harness's cost per unit alone, so the work it did beside inference is in seconds of serial work.

Saved = harness work done beside inference (its serial seconds) - the inference time it added. Only a
positive saving means overlap can lower end-to-end time; the overhead ratio then falls by saved/inference.

Run: python benchmarks/bench_overlap.py [--photos 40] [--runs 3]; writes benchmarks/results/overlap-<date>.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import write_results  # noqa: E402

from redteam.core.paths import default_cache_dir  # noqa: E402

RESEARCH = ROOT.parent / "shared" / "faces" / "research"
#: bench_engine.py's observed folders (its `work` folder): `--prepare-only` makes them.
OBSERVED = default_cache_dir() / "bench" / "engine"


def _unit(path: Path) -> None:
    """One harness unit: what the engine does around the models for one observed image."""
    import io

    import numpy as np
    from PIL import Image

    from metrics.perceptual import psnr, ssim

    pixels = np.asarray(Image.open(path).convert("RGB"))
    a = np.ascontiguousarray(pixels[:160, :160])
    b = np.ascontiguousarray(pixels[-160:, -160:])
    ssim(a[None], b[None])
    psnr(a[None], b[None])
    Image.fromarray(a).save(io.BytesIO(), format="JPEG", quality=90)


def _harness(files: list[Path], nice: int, start: Any, stop: Any, done: Any) -> None:
    """The harness process: warm up, wait for `start`, then count units until `stop` is set."""
    os.nice(nice)
    for path in files[:10]:
        _unit(path)
    start.wait()
    count = 0
    while not stop.is_set():
        _unit(files[count % len(files)])
        count += 1
    done.put(count)


def harness_seconds_per_unit(files: list[Path], units: int = 300) -> float:
    """Serial cost of one harness unit, alone on the machine (after 10 warm-up units)."""
    for path in files[:10]:
        _unit(path)
    began = time.perf_counter()
    for index in range(units):
        _unit(files[index % len(files)])
    return (time.perf_counter() - began) / units


def child(config: dict[str, object]) -> dict[str, float]:
    """One configuration in this (fresh) process: inference seconds, and the harness units done beside it."""
    import multiprocessing

    import numpy as np
    import torch
    from PIL import Image

    from metrics.recognizers.dlib_resnet import DlibRecognizer
    from redteam.faces import FaceDetector

    torch.set_num_threads(int(config["threads"]))  # type: ignore[arg-type]
    photos = [np.asarray(Image.open(p).convert("RGB")) for p in config["photos"]]  # type: ignore[union-attr]
    detector, recognizer = FaceDetector(), DlibRecognizer()
    detector.load()
    chips = torch.rand(1, 3, 150, 150, generator=torch.Generator().manual_seed(0))
    detector.detect(photos[0])
    recognizer.embed(chips)  # warm
    helper = None
    context = multiprocessing.get_context("spawn")
    start, stop, done = context.Event(), context.Event(), context.SimpleQueue()
    if config["helper"]:
        files = [Path(f) for f in config["observed"]]  # type: ignore[union-attr]
        helper = context.Process(target=_harness, args=(files, int(config["nice"]), start, stop, done))  # type: ignore[arg-type]
        helper.start()
        time.sleep(4.0)  # its imports and warm-up happen before the measured window
        start.set()
    began = time.perf_counter()
    for pixels in photos:
        detector.detect(pixels)
        recognizer.embed(chips)
    seconds = time.perf_counter() - began
    units = 0.0
    if helper is not None:
        stop.set()
        units = float(done.get())
        helper.join()
    return {"inference": seconds, "units": units}


def run_child(config: dict[str, object], env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(config)], env={**os.environ, **env}, capture_output=True, text=True, check=True, cwd=ROOT
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=40)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    photos = sorted(str(p) for p in (RESEARCH / "celeba").rglob("*.jpg"))[: args.photos]
    observed = sorted(str(p) for p in OBSERVED.glob("observed-200-*/*/*.png"))[:200]
    if len(photos) < args.photos or not observed:
        sys.exit(f"needs {args.photos} photos under {RESEARCH / 'celeba'} and the observed folders under {OBSERVED} (bench_engine.py --prepare-only)")
    cores = os.cpu_count() or 1
    configs = {
        "alone, default threads": ({"threads": cores, "helper": False, "nice": 0}, {}),
        "alone, 1 thread": ({"threads": 1, "helper": False, "nice": 0}, {}),
        "beside the harness (nice 0)": ({"threads": cores, "helper": True, "nice": 0}, {}),
        "beside the harness (nice 19)": ({"threads": cores, "helper": True, "nice": 19}, {}),
        "alone, OMP_WAIT_POLICY=PASSIVE": ({"threads": cores, "helper": False, "nice": 0}, {"OMP_WAIT_POLICY": "PASSIVE"}),
        "beside the harness (nice 19), OMP_WAIT_POLICY=PASSIVE": ({"threads": cores, "helper": True, "nice": 19}, {"OMP_WAIT_POLICY": "PASSIVE"}),
    }
    per_unit = harness_seconds_per_unit([Path(f) for f in observed])
    print(f"harness unit alone: {per_unit * 1e3:.2f} ms", flush=True)
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in configs}
    for run in range(args.runs):
        for name, (config, env) in configs.items():
            result = run_child({**config, "photos": photos, "observed": observed}, env)
            samples[name].append(result)
            print(f"run {run + 1}: {name}: inference {result['inference']:.2f} s, harness units {result['units']:.0f}", flush=True)
    median = {name: {k: statistics.median(r[k] for r in rows) for k in ("inference", "units")} for name, rows in samples.items()}
    base = median["alone, default threads"]["inference"]
    passive_base = median["alone, OMP_WAIT_POLICY=PASSIVE"]["inference"]
    lines = [
        f"# Overlap of harness and inference ({date.today().isoformat()}, {cores} CPU cores)",
        "",
        f"Command: `python benchmarks/bench_overlap.py --photos {args.photos} --runs {args.runs}`. Medians of {args.runs} interleaved runs, "
        f"each in a fresh process; {args.photos} CelebA photos (MTCNN + one dlib chip each). "
        f"One harness unit (decode an observed PNG, two 160 px crops, SSIM, PSNR, JPEG encode) costs {per_unit * 1e3:.2f} ms alone.",
        "",
        "Saved = harness work done beside inference (in its serial seconds) - inference time added, against the "
        "inference-alone time of the same OMP wait policy (and, in brackets, against the default policy alone).",
        "",
        "| configuration | inference (s) | vs default alone | harness work beside it (s) | saved (s) |",
        "|---|---|---|---|---|",
    ]
    for name, m in median.items():
        work = m["units"] * per_unit
        reference = passive_base if "PASSIVE" in name else base
        saved = work - (m["inference"] - reference) if m["units"] else 0.0
        against_default = f" ({work - (m['inference'] - base):+.2f})" if m["units"] and "PASSIVE" in name else ""
        lines.append(
            f"| {name} | {m['inference']:.2f} | {m['inference'] / base:.2f}x | {work:.2f} | {saved:+.2f}{against_default} |"
            if m["units"]
            else f"| {name} | {m['inference']:.2f} | {m['inference'] / base:.2f}x | - | - |"
        )
    lines.append("")
    lines.append(
        "Per-run figures: " + "; ".join(f"{name}: " + ", ".join(f"{r['inference']:.2f} s/{r['units']:.0f}" for r in rows) for name, rows in samples.items())
    )
    write_results(args.out / f"overlap-{date.today().isoformat()}.md", lines)


if __name__ == "__main__":
    main()
