"""`wearmon train` and `wearmon evaluate`."""

from __future__ import annotations

import typer

from wearmon.cli.common import settings_of


def _progress(label: str, epoch: int, logs: dict[str, float]) -> None:
    shown = "  ".join(
        f"{k} {v:.4f}"
        for k, v in logs.items()
        if k in ("loss", "accuracy", "val_loss", "val_accuracy")
    )
    typer.echo(f"[{label}] epoch {epoch + 1:>3}  {shown}", err=True)


def train_cmd(
    ctx: typer.Context,
    data: str = typer.Option(
        "seglearn",
        "--data",
        help="seglearn | adamsense:PATH | recording:[SUBJECT=]PATH[,PATH][;...]",
    ),
    cv: int = typer.Option(0, "--cv", help="K-fold cross-validation by subject (no registration)."),
    preset: str = typer.Option(
        None,
        "--preset",
        help="Named recipe: default (quick) | accurate (the best 5-fold CV recipe, "
        "docs/training.md; about 3 min per training on 2 cores). Flags given override it.",
    ),
    epochs: int = typer.Option(
        None, "--epochs", help="Maximum epochs (early stopping may end sooner)."
    ),
    batch_size: int = typer.Option(None, "--batch-size"),
    filters: str = typer.Option(None, "--filters", help="Conv filters per block, e.g. 32,64."),
    kernel: int = typer.Option(None, "--kernel", help="Conv kernel size."),
    lstm_units: int = typer.Option(None, "--lstm-units"),
    lstm_layers: int = typer.Option(None, "--lstm-layers"),
    dropout: float = typer.Option(None, "--dropout"),
    learning_rate: float = typer.Option(None, "--lr"),
    patience: int = typer.Option(None, "--patience"),
    no_augment: bool = typer.Option(
        False, "--no-augment", help="No rotation/scaling augmentation."
    ),
    mirror: bool = typer.Option(
        False, "--mirror", help="Mirror augmentation (left/right wrist: -Ax, -Gy, -Gz)."
    ),
    mirror_tta: bool = typer.Option(
        False, "--mirror-tta", help="Serve the mean of p(window) and p(mirrored window)."
    ),
    ensemble: int = typer.Option(
        None, "--ensemble", help="Members (seeds) averaged into one served model."
    ),
    time_warp: float = typer.Option(
        None, "--time-warp", help="Speed augmentation: factors in [1-w, 1+w] (e.g. 0.2)."
    ),
    rotate_deg: float = typer.Option(
        None, "--rotate-deg", help="Largest random rotation of a training window (default 20)."
    ),
    schedule: str = typer.Option(None, "--schedule", help="Learning rate: plateau | cosine."),
    label_smoothing: float = typer.Option(None, "--label-smoothing"),
    val_fraction: float = typer.Option(
        None,
        "--val-fraction",
        help="Share of training subjects held out for early stopping (default 0.1); 0: fixed "
        "epochs.",
    ),
    train_hop: int = typer.Option(
        None, "--train-hop", help="Hop of training windows in samples (default 50)."
    ),
    test_fraction: float = typer.Option(0.2, "--test-fraction", help="Share of subjects held out."),
    subjects: str = typer.Option(None, "--subjects", help="Only these subjects, e.g. 1,2,3."),
    init_from: str = typer.Option(
        None, "--init-from", help="Fine-tune from a version, alias or .keras file."
    ),
    freeze_conv: bool = typer.Option(
        False, "--freeze-conv", help="Freeze conv layers (with --init-from)."
    ),
    seed: int = typer.Option(None, "--seed"),
    no_register: bool = typer.Option(False, "--no-register", help="Track but do not register."),
) -> None:
    """Train the 1D-CNN-BiLSTM (tracked in MLflow, registered with metadata and reference
    profile); with --cv K, estimate accuracy by subject-grouped K-fold cross-validation."""
    from trainer.train import cross_validate, train, train_options

    settings = settings_of(ctx)
    overrides = {
        "epochs": epochs,
        "batch_size": batch_size,
        "kernel_size": kernel,
        "lstm_units": lstm_units,
        "lstm_layers": lstm_layers,
        "dropout": dropout,
        "learning_rate": learning_rate,
        "patience": patience,
        "seed": seed,
        "ensemble": ensemble,
        "schedule": schedule,
        "label_smoothing": label_smoothing,
        "time_warp": time_warp,
        "rotate_deg": rotate_deg,
        "val_fraction": val_fraction,
        "train_hop": train_hop,
        # switches: given = on; not given = the preset's value
        "conv_filters": [int(v) for v in filters.split(",") if v.strip()] if filters else None,
        "augment": False if no_augment else None,
        "mirror": True if mirror else None,
        "mirror_tta": True if mirror_tta else None,
    }
    if freeze_conv and not init_from:
        raise typer.BadParameter("--freeze-conv needs --init-from")
    opts = train_options(
        preset,
        overrides,
        data=data,
        test_fraction=test_fraction,
        subjects=tuple(s.strip() for s in subjects.split(",")) if subjects else None,
        init_from=init_from,
        freeze_conv=freeze_conv,
        register=not no_register,
    )
    if cv:
        s = cross_validate(settings, opts, cv, progress=_progress)
        for r in s["folds"]:
            typer.echo(
                f"fold {r['fold']}  test subjects {','.join(r['test_subjects']):<8} "
                f"accuracy {r['accuracy']:.4f}  macro-F1 {r['macro_f1']:.4f}  "
                f"{r['seconds']:.0f} s ({r['epochs']} epochs)"
            )
        typer.echo(
            f"{cv}-fold CV by subject: accuracy {s['accuracy_mean']:.4f} ± {s['accuracy_std']:.4f}"
            f", macro-F1 {s['macro_f1_mean']:.4f} ± {s['macro_f1_std']:.4f}, "
            f"{s['seconds_mean']:.0f} ± {s['seconds_std']:.0f} s per fold  ({s['path']})"
        )
        return
    res = train(settings, opts, progress=_progress)
    if res.metrics:
        typer.echo(
            f"held-out subjects {','.join(res.split.test or res.split.val)}: "
            f"accuracy {res.metrics['accuracy']:.4f}, macro-F1 {res.metrics['macro_f1']:.4f}"
        )
    typer.echo(f"run {res.run_id}  {res.seconds:.0f} s")
    if res.version:
        from trainer.registry import CHAMPION, alias_version

        role = (
            "the champion (there was none)"
            if alias_version(settings, CHAMPION) == res.version
            else f"the challenger: gate it with `wearmon model promote {res.version}`"
        )
        typer.echo(f"registered {settings.model_name} version {res.version}, {role}")
    if res.report_dir:
        typer.echo(f"report: {res.report_dir}")


def evaluate_cmd(
    ctx: typer.Context,
    model: str = typer.Option("champion", "--model", help="Version, alias or 'latest'."),
    data: str = typer.Option(None, "--data", help="Data source (default: the model's own)."),
    subjects: str = typer.Option(
        None, "--subjects", help="Subjects to evaluate on (default: the model's test subjects)."
    ),
) -> None:
    """Evaluate a registered version: metrics JSON, Markdown and PNG, logged to MLflow."""
    from trainer.evaluate_run import evaluate_version

    settings = settings_of(ctx)
    res = evaluate_version(
        settings,
        model,
        data=data,
        subjects=[s.strip() for s in subjects.split(",")] if subjects else None,
    )
    m = res["metrics"]
    typer.echo(
        f"version {res['version']} on {res['data']} subjects {','.join(res['subjects'])}: "
        f"{m['n']} windows, accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f}, "
        f"kappa {m['cohen_kappa']:.4f}, MCC {m['mcc']:.4f}, ROC-AUC {m['roc_auc_ovr']:.4f}"
    )
    typer.echo(f"report: {res['report_dir']}")


def register(app: typer.Typer) -> None:
    """Add this module's top-level command(s) to the root app."""
    app.command("train")(train_cmd)
    app.command("evaluate")(evaluate_cmd)
