"""The promotion gate is a pure function on metrics."""

from __future__ import annotations

import math

import pytest

from trainer.gate import decide, gate, label_metrics


def test_no_champion_passes() -> None:
    assert gate({"accuracy": 0.5, "macro_f1": 0.4}, None).passed


def test_better_or_equal_passes_with_deltas() -> None:
    r = gate({"accuracy": 0.91, "macro_f1": 0.90}, {"accuracy": 0.90, "macro_f1": 0.90})
    assert r.passed
    assert r.deltas["accuracy"] == pytest.approx(0.01) and r.deltas["macro_f1"] == 0


def test_within_margin_passes_and_beyond_fails() -> None:
    champ = {"accuracy": 0.90, "macro_f1": 0.88}
    assert gate({"accuracy": 0.895, "macro_f1": 0.875}, champ, margin=0.01).passed
    r = gate({"accuracy": 0.95, "macro_f1": 0.86}, champ, margin=0.01)
    assert not r.passed and "macro_f1" in r.reason and "accuracy" not in r.reason


def test_zero_margin_is_strict() -> None:
    assert not gate(
        {"accuracy": 0.8999}, {"accuracy": 0.9}, margin=0.0, metrics=["accuracy"]
    ).passed


def test_missing_or_nan_challenger_metric_fails() -> None:
    assert not gate({"accuracy": 0.9}, {"accuracy": 0.8, "macro_f1": 0.8}).passed
    assert not gate({"accuracy": 0.9, "macro_f1": math.nan}, {"accuracy": 0.8}).passed


def test_metric_missing_on_champion_is_ignored() -> None:
    assert gate({"accuracy": 0.9, "macro_f1": 0.1}, {"accuracy": 0.9}).passed


def test_negative_margin_rejected() -> None:
    with pytest.raises(ValueError):
        gate({"accuracy": 1.0}, {"accuracy": 1.0}, margin=-0.1)


# --- the promotion rule on two held-out sets ----------------------------------------------

BASE = {"n": 100, "accuracy": 0.90, "macro_f1": 0.88}
NEW_CHAMP = {"n": 40, "accuracy": 0.50, "macro_f1": 0.45}


def test_no_labelled_new_data_refuses_even_a_better_model() -> None:
    better = {"n": 100, "accuracy": 0.99, "macro_f1": 0.99}
    for new in (None, {"n": 0, "accuracy": math.nan, "macro_f1": math.nan}):
        d = decide(better, BASE, new, None)
        assert not d.promote and d.reason.startswith("no labelled new data")
    d = decide(better, BASE, {"n": 5, "accuracy": 1.0, "macro_f1": 1.0}, NEW_CHAMP,
               min_new_windows=20)  # fmt: skip
    assert not d.promote and "5 held-out new windows, at least 20" in d.reason


def test_no_champion_promotes_with_labels() -> None:
    assert decide(BASE, None, {"n": 30, "accuracy": 0.1, "macro_f1": 0.1}, None).promote


def test_better_on_new_and_within_margin_on_base_promotes() -> None:
    d = decide(
        {"n": 100, "accuracy": 0.895, "macro_f1": 0.875},
        BASE,
        {"n": 40, "accuracy": 0.80, "macro_f1": 0.78},
        NEW_CHAMP,
        margin=0.01,
        min_gain=0.05,
    )
    assert d.promote and d.gain == pytest.approx(0.30)
    assert "better on the new data (40 windows)" in d.reason


def test_not_better_enough_on_new_refuses() -> None:
    d = decide(BASE, BASE, {"n": 40, "accuracy": 0.52, "macro_f1": 0.5}, NEW_CHAMP, min_gain=0.05)
    assert not d.promote and d.reason.startswith("not better on the new data")
    assert "+0.0200 < +0.05" in d.reason


def test_worse_than_margin_on_base_refuses_even_when_better_on_new() -> None:
    d = decide(
        {"n": 100, "accuracy": 0.85, "macro_f1": 0.88},
        BASE,
        {"n": 40, "accuracy": 1.0, "macro_f1": 1.0},
        NEW_CHAMP,
        margin=0.01,
    )
    assert not d.promote and d.reason.startswith("worse on the base data: accuracy")


def test_label_metrics_counts_unknown_classes_as_wrong() -> None:
    m = label_metrics(["a", "a", "b", "c"], ["a", "b", "b", "x"])
    assert m["n"] == 4 and m["accuracy"] == pytest.approx(0.5)
    # F1: a 2/3, b 2/3, c 0 -> 4/9
    assert m["macro_f1"] == pytest.approx(4 / 9)
    assert math.isnan(label_metrics([], [])["accuracy"])
    with pytest.raises(ValueError):
        label_metrics(["a"], [])
