import numpy as np

from wearmon.signals.readers import load_seglearn_watch
from wearmon.signals.types import ACCEL_UNIT, GYRO_UNIT
from wearmon.signals.windows import window_recording


def test_load_seglearn_watch() -> None:
    recs = load_seglearn_watch()
    assert len(recs) == 140
    assert len({r.subject for r in recs}) == 10
    assert {r.labels[0].label for r in recs} == {"PEN", "ABD", "FEL", "IR", "ER", "TRAP", "ROW"}
    r = recs[0]
    assert r.accel.unit == ACCEL_UNIT and r.gyro.unit == GYRO_UNIT
    assert np.all(np.diff(r.accel.t_ms) == 20)
    mag = np.median(np.linalg.norm(np.concatenate([x.accel.xyz for x in recs[:10]]), axis=1))
    assert 8.0 < mag < 12.0
    assert sum(len(x.accel) for x in recs) == 244_102
    total = sum(len(window_recording(x).windows) for x in recs)
    assert total == 2229  # 2,229 windows of 200 x 6 (docs/training.md)
    w = window_recording(recs[5]).windows
    assert w.labels is not None and set(w.labels) == {recs[5].labels[0].label}
