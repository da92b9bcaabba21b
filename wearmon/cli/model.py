"""`wearmon model ...` commands: inspect, import, list, alias, promote, retrain.

Every command that makes a version the champion goes through trainer.promotion (it moves the
alias, publishes on model:champion and records the change in MLflow)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
    from trainer.promotion import set_champion

    version = registry.import_model(settings, path, labels=labels, scaler=scaler)
    first = registry.alias_version(settings, registry.CHAMPION) is None
    if champion or first:
        set_champion(
            settings,
            version,
            reason=f"imported {path.name}: " + ("--champion" if champion else "no champion yet"),
            decision="override" if champion else "initial",
        )
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
    reason: str = typer.Option("", "--reason", help="Why (recorded with a champion change)."),
) -> None:
    """Point an alias at a version (champion: an operator override, published and recorded).

    `champion` skips the gate of `wearmon model promote`, but like any promotion it is
    published to the workers and recorded in MLflow with its reason."""
    from trainer import registry
    from trainer.promotion import set_champion

    settings = settings_of(ctx)
    if alias == registry.CHAMPION:
        change = set_champion(
            settings,
            version,
            reason=f"operator override: wearmon model alias champion {version}"
            + (f" ({reason})" if reason else ""),
            decision="override",
        )
        typer.echo(
            f"champion -> {settings.model_name} version {change.version} (was "
            f"{change.previous}; {'published' if change.published else 'not published'})"
        )
        return
    registry.set_alias(settings, alias, registry.resolve(settings, version))
    typer.echo(f"{alias} -> {settings.model_name} version {version}")


@app.command("promote")
def promote_cmd(
    ctx: typer.Context,
    version: str = typer.Argument(..., help="The challenger version (or alias)."),
    margin: float = typer.Option(None, "--margin", help="Allowed drop on the base data."),
    min_gain: float = typer.Option(None, "--min-gain", help="Required gain on the new data."),
    data: str = typer.Option(None, "--data", help="Base data (default: the challenger's)."),
    subjects: str = typer.Option(
        None, "--subjects", help="Held-out base subjects (default: the challenger's test)."
    ),
    new_data: str = typer.Option(
        None,
        "--new-data",
        help="New labelled data to gate on, all of it held out (a --data source spec); "
        "default: the held-out part of the training pool's new data.",
    ),
    trigger_id: str = typer.Option(None, "--trigger-id", help="Recorded with the decision."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Decide and record; move nothing."),
) -> None:
    """Gate a challenger against the champion and promote it if it passes (exit 2: refused).

    It must beat the champion on held-out new labelled data and not be worse than a margin
    on the same held-out base windows; without new labels it is refused."""
    from trainer import registry
    from trainer.promotion import decide_and_promote, new_trigger_id

    settings = settings_of(ctx)
    version = registry.resolve(settings, version)
    meta = registry.read_metadata(settings, version)
    base = _base_holdout(settings, meta, data, subjects)
    new = _new_holdout(settings, new_data, list(meta.get("classes") or []))
    res = decide_and_promote(
        settings,
        version,
        base_holdout=base,
        new_holdout=new,
        trigger_id=trigger_id or new_trigger_id("manual"),
        margin=margin,
        min_gain=min_gain,
        dry_run=dry_run,
    )
    verdict = {"promoted": "promoted", "dry_run": "would be promoted (dry run)"}.get(
        res.decision, "refused"
    )
    typer.echo(f"version {version} vs champion {res.champion}: {verdict}: {res.reason}")
    if res.decision == "refused":
        raise typer.Exit(2)


def _base_holdout(
    settings: Any, meta: dict[str, Any], data: str | None, subjects: str | None
) -> Any:
    from trainer.datasets import load_dataset
    from trainer.promotion import Holdout
    from wearmon.errors import ConfigError

    own = str((meta.get("data") or {}).get("source", ""))
    source = data or own
    if not source or source.startswith("imported:") or source == "pool" or "+" in source:
        source = data or settings.lifecycle.base_data
    ds = load_dataset(source, settings.signal)
    subs = subjects.split(",") if subjects else list((meta.get("split") or {}).get("test") or [])
    if not subs:
        raise ConfigError("say which held-out base subjects to gate on with --subjects")
    ds = ds.of_subjects([s for s in subs if s])
    if not len(ds):
        raise ConfigError(f"no windows of subjects {subs} in {source}")
    return Holdout.of(ds, f"{source}:{','.join(subs)}")


def _new_holdout(settings: Any, new_data: str | None, classes: list[str]) -> Any:
    from trainer.datasets import load_dataset
    from trainer.pool import load_new_holdout
    from trainer.promotion import Holdout
    from trainer.retrain import reachable, redis_client

    if new_data:
        return Holdout.of(load_dataset(new_data, settings.signal), new_data)
    client = reachable(lambda: redis_client(settings))
    try:
        held = load_new_holdout(settings, classes, redis_client=client)
    finally:
        if client is not None:
            client.close()
    return Holdout.of(held, "pool:new") if held is not None else None


@app.command("retrain")
def retrain_cmd(
    ctx: typer.Context,
    trigger_id: str = typer.Option(..., "--trigger-id", help="Id of the drift trigger."),
    quick: bool = typer.Option(False, "--quick", help="A few epochs (tests, backtests)."),
    init_from: str = typer.Option(
        None,
        "--init-from",
        help="champion (fine-tune) | none (from scratch) | auto (default: fine-tune when "
        "--quick, else from scratch; lifecycle.init_from)",
    ),
    since_ms: int = typer.Option(
        None,
        "--since-ms",
        help="The drift's onset (epoch ms; the monitor passes it): stream windows from it on "
        "are the new data, earlier ones train only.",
    ),
) -> None:
    """Train a challenger from the training pool and gate it (what the monitor runs).

    Writes retrain:{trigger_id}; exit 0 when promoted or refused, 1 when it failed."""
    from trainer.retrain import retrain

    settings = settings_of(ctx)
    if init_from not in (None, "auto", "champion", "none"):
        raise typer.BadParameter("--init-from must be auto, champion or none")
    out = retrain(settings, trigger_id, quick=quick, init_from=init_from, since_ms=since_ms)
    typer.echo(
        f"retraining {trigger_id}: {out.status}: {out.reason}"
        + (f" (challenger {out.challenger_version})" if out.challenger_version else "")
    )
    if out.exit_code:
        raise typer.Exit(out.exit_code)
