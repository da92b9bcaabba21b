"""`wearmon model ...` commands: inspect, import, list, alias, promote."""

from __future__ import annotations

from pathlib import Path

import typer

from wearmon.cli.common import settings_of

app = typer.Typer(help="Inspect, import and manage model versions.", no_args_is_help=True)


@app.command("inspect")
def inspect_cmd(
    ctx: typer.Context,
    path: str = typer.Argument(..., help="A .keras file, or a registered version/alias."),
    labels: Path = typer.Option(None, "--labels", help="Label mapping JSON (for a file)."),
) -> None:
    """Layers, parameter count, input/output shapes and class names."""
    from trainer.inspect import describe, load_keras, read_labels

    settings = settings_of(ctx)
    p = Path(path)
    classes = None
    if p.exists():
        model = load_keras(p)
        if labels is None and (p.parent / "label_mapping.json").is_file():
            labels = p.parent / "label_mapping.json"
        classes = read_labels(labels) if labels is not None else None
    else:
        from trainer import registry

        version = registry.resolve(settings, path)
        meta = registry.read_metadata(settings, version)
        model = load_keras(registry.model_file(registry.version_dir(settings, version)))
        classes = meta.get("classes")
    d = describe(model, classes)
    typer.echo(f"model {d['name']}")
    for layer in d["layers"]:
        typer.echo(
            f"  {layer['name']:<28} {layer['type']:<22} {layer['output_shape']!s:<18} "
            f"{layer['params']:>9,}{'' if layer['trainable'] else '  (frozen)'}"
        )
    typer.echo(
        f"params {d['params']:,} (trainable {d['trainable_params']:,}, "
        f"non-trainable {d['non_trainable_params']:,})"
    )
    inp = "x".join(str(v) for v in d["input_shape"][1:])
    typer.echo(f"input {d['input_shape']}  output {d['output_shape']}")
    typer.echo(f"{inp} -> {d['n_classes']} classes")
    if d["classes"]:
        typer.echo("classes: " + ", ".join(d["classes"]))


@app.command("import")
def import_cmd(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="The Keras model file (.keras or .h5)."),
    labels: Path = typer.Option(None, "--labels", help="Label mapping JSON."),
    scaler: Path = typer.Option(None, "--scaler", help="Scaler JSON {mean: [6], scale: [6]}."),
    champion: bool = typer.Option(False, "--champion", help="Also make it the champion."),
) -> None:
    """Register a model you already have, after checking it fits the 200x6 window.

    Without --labels/--scaler, label_mapping.json and scaler_config.json next to the model
    are used when present."""
    from trainer import registry

    settings = settings_of(ctx)
    if labels is None and (path.parent / "label_mapping.json").is_file():
        labels = path.parent / "label_mapping.json"
    if scaler is None and (path.parent / "scaler_config.json").is_file():
        scaler = path.parent / "scaler_config.json"
    version = registry.import_model(settings, path, labels=labels, scaler=scaler)
    first = registry.alias_version(settings, registry.CHAMPION) is None
    if champion or first:
        registry.set_alias(settings, registry.CHAMPION, version)
    typer.echo(
        f"imported {path.name} as {settings.model_name} version {version}"
        + (" (champion)" if champion or first else "")
    )


@app.command("list")
def list_cmd(ctx: typer.Context) -> None:
    """Registered versions with their aliases."""
    from trainer import registry

    settings = settings_of(ctx)
    rows = registry.list_versions(settings)
    if not rows:
        typer.echo(f"no versions of {settings.model_name}")
        return
    for r in rows:
        aliases = ",".join(r["aliases"])
        typer.echo(f"{r['version']:>4}  {aliases:<20} {r['description']}")


@app.command("alias")
def alias_cmd(
    ctx: typer.Context,
    alias: str = typer.Argument(..., help="e.g. champion, challenger"),
    version: str = typer.Argument(...),
) -> None:
    """Point an alias at a version (no gate; see `wearmon model promote`)."""
    from trainer import registry

    settings = settings_of(ctx)
    registry.set_alias(settings, alias, version)
    typer.echo(f"{alias} -> {settings.model_name} version {version}")


@app.command("promote")
def promote_cmd(
    ctx: typer.Context,
    version: str = typer.Argument(..., help="The challenger version."),
    margin: float = typer.Option(0.01, "--margin", help="Allowed drop in accuracy/macro-F1."),
    data: str = typer.Option(None, "--data", help="Held-out data (default: the challenger's)."),
    subjects: str = typer.Option(None, "--subjects", help="Held-out subjects (default: its test)."),
    dry_run: bool = typer.Option(False, "--dry-run"),
) -> None:
    """Gate a challenger against the champion on the same held-out windows; move the alias."""
    from trainer import registry
    from trainer.datasets import load_dataset
    from trainer.gate import promote
    from wearmon.errors import ConfigError

    settings = settings_of(ctx)
    version = registry.resolve(settings, version)
    meta = registry.read_metadata(settings, version)
    own = str((meta.get("data") or {}).get("source", ""))
    source = data or own
    if not source or source.startswith("imported:"):
        raise ConfigError("say which held-out data to gate on with --data")
    ds = load_dataset(source, settings.signal)
    subs = subjects.split(",") if subjects else list((meta.get("split") or {}).get("test") or [])
    if not subs:
        raise ConfigError("say which held-out subjects to gate on with --subjects")
    ds = ds.of_subjects(subs)
    labels = [ds.classes[i] for i in ds.y]
    res = promote(settings, version, ds.x, labels, margin=margin, dry_run=dry_run)
    verdict = (
        "promoted" if res.promoted else ("passed (dry run)" if res.gate.passed else "rejected")
    )
    typer.echo(f"version {version} vs champion {res.champion}: {verdict}: {res.gate.reason}")
    if not res.gate.passed:
        raise typer.Exit(2)
