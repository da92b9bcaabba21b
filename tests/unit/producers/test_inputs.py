from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from producers.inputs import load_files, load_seglearn
from wearmon.errors import BadRecordingError
from wearmon.signals.readers import read_garmin_pair
from wearmon.signals.recording_gen import make_recording


def test_garmin_pair_from_one_file_or_folder(tmp_path: Path) -> None:
    acc, gyr, _labels = make_recording(tmp_path, subject=2, seed=1, max_exercises=1, rest_s=1)
    want = read_garmin_pair(acc, gyr)
    for args in ([acc], [gyr], [acc, gyr], [tmp_path]):
        recs = load_files(args)
        assert len(recs) == 1
        np.testing.assert_array_equal(recs[0].gyro.xyz, want.gyro.xyz)
        assert recs[0].labels == want.labels


def test_flat_table_goes_to_the_shared_reader(tmp_path: Path) -> None:
    p = tmp_path / "flat.csv"
    rows = ["timestamp,Ax,Ay,Az,Gx,Gy,Gz"]
    rows += [f"{1_700_000_000_000 + 20 * i},0.1,0.2,9.8,1,2,3" for i in range(100)]
    p.write_text("\n".join(rows) + "\n")
    (rec,) = load_files([p])
    assert len(rec.accel) == 100 and rec.accel.unit == "m/s2"


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(BadRecordingError, match="no such file"):
        load_files([tmp_path / "missing.csv"])
    orphan = tmp_path / "2020-01-01-00-00-00-labels.csv"
    orphan.write_text("start_ms,end_ms,label\n1,2,a\n")
    with pytest.raises(BadRecordingError, match="without its recording"):
        load_files([orphan])
    with pytest.raises(BadRecordingError, match="no seglearn subject '42'"):
        load_seglearn(["42"])
