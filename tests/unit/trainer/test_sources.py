"""The adamsense:PATH and recording:PATH[,PATH] data sources: windows and subject groups."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from trainer.datasets import load_dataset, load_recordings, window_dataset
from wearmon.errors import ConfigError
from wearmon.signals.readers import load_seglearn_watch
from wearmon.signals.recording_gen import make_recording
from wearmon.signals.types import Recording

ADAM_COLUMNS = ["timestamp", "Ax_w", "Ay_w", "Az_w", "Gx_w", "Gy_w", "Gz_w", "activity", "User"]
T0_MS = 1_700_000_000_000  # on the 2 s hop grid, so windows line up with the source's
GAP_MS = 600_000  # recordings of one user 10 min apart: no window spans two of them


def _write_adamsense(path: Path, by_user: dict[str, list[Recording]]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(ADAM_COLUMNS)
        for user, recs in by_user.items():
            for k, rec in enumerate(recs):
                assert np.array_equal(rec.accel.t_ms, rec.gyro.t_ms)
                (span,) = rec.labels
                t = rec.accel.t_ms - rec.accel.t_ms[0] + T0_MS + k * GAP_MS
                for i in range(len(t)):
                    w.writerow(
                        [int(t[i]), *(repr(float(v)) for v in rec.accel.xyz[i])]
                        + [repr(float(v)) for v in rec.gyro.xyz[i]]
                        + [span.label, user]
                    )


@pytest.fixture(scope="module")
def seglearn_by_user() -> dict[str, list[Recording]]:
    recs = load_seglearn_watch()
    out: dict[str, list[Recording]] = {}
    for user in ("2", "7"):
        mine = [r for r in recs if r.subject == user]
        out[user] = mine[:3]  # three exercises each: a small, fast table
    return out


def test_adamsense_source_windows_and_subjects(
    tmp_path: Path, seglearn_by_user: dict[str, list[Recording]]
) -> None:
    path = tmp_path / "adam.csv"
    _write_adamsense(path, seglearn_by_user)

    recs = load_recordings(f"adamsense:{path}")
    assert [r.subject for r in recs] == ["2", "7"]  # one recording per User
    ds = load_dataset(f"adamsense:{path}")
    assert ds.subjects == ["2", "7"] and ds.source == f"adamsense:{path}"
    assert ds.x.shape[1:] == (200, 6) and ds.x.dtype == np.float32

    # the same windows, labels and subjects as windowing the seglearn recordings directly
    want = window_dataset([r for rs in seglearn_by_user.values() for r in rs])
    assert ds.classes == want.classes
    assert ds.class_counts() == want.class_counts()
    for user in ("2", "7"):
        got_u, want_u = ds.of_subjects([user]), want.of_subjects([user])
        assert len(got_u) == len(want_u) > 0
        np.testing.assert_array_equal(got_u.y, want_u.y)
        np.testing.assert_allclose(got_u.x, want_u.x, rtol=1e-5, atol=1e-4)
    # a subject's windows never leave its group
    assert set(ds.of_subjects(["2"]).groups) == {"2"}


def test_adamsense_source_hop_changes_the_count(
    tmp_path: Path, seglearn_by_user: dict[str, list[Recording]]
) -> None:
    path = tmp_path / "adam.csv"
    _write_adamsense(path, {"7": seglearn_by_user["7"]})
    ds100 = load_dataset(f"adamsense:{path}")
    ds50 = load_dataset(f"adamsense:{path}", hop=50)
    assert ds50.signal.hop == 50 and ds100.signal.hop == 100
    assert len(ds100) < len(ds50) <= 2 * len(ds100) + len(seglearn_by_user["7"])


def test_recording_source_from_generated_session(tmp_path: Path) -> None:
    paths = make_recording(tmp_path / "rec", subject=3, seed=0, max_exercises=2)
    spec = "recording:" + ",".join(str(p) for p in paths)
    ds = load_dataset(spec)
    assert len(ds) > 0 and ds.x.shape[1:] == (200, 6)
    assert len(ds.subjects) == 1  # one recording = one group
    # labels come from the sidecar: the session's exercises, seglearn's class names
    spans = {row["label"] for row in csv.DictReader(paths[2].open())}
    assert set(ds.classes) <= spans and len(ds.classes) >= 1
    assert set(ds.classes) <= {"ABD", "ER", "FEL", "IR", "PEN", "ROW", "TRAP"}
    # windows are 4 s long at 50 Hz and start on the hop grid
    assert np.all(np.diff(np.unique(ds.start_ms)) % 2000 == 0)
    # the accel file alone finds its gyro partner and its labels sidecar by name
    alone = load_dataset(f"recording:{paths[0]}")
    assert len(alone) == len(ds) and alone.classes == ds.classes


def test_several_recordings_grouped_by_named_subject(tmp_path: Path) -> None:
    a = make_recording(tmp_path / "a", subject=3, seed=0, max_exercises=1)
    b = make_recording(tmp_path / "b", subject=3, seed=1, max_exercises=1)
    c = make_recording(tmp_path / "c", subject=5, seed=2, max_exercises=1)
    files = [",".join(str(p) for p in paths) for paths in (a, b, c)]
    named = load_dataset(f"recording:ann={files[0]};ann={files[1]};bo={files[2]}")
    assert named.subjects == ["ann", "bo"]  # two sessions of one wearer: one group
    unnamed = load_dataset(f"recording:{files[0]};{files[1]}")
    assert len(unnamed.subjects) == 2  # without names each recording is its own group
    assert len(named.of_subjects(["ann"])) == len(unnamed)


def test_unknown_or_empty_source_is_a_config_error() -> None:
    for spec in ("nope", "adamsense:", "recording:", "recording:;"):
        with pytest.raises(ConfigError):
            load_recordings(spec)
