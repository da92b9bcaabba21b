"""The promotion decision, as pure functions on metric dicts.

:func:`gate`: on one held-out set, the challenger is not worse than the champion by more
than a margin on any gated metric. :func:`decide`: the promotion rule on two held-out sets
(the same held-out base windows, and a held-out part of the new labelled data): promote only
when the challenger beats the champion on the new data by at least ``min_gain`` and passes
:func:`gate` on the base data; with no labelled new data, refuse. :func:`label_metrics`
scores predicted class names against true ones (a model that lacks a class gets its windows
wrong instead of failing). The I/O (evaluating versions, moving the alias) is
:mod:`trainer.promotion`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

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


def label_metrics(true: Sequence[str], predicted: Sequence[str]) -> dict[str, float]:
    """Accuracy and macro-F1 (over the true classes) of predicted class names, and ``n``."""
    t = np.asarray([str(v) for v in true], dtype=object)
    p = np.asarray([str(v) for v in predicted], dtype=object)
    if t.shape != p.shape:
        raise ValueError(f"{len(t)} true labels but {len(p)} predictions")
    if len(t) == 0:
        return {"n": 0.0, "accuracy": math.nan, "macro_f1": math.nan}
    f1s = []
    for c in sorted(set(t.tolist())):
        tp = float(np.sum((t == c) & (p == c)))
        fp = float(np.sum((t != c) & (p == c)))
        fn = float(np.sum((t == c) & (p != c)))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return {"n": float(len(t)), "accuracy": float(np.mean(t == p)), "macro_f1": float(np.mean(f1s))}


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    gain: float | None = None  # challenger - champion on the new data (gain metric)
    base: GateResult | None = None


def decide(
    challenger_base: Mapping[str, float] | None,
    champion_base: Mapping[str, float] | None,
    challenger_new: Mapping[str, float] | None,
    champion_new: Mapping[str, float] | None,
    *,
    margin: float = 0.01,
    min_gain: float = 0.01,
    min_new_windows: int = 1,
    gain_metric: str = "accuracy",
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> Decision:
    """The promotion rule. Metric dicts as :func:`label_metrics` makes them (with ``n``).

    Refuse when the new data has fewer than ``min_new_windows`` labelled windows (never
    promote without labels). With no champion (``champion_base`` and ``champion_new``
    None), promote. Otherwise promote only when challenger - champion on the new data is at
    least ``min_gain`` in ``gain_metric`` AND :func:`gate` passes on the base data.
    """
    if min_gain < 0:
        raise ValueError("min_gain must be >= 0")
    n_new = int((challenger_new or {}).get("n", 0) or 0)
    if challenger_new is None or n_new < min_new_windows:
        return Decision(
            False,
            f"no labelled new data: {n_new} held-out new windows, at least {min_new_windows} "
            "needed (never promoted without labels)",
        )
    if champion_base is None and champion_new is None:
        return Decision(True, "no champion to beat")
    c_new = float(challenger_new.get(gain_metric, math.nan))
    r_new = float((champion_new or {}).get(gain_metric, math.nan))
    if not (math.isfinite(c_new) and math.isfinite(r_new)):
        return Decision(False, f"{gain_metric} on the new data is missing")
    gain = c_new - r_new
    base = gate(challenger_base or {}, champion_base, margin=margin, metrics=metrics)
    new_txt = f"new data ({n_new} windows): {gain_metric} {c_new:.4f} vs champion {r_new:.4f}"
    if gain < min_gain:
        return Decision(
            False, f"not better on the {new_txt} ({gain:+.4f} < +{min_gain})", gain, base
        )
    if not base.passed:
        return Decision(False, f"worse on the base data: {base.reason}", gain, base)
    return Decision(
        True, f"better on the {new_txt} ({gain:+.4f}); base data {base.reason}", gain, base
    )
