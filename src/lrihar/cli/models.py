"""``lrihar models``: carry hub models to machines with no network."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from lrihar.cli.app import app

models_app = typer.Typer(help="Pack hub models for air-gapped machines; list packed models.",
                         no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("pack")
def pack(
    model_ids: Annotated[list[str] | None, typer.Argument(
        help="Hugging Face ids, e.g. IDEA-Research/grounding-dino-tiny.")] = None,
    project: Annotated[Path | None, typer.Option(
        "--project", "-p", help="Also pack this project's deployed detector and student (its line's "
                                "models), found by `lrihar run --models-dir` at the plant.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to pack into.")] = Path("models"),
    download: Annotated[bool, typer.Option(help="Fetch from the hub what the local cache lacks.")] = False,
    cache_dir: Annotated[str | None, typer.Option(help="Hugging Face cache to read from.")] = None,
) -> None:
    """Copy models (from the local Hugging Face cache, or the hub with --download), and with -p a
    project's trained detector and student, into a folder to carry to the plant; there, pass
    --models-dir FOLDER (or set LRIHAR_MODELS_DIR)."""
    from lrihar.errors import BadInputError
    from lrihar.models.portable import pack_line_models, pack_models

    if not model_ids and project is None:
        raise BadInputError("give model ids to pack, or --project PROJECT for its trained models")
    packed = pack_models(model_ids or [], out, download, cache_dir)
    if project is not None:
        from lrihar.project import Project

        packed.append(pack_line_models(Project.open(project), out))
    for m in packed:
        typer.echo(f"{m.model_id}: {m.files} files, {m.bytes / 1e6:.1f} MB -> {m.path}")
    typer.echo(f"on the air-gapped machine: --models-dir {out.resolve()} (or LRIHAR_MODELS_DIR)")


@models_app.command("list")
def list_models(
    models_dir: Annotated[Path | None, typer.Argument(
        help="Models folder (default $LRIHAR_MODELS_DIR).")] = None,
) -> None:
    """List packed models and check every file against its manifest."""
    from lrihar.artifacts import MODELS_DIR_ENV as ENV
    from lrihar.errors import BadInputError
    from lrihar.models.portable import list_packed

    root = models_dir or (Path(os.environ[ENV]) if os.environ.get(ENV) else None)
    if root is None:
        raise BadInputError(f"give a models folder or set {ENV}")
    rows = list_packed(root)
    for row in rows:
        state = "intact" if row["intact"] else f"CHANGED: {', '.join(row['changed'])}"
        typer.echo(f"{row['model_id']}  rev {row['revision'][:12]}  {row['files']} files  {state}")
    if not rows:
        typer.echo(f"no packed models in {root}")
    if any(not r["intact"] for r in rows):
        raise typer.Exit(1)
