"""The promotion gate: a challenger replaces the champion only if, on the same held-out
data, it is not worse than the champion by more than a margin on any gated metric.

:func:`gate` is a pure function on metric dicts; :func:`promote` evaluates both versions on
the same windows, applies the gate and moves the registry alias (never overwrites files).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wearmon.errors import IncompatibleModelError
from wearmon.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_METRICS: tuple[str, ...] = ("accuracy", "macro_f1")


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reason: str
    deltas: dict[str, float] = field(default_factory=dict)  # challenger - champion


def gate(
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
    *,
    margin: float = 0.01,
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> GateResult:
    """Pass when, for every metric, challenger >= champion - margin (higher is better).

    No champion: pass. A metric missing or NaN on the challenger fails; missing on the
    champion is ignored (nothing to compare against).
    """
    if margin < 0:
        raise ValueError("margin must be >= 0")
    if champion is None:
        return GateResult(True, "no champion to beat")
    deltas: dict[str, float] = {}
    failures: list[str] = []
    for m in metrics:
        c = challenger.get(m)
        if c is None or not math.isfinite(float(c)):
            failures.append(f"{m} missing for the challenger")
            continue
        ref = champion.get(m)
        if ref is None or not math.isfinite(float(ref)):
            continue
        d = float(c) - float(ref)
        deltas[m] = d
        if d < -margin:
            failures.append(f"{m} {float(c):.4f} < champion {float(ref):.4f} - {margin}")
    if failures:
        return GateResult(False, "; ".join(failures), deltas)
    shown = ", ".join(f"{k} {v:+.4f}" for k, v in deltas.items())
    return GateResult(
        True, f"within margin {margin}: {shown}" if shown else "nothing to compare", deltas
    )


@dataclass(frozen=True)
class PromotionResult:
    promoted: bool
    challenger: str
    champion: str | None
    gate: GateResult
    challenger_metrics: dict[str, Any]
    champion_metrics: dict[str, Any] | None


def promote(
    settings: Settings,
    challenger_version: str,
    x: np.ndarray,
    y_labels: Sequence[str],
    *,
    margin: float = 0.01,
    metrics: Sequence[str] = DEFAULT_METRICS,
    alias: str = "champion",
    dry_run: bool = False,
) -> PromotionResult:
    """Evaluate challenger and champion on the same held-out windows ``x`` (raw canonical
    units) with true labels ``y_labels`` (class names); move ``alias`` to the challenger if
    the gate passes. The old champion keeps its files and gets the alias ``previous``."""
    from trainer import registry
    from trainer.evaluate import compute_metrics
    from trainer.serving import load_version

    def score(version: str) -> dict[str, Any]:
        sm = load_version(settings, version)
        index = {c: i for i, c in enumerate(sm.classes)}
        missing = sorted({str(v) for v in y_labels} - set(index))
        if missing:
            raise IncompatibleModelError(
                f"model version {version} does not know the classes {missing}"
            )
        y = np.asarray([index[str(v)] for v in y_labels], dtype=np.int64)
        return compute_metrics(y, sm.predict_proba(x), sm.classes)

    champ = registry.alias_version(settings, alias)
    ch_m = score(challenger_version)
    champ_m = score(champ) if champ is not None and champ != str(challenger_version) else None
    result = gate(ch_m, champ_m, margin=margin, metrics=metrics)
    promoted = result.passed and not dry_run
    if promoted:
        if champ is not None and champ != str(challenger_version):
            registry.set_alias(settings, "previous", champ)
        registry.set_alias(settings, alias, str(challenger_version))
    log.info(
        "gate %s for version %s vs %s: %s",
        "passed" if result.passed else "failed",
        challenger_version,
        champ,
        result.reason,
    )
    return PromotionResult(promoted, str(challenger_version), champ, result, ch_m, champ_m)
