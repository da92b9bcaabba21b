"""Helpers of the stream-processor integration tests: a tiny registered model, a recording
sent as SampleBatch messages, worker subprocesses, and reading predictions back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stream_processor.sinks import history_key
from wearmon.schemas import SampleBatch, encode
from wearmon.settings import Settings
from wearmon.signals.types import Recording, Windows

CLASSES = ["ER", "IR", "PEN", "REST", "SHRUG", "SWING", "TAP"]


def tiny_model_dir(out: Path, *, seed: int = 0, window: int = 200, n_classes: int = 7) -> Path:
    """A small random Keras model in the registry's folder layout (fast to load and run)."""
    import keras

    from trainer.registry import save_model_dir

    keras.utils.set_random_seed(seed)
    inp = keras.Input((window, 6))
    h = keras.layers.Conv1D(8, 9, activation="relu")(inp)
    h = keras.layers.GlobalAveragePooling1D()(h)
    out_l = keras.layers.Dense(n_classes, activation="softmax")(h)
    model = keras.Model(inp, out_l)
    meta = {
        "format": 1,
        "window": 200,
        "hop": 100,
        "rate_hz": 50,
        "channels": ["Ax", "Ay", "Az", "Gx", "Gy", "Gz"],
        "units": {"accel": "m/s2", "gyro": "deg/s"},
        "classes": CLASSES[:n_classes]
        if n_classes <= len(CLASSES)
        else [f"c{i}" for i in range(n_classes)],
        "scaler": {
            "mean": [0.0, 0.0, 9.0, 0.0, 0.0, 0.0],
            "scale": [3.0, 3.0, 3.0, 60.0, 60.0, 60.0],
        },
        "data": {"source": "test", "hash": f"seed{seed}"},
        "split": None,
    }
    return save_model_dir(out, model, meta)


#: {(seed, window, backend): a tiny model folder with its serving export already converted}:
#: the registrations of one test session share them (one conversion per seed, not per test)
_TINY_DIRS: dict[tuple[int, int, str], Path] = {}


def register_tiny(
    settings: Settings, tmp: Path, *, seed: int, champion: bool = True, window: int = 200
) -> str:
    """Register the tiny model of ``seed`` (as alias champion unless ``champion`` is False).
    Its folder, built once per session, carries the export of the backend the settings
    serve with, so no worker or test converts it again."""
    from trainer.registry import register_dir, set_alias
    from trainer.serving import from_dir

    backend = settings.stream.inference_backend
    key = (seed, window, backend)
    if key not in _TINY_DIRS:
        folder = tiny_model_dir(tmp / f"m{seed}-{window}", seed=seed, window=window)
        if window == settings.signal.window:  # a model of another window is refused unconverted
            from_dir(
                folder, f"tiny-{seed}", backend=backend, threads=settings.stream.inference_threads
            )
        _TINY_DIRS[key] = folder
    version = register_dir(settings, _TINY_DIRS[key])
    if champion:
        set_alias(settings, "champion", version)
    return version


def generated_recording(folder: Path, *, subject: int, seed: int, exercises: int) -> Recording:
    """A short Garmin-style session of a real seglearn subject, read back with its labels."""
    from wearmon.signals.readers import read_garmin_pair
    from wearmon.signals.recording_gen import make_recording

    paths = make_recording(folder, subject=subject, seed=seed, max_exercises=exercises)
    return read_garmin_pair(paths[0], paths[1])


def messages_of(rec: Recording, device: str, chunk: int = 25) -> list[SampleBatch]:
    """The recording as per-sensor batches of ``chunk`` samples, in time order."""
    out: list[tuple[int, int, SampleBatch]] = []
    for k, series in enumerate((rec.accel, rec.gyro)):
        t = np.asarray(series.t_ms, dtype=np.int64)
        x = np.asarray(series.xyz, dtype=np.float64)
        for i in range(0, len(t), chunk):
            sl = slice(i, i + chunk)
            out.append(
                (
                    int(t[sl][-1]),
                    k,
                    SampleBatch(
                        device=device,
                        sensor=series.sensor,
                        t_ms=t[sl].tolist(),
                        x=x[sl, 0].tolist(),
                        y=x[sl, 1].tolist(),
                        z=x[sl, 2].tolist(),
                        unit=series.unit,
                        seq=i // chunk,
                    ),
                )
            )
    out.sort(key=lambda r: (r[0], r[1]))
    return [m for _, _, m in out]


def send(
    settings: Settings,
    msgs: list[SampleBatch],
    *,
    topic: str | None = None,
    pace_s: float = 0.0,
    extra: list[tuple[str, bytes]] = (),
) -> None:
    """Send messages keyed by device (stamping sent_ms); ``extra``: raw (key, value) first."""
    from confluent_kafka import Producer

    p = Producer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
        }
    )
    topic = topic or settings.kafka.samples_topic
    for key, value in extra:
        p.produce(topic, key=key.encode(), value=value)
    for i, m in enumerate(msgs):
        stamped = SampleBatch(**{**_fields(m), "sent_ms": int(time.time() * 1000)})
        p.produce(topic, key=m.device.encode(), value=encode(stamped))
        if pace_s and i % 50 == 49:
            p.poll(0)
            time.sleep(pace_s)
    assert p.flush(30) == 0


def _fields(m: Any) -> dict[str, Any]:
    return {f: getattr(m, f) for f in m.__struct_fields__}


@dataclass
class Run:
    """Names of one test's isolated pipeline (topics, group, model name)."""

    run: str
    env: dict[str, str]
    settings: Settings

    @property
    def app_id(self) -> str:
        """The worker's consumer group and checkpoint prefix."""
        return self.env["WEARMON_STREAM__APP_ID"]


def make_run(stack: Settings, subprocess_env: dict[str, str], **extra_env: str) -> Run:
    from confluent_kafka.admin import AdminClient, NewTopic

    run = uuid.uuid4().hex[:8]
    topics = {
        "SAMPLES_TOPIC": f"t.samples.{run}",
        "PREDICTIONS_TOPIC": f"t.pred.{run}",
        "LABELS_TOPIC": f"t.labels.{run}",
        "DEADLETTER_TOPIC": f"t.dl.{run}",
    }
    env = dict(subprocess_env)
    env.update({f"WEARMON_KAFKA__{k}": v for k, v in topics.items()})
    env.update(
        WEARMON_KAFKA__PARTITIONS="4",
        WEARMON_STREAM__APP_ID=f"wm-test-{run}",
        WEARMON_MODEL_NAME=f"wearmon-test-{run}",
        WEARMON_STREAM__MODEL_POLL_S="1.0",
        WEARMON_STREAM__CHECKPOINT_S="0.5",
        WEARMON_LOG_LEVEL="INFO",
    )
    env.update(extra_env)
    settings = stack.model_copy(
        update={
            "model_name": f"wearmon-test-{run}",
            "kafka": stack.kafka.model_copy(
                update={k.lower(): v for k, v in topics.items()} | {"partitions": 4}
            ),
        }
    )
    admin = AdminClient({"bootstrap.servers": stack.kafka.bootstrap_servers})
    futs = admin.create_topics(
        [
            NewTopic(t, num_partitions=4 if "dl" not in t else 1, replication_factor=1)
            for t in topics.values()
        ]
    )
    for f in futs.values():
        f.result(timeout=30)
    return Run(run, env, settings)


def start_worker(
    env: dict[str, str], log_path: Path, metrics_port: int | None = None
) -> subprocess.Popen[bytes]:
    env = dict(env)
    if metrics_port is not None:
        env["WEARMON_METRICS__STREAM_PORT"] = str(metrics_port)
    fh = open(log_path, "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "wearmon.cli.main", "process"],
        env=env,
        stdout=fh,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_worker(proc: subprocess.Popen[bytes], *, hard: bool = False) -> None:
    if proc.poll() is not None:
        return
    if hard:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@contextmanager
def running_worker(
    env: dict[str, str], log_path: Path, metrics_port: int | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A worker for the ``with`` block, stopped (SIGTERM) when it ends."""
    proc = start_worker(env, log_path, metrics_port)
    try:
        yield proc
    finally:
        stop_worker(proc)


def interleaved(rec: Recording, devices: list[str]) -> list[SampleBatch]:
    """The messages of ``rec`` replayed as each of ``devices``, the devices taking turns."""
    per = [messages_of(rec, d) for d in devices]
    return [m for group in zip(*per, strict=True) for m in group]


def n_predicted(redis_client: Any, devices: Iterable[str]) -> int:
    """How many history entries ``devices`` have together."""
    return sum(redis_client.xlen(history_key(d)) for d in devices)


def all_predicted(redis_client: Any, expected: dict[str, dict[int, str]]) -> bool:
    """Every device of ``expected`` has at least as many history entries as windows."""
    return all(redis_client.xlen(history_key(d)) >= len(e) for d, e in expected.items())


def checkpointed(redis_client: Any, run: Run) -> bool:
    """The worker's checkpoints cover every message now in the run's samples topic: all it
    will write for them (predictions, dead letters, checkpoint) is written, since each batch
    writes its predictions and its checkpoint in one script."""
    from confluent_kafka import Consumer, TopicPartition

    from stream_processor.sinks import OFFSET_FIELD, checkpoint_key

    topic = run.settings.kafka.samples_topic
    c = Consumer(
        {"bootstrap.servers": run.settings.kafka.bootstrap_servers, "group.id": "ckpt-probe"}
    )
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
    finally:
        c.close()
    for p, end in ends.items():
        if end == 0:
            continue
        keys = list(redis_client.scan_iter(match=checkpoint_key(run.app_id, topic, p, "*")))
        offsets = [redis_client.hget(k, OFFSET_FIELD) for k in keys]
        if not any(o is not None and int(o) >= end - 1 for o in offsets):
            return False
    return True


def history(redis_client: Any, device: str) -> list[dict[str, str]]:
    """All history entries of a device, oldest first (entry id included as ``id``)."""
    out = []
    for eid, fields in redis_client.xrange(history_key(device)):
        row = {k.decode(): v.decode() for k, v in fields.items()}
        row["id"] = eid.decode()
        out.append(row)
    return out


def wait_for(
    cond: Any,
    timeout: float,
    procs: Iterator[Any] | list[Any] = (),
    logs: Path | None = None,
    what: str = "condition",
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        for p in procs:
            if p.poll() is not None:
                tail = logs.read_text()[-4000:] if logs is not None and logs.exists() else ""
                raise AssertionError(f"worker exited ({p.returncode}) waiting for {what}\n{tail}")
        time.sleep(0.5)
    tail = logs.read_text()[-4000:] if logs is not None and logs.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n{tail}")


def device_windows(rec: Recording, settings: Settings, device: str, **labels: Any) -> Windows:
    """The batch path's windows of ``rec`` replayed as ``device`` (its window phase);
    ``labels``: ``labels=..., purity=...`` for labelled windows."""
    from wearmon.signals.grid import fuse_to_grid
    from wearmon.signals.windows import make_windows, window_phase_ms

    sig = settings.signal
    grid = fuse_to_grid(rec.accel, rec.gyro, max_gap_ms=sig.max_gap_ms)
    phase = window_phase_ms(device, sig.hop, spread=sig.phase_by_device)
    return make_windows(grid, window=sig.window, hop=sig.hop, phase_ms=phase, **labels).windows


def decided(wins: Windows, rec: Recording, settings: Settings) -> np.ndarray:
    """Mask of the windows the stream decides before the replay of ``rec`` ends: a window
    is decided once its end is lateness_ms behind the newest sample."""
    t_end = min(int(rec.accel.t_ms[-1]), int(rec.gyro.t_ms[-1]))
    return np.asarray(wins.end_ms + settings.signal.lateness_ms + 100 < t_end)


def expected_windows(
    rec: Recording, settings: Settings, device: str, version: str | None = None
) -> dict[int, str]:
    """{window_start_ms: label} from the batch path with the champion (or ``version``) for
    ``rec`` replayed as ``device``."""
    return expected_by_device(rec, settings, [device], version)[device]


def expected_by_device(
    rec: Recording | Mapping[str, Recording],
    settings: Settings,
    devices: Iterable[str],
    version: str | None = None,
) -> dict[str, dict[int, str]]:
    """{device: :func:`expected_windows`} for each of ``devices``, the model loaded once;
    ``rec``: one recording for all, or each device's own ({device: recording})."""
    from trainer.serving import load_alias, load_version

    model = load_alias(settings) if version is None else load_version(settings, version)
    out = {}
    for device in devices:
        r = rec[device] if isinstance(rec, Mapping) else rec
        wins = device_windows(r, settings, device)
        keep = decided(wins, r, settings)
        labels, _ = model.predict(wins.x[keep])
        out[device] = dict(zip(wins.start_ms[keep].tolist(), labels, strict=True))
    return out


def json_probs(row: dict[str, str]) -> list[float]:
    return list(json.loads(row["probs"]))
