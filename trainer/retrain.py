"""A retraining: train a challenger from the training pool on the ``wearmon train`` code path
and let :func:`trainer.promotion.decide_and_promote` decide.

:func:`retrain` writes the Redis hash ``retrain:{trigger_id}`` (``status=running`` at the
start; ``promoted``, ``refused`` or ``failed`` at the end, with the reason, the challenger
and champion versions, the training run and timestamps; TTL 30 days, monitoring.keys).
``wearmon model retrain --trigger-id ID`` runs it in its own process (the monitor starts it
at a lower CPU priority) and exits 0 for promoted/refused, 1 for failed.

The challenger is fine-tuned from the champion (``lifecycle.init_from = "champion"``, keeping
its classes and normalisation) or trained from scratch (``"none"``); by default (``"auto"``)
a ``--quick`` retraining fine-tunes and a full one starts from scratch, which is what the
measured comparison in docs/training.md favours. Held out from training, for the gate: the
champion's own test subjects of the base data (the same windows for both models) and the
last part in time of every new labelled recording (:mod:`trainer.pool`). With no labelled
new data nothing is trained: the answer would be a refusal anyway (never promoted without
labels).
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trainer.datasets import Split, leave_subjects_out
from wearmon.errors import WearmonError
from wearmon.settings import Settings, redis_errors

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrainOutcome:
    trigger_id: str
    status: str  # promoted | refused | failed
    reason: str
    challenger_version: str | None = None
    champion_version: str | None = None
    run_id: str | None = None
    started_ms: int = 0
    finished_ms: int = 0
    #: how the new data's held-out part was chosen ("devices a,b" | "time" | "none")
    held_out: str = ""

    @property
    def exit_code(self) -> int:
        return 1 if self.status == "failed" else 0


def retrain_key(trigger_id: str) -> str:
    """The retrain:{trigger_id} hash (named in monitoring.keys, which the monitor reads)."""
    from monitoring.keys import retrain_key as key

    return key(trigger_id)


def _now_ms() -> int:
    return int(time.time() * 1000)


def write_status(client: Any, settings: Settings, trigger_id: str, **fields: Any) -> None:
    from monitoring.keys import RETRAIN_TTL_S

    if client is None:
        return
    key = retrain_key(trigger_id)
    mapping = {k: "" if v is None else str(v) for k, v in fields.items()}
    pipe = client.pipeline()
    pipe.hset(key, mapping=mapping)
    pipe.expire(key, RETRAIN_TTL_S)
    pipe.execute()


def redis_client(settings: Settings) -> Any:

    return settings.redis.connect(socket_timeout=5.0)


def _limit_threads(n: int) -> None:
    """At most ``n`` TensorFlow threads in this process (0: leave TensorFlow's default).
    Only possible before TensorFlow has started its runtime; later it is logged and left."""
    if n <= 0:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(n)
    except RuntimeError as exc:  # the runtime is already initialised in this process
        log.warning("cannot limit TensorFlow to %d threads here: %s", n, exc)


def reachable(connect: Callable[[], Any]) -> Any:
    """The client ``connect()`` makes when Redis answers, else None (logged): then there is
    no retrain status and no stream windows in the pool; the exit code still tells the
    result."""
    client = None
    try:
        client = connect()
        client.ping()
    except redis_errors() as exc:
        log.warning("Redis unreachable (%s): no retrain status, no stream windows", exc)
        if client is not None:
            client.close()
        return None
    return client


def retrain(
    settings: Settings,
    trigger_id: str,
    *,
    quick: bool = False,
    init_from: str | None = None,
    client: Any = None,
    config_overrides: dict[str, Any] | None = None,
    since_ms: int | None = None,
) -> RetrainOutcome:
    """One retraining (module doc). ``init_from``: ``champion`` | ``none`` (default
    ``lifecycle.init_from``); ``client``: a Redis client (default: from the settings);
    ``config_overrides``: ModelConfig fields on top of the preset (tests: a tiny model);
    ``since_ms``: the drift's onset (trainer.pool: the new data start there)."""
    _limit_threads(settings.lifecycle.threads)
    own = client is None
    client = reachable(lambda: redis_client(settings)) if own else client
    started = _now_ms()
    write_status(client, settings, trigger_id, status="running", started_ms=started, reason="")
    try:
        out = _retrain(
            settings, trigger_id, quick, init_from, client, config_overrides or {}, since_ms
        )
    except WearmonError as exc:
        out = RetrainOutcome(trigger_id, "failed", str(exc))
    except Exception as exc:  # not hidden: the traceback is logged, the status says failed
        text = str(exc).strip()
        reason = f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
        log.error("retraining %s failed:\n%s", trigger_id, traceback.format_exc())
        out = RetrainOutcome(trigger_id, "failed", reason)
    out = RetrainOutcome(**{**out.__dict__, "started_ms": started, "finished_ms": _now_ms()})
    write_status(
        client,
        settings,
        trigger_id,
        status=out.status,
        reason=out.reason,
        challenger_version=out.challenger_version,
        champion_version=out.champion_version,
        run_id=out.run_id,
        started_ms=out.started_ms,
        finished_ms=out.finished_ms,
        held_out=out.held_out,
    )
    log.info("retraining %s: %s: %s", trigger_id, out.status, out.reason)
    if own and client is not None:
        client.close()
    return out


def base_holdout_subjects(meta: dict[str, Any] | None, subjects: list[str], seed: int) -> list[str]:
    """The champion's own held-out base subjects when it has them, else a seeded 20 %."""
    test = list(((meta or {}).get("split") or {}).get("test") or [])
    test = [s for s in test if s in subjects]
    return test or leave_subjects_out(subjects, 0.2, seed)[1]


def base_val_subjects(
    meta: dict[str, Any] | None, keep: list[str], val_fraction: float, seed: int
) -> list[str]:
    """The base subjects a retraining validates on (early stopping), out of ``keep`` (the
    base subjects it may train on). The champion's own validation subjects when its
    metadata has a split, none when it was trained without any: the challenger then
    trains on every base subject the champion trained on, and more (a challenger that
    gave up one of the champion's five training people for validation lost 3 points on
    the base windows in two demo runs of four and was refused). Without a champion split:
    ``val_fraction`` of ``keep`` (seeded), when more than two subjects are left."""
    split = (meta or {}).get("split")
    if split is not None:
        return [s for s in split.get("val") or [] if s in keep]
    if val_fraction > 0 and len(keep) > 2:
        return leave_subjects_out(keep, val_fraction, seed)[1]
    return []


def _retrain(
    settings: Settings,
    trigger_id: str,
    quick: bool,
    init_from: str | None,
    client: Any,
    overrides: dict[str, Any],
    since_ms: int | None,
) -> RetrainOutcome:
    from trainer import pool as P
    from trainer import promotion, registry
    from trainer.train import Data, train, train_options

    champ = registry.alias_version(settings, registry.CHAMPION)
    mode = init_from or settings.lifecycle.init_from
    if mode == "auto":  # by the measurements in docs/training.md
        mode = "champion" if quick else "none"
    if mode not in ("champion", "none"):
        raise WearmonError(f"--init-from must be auto, champion or none, not {mode!r}")
    meta = registry.read_metadata(settings, champ) if champ is not None else None
    finetune = mode == "champion" and champ is not None
    preset_opts = train_options(settings.lifecycle.preset)
    hop = preset_opts.train_hop
    pool = P.load_pool(
        settings,
        classes=list(meta["classes"]) if finetune and meta else None,
        train_hop=hop,
        redis_client=client,
        since_ms=since_ms,
    )
    if not len(pool.base_eval):
        raise WearmonError(
            f"the base data {settings.lifecycle.base_data} has no windows of the champion's "
            "classes: retrain with --init-from none, or set lifecycle.base_data"
        )
    if pool.n_new_holdout < settings.lifecycle.min_new_windows:
        reason = (
            f"no labelled new data: {pool.n_new_holdout} held-out new windows, at least "
            f"{settings.lifecycle.min_new_windows} needed; nothing trained (never promoted "
            "without labels)"
        )
        promotion.record(
            settings,
            trigger_id=trigger_id,
            version="",
            champion=champ,
            decision="refused",
            reason=reason,
            params=_lineage(pool, "", mode, quick),
            scores={},
        )
        return RetrainOutcome(
            trigger_id,
            "refused",
            reason,
            champion_version=champ,
            held_out=str(pool.manifest["stream"].get("held_out_by", "")),
        )
    holdout_subj = base_holdout_subjects(meta, pool.base_eval.subjects, preset_opts.config.seed)
    keep = [s for s in pool.base_eval.subjects if s not in holdout_subj]
    val_subj = base_val_subjects(meta, keep, preset_opts.val_fraction, preset_opts.config.seed + 1)
    train_subj = [s for s in keep if s not in val_subj]
    data, split = _training_data(pool, Split(train_subj, val_subj, holdout_subj), Data)
    cfg = dict(overrides)
    if quick:
        cfg.setdefault("epochs", settings.lifecycle.quick_epochs)
    opts = train_options(
        settings.lifecycle.preset,
        cfg,
        data="pool",
        windows=data,
        split=split,
        init_from=champ if finetune else None,
        run_name=f"retrain {trigger_id}",
        tags={"trigger_id": trigger_id, "retrain": "true"},
    )
    res = train(settings, opts)
    if res.version is None:
        raise WearmonError("the retraining registered no version")
    base_ho = pool.base_eval.of_subjects(holdout_subj)
    new_ho = pool.new.holdout
    decision = promotion.decide_and_promote(
        settings,
        res.version,
        base_holdout=promotion.Holdout.of(
            base_ho, f"{pool.base_eval.source}:{','.join(holdout_subj)}"
        ),
        new_holdout=promotion.Holdout.of(new_ho, "pool:new") if new_ho is not None else None,
        trigger_id=trigger_id,
        lineage=_lineage(pool, res.run_id, mode, quick),
    )
    return RetrainOutcome(
        trigger_id,
        "promoted" if decision.promoted else "refused",
        decision.reason,
        challenger_version=res.version,
        champion_version=champ,
        run_id=res.run_id,
        held_out=str(pool.manifest["stream"].get("held_out_by", "")),
    )


def _training_data(pool: Any, base: Split, data_cls: Any) -> tuple[Any, Split]:
    """The pool's windows (the held-out new part is never in its training sets) and the
    split of the retraining: ``base`` (the base subjects' split) with the new data's
    training subjects added to its training subjects."""
    from trainer.pool import concat

    classes = pool.base_eval.classes
    ev = concat([pool.base_eval, pool.new.train_eval], classes)
    tr = concat([pool.base_train, pool.new.train], classes)
    new_subj = sorted({str(g) for g in (pool.new.train_eval.groups if pool.new.train_eval else [])})
    split = Split(train=sorted(base.train + new_subj), val=list(base.val), test=list(base.test))
    return data_cls(eval=ev, train=tr), split


def _lineage(pool: Any, run_id: str, mode: str, quick: bool) -> dict[str, Any]:
    m = pool.manifest
    return {
        "train_run_id": run_id,
        "init_from": mode,
        "quick": quick,
        "pool.base": f"{m['base']['source']} sha256={m['base'].get('hash', '')}",
        "pool.incoming": [
            f"{','.join(r['files'])} sha256={r['sha256']}" for r in m["incoming"]["recordings"]
        ],
        "pool.incoming_skipped": m["incoming"]["skipped"],
        "pool.stream": f"{m['stream']['n']} windows sha256={m['stream'].get('hash', '')}",
        "pool.stream_since_ms": m["stream"].get("since_ms"),
        "pool.new_held_out_by": m["stream"].get("held_out_by"),
        "pool.new_train": f"{m['new_train']['n']} windows sha256={m['new_train'].get('hash', '')}",
        "pool.new_holdout": (
            f"{m['new_holdout']['n']} windows sha256={m['new_holdout'].get('hash', '')}"
        ),
    }
