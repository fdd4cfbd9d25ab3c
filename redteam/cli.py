"""The `redteam` command line (Typer). Exit codes: see README "Exit codes" and `ExitCode`."""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from redteam.audit_inputs import audit_inputs, check_execution
from redteam.audit_run import EXIT_CODES_HELP, run_and_report
from redteam.cli_benchmark import benchmark
from redteam.cli_models import models_app
from redteam.cli_runs import compare_runs, history, list_app
from redteam.cli_video import audit_video
from redteam.command_guard import guarded, internal_error
from redteam.core.config import AuditConfig, DetectorSettings, MethodSource
from redteam.core.errors import UsageError
from redteam.core.text import markup_text as escape

app = typer.Typer(
    help="Red-team face anonymization: attack anonymized faces and measure how much identity survives.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(models_app, name="models")


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"redteam (face-anon-redteam) {version('face-anon-redteam')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Show the version and exit.")] = False,
) -> None:
    """Red-team face anonymization: attack anonymized faces and measure how much identity survives."""


app.add_typer(list_app, name="list")


@app.command(epilog=EXIT_CODES_HELP)
@guarded
def audit(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the reports (outside the inputs).")],
    originals: Annotated[
        Path | None, typer.Argument(help="Folder of original images: <identity>/<file> or flat (optional with --manifest: the folder its originals share).")
    ] = None,
    anonymized: Annotated[list[str], typer.Option("--anonymized", "-a", help="NAME=DIR: a folder of anonymized images mirroring the originals.")] = [],
    method: Annotated[
        list[str],
        typer.Option(
            "--method", "-m", help="NAME=SPEC or SPEC: a reference method applied on the fly (blur=gaussian_blur:sigma=6, or mosaic:block=12 named mosaic)."
        ),
    ] = [],
    manifest: Annotated[Path | None, typer.Option(help="CSV with columns original,anonymized,method[,identity].")] = None,
    gallery: Annotated[Path | None, typer.Option(help="Folder of distractor faces added to the identification gallery.")] = None,
    policy: Annotated[Path | None, typer.Option(help="Policy TOML (default: the built-in policy).")] = None,
    recognizer: Annotated[list[str], typer.Option("--recognizer", "-r", help="Recognizer to use (repeatable; default: every available one).")] = [],
    attack: Annotated[
        list[str],
        typer.Option(
            "--attack",
            "--attacks",
            help="Attack or chain a|b (repeatable); default auto (every applicable attack with its model); none: naive only; =-NAME drops one.",
        ),
    ] = [],
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
    seed: Annotated[int, typer.Option(help="Seed for every random choice.")] = 0,
    cache_dir: Annotated[Path | None, typer.Option(help="Cache folder (default: $REDTEAM_CACHE or ~/.cache/redteam).")] = None,
    no_originals_in_report: Annotated[bool, typer.Option("--no-originals-in-report", help="Leave original faces out of the HTML report.")] = False,
    calibration: Annotated[Path | None, typer.Option(help="Thresholds file written by `redteam calibrate`.")] = None,
    far: Annotated[float, typer.Option(help="False-accept rate of the calibrated threshold to use.")] = 1e-3,
    min_face_score: Annotated[float, typer.Option(help="MTCNN probability below which a detection is ignored.")] = 0.95,
    batch_size: Annotated[int, typer.Option(help="Embedding batch size.")] = 32,
    lpips_net: Annotated[str, typer.Option(help="LPIPS trunk: alex (default) or vgg.")] = "alex",
    identify: Annotated[
        bool, typer.Option("--identify/--no-identify", help="Fit the operator of observed folders (default); --no-identify leaves them unknown.")
    ] = True,
    workers: Annotated[int, typer.Option(help="Processes to split the images over (torch threads are divided among them).")] = 1,
    executor: Annotated[str, typer.Option(help="local (this machine) or ray (a Ray cluster; pip install 'face-anon-redteam\\[ray]').")] = "local",
    ray_address: Annotated[str | None, typer.Option(help="Address of an existing Ray cluster (default: start a local one).")] = None,
    store: Annotated[
        Path | None, typer.Option(help="Run store (SQLite) the audit is recorded in (default: $REDTEAM_STORE or runs.sqlite in the cache).")
    ] = None,
    baseline: Annotated[
        str | None,
        typer.Option(help="RUN id or 'latest': exit 6 if a method that passed there no longer passes, or a rate rose significantly (see Exit codes)."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also print every rate with its interval, chance level and limit.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the LEAK lines, the verdict line and errors.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print summary.json to stdout and nothing else there (the rest goes to stderr).")] = False,
) -> None:
    """Audit anonymization methods against the originals and give a verdict per method and tier."""
    from redteam import terminal

    if verbose and quiet:
        raise UsageError("--verbose and --quiet contradict each other", fix="give one of them")
    terminal.set_verbosity(terminal.Verbosity.QUIET if quiet else terminal.Verbosity.VERBOSE if verbose else terminal.Verbosity.NORMAL)
    if not 0.0 < min_face_score <= 1.0:
        raise UsageError(f"--min-face-score must be in (0, 1], got {min_face_score}", fix="e.g. --min-face-score 0.95")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be positive, got {batch_size}", fix="e.g. --batch-size 32")
    check_execution(workers, executor)
    if lpips_net not in ("alex", "vgg"):
        raise UsageError(f"unknown LPIPS net '{lpips_net}'", fix="use --lpips-net alex or --lpips-net vgg")
    root, sources, identities = audit_inputs(originals, anonymized, method, manifest, gallery)
    config = AuditConfig(
        originals=root,
        out=out,
        methods=tuple(sources),
        gallery=gallery,
        policy=policy,
        recognizers=tuple(recognizer),
        attacks=tuple(attack) if attack else ("auto",),
        device=device,
        seed=seed,
        cache_dir=cache_dir,
        include_originals_in_report=not no_originals_in_report,
        detector=DetectorSettings(min_score=min_face_score),
        calibration=calibration,
        calibration_far=far,
        identity_overrides=tuple(identities),
        batch_size=batch_size,
        lpips_net=lpips_net,
        identify=identify,
        workers=workers,
        executor=executor,
        ray_address=ray_address,
    )
    result = run_and_report(config, store, baseline, json_output=json_output)
    raise typer.Exit(int(result.exit_code))  # type: ignore[attr-defined]  # the same code as summary.json's exit_code


@app.command()
@guarded
def anonymize(
    source: Annotated[Path, typer.Argument(help="Folder of images to anonymize (never modified).")],
    out: Annotated[Path, typer.Argument(help="Output folder, mirroring the input tree (outside the input).")],
    method: Annotated[str, typer.Option("--method", "-m", help="Method spec, e.g. 'mosaic:block=16 | jpeg:quality=30'.")],
    seed: Annotated[int, typer.Option(help="Seed for every random choice.")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
    min_face_score: Annotated[float, typer.Option(help="MTCNN probability below which a detection is ignored.")] = 0.95,
) -> None:
    """Write anonymized copies of every image with a reference method; record spec, seed and versions."""
    from redteam import terminal
    from redteam.anonymize import anonymize_folder
    from redteam.core.devices import resolve_device

    with terminal.progress_bar() as progress:
        summary = anonymize_folder(
            source,
            out,
            method,
            seed=seed,
            device=resolve_device(device),
            detector=DetectorSettings(min_score=min_face_score),
            log=terminal.log,
            progress=progress,
        )
    terminal.stdout.print(escape(f"anonymized {summary.faces} faces in {summary.written} images into {out}; record: {summary.record}"))
    if summary.no_face:
        terminal.stderr.print(f"[yellow]{len(summary.no_face)} image(s) had no detected face and were written unchanged[/yellow]")
    if summary.skipped:
        terminal.stderr.print(f"[yellow]{len(summary.skipped)} file(s) skipped[/yellow]: " + escape(", ".join(f for f, _ in summary.skipped)))


class _AttackGroup(TyperGroup):
    """`redteam attack ANON OUT ...` runs an attack; `redteam attack train ...` trains the learned one."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


attack_app = typer.Typer(cls=_AttackGroup, help="Run an attack on anonymized images, or train the learned inversion.", no_args_is_help=True)
app.add_typer(attack_app, name="attack")


@attack_app.command("train")
@guarded
def attack_train(
    method: Annotated[str, typer.Option("--method", "-m", help="The exact method spec to invert.")],
    faces: Annotated[Path, typer.Option(help="The attacker's face corpus (never the audited originals).")],
    minutes: Annotated[float, typer.Option(help="Training time budget.")] = 3.0,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "auto",
    out: Annotated[Path | None, typer.Option(help="Checkpoint path (default: the cache, where `learned` looks).")] = None,
) -> None:
    """Train the learned inversion (small U-Net) on pairs (method(x), x) from a face corpus."""
    from redteam import terminal
    from redteam.core.devices import resolve_device
    from redteam.training import train_inversion

    if minutes <= 0:
        raise UsageError(f"--minutes must be positive, got {minutes}", fix="e.g. --minutes 3")
    path = train_inversion(faces, method, minutes=minutes, seed=seed, device=resolve_device(device), out=out, log=terminal.log)
    terminal.stdout.print(escape(f"saved {path} (training record: {path.with_suffix('.json')})"))


@attack_app.command("run")
@guarded
def attack(
    anonymized: Annotated[Path, typer.Argument(help="Folder of anonymized images.")],
    out: Annotated[Path, typer.Argument(help="Output folder for the reconstructions.")],
    attack_name: Annotated[str, typer.Option("--attack", help="Attack or chain a|b, see `redteam list attacks`.")] = "bicubic",
    originals: Annotated[Path | None, typer.Option(help="Originals mirroring the folder: their face geometry is used.")] = None,
    method: Annotated[str | None, typer.Option("--method", "-m", help="Declare the anonymization method spec.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for every random choice.")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
) -> None:
    """Reconstruct every image of ANONYMIZED into OUT with one attack; records what was done."""
    from redteam import terminal
    from redteam.core.devices import resolve_device
    from redteam.core.hub import no_downloads
    from redteam.standalone import attack_folder

    with no_downloads(), terminal.progress_bar() as progress:
        summary = attack_folder(
            anonymized,
            out,
            attack_name,
            originals=originals,
            method_spec=method,
            seed=seed,
            device=resolve_device(device),
            log=terminal.log,
            progress=progress,
        )
    terminal.stdout.print(escape(f"{attack_name}: reconstructed {summary.faces} faces in {summary.written} images into {out}; record: {summary.record}"))
    if summary.skipped:
        terminal.stderr.print(f"[yellow]{len(summary.skipped)} file(s) skipped[/yellow]: " + escape("; ".join(f"{f} ({r})" for f, r in summary.skipped)))


DEMO_METHODS = (
    ("blur_mild", "gaussian_blur:sigma=2"),
    ("blur_strong", "gaussian_blur:sigma=8"),
    ("mosaic", "mosaic:block=12"),
    ("box", "box:color=black,margin=0.5"),
)
#: The demo runs the default selection restricted to the attacks that need no model file, so that it
#: takes the same couple of minutes whether or not Real-ESRGAN or diffusion weights are installed.
DEMO_ATTACKS = ("none", "parrot", "bicubic", "lanczos", "blind_deconv", "denoise", "jpeg_deblock", "wiener", "richardson_lucy", "tv_deconv")


@app.command()
@guarded
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the demo report.")] = Path("redteam-demo"),
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
    cache_dir: Annotated[Path | None, typer.Option(help="Cache folder.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also print every rate with its interval, chance level and limit.")] = False,
) -> None:
    """Audit the bundled public-domain faces under built-in anonymizations (offline models only)."""
    from redteam import terminal

    terminal.set_verbosity(terminal.Verbosity.VERBOSE if verbose else terminal.Verbosity.NORMAL)

    sample = Path(str(resources.files("redteam.data").joinpath("sample")))
    config = AuditConfig(
        originals=sample,
        out=out,
        methods=tuple(MethodSource(name, "reference", spec=spec) for name, spec in DEMO_METHODS),
        builtin_policy="demo_policy.toml",
        attacks=DEMO_ATTACKS,
        device=device,
        cache_dir=cache_dir,
    )
    terminal.log("demo: 5 public-domain faces (3 people), methods " + ", ".join(f"{n}={s}" for n, s in DEMO_METHODS))
    run_and_report(config)
    terminal.stdout.print(escape(f"Report: {(out / 'report.html').resolve()}"))


@app.command()
@guarded
def calibrate(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the thresholds JSON.")],
    pairs: Annotated[Path | None, typer.Option(help="CSV with columns image_a,image_b,same.")] = None,
    faces: Annotated[Path | None, typer.Option(help="Folder DIR/<identity>/<file>: every pair is used.")] = None,
    recognizer: Annotated[list[str], typer.Option("--recognizer", "-r", help="Recognizer(s) to calibrate (default: every available one).")] = [],
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
) -> None:
    """Compute verification thresholds at FAR 1e-3 and 1e-4 from labelled pairs."""
    from redteam import terminal
    from redteam.calibration import calibrate as run_calibration
    from redteam.calibration import chosen_recognizers, largest_face_embedder, pairs_from_identity_folders, read_pairs
    from redteam.core.atomic import write_text_atomically
    from redteam.core.devices import resolve_device
    from redteam.core.paths import ensure_writable_file

    if (pairs is None) == (faces is None):
        raise UsageError("give exactly one of --pairs or --faces", fix="e.g. redteam calibrate --faces lfw/ --out thresholds.json")
    ensure_writable_file(out, "thresholds file", "give --out a file path in a writable folder, e.g. --out thresholds.json")
    labelled = read_pairs(pairs) if pairs is not None else pairs_from_identity_folders(faces)  # type: ignore[arg-type]
    torch_device = resolve_device(device)
    chosen = chosen_recognizers(recognizer, torch_device)
    embed_image = largest_face_embedder(torch_device, terminal.log)
    report = run_calibration(labelled, chosen, embed_image, str(pairs or faces))  # type: ignore[arg-type]
    write_text_atomically(out, json.dumps(report, indent=2) + "\n")
    calibrated: dict[str, Any] = report["recognizers"]  # type: ignore[assignment]
    for name, entry in calibrated.items():
        terminal.stdout.print(f"{name}: {entry['n_genuine']} genuine, {entry['n_impostor']} impostor pairs")
        for far_key, value in entry["thresholds"].items():
            note = "" if value["reliable"] else "  [yellow](too few impostor pairs: unreliable, the audit will refuse it)[/yellow]"
            terminal.stdout.print(f"  FAR {far_key}: threshold {value['threshold']:.4f}, TAR {value['tar']}{note}")
    terminal.stdout.print(escape(f"wrote {out}"))


app.command()(history)
app.command("compare")(compare_runs)
app.command()(benchmark)
app.command("audit-video", epilog=EXIT_CODES_HELP)(audit_video)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except SystemExit:
        raise
    except Exception as error:  # noqa: BLE001 - a bug must not look like a verdict (exit 1)
        sys.exit(internal_error(error))
