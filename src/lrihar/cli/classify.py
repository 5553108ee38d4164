"""Commands for template classification: classify, calibrate-lambda, encoders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lrihar.cli.app import LineOpt, PostOpt, ProjectOpt, app, echo_err
from lrihar.cli.engine import EngineOpt, RayAddressOpt, RayBatchOpt, RayGpusOpt, RayWorkersOpt, ray_options
from lrihar.errors import BadInputError


@app.command()
def classify(
    project: ProjectOpt = Path("."),
    templates: Annotated[Path | None, typer.Option(
        help="Templates root: one sub-folder of crops per class (overrides the project file).")] = None,
    encoder: Annotated[str | None, typer.Option(
        help="Encoder backend (see `lrihar encoders`); auto (default) picks one per project.")] = None,
    model: Annotated[str | None, typer.Option(help="Encoder model id, local dir or weights file.")] = None,
    lambda_: Annotated[float | None, typer.Option("--lambda", help="NG threshold λ for every class.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda or cuda:N.")] = None,
    sheets: Annotated[Path | None, typer.Option(
        help="Folder for one contact sheet (PNG) per class; default PROJECT/contact-sheets.")] = None,
    no_sheets: Annotated[bool, typer.Option("--no-sheets", help="Skip the contact sheets.")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the summary as JSON.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    classifier: Annotated[str | None, typer.Option(
        help="Label with a trained classifier instead of templates: student, teacher, a run name or an "
             "exported .onnx (see `lrihar export-runtime --classifier`).")] = None,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
    ray_workers: RayWorkersOpt = None,
    ray_batch_size: RayBatchOpt = None,
    ray_num_gpus: RayGpusOpt = None,
    line: LineOpt = None,
    post: PostOpt = None,
) -> None:
    """Label every detected crop with an action class, or NG, by similarity to template crops
    (or with a trained classifier: --classifier).

    Each post is labelled with its own classes, templates and λ (`lines:` in lrihar.yaml);
    --line / --post label only those posts' crops. Rerunning resumes (embeddings are cached);
    labels a person corrected are never overwritten.
    """
    from lrihar.classify.by_post import classify_posts
    from lrihar.lines import project_layout
    from lrihar.project import Project

    ray = ray_options(engine, ray_address, ray_workers, ray_batch_size, ray_num_gpus)
    proj = Project.open(project)
    if classifier:
        if ray is not None:
            raise BadInputError("--engine ray: embeds crops for template matching; an exported "
                                "--classifier runs with --engine local")

        posts = project_layout(proj.config).select(line, post)
        return classify_with_model_command(proj, classifier, progress, json_out, posts)
    sheets_dir = None if no_sheets else (sheets or proj.root / "contact-sheets")
    overrides = {"encoder": encoder, "model": model, "lambda_": lambda_, "device": device}
    run = None
    if ray is not None:
        from functools import partial

        from lrihar.engines.ray_classify import classify_with_ray

        run = partial(classify_with_ray, options=ray)
    summaries, left_out = classify_posts(proj, line, post, overrides=overrides, templates=templates,
                                         sheets_dir=sheets_dir, show_progress=progress, run=run)
    for summary in summaries:
        _print_classify_summary(summary)
    if left_out:
        echo_err(f"note: {left_out} crops are on frames of no post of lrihar.yaml, and posts classify "
                 "differently, so they were left unlabelled; annotate their inputs with --post")
    if json_out:
        doc = summaries[0].as_dict() if len(summaries) == 1 else {"runs": [s.as_dict() for s in summaries]}
        json_out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")

def print_encoder_choice(selection: dict | None) -> None:
    """The table ``encoder: auto`` measured, and its choice (nothing when the encoder was named)."""
    if not selection:
        return
    from rich.console import Console
    from rich.table import Table

    reviewed = selection["reviewed"]
    table = Table("candidate", "leave-one-out", f"reviewed (n={reviewed})", "score", "note",
                  title=f"encoder: auto, accuracy on {selection['templates']} templates")
    pct = "{:.1%}".format
    left_out: dict[str, list[str]] = {}
    for row in selection["candidates"]:
        chosen = row["label"] == selection["chosen"]
        cells = ["–" if row[k] is None else pct(row[k])
                 for k in ("templates_accuracy", "reviewed_accuracy", "score")]
        if row["left_out"]:
            left_out.setdefault(row["left_out"], []).append(row["label"])
        table.add_row(row["label"], *cells, "left out" if row["left_out"] else ("chosen" if chosen else ""),
                      style="bold" if chosen else None)
    Console().print(table)
    for reason, labels in left_out.items():  # below the table: long reasons would wrap inside it
        typer.echo(f"left out: {', '.join(labels)}: {reason}")
    share = selection["detections_with_landmarks"]
    landmarks = "" if share is None else f"; detections with hand landmarks: {share:.0%}"
    typer.echo(f"encoder: auto -> {selection['chosen']} (best accuracy, ties to appearance){landmarks}")


def print_label_counts(counts: dict[str, int], title: str) -> None:
    """Crops per label and their share, as a table."""
    from rich.console import Console
    from rich.table import Table

    table = Table("label", "crops", "share", title=title)
    total = sum(counts.values()) or 1
    for name, n in counts.items():
        table.add_row(name, str(n), f"{n / total:.1%}")
    Console().print(table)


def _print_classify_summary(s) -> None:
    print_encoder_choice(s.encoder_selection)
    encoder = s.encoder_selection["chosen"] if s.encoder_selection else s.encoder
    at = f", {', '.join(s.posts)}" if s.posts else ""
    print_label_counts(s.counts, f"classify run {s.run_id} ({encoder}{at})")
    typer.echo(f"templates: {s.templates}; λ: {s.lambdas}; newly embedded: {s.embedded}; "
               f"corrected labels kept: {s.kept_corrected}; {s.seconds:.1f} s")
    for path in s.sheets:
        typer.echo(f"contact sheet: {path}")
    for err in s.errors[:20]:
        echo_err(f"warning: {err.source_id}: {err.message}")

@app.command("calibrate-lambda")
def calibrate_lambda(
    project: ProjectOpt = Path("."),
    templates: Annotated[Path | None, typer.Option(help="Templates root (overrides the project).")] = None,
    encoder: Annotated[str | None, typer.Option(help="Encoder; auto chooses as classify does.")] = None,
    keep: Annotated[float, typer.Option(help="Share of correct templates the suggested λ keeps.")] = 0.95,
    plot: Annotated[Path | None, typer.Option(help="PNG of accuracy and NG rate vs λ.")] = None,
    step: Annotated[float, typer.Option(help="λ step of the printed table.")] = 0.05,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the whole sweep as JSON.")] = None,
    post: Annotated[str | None, typer.Option(
        help="This post's templates and reviewed labels (its own λ: lines[].posts[].lambda).")] = None,
) -> None:
    """Estimate λ from the templates (leave-one-out) and any reviewed labels; print the trade-off."""
    from rich.console import Console
    from rich.table import Table

    from lrihar.classify.calibrate import calibrate_project, plot_sweeps
    from lrihar.config import with_overrides
    from lrihar.lines import project_layout
    from lrihar.project import Project

    proj = Project.open(project)
    base = proj.config if post is None else project_layout(proj.config).config_for(post)
    cfg = with_overrides(base, "classify", encoder=encoder)
    result = calibrate_project(proj, config=cfg, templates=templates, keep=keep,
                               posts=None if post is None else [post])
    print_encoder_choice(result.encoder_selection)
    console = Console()
    for sw in result.sweeps:
        table = Table("λ", "accuracy", "NG rate", title=f"{sw.name} (n={sw.n})")
        for row in sw.rows():
            if abs(row["lambda"] / step - round(row["lambda"] / step)) < 1e-6:
                table.add_row(f"{row['lambda']:.2f}", f"{row['accuracy']:.1%}", f"{row['ng_rate']:.1%}")
        console.print(table)
    typer.echo(f"leave-one-out template accuracy without NG: {result.loo_accuracy_without_ng:.1%}")
    typer.echo(f"suggested λ = {result.suggested:.2f} (keeps {keep:.0%} of correctly matched templates); "
               f"set it as {'classify.lambda' if post is None else f'the lambda of post {post}'} in "
               f"{proj.root / 'lrihar.yaml'}")
    if plot:
        typer.echo(f"plot: {plot_sweeps(result, plot)}")
    if json_out:
        doc = {"suggested": result.suggested, "keep": keep, "encoder": result.encoder,
               "encoder_selection": result.encoder_selection,
               "loo_accuracy_without_ng": result.loo_accuracy_without_ng,
               "sweeps": {sw.name: sw.rows() for sw in result.sweeps}}
        json_out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")

@app.command("encoders")
def list_encoder_backends() -> None:
    """List the registered crop encoder backends (and auto, which picks one per project)."""
    from lrihar.models.encoders import list_encoders

    for name in list_encoders():
        typer.echo(name)
    typer.echo("auto (default: picks the appearance encoder, hand-pose or fusion by leave-one-out accuracy)")


def classify_with_model_command(proj, classifier: str, progress: bool, json_out: Path | None,
                                posts: list[str] | None = None) -> None:
    """``classify --classifier``: label the stored crops (``posts``: of these posts) with an exported
    classifier, print counts."""
    from lrihar.classify.trained import classify_with_model

    s = classify_with_model(proj, classifier, show_progress=progress, posts=posts)
    print_label_counts(s.counts, f"classify run {s.run_id} ({s.classifier})")
    typer.echo(f"labelled {s.detections} crops with {s.onnx}; corrected labels kept: {s.kept_corrected}; "
               f"{s.seconds:.1f} s")
    for err in s.errors[:20]:
        echo_err(f"warning: {err.source_id}: {err.message}")
    if json_out:
        json_out.write_text(json.dumps(s.as_dict(), indent=2) + "\n", encoding="utf-8")
