"""The training pool: the incoming folder (grouping, subjects, skipped files, hashes), the
time split of new data (no training window overlaps a held-out one), the label join rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trainer import pool as P
from trainer.datasets import window_dataset
from wearmon.settings import Settings
from wearmon.signals.raw import decode_raw_window, encode_raw_window
from wearmon.signals.types import GRID_MS, LabelSpan

WINDOW_MS = 200 * GRID_MS


def _touch(p: Path, text: str = "x") -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def test_incoming_groups_pair_garmin_files_and_ignore_lone_labels(tmp_path: Path) -> None:
    a = _touch(tmp_path / "alice" / "2025-03-23-15-23-10-accelerometer_data.xlsx")
    g = _touch(tmp_path / "alice" / "2025-03-23-15-23-10-gyroscope_data.xlsx")
    lab = _touch(tmp_path / "alice" / "2025-03-23-15-23-10-labels.csv")
    flat = _touch(tmp_path / "bob.csv")
    _touch(tmp_path / "orphan-labels.csv")
    _touch(tmp_path / "notes.txt")
    groups = P.incoming_groups(tmp_path)
    assert sorted(map(sorted, groups)) == sorted([sorted([a, g, lab]), [flat]])
    assert P.incoming_groups(tmp_path / "missing") == []


@pytest.mark.slow
def test_read_incoming_names_new_subjects_hashes_and_skips_bad_files(tmp_path: Path) -> None:
    from wearmon.signals.recording_gen import make_recording

    folder = tmp_path / "incoming"
    make_recording(folder / "alice", subject=3, seed=1, max_exercises=2)
    _touch(folder / "broken.csv", "t,Ax\n1,2\n")
    recs, rows, skipped = P.read_incoming(folder)
    assert [r.subject for r in recs] == ["new:alice"] and recs[0].labels
    assert len(rows) == 1 and len(rows[0]["sha256"]) == 64 and len(rows[0]["files"]) == 3
    assert list(skipped) == ["broken.csv"] and "broken.csv" in skipped["broken.csv"]
    again = P.read_incoming(folder)[1]
    assert again[0]["sha256"] == rows[0]["sha256"]  # deterministic


@pytest.mark.slow
def test_time_split_holds_out_the_end_of_each_recording_without_overlap(tmp_path: Path) -> None:
    from wearmon.signals.readers import read_garmin_pair
    from wearmon.signals.recording_gen import make_recording

    recs = []
    for i, subj in enumerate((2, 5)):
        paths = make_recording(tmp_path / f"r{i}", subject=subj, seed=i, max_exercises=2)
        recs.append(read_garmin_pair(paths[0], paths[1]))
    s = Settings(data_dir=tmp_path / "d")
    ev = window_dataset(recs, s.signal)
    tr = window_dataset(recs, s.signal.model_copy(update={"hop": 50}), classes=ev.classes)
    ev_train, tr_train, held = P._split_new(ev, tr, 0.3, WINDOW_MS)
    assert ev_train is not None and tr_train is not None and held is not None
    for r in (0, 1):
        n = int(np.sum(ev.recording == r))
        n_held = int(np.sum(held.recording == r))
        assert n_held == max(1, round(0.3 * n))
        last_train_end = (tr_train.start_ms[tr_train.recording == r] + WINDOW_MS).max()
        assert last_train_end <= held.start_ms[held.recording == r].min()
    assert len(tr_train) > len(ev_train)  # the training hop gives more windows


def test_label_windows_majority_with_purity() -> None:
    spans = [LabelSpan(0, 3000, "a"), LabelSpan(3000, 10_000, "b")]
    got = P.label_windows(np.asarray([0, 2000, 4000, 9000]), spans, 4000, 0.8)
    # [0,4000): a 3000/4000 < 0.8 -> None; [2000,6000): b 3000 -> None; [4000,8000): b;
    # [9000,13000): b only 1000 -> None
    assert got == [None, None, "b", None]
    assert P.label_windows(np.asarray([0]), spans, 4000, 0.75) == ["a"]


def test_raw_window_round_trip_and_bad_size() -> None:
    x = (np.random.default_rng(0).normal(size=(200, 6)) * [3, 3, 3, 60, 60, 60]).astype(np.float32)
    raw = encode_raw_window(x)
    assert len(raw) == 200 * 6 * 2
    np.testing.assert_allclose(decode_raw_window(raw, 200), x, rtol=1e-3, atol=0.05)
    with pytest.raises(ValueError):
        decode_raw_window(raw[:-2], 200)


def test_concat_maps_classes_and_drops_unknown(tmp_path: Path) -> None:
    from trainer.datasets import WindowDataset

    def ds(classes: list[str], y: list[int], subject: str) -> WindowDataset:
        n = len(y)
        return WindowDataset(
            x=np.zeros((n, 200, 6), np.float32),
            y=np.asarray(y, np.int64),
            classes=classes,
            groups=np.asarray([subject] * n, dtype=object),
            start_ms=np.arange(n, dtype=np.int64) * 2000,
            recording=np.zeros(n, np.int64),
            source=subject,
        )

    out = P.concat(
        [ds(["a", "b"], [0, 1], "s1"), None, ds(["b", "z"], [0, 1, 1], "s2")], ["a", "b"]
    )
    assert [out.classes[i] for i in out.y] == ["a", "b", "b"]
    assert out.groups.tolist() == ["s1", "s1", "s2"] and out.recording.tolist() == [0, 0, 1]
