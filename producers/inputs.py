"""What to replay: files given on the command line, or the built-in seglearn recordings.

Reading is the shared readers' job (wearmon.signals.readers); this module only finds the
files that belong together (a Garmin accelerometer/gyroscope pair and its labels sidecar).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from wearmon.errors import BadRecordingError
from wearmon.signals import readers
from wearmon.signals.types import Recording

log = logging.getLogger(__name__)

_MARKERS = {"accel": "-accelerometer_data", "gyro": "-gyroscope_data"}


def _garmin_stamp(path: Path) -> tuple[str, str] | None:
    for sensor, marker in _MARKERS.items():
        if marker in path.name:
            return path.name.split(marker)[0], sensor
    return None


def _expand(paths: Sequence[str | Path]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if q.is_file()))
        elif p.is_file():
            out.append(p)
        else:
            raise BadRecordingError("no such file", path=str(p))
    return out


def _reader_for_single_file() -> Callable[[Path], Recording] | None:
    """The shared reader of flat/ADAM-Sense files, when the signals core provides one."""
    fn = getattr(readers, "read_recording", None)
    return fn if callable(fn) else None


def load_files(paths: Sequence[str | Path]) -> list[Recording]:
    """Recordings from files and folders, in the order given.

    A Garmin ``<stamp>-accelerometer_data.xlsx`` is paired with the
    ``<stamp>-gyroscope_data.xlsx`` beside it (either one, or both, may be named); a
    ``<stamp>-labels.csv`` next to a pair is its labels sidecar. Any other file goes to the
    shared reader of flat tables.
    """
    files = _expand(paths)
    pairs: dict[tuple[Path, str], dict[str, Path]] = {}
    order: list[tuple[str, object]] = []
    for f in files:
        g = _garmin_stamp(f)
        if g is not None:
            key = (f.parent, g[0])
            if key not in pairs:
                pairs[key] = {}
                order.append(("pair", key))
            pairs[key][g[1]] = f
        elif f.name.endswith("-labels.csv"):
            stamp = f.name[: -len("-labels.csv")]
            if any((f.parent / f"{stamp}{m}.xlsx").exists() for m in _MARKERS.values()):
                continue  # a sidecar, read with its pair
            raise BadRecordingError("a labels file without its recording", path=str(f))
        else:
            order.append(("file", f))
    recs: list[Recording] = []
    for kind, item in order:
        if kind == "pair":
            assert isinstance(item, tuple)
            recs.append(_read_pair(item[0], item[1], pairs[item]))
        else:
            assert isinstance(item, Path)
            fn = _reader_for_single_file()
            if fn is None:
                raise BadRecordingError(
                    "unsupported recording (expected a Garmin '<stamp>-accelerometer_data' "
                    "/ '-gyroscope_data' export)",
                    path=str(item),
                )
            recs.append(fn(item))
    return recs


def _read_pair(folder: Path, stamp: str, found: dict[str, Path]) -> Recording:
    for sensor, marker in _MARKERS.items():
        if sensor not in found:
            cands = sorted(folder.glob(f"{stamp}{marker}.*"))
            if not cands:
                other = next(iter(found.values()))
                raise BadRecordingError(
                    f"no matching {stamp}{marker} file next to it", path=str(other)
                )
            found[sensor] = cands[0]
    log.debug("reading Garmin pair %s", stamp)
    return readers.read_garmin_pair(found["accel"], found["gyro"])


def load_seglearn(subjects: Sequence[str] | None = None) -> list[Recording]:
    """The seglearn watch recordings, optionally only those of some subjects."""
    recs = readers.load_seglearn_watch()
    if not subjects:
        return recs
    wanted = {str(s).strip() for s in subjects}
    known = {r.subject for r in recs}
    unknown = sorted(wanted - {s for s in known if s is not None})
    if unknown:
        raise BadRecordingError(
            f"no seglearn subject {unknown[0]!r} (subjects: "
            f"{', '.join(sorted((s for s in known if s), key=int))})"
        )
    return [r for r in recs if r.subject in wanted]
