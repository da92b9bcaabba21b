"""Training runs and subject-grouped cross-validation, tracked in MLflow.

``train`` fits one model on training subjects (early stopping on validation subjects),
evaluates it on held-out test subjects, and registers it with its metadata and reference
profile. ``cross_validate`` estimates accuracy with K folds of whole subjects.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from trainer.datasets import (
    Split,
    WindowDataset,
    group_kfold,
    leave_subjects_out,
    load_recordings,
    metadata,
    subject_split,
    window_dataset,
)
from trainer.model import ModelConfig
from wearmon.errors import ConfigError, WearmonError
from wearmon.settings import Settings
from wearmon.signals.normalize import Scaler

log = logging.getLogger(__name__)

EpochCallback = Callable[[str, int, dict[str, float]], None]


@dataclass(frozen=True)
class TrainOptions:
    data: str = "seglearn"
    config: ModelConfig = field(default_factory=ModelConfig)
    train_hop: int | None = 50  # smaller than the stream hop: overlapping windows as augmentation
    test_fraction: float = 0.2
    val_fraction: float = 0.1
    subjects: tuple[str, ...] | None = None  # restrict to these subjects (tests, quick runs)
    max_windows_per_subject: int | None = None  # a small slice (tests)
    init_from: str | None = None  # registry version/alias, or a .keras path
    freeze_conv: bool = False
    register: bool = True
    experiment: str = "wearmon-train"
    run_name: str | None = None
    #: Prebuilt windows (the retraining pool, trainer.pool) instead of loading ``data``.
    windows: Data | None = None
    #: A fixed subject split instead of ``subject_split`` (retraining keeps the champion's
    #: held-out base subjects out of training).
    split: Split | None = None
    tags: dict[str, str] = field(default_factory=dict)


#: Named recipes for ``wearmon train --preset NAME`` (and ``benchmarks/bench_train.py``):
#: ModelConfig fields plus the TrainOptions fields in ``PRESET_OPTION_FIELDS``. "default" is
#: quick (the demo's); "accurate" is the best recipe of the subject-grouped 5-fold CV on the
#: seglearn watch data (docs/training.md, recipe N: 90.5 % accuracy with seed 42, 90.1 % on
#: average over seeds 42-44).
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "accurate": {
        "epochs": 40,
        "schedule": "cosine",
        "val_fraction": 0.0,
        "mirror": True,
        "mirror_tta": True,
        "time_warp": 0.2,
        "rotate_deg": 30.0,
        "label_smoothing": 0.1,
        "conv_filters": [64, 128],
        "lstm_units": 64,
    },
}
PRESET_OPTION_FIELDS = ("val_fraction", "train_hop")


def train_options(
    preset: str | None = None, overrides: dict[str, Any] | None = None, **options: Any
) -> TrainOptions:
    """TrainOptions from a named preset, then ``overrides`` on top (a None value = not set).
    Keys of both: ModelConfig fields and ``PRESET_OPTION_FIELDS``; ``options``: any other
    TrainOptions field (data, subjects, ...)."""
    name = preset or "default"
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    merged = {**PRESETS[name], **{k: v for k, v in (overrides or {}).items() if v is not None}}
    known = set(ModelConfig.__dataclass_fields__) | set(PRESET_OPTION_FIELDS)
    unknown = sorted(set(merged) - known)
    if unknown:
        raise ConfigError(f"not a training setting: {', '.join(unknown)}")
    opt = {k: merged.pop(k) for k in PRESET_OPTION_FIELDS if k in merged}
    config = ModelConfig.from_dict({**ModelConfig().to_dict(), **merged})
    return TrainOptions(config=config, **opt, **options)


@dataclass
class TrainResult:
    run_id: str
    version: str | None
    metrics: dict[str, Any]
    split: Split
    report_dir: Path | None = None
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class Data:
    """Windows at the stream hop (evaluation) and at the training hop (training)."""

    eval: WindowDataset
    train: WindowDataset


def load_data(settings: Settings, opts: TrainOptions, classes: list[str] | None = None) -> Data:
    recs = load_recordings(opts.data)
    if opts.subjects is not None:
        wanted = set(opts.subjects)
        recs = [r for r in recs if str(r.subject) in wanted]
        if not recs:
            raise ConfigError(f"no recordings of subjects {sorted(wanted)} in {opts.data}")
    ev = window_dataset(recs, settings.signal, classes=classes, source=opts.data)
    if opts.train_hop and opts.train_hop != settings.signal.hop:
        sig = settings.signal.model_copy(update={"hop": int(opts.train_hop)})
        tr = window_dataset(recs, sig, classes=ev.classes, source=opts.data)
    else:
        tr = ev
    if opts.max_windows_per_subject:
        ev, tr = _slice(ev, opts.max_windows_per_subject), _slice(tr, opts.max_windows_per_subject)
    return Data(eval=ev, train=tr)


def _slice(ds: WindowDataset, per_subject: int) -> WindowDataset:
    rng = np.random.default_rng(0)
    keep: list[int] = []
    for s in ds.subjects:
        idx = np.flatnonzero(ds.groups == s)
        keep += sorted(rng.choice(idx, size=min(per_subject, len(idx)), replace=False).tolist())
    return ds.subset(np.asarray(sorted(keep), dtype=np.int64))


@dataclass
class _Init:
    model: Any
    scaler: Scaler | None
    classes: list[str] | None
    source: str


def _load_init(settings: Settings, ref: str) -> _Init:
    from trainer import registry
    from trainer.inspect import load_keras

    p = Path(ref)
    if p.suffix in (".keras", ".h5") and p.is_file():
        return _Init(load_keras(p), None, None, str(p))
    version = registry.resolve(settings, ref)
    d = registry.version_dir(settings, version)
    meta = json.loads((d / registry.METADATA_FILE).read_text())
    return _Init(
        load_keras(registry.model_file(d)),
        Scaler.from_dict(meta["scaler"]),
        list(meta["classes"]),
        f"{settings.model_name}/{version}",
    )


def _adapt_head(model: Any, n_classes: int) -> Any:
    """Replace the last Dense layer when the class count changes (fine-tuning)."""
    import keras

    if int(model.output_shape[-1]) == n_classes:
        return model
    penultimate = model.layers[-2].output
    out = keras.layers.Dense(n_classes, activation="softmax", name="probs_finetune")(penultimate)
    return keras.Model(model.inputs, out, name=f"{model.name}_finetune")


def _fit_one(
    settings: Settings,
    opts: TrainOptions,
    train: WindowDataset,
    val: WindowDataset | None,
    *,
    init: _Init | None,
    checkpoint_dir: Path | None,
    on_epoch: Callable[[int, dict[str, float]], None] | None,
) -> tuple[Any, Scaler, Any]:
    """Fit one model, or ``config.ensemble`` members (seeds seed, seed+1, ...) combined
    into one Keras model that averages their probabilities. Returns (model, scaler, the
    first member's FitResult with ``seconds`` and ``epochs`` summed over members)."""
    from trainer import model as M

    cfg = opts.config
    n = len(train.classes)
    k = max(1, int(cfg.ensemble))
    if init is not None and k > 1:
        raise ConfigError("fine-tuning (--init-from) trains one model: use ensemble 1")
    scaler = (init.scaler if init is not None else None) or Scaler.fit(train.x)
    members: list[Any] = []
    results: list[Any] = []
    for j in range(k):
        mcfg = replace(cfg, seed=cfg.seed + j, ensemble=1)
        M.set_seeds(mcfg.seed)
        if init is not None:
            net = _adapt_head(init.model, n)
            if opts.freeze_conv:
                log.info("froze %d convolution layers", M.freeze_conv(net))
        else:
            net = M.build_model(mcfg, n, window=settings.signal.window)
        M.compile_model(net, mcfg, steps_per_epoch=M.steps_per_epoch(len(train), mcfg))
        epoch_cb = on_epoch
        if on_epoch is not None and k > 1:
            offset = j * cfg.epochs

            def epoch_cb(epoch: int, logs: dict[str, float], _o: int = offset) -> None:
                assert on_epoch is not None
                on_epoch(_o + epoch, logs)

        res = M.fit(
            net,
            mcfg,
            scaler,
            train.x,
            train.y,
            val.x if val is not None and len(val) else None,
            val.y if val is not None and len(val) else None,
            n_classes=n,
            checkpoint_dir=checkpoint_dir / f"member_{j}"
            if checkpoint_dir and k > 1
            else checkpoint_dir,
            on_epoch=epoch_cb,
        )
        members.append(net)
        results.append(res)
        if k > 1:
            log.info(
                "ensemble member %d/%d: %d epochs, %.0f s",
                j + 1,
                k,
                len(res.history.get("loss", [])),
                res.seconds,
            )
    first = results[0]
    first.seconds = float(sum(r.seconds for r in results))
    first.epochs = int(sum(len(r.history.get("loss", [])) for r in results))
    net = M.average_models(members, window=settings.signal.window)
    if cfg.mirror_tta:
        net = M.with_mirror_tta(net, scaler, window=settings.signal.window)
    first.model = net
    first.members = members if k > 1 else []
    return net, scaler, first


def train(
    settings: Settings, opts: TrainOptions, *, progress: EpochCallback | None = None
) -> TrainResult:
    """One tracked training run; registers the model version unless ``register=False``."""
    import mlflow

    from trainer import evaluate as E
    from trainer import model as M
    from trainer import registry

    t0 = time.perf_counter()
    init = _load_init(settings, opts.init_from) if opts.init_from else None
    data = opts.windows or load_data(settings, opts, classes=init.classes if init else None)
    split = opts.split or subject_split(
        data.eval.subjects,
        test_fraction=opts.test_fraction,
        val_fraction=opts.val_fraction,
        seed=opts.config.seed,
    )
    train_ds = data.train.of_subjects(split.train)
    val_ds = data.eval.of_subjects(split.val) if split.val else None
    test_ds = data.eval.of_subjects(split.test) if split.test else None
    exp = registry.experiment_id(settings, opts.experiment)
    with (
        tempfile.TemporaryDirectory(prefix="wearmon-train-") as tmp,
        mlflow.start_run(experiment_id=exp, run_name=opts.run_name) as run,
    ):
        work = Path(tmp)
        mlflow.log_params(_params(opts, data, split))
        mlflow.set_tags(
            {"data_hash": data.train.data_hash(), "init_from": opts.init_from or "", **opts.tags}
        )

        def on_epoch(epoch: int, logs: dict[str, float]) -> None:
            mlflow.log_metrics({k: v for k, v in logs.items() if np.isfinite(v)}, step=epoch)
            if progress is not None:
                progress("train", epoch, logs)

        net, scaler, fit_res = _fit_one(
            settings,
            opts,
            train_ds,
            val_ds,
            init=init,
            checkpoint_dir=work / "checkpoints",
            on_epoch=on_epoch,
        )
        holdout = test_ds if test_ds is not None and len(test_ds) else val_ds
        metrics: dict[str, Any] = {}
        report_dir = work / "evaluation"
        if holdout is not None and len(holdout):
            proba = M.predict_proba(net, holdout.x, scaler)
            metrics = E.compute_metrics(holdout.y, proba, holdout.classes)
            E.write_report(
                metrics,
                report_dir,
                history=fit_res.history,
                title=f"Held-out subjects {', '.join(holdout.subjects)}",
            )
            mlflow.log_metrics(E.scalar_metrics(metrics, "test_"))
            mlflow.log_artifacts(str(report_dir), artifact_path="evaluation")
        mlflow.log_metrics({"train_seconds": fit_res.seconds, "best_epoch": fit_res.best_epoch})
        version = None
        if opts.register:
            meta = metadata(
                data.eval.of_subjects(split.train),
                scaler=scaler.to_dict(),
                split=split,
                train_hop=data.train.signal.hop,
                extra={
                    "model_config": opts.config.to_dict(),
                    "init_from": init.source if init else None,
                    "freeze_conv": opts.freeze_conv,
                    "train_data_hash": train_ds.data_hash(),
                    "run_id": run.info.run_id,
                    "test_metrics": E.scalar_metrics(metrics) if metrics else {},
                },
            )
            model_dir = registry.save_model_dir(work / "model", net, meta)
            write_monitoring_files(model_dir, data.eval.of_subjects(split.train))
            version = registry.register_dir(
                settings,
                model_dir,
                run_id=run.info.run_id,
                description=f"trained on {opts.data}, subjects {', '.join(split.train)}",
            )
            _first_champion_or_challenger(settings, version, run.info.run_id)
        seconds = time.perf_counter() - t0
        saved_reports = None
        if metrics:
            saved_reports = settings.data_dir / "reports" / f"run-{run.info.run_id}"
            E.write_report(metrics, saved_reports, history=fit_res.history)
        return TrainResult(
            run_id=run.info.run_id,
            version=version,
            metrics=metrics,
            split=split,
            report_dir=saved_reports,
            history=fit_res.history,
            seconds=seconds,
        )


def write_monitoring_files(model_dir: Path, train_windows: WindowDataset) -> None:
    """The reference profile (per-window features of the training windows, with their
    ``subject``) and its drift calibration (``monitoring.calibration.calibrate``), beside
    the model files."""
    from trainer import registry

    profile = registry.reference_profile(train_windows.x)
    subjects = np.asarray([str(g) for g in train_windows.groups], dtype=object)
    profile["subject"] = subjects.astype(str)
    profile.to_parquet(model_dir / registry.PROFILE_FILE, index=False)
    try:
        from monitoring.calibration import CALIBRATION_FILE, calibrate
    except ImportError:  # the monitor package is not installed
        log.warning("monitoring.calibration not available: no drift calibration stored")
        return
    try:
        cal = calibrate(profile.drop(columns=["subject"]), subjects)
    except WearmonError as exc:  # e.g. too few training subjects to calibrate on
        log.warning("no drift calibration stored with the version: %s", exc)
        return
    (model_dir / CALIBRATION_FILE).write_text(json.dumps(cal, indent=2))


def _first_champion_or_challenger(settings: Settings, version: str, run_id: str) -> None:
    """The first version becomes the champion (through trainer.promotion, which publishes
    and records it); every later one is the challenger, awaiting the gate."""
    from trainer import promotion, registry

    if registry.alias_version(settings, registry.CHAMPION) is None:
        promotion.set_champion(
            settings,
            version,
            reason="first version: no champion yet",
            decision="initial",
            trigger_id=f"train-{run_id[:12]}",
        )
        log.info("no champion yet: version %s is the champion", version)
    else:  # awaiting the promotion gate (`wearmon model promote`, the drift loop)
        registry.set_alias(settings, registry.CHALLENGER, version)
        log.info("version %s is the challenger", version)


def cross_validate(
    settings: Settings,
    opts: TrainOptions,
    k: int,
    *,
    progress: EpochCallback | None = None,
    only_folds: Sequence[int] | None = None,
) -> dict[str, Any]:
    """K folds of whole subjects; each fold trains on the others and is evaluated on its
    held-out subjects at the stream hop. With ``val_fraction > 0`` one inner group of the
    training subjects is held out for early stopping; with ``val_fraction <= 0`` every
    training subject is trained on for a fixed number of epochs (no early stopping; the test
    subjects are never looked at before the fold's model is final). ``only_folds`` runs a
    subset of the folds (quick screens). Tracked as one MLflow parent run with a nested run
    per fold. Registers nothing."""
    import mlflow

    from trainer import evaluate as E
    from trainer import model as M
    from trainer import registry

    data = load_data(settings, opts)
    folds = group_kfold(data.eval.groups, k)
    exp = registry.experiment_id(settings, opts.experiment)
    rows: list[dict[str, Any]] = []
    with mlflow.start_run(experiment_id=exp, run_name=opts.run_name or f"cv{k}") as parent:
        mlflow.log_params({**_params(opts, data, None), "cv_folds": k})
        for i, (train_subj, test_subj) in enumerate(folds):
            if only_folds is not None and i not in only_folds:
                continue
            if opts.val_fraction > 0:
                tr_subj, val_subj = leave_subjects_out(
                    train_subj, opts.val_fraction, opts.config.seed + i
                )
            else:
                tr_subj, val_subj = list(train_subj), []
            tr = data.train.of_subjects(tr_subj)
            va = data.eval.of_subjects(val_subj)
            te = data.eval.of_subjects(test_subj)
            with mlflow.start_run(experiment_id=exp, run_name=f"fold {i}", nested=True):
                mlflow.log_params(
                    {
                        "fold": i,
                        "test_subjects": ",".join(test_subj),
                        "val_subjects": ",".join(val_subj),
                    }
                )

                def on_epoch(epoch: int, logs: dict[str, float], _i: int = i) -> None:
                    mlflow.log_metrics(
                        {k_: v for k_, v in logs.items() if np.isfinite(v)}, step=epoch
                    )
                    if progress is not None:
                        progress(f"fold {_i}", epoch, logs)

                t0 = time.perf_counter()
                net, scaler, res = _fit_one(
                    settings,
                    replace(opts, init_from=None),
                    tr,
                    va,
                    init=None,
                    checkpoint_dir=None,
                    on_epoch=on_epoch,
                )
                secs = time.perf_counter() - t0
                m = E.compute_metrics(te.y, M.predict_proba(net, te.x, scaler), te.classes)
                # each member alone, for reporting only (nothing is selected on it)
                member_acc = []
                for member in res.members:
                    if opts.config.mirror_tta:
                        member = M.with_mirror_tta(member, scaler, window=settings.signal.window)
                    pm = M.predict_proba(member, te.x, scaler)
                    member_acc.append(float(np.mean(pm.argmax(axis=1) == te.y)))
                mlflow.log_metrics(
                    {
                        **E.scalar_metrics(m, "test_"),
                        "fold_seconds": secs,
                        "best_epoch": res.best_epoch,
                    }
                )
            row = {
                "fold": i,
                "test_subjects": test_subj,
                "val_subjects": val_subj,
                "n_test": len(te),
                "n_train": len(tr),
                "seconds": secs,
                "epochs": res.epochs,
                "best_epoch": res.best_epoch,
                **E.scalar_metrics(m),
                "member_accuracy": member_acc,
            }
            rows.append(row)
            log.info(
                "fold %d (test %s): accuracy %.4f macro-F1 %.4f in %.0f s",
                i,
                ",".join(test_subj),
                row["accuracy"],
                row["macro_f1"],
                secs,
            )
            _clear_session()
        summary: dict[str, Any] = {
            "folds": rows,
            "k": k,
            "val_fraction": opts.val_fraction,
            "only_folds": list(only_folds) if only_folds is not None else None,
            "data": opts.data,
            "config": opts.config.to_dict(),
            "train_hop": data.train.signal.hop,
            "n_windows": len(data.eval),
        }
        for key in ("accuracy", "macro_f1", "weighted_f1", "cohen_kappa", "seconds"):
            vals = np.asarray([r[key] for r in rows], dtype=np.float64)
            summary[f"{key}_mean"], summary[f"{key}_std"] = float(vals.mean()), float(vals.std())
        mlflow.log_metrics({k_: v for k_, v in summary.items() if k_.endswith(("_mean", "_std"))})
        out = settings.data_dir / "reports" / f"cv-{parent.info.run_id}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(summary, indent=2))
        mlflow.log_artifact(str(out))
        summary["run_id"] = parent.info.run_id
        summary["path"] = str(out)
    return summary


def _clear_session() -> None:
    import keras

    keras.backend.clear_session()


def _params(opts: TrainOptions, data: Data, split: Split | None) -> dict[str, Any]:
    p: dict[str, Any] = {f"model.{k}": v for k, v in opts.config.to_dict().items()}
    p.update(
        {
            "data": opts.data,
            "train_hop": data.train.signal.hop,
            "hop": data.eval.signal.hop,
            "window": data.eval.signal.window,
            "n_windows": len(data.eval),
            "n_train_windows": len(data.train),
            "classes": ",".join(data.eval.classes),
            "init_from": opts.init_from or "",
            "freeze_conv": opts.freeze_conv,
        }
    )
    if split is not None:
        p.update({f"split.{k}": ",".join(v) for k, v in split.to_dict().items()})
    return p
