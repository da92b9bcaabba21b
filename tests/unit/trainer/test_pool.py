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


def _stream_ds(devices: int, per_device: int, hop_ms: int = 2000) -> P.WindowDataset:
    """Synthetic labelled stream windows: device d's windows start at d*1e6 + k*hop_ms."""
    n = devices * per_device
    starts = np.concatenate(
        [1_000_000 * d + hop_ms * np.arange(per_device) for d in range(devices)]
    )
    return P.WindowDataset(
        x=np.zeros((n, 200, 6), dtype=np.float32),
        y=np.zeros(n, dtype=np.int64),
        classes=["a"],
        groups=np.asarray(
            [f"new:stream:dev{d}" for d in range(devices) for _ in range(per_device)]
        ),
        start_ms=starts.astype(np.int64),
        recording=np.repeat(np.arange(devices), per_device).astype(np.int64),
    )


def test_holdout_devices_are_a_stable_share_never_all() -> None:
    names = [f"dev{i}" for i in range(12)]
    held = P.holdout_devices(names, 0.3)
    assert len(held) == 4 and held <= set(names)
    assert P.holdout_devices(list(reversed(names)), 0.3) == held  # not the order given
    assert held != set(sorted(names)[:4])  # not the sort order either (hash order)
    assert len(P.holdout_devices(["a", "b"], 0.9)) == 1  # at least one device trains
    assert len(P.holdout_devices(["a", "b", "c"], 0.01)) == 1  # at least one is held out


def test_stream_split_holds_out_whole_devices_from_the_onset_on() -> None:
    ds = _stream_ds(devices=6, per_device=50)
    tr = _stream_ds(devices=6, per_device=100, hop_ms=1000)  # the training hop
    onset = 1_000_000 * 2 + 60_000  # devices 2-5 have new windows (2: 20 of its 50)
    ev_train, tr_train, held, how = P._split_stream(ds, tr, onset, 0.3, WINDOW_MS, 3)
    assert ev_train is not None and tr_train is not None and held is not None
    out = sorted({str(g) for g in held.groups})
    assert how == "devices " + ",".join(out) and len(out) == 1  # round(0.3 * 4)
    assert set(out) <= {f"new:stream:dev{d}" for d in (2, 3, 4, 5)}
    ds_all = P._split_stream(ds, tr, 0, 0.3, WINDOW_MS, 3)  # every device new
    assert ds_all[3].startswith("devices ") and ds_all[3].count(",") == 1  # 2 of 6 held out
    assert not set(out) & {str(g) for g in ev_train.groups}  # never trained on, before the
    assert not set(out) & {str(g) for g in tr_train.groups}  # onset neither
    assert (held.start_ms >= onset).all()
    assert len(ev_train) + int(np.isin(ds.groups, out).sum()) == len(ds)


def test_stream_split_before_the_onset_trains_only() -> None:
    ds = _stream_ds(devices=1, per_device=100)  # 200 s of one device
    onset = 100_000
    ev_train, _, held, how = P._split_stream(ds, None, onset, 0.3, WINDOW_MS, 3)
    assert how == "time" and held is not None and ev_train is not None
    assert (held.start_ms >= onset).all()
    assert len(held) == round(0.3 * 50)  # 30 % of the 50 windows from the onset on
    assert (ev_train.start_ms + WINDOW_MS <= held.start_ms.min()).all()
    assert int((ev_train.start_ms < onset).sum()) == 50  # every earlier window trains
    # no window from the onset on: nothing held out, everything trains
    ev2, _, held2, how2 = P._split_stream(ds, None, 10**12, 0.3, WINDOW_MS, 3)
    assert held2 is None and how2 == "none" and ev2 is not None and len(ev2) == len(ds)
