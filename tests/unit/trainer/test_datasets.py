"""Subject splits never mix subjects; metrics computed as expected."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.datasets import group_kfold, leave_subjects_out, subject_split
from trainer.evaluate import compute_metrics
from trainer.model import ModelConfig, augment, class_weights, random_rotations
from wearmon.errors import ConfigError


def test_group_kfold_partitions_subjects() -> None:
    groups = np.repeat([str(i) for i in range(1, 11)], [30, 20, 25, 10, 40, 15, 22, 18, 35, 28])
    folds = group_kfold(groups, 5)
    tests = [s for _, t in folds for s in t]
    assert sorted(tests) == sorted({str(i) for i in range(1, 11)})
    for train, test in folds:
        assert not set(train) & set(test) and len(train) + len(test) == 10
    assert group_kfold(groups, 5) == folds  # deterministic
    with pytest.raises(ConfigError):
        group_kfold(groups, 11)


def test_subject_split_is_disjoint_and_deterministic() -> None:
    subs = [str(i) for i in range(10)]
    s = subject_split(subs, seed=3)
    assert len(s.test) == 2 and len(s.val) == 1 and len(s.train) == 7
    assert not (set(s.train) & set(s.test)) and not (set(s.train) & set(s.val))
    assert subject_split(subs, seed=3) == s
    kept, out = leave_subjects_out(["a", "b"], 0.5, 0)
    assert len(kept) == 1 and len(out) == 1


def test_metrics_perfect_and_confused() -> None:
    y = np.array([0, 1, 2, 2])
    p = np.eye(3)[y]
    m = compute_metrics(y, p, ["a", "b", "c"])
    assert m["accuracy"] == 1 and m["macro_f1"] == 1 and m["cohen_kappa"] == 1 and m["mcc"] == 1
    assert m["roc_auc_ovr"] == 1 and m["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [0, 0, 2]]
    m = compute_metrics(y, np.eye(3)[[0, 2, 2, 2]], ["a", "b", "c"])
    assert m["accuracy"] == 0.75 and m["per_class"]["b"]["recall"] == 0


def test_class_weights_balance() -> None:
    w = class_weights(np.array([0, 0, 0, 1]), 3)
    assert w[0] * 3 == pytest.approx(w[1] * 1) and w[2] == 1.0


def test_rotations_are_orthonormal_and_augment_keeps_magnitude() -> None:
    rng = np.random.default_rng(0)
    r = random_rotations(50, 30, rng)
    np.testing.assert_allclose(
        r @ r.transpose(0, 2, 1), np.broadcast_to(np.eye(3), r.shape), atol=1e-9
    )
    x = rng.normal(size=(4, 200, 6)).astype(np.float32)
    y = augment(x, ModelConfig(scale_range=0.0), rng)
    np.testing.assert_allclose(
        np.linalg.norm(y[..., :3], axis=-1), np.linalg.norm(x[..., :3], axis=-1), rtol=1e-4
    )


def test_mirror_flips_ax_gy_gz_and_is_an_involution() -> None:
    from trainer.model import MIRROR_SIGNS, mirror

    x = np.random.default_rng(0).normal(size=(3, 200, 6)).astype(np.float32)
    m = mirror(x)
    np.testing.assert_array_equal(m[..., [1, 2, 3]], x[..., [1, 2, 3]])
    np.testing.assert_array_equal(m[..., [0, 4, 5]], -x[..., [0, 4, 5]])
    np.testing.assert_array_equal(mirror(m), x)
    assert MIRROR_SIGNS == (-1.0, 1.0, 1.0, 1.0, -1.0, -1.0)
    rng = np.random.default_rng(1)
    y = augment(x, ModelConfig(rotate_deg=0.0, scale_range=0.0, mirror=True), rng)
    flipped = [np.allclose(y[i], m[i], atol=1e-5) for i in range(3)]
    kept = [np.allclose(y[i], x[i], atol=1e-5) for i in range(3)]
    assert all(f != k for f, k in zip(flipped, kept, strict=True))


def test_time_warp_identity_speed_and_edges() -> None:
    from trainer.model import time_warp

    t = np.arange(200, dtype=np.float32)
    x = np.stack([np.stack([t] * 6, axis=-1)] * 3)  # each channel = its sample index
    same = time_warp(x, np.array([1.0, 1.0, 1.0]))
    np.testing.assert_allclose(same, x, atol=1e-4)
    fast, slow = time_warp(x[:2], np.array([1.2, 0.5]))
    centre = 99.5
    # faster: the window spans 1.2x the time (clipped at the edges); slower: half of it
    np.testing.assert_allclose(fast[:, 0], np.clip(centre + (t - centre) * 1.2, 0, 199), atol=1e-3)
    np.testing.assert_allclose(slow[:, 0], centre + (t - centre) * 0.5, atol=1e-3)
    assert fast.dtype == np.float32 and fast.shape == (200, 6)
    y = augment(
        x, ModelConfig(rotate_deg=0.0, scale_range=0.0, time_warp=0.3), np.random.default_rng(0)
    )
    assert y.shape == x.shape and not np.allclose(y, x)
    with pytest.raises(Exception, match="time warp"):
        ModelConfig(time_warp=1.5)


def test_seglearn_spec_with_subjects() -> None:
    from trainer.datasets import load_recordings
    from wearmon.errors import ConfigError

    recs = load_recordings("seglearn:1,7")
    assert recs and {str(r.subject) for r in recs} == {"1", "7"}
    assert len(load_recordings("seglearn")) > len(recs)
    with pytest.raises(ConfigError, match="no seglearn subject '99'"):
        load_recordings("seglearn:1,99")
