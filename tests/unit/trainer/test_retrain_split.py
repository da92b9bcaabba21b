"""The split of a retraining: scored on the champion's own held-out base subjects, trained
on every base subject the champion trained on (and any it never saw), validated on the
champion's validation subjects — none when the champion had none."""

from __future__ import annotations

from trainer.retrain import base_holdout_subjects, base_val_subjects

SUBJECTS = [str(i) for i in range(1, 8)]


def test_a_champion_trained_without_validation_gives_up_no_training_subject() -> None:
    meta = {"split": {"train": ["2", "3", "4", "5", "7"], "val": [], "test": ["1", "6"]}}
    test = base_holdout_subjects(meta, SUBJECTS, seed=42)
    assert test == ["1", "6"]
    keep = [s for s in SUBJECTS if s not in test]
    assert base_val_subjects(meta, keep, val_fraction=0.1, seed=43) == []


def test_the_champions_validation_subjects_validate_the_challenger() -> None:
    meta = {"split": {"train": ["2", "3", "4", "7"], "val": ["5"], "test": ["1", "6"]}}
    keep = ["2", "3", "4", "5", "7"]
    assert base_val_subjects(meta, keep, val_fraction=0.5, seed=43) == ["5"]
    # a validation subject the base data no longer has is not invented
    assert base_val_subjects(meta, ["2", "3", "4", "7"], val_fraction=0.5, seed=43) == []


def test_without_a_champion_split_a_seeded_share_validates() -> None:
    keep = ["2", "3", "4", "5", "7"]
    val = base_val_subjects(None, keep, val_fraction=0.2, seed=43)
    assert len(val) == 1 and val[0] in keep
    assert val == base_val_subjects({}, keep, val_fraction=0.2, seed=43)  # seeded
    assert base_val_subjects(None, ["2", "3"], val_fraction=0.2, seed=43) == []
    assert base_val_subjects(None, keep, val_fraction=0.0, seed=43) == []
