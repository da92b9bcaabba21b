"""The replay plan: which message leaves when, for every virtual device. Pure, no IO.

Time model. Every device has a *timeline* in milliseconds since the replay started: device
``i`` starts at ``i * stagger``, plays its playlist back to back (a recording of span ``d``
occupies ``[pos, pos + d]``, the next starts one grid step later) and, with ``loop``, starts
over. A sample batch is due on the timeline when its *last* sample was taken (a watch sends
a batch once it is full); a label segment when its segment ends (annotations arrive after
the fact). The pacer maps timeline positions to wall time (``position / speed``).

Data timestamps keep the recording's spacing and are shifted by a multiple of the 20 ms grid,
so grid phase (and every window id) is preserved: in "live" mode so that the replay starts
at the anchor (now), in "original" mode not at all (later loop passes by whole cycles).
Labels get exactly the shift of the samples they annotate.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from producers import drift as drift_mod
from producers import faults
from producers.config import DEFAULT_BATCH_SIZE, ReplayConfig
from producers.devices import device_ids, playlists
from wearmon.schemas import LabelSegment, SampleBatch
from wearmon.signals.types import GRID_MS, HOP, LabelSpan, Recording, SensorSeries

#: live anchors are multiples of one window hop (2 s), so a replay lands on the same grid points
#: and, for a given device id, on the same windows (each device has its own window phase)
ANCHOR_MS = HOP * GRID_MS


@dataclass(slots=True)
class PlannedBatch:
    """One sample message to send at ``due_ms`` on the replay timeline."""

    due_ms: int
    device: str
    sensor: str
    seq: int
    t_ms: np.ndarray  # int64, already shifted (and jittered/skewed)
    xyz: np.ndarray  # (n, 3) float64, canonical units (drift applied)
    unit: str

    def message(self, sent_ms: int = 0) -> SampleBatch:
        x, y, z = self.xyz.T.tolist()
        return SampleBatch(
            device=self.device,
            sensor=self.sensor,  # type: ignore[arg-type]
            t_ms=self.t_ms.tolist(),
            x=x,
            y=y,
            z=z,
            unit=self.unit,
            sent_ms=sent_ms,
            seq=self.seq,
        )

    def __len__(self) -> int:
        return int(self.t_ms.shape[0])


@dataclass(slots=True)
class PlannedLabel:
    """One ground-truth segment to send at ``due_ms`` on the replay timeline."""

    due_ms: int
    device: str
    segment: LabelSegment


Planned = PlannedBatch | PlannedLabel


def _round_to(value: float, step: int) -> int:
    return int(step * math.floor(value / step + 0.5))


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def recording_span(rec: Recording) -> tuple[int, int]:
    """(first, last) sample time over both sensors."""
    t0 = min(int(rec.accel.t_ms[0]), int(rec.gyro.t_ms[0]))
    t1 = max(int(rec.accel.t_ms[-1]), int(rec.gyro.t_ms[-1]))
    return t0, t1


def _advance(pos: int, rec: Recording) -> int:
    t0, t1 = recording_span(rec)
    return pos + _round_up(t1 - t0 + GRID_MS, GRID_MS)


def timeline_end_ms(recordings: Sequence[Recording], cfg: ReplayConfig) -> int | None:
    """Last timeline position of the replay (None: endless, i.e. loop without duration)."""
    limit = None if cfg.duration_s is None else int(cfg.duration_s * 1000)
    if cfg.loop:
        return limit
    stagger = _round_to(cfg.stagger_s * 1000, GRID_MS)
    end = 0
    for i, plist in enumerate(playlists(recordings, cfg.devices)):
        pos = i * stagger
        for rec in plist:
            pos = _advance(pos, rec)
        end = max(end, pos - GRID_MS)
    return end if limit is None else min(end, limit)


def batch_bounds(
    series: SensorSeries, n: int, batch_size: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the messages of ``n`` samples of ``series``.

    ``batch_size`` None: the recording's own batches (a Garmin row) when the series has them
    and still has its ``n`` samples (a rate drift resamples them), else DEFAULT_BATCH_SIZE.
    """
    if batch_size is None and series.batch is not None and series.batch.shape[0] == n:
        starts = np.flatnonzero(np.concatenate(([True], np.diff(series.batch) != 0)))
        return starts, np.append(starts[1:], n)
    size = batch_size or DEFAULT_BATCH_SIZE
    starts = np.arange(0, n, size)
    return starts, np.minimum(starts + size, n)


def _sensor_plan(
    *,
    device: str,
    sensor: str,
    unit: str,
    due: np.ndarray,
    t_sent: np.ndarray,
    xyz: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    seqs: np.ndarray,
    slots: np.ndarray,
    content: np.ndarray,
    dup: np.ndarray,
) -> Iterator[PlannedBatch]:
    for k in range(slots.shape[0]):
        c = int(content[k])
        a, b = int(starts[c]), int(ends[c])
        pb = PlannedBatch(
            int(due[slots[k]]), device, sensor, int(seqs[c]), t_sent[a:b], xyz[a:b], unit
        )
        yield pb
        if dup[k]:
            yield PlannedBatch(pb.due_ms, device, sensor, pb.seq, pb.t_ms, pb.xyz, unit)


def plan_device(
    index: int,
    device: str,
    playlist: Sequence[Recording],
    cfg: ReplayConfig,
    *,
    anchor_ms: int = 0,
    donor: drift_mod.Donor | None = None,
    counts: Counter[str] | None = None,
) -> Iterator[Planned]:
    """Every message of one virtual device, in due order (lazy: one recording at a time)."""
    counts = counts if counts is not None else Counter()
    fc, dc = cfg.faults, cfg.drift
    limit = None if cfg.duration_s is None else round(cfg.duration_s * 1000)
    offset = index * _round_to(cfg.stagger_s * 1000, GRID_MS)
    drifting = dc.applies_to(index)
    drift_tl = offset + round(dc.at_s * 1000)
    rngs = {k: faults.rng_for(fc.seed, index, k) for k in faults.STREAMS if k != "noise"}
    noise_rng = faults.rng_for(dc.seed, index, "noise")
    gaps = faults.GapClock(fc.gap_every_s * 1000, fc.gap_s * 1000, rngs["gaps"])
    seq = {"accel": 0, "gyro": 0}
    spans = [recording_span(r) for r in playlist]
    cycle = _round_up(max(b for _, b in spans) - min(a for a, _ in spans) + GRID_MS, ANCHOR_MS)
    pos = offset
    passes = 0
    while True:
        for rec, (t0, t_end) in zip(playlist, spans, strict=True):
            if limit is not None and pos >= limit:
                return
            if cfg.timestamps == "live":
                shift = _round_to(anchor_ms + pos - t0, GRID_MS)
            else:
                shift = passes * cycle
            gens: list[Iterator[Planned]] = []
            for series in (rec.accel, rec.gyro):
                sensor = series.sensor
                t, xyz = series.t_ms, series.xyz
                if drifting:
                    mask = pos + (t - t0) >= drift_tl
                    if mask.any():
                        rel = pos + (t - t0) - drift_tl
                        if donor is not None:
                            xyz = drift_mod.replace_values(xyz, mask, rel, donor, sensor)
                        if dc.rate_hz:
                            t, xyz = drift_mod.resample_from(
                                t, xyz, int(np.argmax(mask)), dc.rate_hz
                            )
                            mask = pos + (t - t0) >= drift_tl
                        axes = dc.axes_for(sensor)
                        if axes is not None:
                            xyz = drift_mod.apply_axes(xyz, mask, axes)
                        if sensor in dc.sensors:
                            if dc.gain != 1.0 or dc.offset:
                                xyz = drift_mod.apply_gain_offset(xyz, mask, dc.gain, dc.offset)
                            if dc.noise:
                                xyz = drift_mod.apply_noise(xyz, mask, dc.noise, noise_rng)
                        if limit is not None:
                            mask = mask & (pos + (t - t0) < limit)
                        counts["drift_samples"] += int(mask.sum())
                starts, ends = batch_bounds(series, t.shape[0], cfg.batch_size)
                due = pos + (t[ends - 1] - t0)
                nb = starts.shape[0]
                seqs = seq[sensor] + np.arange(nb)
                seq[sensor] += nb
                t_sent = t + shift
                if sensor == "gyro" and fc.skew_ms:
                    t_sent = t_sent + fc.skew_ms
                t_sent = faults.jitter(t_sent, fc.jitter_ms, rngs["jitter"])
                send = np.ones(nb, dtype=bool) if limit is None else due < limit
                in_gap = gaps.in_gap(due) & send
                dropped = faults.bernoulli(nb, fc.drop, rngs["drop"]) & send & ~in_gap
                counts["gap_batches"] += int(in_gap.sum())
                counts["dropped_batches"] += int(dropped.sum())
                slots = np.flatnonzero(send & ~in_gap & ~dropped)
                perm = faults.bounded_permutation(slots.shape[0], fc.reorder, rngs["reorder"])
                content = slots[perm]
                counts["reordered_batches"] += int((perm != np.arange(perm.shape[0])).sum())
                dup = faults.bernoulli(slots.shape[0], fc.duplicate, rngs["duplicate"])
                counts["duplicated_batches"] += int(dup.sum())
                gens.append(
                    _sensor_plan(
                        device=device,
                        sensor=sensor,
                        unit=series.unit,
                        due=due,
                        t_sent=t_sent,
                        xyz=xyz,
                        starts=starts,
                        ends=ends,
                        seqs=seqs,
                        slots=slots,
                        content=content,
                        dup=dup,
                    )
                )
            if cfg.send_labels:
                labels = _labels_of(rec, t0, pos, drift_tl if drifting else None, donor)
                out: list[Planned] = []
                for sp in labels:
                    due_l = pos + (min(sp.end_ms, t_end + GRID_MS) - t0)
                    if limit is not None and due_l >= limit:
                        continue
                    seg = LabelSegment(
                        device=device,
                        start_ms=sp.start_ms + shift,
                        end_ms=sp.end_ms + shift,
                        label=sp.label,
                    )
                    out.append(PlannedLabel(due_l, device, seg))
                out.sort(key=lambda p: p.due_ms)
                gens.append(iter(out))
            yield from heapq.merge(*gens, key=lambda p: p.due_ms)
            pos = _advance(pos, rec)
        passes += 1
        if not cfg.loop:
            return


def _labels_of(
    rec: Recording,
    t0: int,
    pos: int,
    drift_tl: int | None,
    donor: drift_mod.Donor | None,
) -> list[LabelSpan]:
    """The recording's label spans (in its own time), with the donor's after a replacement."""
    if drift_tl is None or donor is None:
        return list(rec.labels)
    drift_t = t0 + (drift_tl - pos)  # drift point in the recording's own time
    _, t_end = recording_span(rec)
    out = [
        LabelSpan(sp.start_ms, min(sp.end_ms, drift_t), sp.label)
        for sp in rec.labels
        if sp.start_ms < drift_t
    ]
    rel_a, rel_b = max(0, t0 - drift_t), t_end + GRID_MS - drift_t
    out.extend(
        LabelSpan(drift_t + sp.start_ms, drift_t + sp.end_ms, sp.label)
        for sp in donor.labels_between(rel_a, rel_b)
    )
    return out


def plan_replay(
    recordings: Sequence[Recording],
    cfg: ReplayConfig,
    *,
    anchor_ms: int = 0,
    counts: Counter[str] | None = None,
) -> Iterator[Planned]:
    """Every message of every virtual device, merged in due order (lazy)."""
    if not recordings:
        raise ValueError("no recordings")
    ids = device_ids(cfg.devices, cfg.device_seed)
    donor = drift_mod.Donor.from_recordings(cfg.drift.donor) if cfg.drift.donor else None
    gens = [
        plan_device(i, ids[i], plist, cfg, anchor_ms=anchor_ms, donor=donor, counts=counts)
        for i, plist in enumerate(playlists(recordings, cfg.devices))
    ]
    if len(gens) == 1:
        return gens[0]
    return heapq.merge(*gens, key=lambda p: p.due_ms)


def live_anchor(now_ms: int) -> int:
    """The anchor of a live replay starting at ``now_ms``: the last window-hop boundary."""
    return now_ms - now_ms % ANCHOR_MS
