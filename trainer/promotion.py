"""Promotion in one home: the only code that moves the ``champion`` alias.

:func:`decide_and_promote` evaluates a challenger and the champion on the same held-out
base windows and on a held-out part of the new labelled data, applies the pure rule
:func:`trainer.gate.decide`, and on success calls :func:`set_champion`. Every other path
that makes a version the champion (``wearmon train`` when there is none, ``model import
--champion``, ``model alias champion N``) calls :func:`set_champion` directly, with its
reason. :func:`set_champion` moves the alias (the old champion becomes ``previous``),
checks that the version carries its reference profile and drift calibration, publishes
the version on the Redis channel ``model:champion`` (workers swap at once instead of at
their next poll) and records the change. Every decision, refusals included, is recorded in
MLflow as a run of the experiment ``wearmon-promotion`` (trigger id, versions, their runs,
the data used with hashes, metrics, decision, reason), and tagged on the challenger's
version and training run.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trainer.gate import DEFAULT_METRICS, Decision, decide, label_metrics
from wearmon.settings import Settings

log = logging.getLogger(__name__)

EXPERIMENT = "wearmon-promotion"
PREVIOUS = "previous"


@dataclass(frozen=True)
class Holdout:
    """Labelled held-out windows (raw canonical units) and what they are, for the record."""

    x: np.ndarray
    labels: tuple[str, ...]
    source: str
    hash: str

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def of(cls, ds: Any, source: str | None = None) -> Holdout:
        """From a :class:`trainer.datasets.WindowDataset`."""
        return cls(
            x=ds.x,
            labels=tuple(ds.classes[i] for i in ds.y),
            source=source or ds.source,
            hash=ds.data_hash(),
        )


@dataclass(frozen=True)
class ChampionChange:
    version: str
    previous: str | None
    published: bool
    monitoring_files: dict[str, bool]


@dataclass(frozen=True)
class PromotionDecision:
    promoted: bool
    decision: str  # promoted | refused | dry_run
    reason: str
    challenger: str
    champion: str | None  # the champion the challenger was compared with
    trigger_id: str
    metrics: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    record_run_id: str | None = None
    change: ChampionChange | None = None


def new_trigger_id(kind: str = "manual") -> str:
    """An id for a promotion no drift trigger asked for (operator, first version)."""
    return f"{kind}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:6]}"


def _score(
    settings: Settings, version: str, holdouts: Mapping[str, Holdout | None]
) -> tuple[dict[str, dict[str, float] | None], tuple[str, ...]]:
    """label_metrics of ``version`` on each held-out set (None for an empty one), and the
    version's classes; the model is loaded once and predicts in batches."""
    from trainer.serving import load_version

    model = load_version(settings, version)
    out: dict[str, dict[str, float] | None] = {}
    for name, h in holdouts.items():
        if h is None or len(h) == 0:
            out[name] = None
            continue
        predicted, _ = model.predict(h.x)
        out[name] = label_metrics(h.labels, predicted)
    return out, tuple(model.classes)


def class_change(challenger: Sequence[str], champion: Sequence[str]) -> str | None:
    """Why a challenger cannot replace the champion through the gate when their classes
    differ (accuracies over different label sets do not compare, and whoever reads the
    predictions expects the champion's activities), or None when they are the same set."""
    gone = sorted(set(champion) - set(challenger))
    new = sorted(set(challenger) - set(champion))
    if not gone and not new:
        return None
    return (
        f"the challenger's classes differ from the champion's (only the champion: "
        f"{', '.join(gone) or '-'}; only the challenger: {', '.join(new) or '-'}); a new "
        "label set is an operator's decision (wearmon model alias champion VERSION)"
    )


def decide_and_promote(
    settings: Settings,
    challenger_version: str,
    *,
    base_holdout: Holdout,
    new_holdout: Holdout | None,
    trigger_id: str,
    margin: float | None = None,
    min_gain: float | None = None,
    min_new_windows: int | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    dry_run: bool = False,
    lineage: Mapping[str, Any] | None = None,
) -> PromotionDecision:
    """Gate ``challenger_version`` against the champion (see the module doc) and promote it
    when the rule says so. ``lineage``: what else to record (pool files and hashes, the
    training run). Refusals are recorded too; ``dry_run`` decides and records, moves nothing."""
    from trainer import registry

    lc = settings.lifecycle
    margin = lc.margin if margin is None else margin
    min_gain = lc.min_gain if min_gain is None else min_gain
    min_new = lc.min_new_windows if min_new_windows is None else min_new_windows
    challenger = str(challenger_version)
    champ = registry.alias_version(settings, registry.CHAMPION)
    holdouts = {"base": base_holdout, "new": new_holdout}
    ch, ch_classes = _score(settings, challenger, holdouts)
    ref: dict[str, Any] = {"base": None, "new": None}
    changed = None
    if champ is not None and champ != challenger:
        ref, champ_classes = _score(settings, champ, holdouts)
        changed = class_change(ch_classes, champ_classes)
    if champ == challenger:
        d = Decision(False, f"version {challenger} is already the champion")
    elif changed:
        d = Decision(False, changed)
    else:
        d = decide(
            ch["base"],
            ref["base"],
            ch["new"],
            ref["new"],
            margin=margin,
            min_gain=min_gain,
            min_new_windows=min_new,
            metrics=metrics,
        )
    label = "refused" if not d.promote else ("dry_run" if dry_run else "promoted")
    scores = {k: {"challenger": ch[k] or {}, "champion": ref[k] or {}} for k in ("base", "new")}
    params = {
        "margin": margin,
        "min_gain": min_gain,
        "min_new_windows": min_new,
        **_holdout_params("base", base_holdout),
        **_holdout_params("new", new_holdout),
        **{str(k): v for k, v in (lineage or {}).items()},
    }
    change = None
    if label == "promoted":
        change = _move(settings, challenger, champ)
        params.update(_change_params(change))
    run_id = record(
        settings,
        trigger_id=trigger_id,
        version=challenger,
        champion=champ,
        decision=label,
        reason=d.reason,
        params=params,
        scores=scores,
    )
    log.info("promotion %s of version %s (champion %s): %s", label, challenger, champ, d.reason)
    return PromotionDecision(
        promoted=label == "promoted",
        decision=label,
        reason=d.reason,
        challenger=challenger,
        champion=champ,
        trigger_id=trigger_id,
        metrics=scores,
        record_run_id=run_id,
        change=change,
    )


def set_champion(
    settings: Settings,
    version: str,
    *,
    reason: str,
    decision: str = "override",
    trigger_id: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> ChampionChange:
    """Make ``version`` the champion without a gate (no champion yet, an operator's
    override): move the alias, publish, record. ``decision`` names why (``initial``,
    ``override``)."""
    from trainer import registry

    version = registry.resolve(settings, str(version))
    old = registry.alias_version(settings, registry.CHAMPION)
    change = _move(settings, version, old)
    record(
        settings,
        trigger_id=trigger_id or new_trigger_id(decision),
        version=version,
        champion=old,
        decision=decision,
        reason=reason,
        params={**dict(params or {}), **_change_params(change)},
        scores={},
    )
    return change


def _move(settings: Settings, version: str, old: str | None) -> ChampionChange:
    """Move the aliases (old champion -> previous), check the monitoring files, publish."""
    from trainer import registry

    files = monitoring_files(settings, version)
    if old is not None and old != version:
        registry.set_alias(settings, PREVIOUS, old)
    registry.set_alias(settings, registry.CHAMPION, version)
    if registry.alias_version(settings, registry.CHALLENGER) == version:
        registry.delete_alias(settings, registry.CHALLENGER)
    published = publish_champion(settings, version)
    log.info("champion of %s: version %s (was %s)", settings.model_name, version, old)
    return ChampionChange(version, old, published, files)


def monitoring_files(settings: Settings, version: str) -> dict[str, bool]:
    """Whether the version carries its reference profile and drift calibration. A version
    without them (an imported model) is still promoted: the monitor computes both from the
    base data set at first use (docs/drift.md); the record says which it was."""
    from trainer import registry

    d = registry.version_dir(settings, version)
    files = {
        "reference_profile": (d / registry.PROFILE_FILE).is_file(),
        "calibration": (d / registry.calibration_file_name()).is_file(),
    }
    if not all(files.values()):
        missing = ", ".join(k for k, ok in files.items() if not ok)
        log.warning(
            "version %s has no %s: the monitor computes it from the base data at first use",
            version,
            missing,
        )
    return files


def publish_champion(settings: Settings, version: str) -> bool:
    """Publish the version on ``model:champion``; False (logged) when Redis is unreachable:
    the workers still find the new champion at their next registry poll."""
    from stream_processor.models import CHAMPION_CHANNEL
    from wearmon.settings import redis_errors

    client = None
    try:
        client = settings.redis.connect(socket_timeout=2.0, socket_connect_timeout=2.0)
        n = client.publish(CHAMPION_CHANNEL, str(version))
    except redis_errors() as exc:
        log.warning(
            "could not publish version %s on %s (workers see it at their next poll): %s",
            version,
            CHAMPION_CHANNEL,
            exc,
        )
        return False
    finally:
        if client is not None:
            client.close()
    log.info("published version %s on %s (%d subscribers)", version, CHAMPION_CHANNEL, n)
    return True


def _holdout_params(name: str, h: Holdout | None) -> dict[str, Any]:
    if h is None:
        return {f"{name}.source": "none", f"{name}.n": 0}
    return {f"{name}.source": h.source, f"{name}.n": len(h), f"{name}.hash": h.hash}


def _change_params(change: ChampionChange) -> dict[str, Any]:
    return {
        "previous_champion": change.previous or "",
        "published": change.published,
        **{f"has_{k}": v for k, v in change.monitoring_files.items()},
    }


def record(
    settings: Settings,
    *,
    trigger_id: str,
    version: str,
    champion: str | None,
    decision: str,
    reason: str,
    params: Mapping[str, Any],
    scores: Mapping[str, Mapping[str, Mapping[str, float]]],
) -> str:
    """One MLflow run of ``wearmon-promotion`` per decision; the challenger's version and
    training run get tags pointing to it (``version`` "": a retraining refused before it
    trained anything). Returns the run id."""
    from trainer import registry

    exp = registry.experiment_id(settings, EXPERIMENT)
    c = registry.client(settings)
    mv_run = registry.version_run_id(settings, version) if version else None
    tags = {
        "trigger_id": trigger_id,
        "decision": decision,
        "version": str(version),
        "champion_before": champion or "",
        "challenger_run_id": mv_run or "",
    }
    flat = {
        f"{h}.{who}.{m}": float(v)
        for h, by in scores.items()
        for who, ms in by.items()
        for m, v in ms.items()
        if np.isfinite(float(v))
    }
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    with registry.registry_call(settings, "record the promotion"):
        name = f"{decision} v{version} {trigger_id}" if version else f"{decision} {trigger_id}"
        run = c.create_run(exp, run_name=name)
        run_id = str(run.info.run_id)
        c.log_batch(
            run_id,
            metrics=[Metric(k, v, now, 0) for k, v in flat.items()],
            params=[Param(k, _param(v)) for k, v in params.items()],
            tags=[RunTag(k, v) for k, v in {**tags, "reason": reason[:5000]}.items()],
        )
        c.log_dict(
            run_id,
            json.loads(
                json.dumps(
                    {**tags, "reason": reason, "params": dict(params), "scores": scores},
                    default=str,
                )
            ),
            "promotion.json",
        )
        c.set_terminated(run_id)
    if not version:  # a retraining refused before training: no version to tag
        return run_id
    with registry.registry_call(settings, "tag the version"):
        for k, v in (("promotion_run", run_id), ("trigger_id", trigger_id), ("decision", decision)):
            c.set_model_version_tag(settings.model_name, str(version), k, v)
        if mv_run:
            c.set_tag(mv_run, "promotion_run", run_id)
            c.set_tag(mv_run, "promotion_decision", decision)
            c.set_tag(mv_run, "trigger_id", trigger_id)
    return run_id


def _param(v: Any) -> str:
    text = v if isinstance(v, str) else json.dumps(v, default=str)
    return text[:6000]


def read_decisions(settings: Settings, version: str | None = None) -> list[dict[str, Any]]:
    """Recorded decisions, newest first (``version``: only those about it)."""
    from trainer import registry

    c = registry.client(settings)
    with registry.registry_call(settings, "read promotion records"):
        exp = c.get_experiment_by_name(EXPERIMENT)
        if exp is None:
            return []
        query = f"tags.version = '{version}'" if version is not None else ""
        runs = c.search_runs([exp.experiment_id], query, order_by=["attributes.start_time DESC"])
    if not runs:
        return []
    return [
        {"run_id": r.info.run_id, **dict(r.data.tags), "params": dict(r.data.params)} for r in runs
    ]
