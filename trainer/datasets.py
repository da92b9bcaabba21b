"""Labelled windows for training, built with the shared signal core, and subject splits.

Windows come from :func:`wearmon.signals.windows.window_recording`, the exact windows the
stream sees. Splits are by subject (group k-fold / leave-subjects-out), never by random
window: overlapping windows of one subject would leak across a random split.

Data sources (``spec`` strings used by the CLI):

- ``seglearn``: the Apple Watch exercise data shipped in the seglearn package (default);
  ``seglearn:1,2,3``: only those subjects
- ``adamsense:PATH``: an ADAM-Sense layout table (one row per sample, ``activity``, ``User``)
- ``recording:[SUBJECT=]PATH[,PATH...][;...]``: labelled recordings (e.g. an accel and a
  gyro file each), separated by ``;``; ``SUBJECT=`` names the wearer (the split group:
  recordings of one subject never straddle a split); without it a recording is its own group
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wearmon.errors import BadRecordingError, ConfigError
from wearmon.settings import SignalSettings
from wearmon.signals.types import ACCEL_UNIT, CHANNELS, GYRO_UNIT, Recording

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WindowDataset:
    """Labelled windows (n, window, 6) in canonical units with their subjects."""

    x: np.ndarray  # float32 (n, window, 6)
    y: np.ndarray  # int64 (n,) index into classes
    classes: list[str]
    groups: np.ndarray  # str (n,) subject of each window
    start_ms: np.ndarray  # int64 (n,)
    recording: np.ndarray  # int64 (n,) index of the source recording
    source: str = ""
    signal: SignalSettings = field(default_factory=SignalSettings)
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def subjects(self) -> list[str]:
        return sorted({str(g) for g in self.groups})

    def subset(self, idx: np.ndarray) -> WindowDataset:
        return WindowDataset(
            x=self.x[idx],
            y=self.y[idx],
            classes=self.classes,
            groups=self.groups[idx],
            start_ms=self.start_ms[idx],
            recording=self.recording[idx],
            source=self.source,
            signal=self.signal,
            skipped=self.skipped,
        )

    def of_subjects(self, subjects: Sequence[str]) -> WindowDataset:
        return self.subset(np.flatnonzero(np.isin(self.groups, list(subjects))))

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.y, minlength=len(self.classes))
        return {c: int(n) for c, n in zip(self.classes, counts, strict=True)}

    def data_hash(self) -> str:
        """SHA-256 over windows, labels, subjects and starts (identifies the training data)."""
        h = hashlib.sha256()
        for arr in (self.x, self.y, self.start_ms):
            h.update(np.ascontiguousarray(arr).tobytes())
        h.update("\x1f".join(str(g) for g in self.groups).encode())
        h.update("\x1f".join(self.classes).encode())
        return h.hexdigest()


def window_dataset(
    recordings: Sequence[Recording],
    signal: SignalSettings | None = None,
    *,
    classes: Sequence[str] | None = None,
    source: str = "",
) -> WindowDataset:
    """Window labelled recordings with the shared windowing; keep windows with a label.

    ``classes`` fixes the class order (e.g. the classes of a model being fine-tuned);
    windows of other classes are dropped and counted. By default, the sorted labels seen.
    """
    from wearmon.signals.windows import window_recording

    signal = signal or SignalSettings()
    xs, labels, groups, starts, rec_idx = [], [], [], [], []
    skipped: dict[str, int] = {}
    for i, rec in enumerate(recordings):
        subject = rec.subject if rec.subject is not None else (rec.source or f"recording-{i}")
        result = window_recording(rec, signal, device=str(subject))
        for reason, n in (result.skipped or {}).items():
            skipped[reason] = skipped.get(reason, 0) + int(n)
        w = result.windows
        if len(w) == 0:
            continue
        if w.labels is None:
            skipped["unlabeled"] = skipped.get("unlabeled", 0) + len(w)
            continue
        lab = np.asarray([("" if v is None else str(v)) for v in w.labels], dtype=object)
        keep = lab != ""
        if (~keep).any():
            skipped["unlabeled"] = skipped.get("unlabeled", 0) + int((~keep).sum())
        xs.append(np.asarray(w.x, dtype=np.float32)[keep])
        labels.append(lab[keep])
        groups.append(np.full(int(keep.sum()), str(subject), dtype=object))
        starts.append(np.asarray(w.start_ms, dtype=np.int64)[keep])
        rec_idx.append(np.full(int(keep.sum()), i, dtype=np.int64))
    if not xs or sum(len(a) for a in xs) == 0:
        raise BadRecordingError(f"no labelled windows in {source or 'the recordings'}")
    x = np.concatenate(xs)
    lab_all = np.concatenate(labels)
    if classes is None:
        classes = sorted({str(v) for v in lab_all})
    class_list = [str(c) for c in classes]
    index = {c: k for k, c in enumerate(class_list)}
    known = np.asarray([v in index for v in lab_all])
    if (~known).any():
        skipped["unknown_class"] = skipped.get("unknown_class", 0) + int((~known).sum())
    y = np.asarray([index[v] for v in lab_all[known]], dtype=np.int64)
    ds = WindowDataset(
        x=x[known],
        y=y,
        classes=class_list,
        groups=np.concatenate(groups)[known],
        start_ms=np.concatenate(starts)[known],
        recording=np.concatenate(rec_idx)[known],
        source=source,
        signal=signal,
        skipped=skipped,
    )
    log.info(
        "%d labelled windows, %d classes, %d subjects from %s (skipped %s)",
        len(ds),
        len(class_list),
        len(ds.subjects),
        source or "recordings",
        skipped,
    )
    return ds


def load_recordings(spec: str) -> list[Recording]:
    """Recordings for a data source spec (see the module doc)."""
    from wearmon.signals import readers

    kind, _, arg = spec.partition(":")
    if kind == "seglearn":
        recs = list(readers.load_seglearn_watch())
        if not arg.strip():
            return recs
        wanted = {s.strip() for s in arg.split(",") if s.strip()}
        unknown = sorted(wanted - {str(r.subject) for r in recs})
        if unknown:
            raise ConfigError(f"data source {spec!r}: no seglearn subject {unknown[0]!r}")
        return [r for r in recs if str(r.subject) in wanted]
    if kind == "adamsense" and arg:
        return list(readers.read_adamsense(arg))
    if kind == "recording" and arg.strip(" ;"):
        out = []
        for part in (p.strip() for p in arg.split(";")):
            if not part:
                continue
            subject, eq, files = part.partition("=")
            if not eq:
                subject, files = "", part
            rec = readers.read_recording([p for p in files.split(",") if p])
            out.append(
                dataclasses.replace(rec, subject=subject.strip()) if subject.strip() else rec
            )
        return out
    raise ConfigError(
        f"unknown data source {spec!r}: use seglearn[:SUBJECTS], adamsense:PATH or "
        "recording:[SUBJECT=]PATH[,PATH][;...]"
    )


def load_dataset(
    spec: str = "seglearn",
    signal: SignalSettings | None = None,
    *,
    classes: Sequence[str] | None = None,
    hop: int | None = None,
) -> WindowDataset:
    """Windows of a data source; ``hop`` overrides the signal hop (a smaller training hop
    gives more, overlapping windows: a cheap augmentation; evaluation uses the stream hop)."""
    signal = signal or SignalSettings()
    if hop is not None and hop != signal.hop:
        signal = signal.model_copy(update={"hop": int(hop)})
    return window_dataset(load_recordings(spec), signal, classes=classes, source=spec)


# --- splits -----------------------------------------------------------------------------


def group_kfold(groups: np.ndarray, k: int) -> list[tuple[list[str], list[str]]]:
    """K folds of whole subjects: [(train_subjects, test_subjects), ...], deterministic.

    Subjects are assigned greedily to the fold with the fewest windows (like sklearn's
    GroupKFold), so folds are balanced in size.
    """
    subjects, counts = np.unique(np.asarray(groups).astype(str), return_counts=True)
    if k < 2 or k > len(subjects):
        raise ConfigError(f"--cv needs 2 <= K <= number of subjects ({len(subjects)}), got {k}")
    sizes = np.zeros(k)
    folds: list[list[str]] = [[] for _ in range(k)]
    for j in np.argsort(-counts, kind="stable"):
        f = int(np.argmin(sizes))
        folds[f].append(str(subjects[j]))
        sizes[f] += counts[j]
    all_s = [str(s) for s in subjects]
    return [(sorted(set(all_s) - set(test)), sorted(test)) for test in folds]


def leave_subjects_out(
    subjects: Sequence[str], fraction: float, seed: int, *, minimum: int = 1
) -> tuple[list[str], list[str]]:
    """Split subjects into (kept, held out) with about ``fraction`` held out (at least
    ``minimum``, and at least one kept). Deterministic for a seed."""
    subs = sorted(str(s) for s in subjects)
    if len(subs) < 2:
        raise ConfigError(f"a subject split needs at least 2 subjects, got {len(subs)}")
    n_out = min(len(subs) - 1, max(minimum, round(fraction * len(subs))))
    rng = np.random.default_rng(seed)
    out = sorted(rng.choice(subs, size=n_out, replace=False).tolist())
    return [s for s in subs if s not in out], out


@dataclass(frozen=True)
class Split:
    train: list[str]
    val: list[str]
    test: list[str]

    def to_dict(self) -> dict[str, list[str]]:
        return {"train": self.train, "val": self.val, "test": self.test}


def subject_split(
    subjects: Sequence[str],
    *,
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    seed: int = 42,
) -> Split:
    """Train / validation / test subjects (leave-subjects-out). With fewer than three
    subjects, validation (and then test) are left empty."""
    subs = sorted(str(s) for s in subjects)
    if len(subs) < 2:
        return Split(train=subs, val=[], test=[])
    rest, test = leave_subjects_out(subs, test_fraction, seed)
    if len(rest) < 2 or val_fraction <= 0:
        return Split(train=rest, val=[], test=test)
    train, val = leave_subjects_out(rest, val_fraction, seed + 1)
    return Split(train=train, val=val, test=test)


def metadata(
    ds: WindowDataset,
    *,
    scaler: dict[str, list[float]],
    split: Split | dict[str, Any] | None = None,
    train_hop: int | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The metadata.json of a model version (everything serving needs to rebuild inputs)."""
    meta: dict[str, Any] = {
        "format": 1,
        "window": ds.signal.window,
        "hop": ds.signal.hop,
        "train_hop": train_hop if train_hop is not None else ds.signal.hop,
        "rate_hz": ds.signal.rate_hz,
        "label_purity": ds.signal.label_purity,
        "channels": list(CHANNELS),
        "units": {"accel": ACCEL_UNIT, "gyro": GYRO_UNIT},
        "classes": list(ds.classes),
        "scaler": scaler,
        "data": {
            "source": ds.source,
            "hash": ds.data_hash(),
            "n_windows": len(ds),
            "subjects": ds.subjects,
            "class_counts": ds.class_counts(),
            "skipped": ds.skipped,
        },
        "split": split.to_dict() if isinstance(split, Split) else split,
    }
    if extra:
        meta.update(extra)
    return meta
