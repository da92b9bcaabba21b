"""The training pool of a retraining: the base data set, new labelled recordings dropped into
the incoming folder, and ground-truth labels received on the labels topic joined with the
raw windows the stream saw.

- **Base**: ``settings.lifecycle.base_data`` (default ``seglearn``), every subject.
- **Incoming**: ``settings.lifecycle.incoming_dir`` (default ``data_dir/incoming/``). Each
  labelled recording is one file (a flat table with a label column, an ADAM-Sense table) or a
  Garmin pair ``<stamp>-accelerometer_data.xlsx`` + ``<stamp>-gyroscope_data.xlsx`` (with its
  ``<stamp>-labels.csv``); files of a sub-folder belong to the wearer named by the folder.
  Their subjects are prefixed ``new:`` (never confused with base subjects). A file that
  cannot be read is skipped, counted and logged, and named in the manifest.
- **Stream**: the windows the stream saw for devices that sent ground truth on the labels
  topic (the worker stores it as ``label:seg:{device}``), joined by the rule of training
  windows (the majority label must cover ``signal.label_purity`` of the window). By default
  (``lifecycle.stream_source = "kafka"``) they are rebuilt from the samples topic, whose
  retention bounds them: the topic's messages of the last ``lifecycle.stream_lookback_s``
  go through the worker's own checks (``check_arrays``) and windower (same phase per
  device), so they are exactly the windows the worker classified. ``"redis"`` reads them
  from the Redis stream ``win:raw:{device}`` the worker keeps when ``stream.raw_windows``
  is on (``stream_processor.sinks.raw_windows_key``; entry id ``{window_start_ms}-0``,
  field ``x`` in the :mod:`wearmon.signals.raw` format; bounded, with a TTL).

**The new data, and what the gate holds out.** A retraining started by the monitor names the
drift's onset (``since_ms``): stream windows from the onset on are the new data; the earlier
ones of the same devices are training data only. Of the new data, a share
``lifecycle.new_holdout_fraction`` is held out for the promotion gate and never trained on:

- whole stream devices, when at least ``lifecycle.holdout_min_devices`` devices have new
  windows (the first devices in the order of the SHA-256 of their names; every window of a
  held-out device, before the onset too, stays out of training). A device's windows are one
  person in one session, strongly alike from window to window: a challenger tested on later
  windows of devices it trained on is tested on the people and sessions it learnt, and a
  replay that loops its recordings would hold out windows it trained on. Held-out devices
  ask what the gate must know: is the challenger better for people it did not train on;
- else the last part in time of each device (training windows end before the cut,
  held-out windows start after it); incoming recordings are always split this way.

Stream windows for training are rebuilt at the training hop (more, overlapping windows),
held-out ones at the stream's hop (the windows the worker classified). The manifest names
every source with its SHA-256, for the lineage record.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stream_processor.episodes import key_device
from stream_processor.sinks import raw_windows_key
from trainer.datasets import WindowDataset, load_recordings, window_dataset
from wearmon.errors import BadRecordingError, KafkaUnavailableError, WearmonError
from wearmon.settings import Settings, SignalSettings
from wearmon.signals.raw import decode_raw_window
from wearmon.signals.types import GRID_MS, LabelSpan, Recording

log = logging.getLogger(__name__)

NEW_PREFIX = "new:"
_RECORDING_SUFFIXES = (".csv", ".xlsx", ".xls")
_GARMIN_MARKERS = ("-accelerometer_data", "-gyroscope_data", "-labels")


def incoming_dir(settings: Settings) -> Path:
    return settings.lifecycle.incoming_dir or settings.data_dir / "incoming"


@dataclass
class NewData:
    """New labelled windows: for training (at the eval and the training hop) and held out."""

    train_eval: WindowDataset | None
    train: WindowDataset | None
    holdout: WindowDataset | None


@dataclass
class Pool:
    base_eval: WindowDataset  # stream hop
    base_train: WindowDataset  # training hop
    new: NewData
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def n_new_holdout(self) -> int:
        return 0 if self.new.holdout is None else len(self.new.holdout)


# --- pure parts -----------------------------------------------------------------------------


def concat(parts: Sequence[WindowDataset | None], classes: Sequence[str]) -> WindowDataset:
    """One dataset of several (class indices mapped onto ``classes``; windows of other
    classes dropped)."""
    ps: list[WindowDataset] = [p for p in parts if p is not None and len(p)]
    if not ps:
        raise BadRecordingError("the training pool is empty")
    index = {c: k for k, c in enumerate(classes)}
    xs, ys, gs, ss, rs = [], [], [], [], []
    offset = 0
    for p in ps:
        names = np.asarray([p.classes[i] for i in p.y], dtype=object)
        keep = np.asarray([n in index for n in names], dtype=bool)
        xs.append(p.x[keep])
        ys.append(np.asarray([index[n] for n in names[keep]], dtype=np.int64))
        gs.append(p.groups[keep])
        ss.append(p.start_ms[keep])
        rs.append(p.recording[keep] + offset)
        offset += int(p.recording.max()) + 1 if len(p.recording) else 0
    first = ps[0]
    return WindowDataset(
        x=np.concatenate(xs),
        y=np.concatenate(ys),
        classes=list(classes),
        groups=np.concatenate(gs),
        start_ms=np.concatenate(ss),
        recording=np.concatenate(rs),
        source="+".join(dict.fromkeys(p.source for p in ps)),
        signal=first.signal,
    )


def split_times(ds: WindowDataset, fraction: float) -> dict[int, int]:
    """{recording: split time}: the start of the first held-out window of each recording
    (its last ``fraction`` of windows, at least one)."""
    out: dict[int, int] = {}
    for r in np.unique(ds.recording):
        starts = np.sort(ds.start_ms[ds.recording == r])
        k = max(1, round(fraction * len(starts)))
        out[int(r)] = int(starts[len(starts) - k])
    return out


def split_in_time(
    ds: WindowDataset, times: dict[int, int], window_ms: int
) -> tuple[WindowDataset, WindowDataset]:
    """(windows that end by their recording's split time, windows that start at or after
    it): no training window overlaps a held-out one."""
    cut = np.asarray([times.get(int(r), np.iinfo(np.int64).max) for r in ds.recording])
    before = np.flatnonzero(ds.start_ms + window_ms <= cut)
    after = np.flatnonzero(ds.start_ms >= cut)
    return ds.subset(before), ds.subset(after)


def holdout_devices(names: Sequence[str], fraction: float) -> set[str]:
    """The held-out devices of ``names``: ``round(fraction * n)`` of them (at least one,
    never all), the first in the order of the SHA-256 of their names (deterministic, and not
    the order in which they arrived or sort)."""
    uniq = sorted(set(names))
    k = min(len(uniq) - 1, max(1, round(fraction * len(uniq))))
    ranked = sorted(uniq, key=lambda n: hashlib.sha256(n.encode()).hexdigest())
    return set(ranked[:k])


def label_windows(
    start_ms: np.ndarray, spans: Sequence[LabelSpan], window_ms: int, purity: float
) -> list[str | None]:
    """The majority label of each window [start, start + window_ms) over ``spans`` when it
    covers at least ``purity`` of the window, else None (the rule of training windows)."""
    out: list[str | None] = []
    for s in np.asarray(start_ms, dtype=np.int64).tolist():
        e = s + window_ms
        cover: dict[str, int] = {}
        for sp in spans:
            c = min(sp.end_ms, e) - max(sp.start_ms, s)
            if c > 0:
                cover[sp.label] = cover.get(sp.label, 0) + c
        best = max(cover.items(), key=lambda kv: kv[1], default=None)
        out.append(best[0] if best is not None and best[1] >= purity * window_ms else None)
    return out


# --- incoming folder ------------------------------------------------------------------------


def _group_key(path: Path) -> str:
    name = path.stem
    for marker in _GARMIN_MARKERS:
        if marker in name:
            return str(path.with_name(name.split(marker)[0]))
    return str(path.with_suffix(""))


def incoming_groups(folder: Path) -> list[list[Path]]:
    """The files of each recording in the incoming folder (sorted, deterministic)."""
    if not folder.is_dir():
        return []
    groups: dict[str, list[Path]] = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.suffix.lower() in _RECORDING_SUFFIXES and not p.name.startswith("."):
            groups.setdefault(_group_key(p), []).append(p)
    return [g for g in groups.values() if any(not p.name.endswith("labels.csv") for p in g)]


def files_hash(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        with p.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def read_incoming(folder: Path) -> tuple[list[Recording], list[dict[str, Any]], dict[str, str]]:
    """(labelled recordings, manifest rows, {file: reason} of the skipped ones)."""
    from wearmon.signals import readers

    recs: list[Recording] = []
    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    for files in incoming_groups(folder):
        rel = files[0].parent.relative_to(folder)
        name = str(files[0].relative_to(folder))
        try:
            rec = readers.read_recording(files)
        except WearmonError as exc:
            skipped[name] = str(exc)
            log.warning("incoming recording skipped: %s", exc)
            continue
        if not rec.labels:
            skipped[name] = "no labels"
            log.warning("incoming recording %s skipped: it has no labels", name)
            continue
        wearer = str(rel) if str(rel) != "." else (rec.subject or _group_key(files[0]))
        rec = dataclasses.replace(rec, subject=f"{NEW_PREFIX}{Path(str(wearer)).name}")
        recs.append(rec)
        rows.append(
            {
                "files": [str(p.relative_to(folder)) for p in files],
                "subject": rec.subject,
                "sha256": files_hash(files),
            }
        )
    return recs, rows, skipped


# --- stream windows joined with labels ------------------------------------------------------


def stream_windows(
    client: Any, signal: SignalSettings, *, max_devices: int = 10_000
) -> WindowDataset | None:
    """Raw stream windows (``win:raw:*``) that the stored ground truth labels, one
    "recording" per device (subject ``new:stream:{device}``); None when there are none."""
    from stream_processor.sinks import labels_key

    window_ms = signal.window * GRID_MS
    xs: list[np.ndarray] = []
    labs: list[str] = []
    groups: list[str] = []
    starts: list[int] = []
    recs: list[int] = []
    bad = 0
    devices = sorted(
        key_device(k) for k in client.scan_iter(match=raw_windows_key("*"), count=1000)
    )[:max_devices]
    for i, device in enumerate(devices):
        spans = _spans(client.zrange(labels_key(device), 0, -1))
        if not spans:
            continue
        entries = client.xrange(raw_windows_key(device))
        ws = np.asarray([int(_s(eid).split("-")[0]) for eid, _ in entries], dtype=np.int64)
        for (_, fields), s, lab in zip(
            entries, ws, label_windows(ws, spans, window_ms, signal.label_purity), strict=True
        ):
            if lab is None:
                continue
            try:
                x = decode_raw_window(fields[b"x"], signal.window)
            except (KeyError, ValueError):
                bad += 1
                continue
            xs.append(x)
            labs.append(lab)
            groups.append(f"{NEW_PREFIX}stream:{device}")
            starts.append(int(s))
            recs.append(i)
    if bad:
        log.warning("skipped %d unreadable raw stream windows", bad)
    if not xs:
        return None
    classes = sorted(set(labs))
    index = {c: k for k, c in enumerate(classes)}
    return WindowDataset(
        x=np.stack(xs),
        y=np.asarray([index[v] for v in labs], dtype=np.int64),
        classes=classes,
        groups=np.asarray(groups, dtype=object),
        start_ms=np.asarray(starts, dtype=np.int64),
        recording=np.asarray(recs, dtype=np.int64),
        source="stream",
        signal=signal,
        skipped={"unreadable": bad} if bad else {},
    )


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _spans(members: Sequence[Any]) -> list[LabelSpan]:
    """Segments stored as ``start:end:label`` (stream_processor.sinks)."""
    out = []
    for m in members:
        a, _, rest = _s(m).partition(":")
        b, _, label = rest.partition(":")
        try:
            out.append(LabelSpan(int(a), int(b), label))
        except ValueError:
            continue
    return out


# --- the pool -------------------------------------------------------------------------------


def _windows(
    recs: Sequence[Recording], signal: SignalSettings, classes: Sequence[str] | None, src: str
) -> WindowDataset | None:
    if not recs:
        return None
    try:
        return window_dataset(recs, signal, classes=classes, source=src)
    except BadRecordingError as exc:  # no labelled windows of a known class
        log.warning("%s: %s", src, exc)
        return None


def _split_new(
    ev: WindowDataset | None, tr: WindowDataset | None, fraction: float, window_ms: int
) -> tuple[WindowDataset | None, WindowDataset | None, WindowDataset | None]:
    """(train windows at the eval hop, at the training hop, held out) of one new source."""
    if ev is None or not len(ev):
        return None, None, None
    times = split_times(ev, fraction)
    ev_train, holdout = split_in_time(ev, times, window_ms)
    tr_train = split_in_time(tr, times, window_ms)[0] if tr is not None else ev_train
    return ev_train, tr_train, holdout


def _split_stream(
    ev: WindowDataset | None,
    tr: WindowDataset | None,
    since_ms: int | None,
    fraction: float,
    window_ms: int,
    min_devices: int,
) -> tuple[WindowDataset | None, WindowDataset | None, WindowDataset | None, str]:
    """(train windows at the eval hop, at the training hop, held out, how) of the stream's
    labelled windows (module doc): new data from ``since_ms`` on (None: all of it)."""
    if ev is None or not len(ev):
        return None, None, None, "none"
    tr = tr if tr is not None else ev
    is_new = ev.start_ms >= (since_ms if since_ms is not None else np.iinfo(np.int64).min)
    new_devices = sorted({str(g) for g in ev.groups[is_new]})
    if not new_devices:
        return ev, tr, None, "none"
    if len(new_devices) >= min_devices:
        held = sorted(holdout_devices(new_devices, fraction))
        out_ev, out_tr = np.isin(ev.groups, held), np.isin(tr.groups, held)
        return (
            ev.subset(np.flatnonzero(~out_ev)),
            tr.subset(np.flatnonzero(~out_tr)),
            ev.subset(np.flatnonzero(out_ev & is_new)),
            f"devices {','.join(held)}",
        )
    times = split_times(ev.subset(np.flatnonzero(is_new)), fraction)
    ev_train, holdout = split_in_time(ev, times, window_ms)
    return ev_train, split_in_time(tr, times, window_ms)[0], holdout, "time"


def _maybe_concat(parts: Sequence[WindowDataset | None], classes: Sequence[str]) -> Any:
    ps = [p for p in parts if p is not None and len(p)]
    return concat(ps, classes) if ps else None


def _describe(ds: WindowDataset | None) -> dict[str, Any]:
    if ds is None or not len(ds):
        return {"n": 0}
    return {"n": len(ds), "hash": ds.data_hash(), "subjects": ds.subjects}


def _new_data(
    settings: Settings,
    new_recs: Sequence[Recording],
    stream: tuple[WindowDataset | None, WindowDataset | None],
    classes: Sequence[str],
    tsig: SignalSettings,
    since_ms: int | None,
) -> tuple[NewData, str]:
    sig = settings.signal
    lc = settings.lifecycle
    window_ms = sig.window * GRID_MS
    inc = _split_new(
        _windows(new_recs, sig, classes, "incoming"),
        _windows(new_recs, tsig, classes, "incoming") if tsig.hop != sig.hop else None,
        lc.new_holdout_fraction,
        window_ms,
    )
    st = _split_stream(
        *stream, since_ms, lc.new_holdout_fraction, window_ms, lc.holdout_min_devices
    )
    new = NewData(
        train_eval=_maybe_concat([inc[0], st[0]], classes),
        train=_maybe_concat([inc[1], st[1]], classes),
        holdout=_maybe_concat([inc[2], st[2]], classes),
    )
    return new, st[3]


def new_stream_windows(
    settings: Settings, client: Any, train_hop: int | None = None
) -> tuple[WindowDataset | None, WindowDataset | None]:
    """Labelled stream windows from ``lifecycle.stream_source`` at the stream's hop, and at
    ``train_hop`` where the source can rebuild them (else None): ``kafka`` (rebuilt from the
    samples topic), ``redis`` (``win:raw:{device}``, if a worker keeps them) or ``off``."""
    source = settings.lifecycle.stream_source
    if client is None or source == "off":
        return None, None
    if source == "redis":
        return stream_windows(client, settings.signal), None
    return kafka_window_sets(settings, client, train_hop)


def load_new_holdout(
    settings: Settings,
    classes: Sequence[str],
    *,
    redis_client: Any = None,
    since_ms: int | None = None,
) -> WindowDataset | None:
    """Only the held-out part of the new labelled data (``wearmon model promote``)."""
    new_recs, _, _ = read_incoming(incoming_dir(settings))
    stream = new_stream_windows(settings, redis_client)
    return _new_data(settings, new_recs, stream, classes, settings.signal, since_ms)[0].holdout


def load_pool(
    settings: Settings,
    *,
    classes: Sequence[str] | None = None,
    train_hop: int | None = None,
    redis_client: Any = None,
    since_ms: int | None = None,
) -> Pool:
    """The training pool (module doc). ``classes``: keep only these (fine-tuning keeps the
    champion's classes); None: every class seen. ``redis_client``: also the labelled stream
    windows. ``since_ms``: the drift's onset (stream windows before it train only)."""
    lc = settings.lifecycle
    sig = settings.signal
    tsig = sig.model_copy(update={"hop": int(train_hop)}) if train_hop else sig
    base_recs = load_recordings(lc.base_data)
    folder = incoming_dir(settings)
    new_recs, rows, skipped = read_incoming(folder)
    stream = new_stream_windows(settings, redis_client, tsig.hop if train_hop else None)
    if classes is None:
        seen = {lab.label for r in [*base_recs, *new_recs] for lab in r.labels}
        seen |= set(stream[0].classes) if stream[0] is not None else set()
        classes = sorted(seen)
    base_eval = window_dataset(base_recs, sig, classes=classes, source=lc.base_data)
    base_train = (
        base_eval if tsig.hop == sig.hop else window_dataset(base_recs, tsig, classes=classes)
    )
    new, held_by = _new_data(settings, new_recs, stream, classes, tsig, since_ms)
    manifest = {
        "base": {"source": lc.base_data, **_describe(base_eval)},
        "incoming": {"dir": str(folder), "recordings": rows, "skipped": skipped},
        "stream": {**_describe(stream[0]), "since_ms": since_ms, "held_out_by": held_by},
        "new_train": _describe(new.train_eval),
        "new_holdout": _describe(new.holdout),
    }
    log.info(
        "training pool: %d base windows, %d new for training, %d new held out (stream: %s)",
        len(base_eval),
        manifest["new_train"]["n"],
        manifest["new_holdout"]["n"],
        held_by,
    )
    return Pool(base_eval, base_train, new, manifest)


# --- stream windows rebuilt from the samples topic ------------------------------------------


def labelled_devices(client: Any) -> dict[str, list[LabelSpan]]:
    """{device: ground-truth segments} of every device with segments in Redis."""
    from stream_processor.sinks import labels_key

    out: dict[str, list[LabelSpan]] = {}
    for k in client.scan_iter(match=labels_key("*"), count=1000):
        device = key_device(k)
        spans = _spans(client.zrange(_s(k), 0, -1))
        if spans:
            out[device] = spans
    return out


def _windower(signal: SignalSettings, device: str, hop: int | None = None) -> Any:
    """The worker's windower of a device (stream_processor.processor: same settings), or
    one at another ``hop`` (training windows)."""
    from wearmon.signals.stream import IncrementalWindower
    from wearmon.signals.windows import window_phase_ms

    hop = hop or signal.hop
    return IncrementalWindower(
        max_gap_ms=signal.max_gap_ms,
        lateness_ms=signal.lateness_ms,
        window=signal.window,
        hop=hop,
        device=device,
        phase_ms=window_phase_ms(device, hop, spread=signal.phase_by_device),
    )


def read_samples_topic(
    settings: Settings,
    devices: set[str],
    *,
    lookback_s: float,
    max_messages: int,
    hops: Sequence[int] = (),
) -> tuple[dict[int, dict[str, Any]], dict[str, int]]:
    """Replay the samples topic (messages of the last ``lookback_s``, at most
    ``max_messages``) through the worker's checks and windower for ``devices``, at the
    stream's hop and at each of ``hops``; returns ({hop: {device: Windows}}, counters).
    Kafka's retention bounds what is there."""
    import uuid

    from confluent_kafka import OFFSET_END, Consumer, KafkaError, KafkaException, TopicPartition

    from stream_processor.deadletter import BadMessage, check_arrays
    from wearmon.signals.stream import concat_windows

    topic = settings.kafka.samples_topic
    conf = {
        **settings.kafka.confluent_config(),
        "group.id": f"wearmon-pool-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
    }
    consumer = Consumer(conf)
    counts = {"messages": 0, "kept": 0, "bad": 0}
    all_hops = list(dict.fromkeys([settings.signal.hop, *hops]))
    parts: dict[tuple[int, str], list[Any]] = {}
    windowers: dict[tuple[int, str], Any] = {}
    keys = {d.encode() for d in devices}
    try:
        try:
            meta = consumer.list_topics(topic, timeout=10)
        except KafkaException as exc:
            raise KafkaUnavailableError(
                f"cannot read the samples topic {topic} for labelled stream windows: {exc}"
            ) from None
        if topic not in meta.topics or meta.topics[topic].error is not None:
            return {hop: {} for hop in all_hops}, counts
        since = int((time.time() - lookback_s) * 1000)
        tps = [TopicPartition(topic, p, since) for p in meta.topics[topic].partitions]
        starts = consumer.offsets_for_times(tps, timeout=10)
        todo = {}
        for tp in starts:
            hi = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)[1]
            if tp.offset not in (OFFSET_END, -1) and tp.offset < hi:
                todo[tp.partition] = hi
        if not todo:
            return {hop: {} for hop in all_hops}, counts
        consumer.assign([tp for tp in starts if tp.partition in todo])
        now = int(time.time() * 1000)
        while todo and counts["messages"] < max_messages:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            part = int(msg.partition() or 0)
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    todo.pop(part, None)
                continue
            counts["messages"] += 1
            if int(msg.offset() or 0) + 1 >= todo.get(part, 0):
                todo.pop(part, None)
            if msg.key() not in keys:
                continue
            try:
                batch, t, xyz = check_arrays(msg.value(), msg.key(), now_ms=now)
            except BadMessage:
                counts["bad"] += 1
                continue
            for hop in all_hops:
                key = (hop, batch.device)
                w = windowers.get(key) or _windower(settings.signal, batch.device, hop)
                windowers[key] = w
                parts.setdefault(key, []).append(w.push(batch.sensor, t, xyz))
            counts["kept"] += 1
    finally:
        consumer.close()
    out: dict[int, dict[str, Any]] = {hop: {} for hop in all_hops}
    for (hop, device), w in windowers.items():
        got = concat_windows([*parts[(hop, device)], w.flush()], window=settings.signal.window)
        out[hop][device] = got
    return out, counts


def kafka_windows(settings: Settings, client: Any) -> WindowDataset | None:
    """The labelled windows of the devices that sent ground truth, rebuilt from the samples
    topic with the worker's own code; one "recording" per device (``new:stream:{device}``)."""
    return kafka_window_sets(settings, client)[0]


def kafka_window_sets(
    settings: Settings, client: Any, train_hop: int | None = None
) -> tuple[WindowDataset | None, WindowDataset | None]:
    """:func:`kafka_windows`, and the same devices' labelled windows at ``train_hop`` (None
    when not asked for or the stream's own hop), from one read of the topic."""
    lc = settings.lifecycle
    truth = labelled_devices(client)
    if not truth:
        return None, None
    hop = settings.signal.hop
    extra = [train_hop] if train_hop and train_hop != hop else []
    wins, counts = read_samples_topic(
        settings,
        set(truth),
        lookback_s=lc.stream_lookback_s,
        max_messages=lc.stream_max_messages,
        hops=extra,
    )
    ev = _labelled_stream(settings, wins[hop], truth)
    log.info(
        "samples topic: %d messages read, %d of %d labelled devices kept, %d refused; "
        "%d labelled windows",
        counts["messages"],
        counts["kept"],
        len(truth),
        counts["bad"],
        0 if ev is None else len(ev),
    )
    return ev, (_labelled_stream(settings, wins[extra[0]], truth) if extra else None)


def _labelled_stream(
    settings: Settings, wins: dict[str, Any], truth: dict[str, list[LabelSpan]]
) -> WindowDataset | None:
    """The windows of each device that its ground truth labels (the rule of training
    windows), one "recording" per device, numbered in the order of ``truth``'s devices."""
    window_ms = settings.signal.window * GRID_MS
    index_of = {d: i for i, d in enumerate(sorted(truth))}
    xs, labs, groups, starts, recs = [], [], [], [], []
    for device in sorted(wins):
        i = index_of[device]
        w = wins[device]
        lab = label_windows(w.start_ms, truth[device], window_ms, settings.signal.label_purity)
        keep = np.asarray([v is not None for v in lab], dtype=bool)
        if not keep.any():
            continue
        xs.append(np.asarray(w.x, dtype=np.float32)[keep])
        labs += [str(v) for v in lab if v is not None]
        groups += [f"{NEW_PREFIX}stream:{device}"] * int(keep.sum())
        starts.append(np.asarray(w.start_ms, dtype=np.int64)[keep])
        recs += [i] * int(keep.sum())
    if not labs:
        return None
    classes = sorted(set(labs))
    index = {c: k for k, c in enumerate(classes)}
    return WindowDataset(
        x=np.concatenate(xs),
        y=np.asarray([index[v] for v in labs], dtype=np.int64),
        classes=classes,
        groups=np.asarray(groups, dtype=object),
        start_ms=np.concatenate(starts),
        recording=np.asarray(recs, dtype=np.int64),
        source="stream",
        signal=settings.signal,
    )
