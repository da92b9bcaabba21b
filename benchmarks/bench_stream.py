"""Benchmark: how many real-time 50 Hz devices the stream pipeline sustains with p99
end-to-end latency under 1 s, against a naive baseline, in the same run on this machine.

    .venv/bin/python benchmarks/bench_stream.py [--steps 250,500,1000,1500] [--naive 5,10,20]
        [--measure-s 20] [--repeats 3] [--out results.json]
        [--beside-retrain] [--public-api] [--no-monitor]

It starts an isolated local stack (Kafka, Redis, Prometheus) on free ports, registers the
thesis model (or a small stand-in when the anchors are absent), then for each device count:

- pipeline: a generator process sends, per device, one accel and one gyro SampleBatch of
  25 samples every 0.5 s (50 Hz, real time) to ``wearmon.samples``; one ``wearmon process``
  worker (micro-batched inference, pipelined Redis writes) consumes them, and ``wearmon
  monitor`` checks the same Redis on its default interval (retraining off: the synthetic
  devices drift from the reference). Each step warms up, then measures ``--repeats``
  intervals back to back: latency from the worker's histograms, CPU of every process
  (worker, Kafka broker, Redis, Prometheus, monitor, generator) from /proc, Redis' commands
  and bytes (INFO stats, commandstats), the bytes the broker appended per topic.
- naive: the same devices send one message per sample (100 msgs/s per device); a plain
  consumer windows them with the same IncrementalWindower and calls ``model.predict`` per
  window, writing each prediction to Redis with single commands.

End-to-end latency = time of the Redis write - ``sent_ms`` of the message that completed the
window (the event-time lateness wait is not part of it). A step passes when p99 < 1 s and at
least 99 % of the windows due in its measuring time were predicted in it; the stepping stops
at the first step that fails.

``--beside-retrain`` runs the steps again while real ``wearmon model retrain`` processes
(the default recipe, a labelled recording in the incoming folder as their new data, the gate
set to refuse so nothing is promoted) run back to back at ``monitor.nice +
monitor.retrain_nice``, started as the monitor starts them (RetrainLoop). ``--public-api`` runs
them again with a worker whose sample messages come through Faust's public API
(benchmarks/public_api_worker.py). Both in the same run as the plain steps.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import multiprocessing as mp
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
#: the study's published model, in ../shared beside the repository
THESIS = Path(__file__).resolve().parents[2] / "shared" / "anchors" / "thesis-model"
log = logging.getLogger("bench_stream")

WARM_S = 12.0
#: spawn, not fork: the parent has TensorFlow loaded (model import)
_MP = mp.get_context("spawn")
MEASURE_S = 20.0
#: a step passes with p99 end-to-end latency under 1 s and at least this share of the windows
#: due in its measuring time predicted in it
PASS_SHARE = 0.99
#: --beside-retrain: seconds between starting the first retraining and measuring (its
#: imports and data loading done); retrainings then run back to back through the interval
RETRAIN_WARM_S = 15.0
#: latency histograms of the worker: end to end, and its parts before inference starts
LATENCIES = {
    "e2e": "wearmon_stream_e2e_latency_seconds",
    "ingest": "wearmon_stream_ingest_delay_seconds",
    "queue": "wearmon_stream_batch_queue_seconds",
}


# ---------------------------------------------------------------------------- generator


def _generate(
    bootstrap: str,
    topic: str,
    n_devices: int,
    per_sample: bool,
    prefix: str,
    stop: Any,
    message_ms: int = 500,
) -> None:
    """Real-time 50 Hz devices: every ``message_ms`` one accel + one gyro batch of
    ``message_ms / 20`` samples (or that many single-sample messages each when
    ``per_sample``). Devices are staggered."""
    from confluent_kafka import Producer

    from wearmon.schemas import SampleBatch, encode

    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 10,
            "acks": "1",
            "queue.buffering.max.messages": 2_000_000,
        }
    )
    per = message_ms // 20  # samples per message at 50 Hz
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1, size=(1000 + per, 6))
    base[:, 2] += 9.81
    base[:, 3:] *= 30
    devices = [f"{prefix}-{i}" for i in range(n_devices)]
    keys = [d.encode() for d in devices]
    start = (int(time.time() * 1000) // message_ms) * message_ms
    stagger = max(1, message_ms // 100)
    next_t = [start - message_ms + (i % stagger) * 100 for i in range(n_devices)]
    while not stop.is_set():
        now = int(time.time() * 1000)
        for i in range(n_devices):
            if next_t[i] + message_ms > now:
                continue
            t0 = next_t[i]
            ts = list(range(t0, t0 + message_ms, 20))
            j = (t0 // 20) % 1000
            blk = base[j : j + per]
            for sensor, cols, unit in (("accel", (0, 1, 2), "m/s2"), ("gyro", (3, 4, 5), "deg/s")):
                xs, ys, zs = (blk[:, c].tolist() for c in cols)
                sent = int(time.time() * 1000)
                parts = [slice(k, k + 1) for k in range(per)] if per_sample else [slice(0, per)]
                for sl in parts:
                    msg = SampleBatch(
                        device=devices[i],
                        sensor=sensor,
                        t_ms=ts[sl],  # type: ignore[arg-type]
                        x=xs[sl],
                        y=ys[sl],
                        z=zs[sl],
                        unit=unit,
                        sent_ms=sent,
                    )
                    p.produce(topic, key=keys[i], value=encode(msg))
            next_t[i] = t0 + message_ms
            if i % 200 == 0:
                p.poll(0)
        p.poll(0)
        time.sleep(0.02)
    p.flush(10)


def _kafka_probe(bootstrap: str, topic: str, seconds: float, out: Any) -> None:
    """A separate consumer of ``topic`` for ``seconds``: receive time - ``sent_ms`` of each
    message, i.e. the delay Kafka (producer batching, broker, fetch) adds before any worker
    sees a message. Puts [p50, p99, max] in seconds on ``out``."""
    import msgspec
    from confluent_kafka import Consumer

    class _Sent(msgspec.Struct):
        sent_ms: int = 0

    dec = msgspec.json.Decoder(_Sent)
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-probe-{os.getpid()}",
            "auto.offset.reset": "latest",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 10,
        }
    )
    c.subscribe([topic])
    delays: list[float] = []
    start = time.time()
    while time.time() - start < seconds:
        for m in c.consume(1000, 0.1):
            if m.error() is None:
                sent = dec.decode(m.value()).sent_ms
                if sent:
                    delays.append(time.time() - sent / 1000.0)
    c.close()
    d = np.asarray(delays[len(delays) // 10 :] or [float("nan")])  # skip the catch-up
    out.put([round(float(v), 3) for v in (np.median(d), np.quantile(d, 0.99), d.max())])


# ---------------------------------------------------------------------------- naive baseline


def _naive_consumer(settings_json: str, topic: str, out: Any, stop: Any) -> None:
    """One message per sample, model.predict per window, one Redis command at a time."""
    import redis
    from confluent_kafka import Consumer

    from trainer.serving import load_alias
    from wearmon.schemas import decode_samples
    from wearmon.settings import Settings
    from wearmon.signals.normalize import standardize
    from wearmon.signals.stream import IncrementalWindower
    from wearmon.signals.windows import window_phase_ms

    settings = Settings.model_validate_json(settings_json)
    model = load_alias(settings)
    r = redis.Redis.from_url(settings.redis.url)
    c = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": f"naive-{topic}",
            "auto.offset.reset": "latest",
        }
    )
    c.subscribe([topic])
    wins: dict[str, IncrementalWindower] = {}
    sig = settings.signal
    while not stop.is_set():
        m = c.poll(0.1)
        if m is None or m.error():
            continue
        b = decode_samples(m.value())
        w = wins.get(b.device)
        if w is None:
            w = wins[b.device] = IncrementalWindower(
                max_gap_ms=sig.max_gap_ms,
                lateness_ms=sig.lateness_ms,
                phase_ms=window_phase_ms(b.device, sig.hop, spread=sig.phase_by_device),
            )
        out_w = w.push(b.sensor, np.asarray(b.t_ms), np.array([b.x, b.y, b.z]).T)
        for i in range(len(out_w)):
            x = standardize(out_w.x[i : i + 1], model.scaler)
            p = model.keras_model.predict(x, verbose=0)[0]
            k = int(p.argmax())
            r.hset(
                f"naive:latest:{b.device}",
                mapping={"label": model.classes[k], "confidence": float(p[k])},
            )
            r.xadd(f"naive:hist:{b.device}", {"label": model.classes[k]}, maxlen=100)
            out.put((time.time() * 1000 - b.sent_ms) / 1000.0)
    c.close()


# ---------------------------------------------------------------------------- measuring


def _scrape(ports: list[int]) -> dict[str, float]:
    """The counters and latency buckets the benchmark reads, summed over workers."""
    text = ""
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text += resp.read().decode()
    vals: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(tuple(m + "_bucket" for m in LATENCIES.values())) or line.startswith(
            (
                "wearmon_stream_predictions_total",
                "wearmon_stream_e2e_latency_seconds_count",
                "wearmon_stream_messages_in_total",
                "wearmon_stream_batch_size_sum",
                "wearmon_stream_batch_size_count",
                "wearmon_stream_inference_seconds_sum",
                "wearmon_stream_gc_pause_seconds_sum",
            )
        ):
            name, v = line.rsplit(" ", 1)
            if name.startswith("wearmon_stream_predictions_total"):
                name = "predictions"
            elif name.startswith("wearmon_stream_messages_in_total"):
                name = "messages"
            vals[name] = vals.get(name, 0.0) + float(v)
    return vals


def _quantile_le(a: dict[str, float], b: dict[str, float], q: float, metric: str = "e2e") -> float:
    """Upper bound of the bucket of latency histogram ``metric`` (a key of LATENCIES)
    holding quantile ``q`` over the interval."""
    prefix = LATENCIES[metric] + "_bucket"
    buckets = []
    for name, v in b.items():
        if name.startswith(prefix):
            le = name.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), v - a.get(name, 0.0)))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0
    return next((le for le, cum in buckets if total and cum >= q * total), float("inf"))


def _machine_busy_s() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine so far, from /proc/stat."""
    f = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = f[3] + f[4]
    steal = f[7] if len(f) > 7 else 0
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(f[:8]) - idle - steal) / tick, steal / tick


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its reaped children."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _threads_cpu_s(pids: list[int]) -> dict[str, float]:
    out = {"tf": 0.0, "python": 0.0, "main": 0.0}
    for pid in pids:
        for k, v in _thread_cpu_s(pid).items():
            out[k] += v
    return out


def _thread_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds per thread kind of a process: the main thread (the event loop),
    TensorFlow's pools (tf_*), the rest (inference/Redis thread, Kafka client threads)."""
    out: dict[str, float] = {"tf": 0.0, "python": 0.0, "main": 0.0}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            comm = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        kind = "main" if task.name == str(pid) else "tf" if comm.startswith("tf_") else "python"
        out[kind] += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def _start_profiler(pid: int, out: Path, seconds: float) -> subprocess.Popen[bytes] | None:
    """py-spy (dev extra) sampling the worker for ``seconds``; collapsed stacks into ``out``."""
    exe = Path(sys.executable).with_name("py-spy")
    if not exe.exists():
        log.warning("py-spy not installed; --profile ignored")
        return None
    return subprocess.Popen(
        [str(exe), "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200",
         "--format", "raw", "--nonblocking", "--threads", "--idle", "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _redis_stats(r: Any) -> dict[str, float]:
    """Redis' own counters: commands processed, bytes in and out over its connections, and
    calls per command (INFO stats, INFO commandstats)."""
    st = r.info("stats")
    out = {
        "commands": float(st["total_commands_processed"]),
        "net_in": float(st["total_net_input_bytes"]),
        "net_out": float(st["total_net_output_bytes"]),
    }
    for name, v in r.info("commandstats").items():
        out["cmd:" + name.removeprefix("cmdstat_")] = float(v["calls"])
    return out


def _kafka_log_bytes(root: Path) -> dict[str, int]:
    """Bytes in the broker's log segments per topic (every ``<topic>-<partition>/<20
    digits>.log`` under ``root``): what the broker appended, record batch headers included."""
    out: dict[str, int] = {}
    for f in root.rglob("*.log"):
        if len(f.stem) != 20 or not f.stem.isdigit():
            continue
        topic = f.parent.name.rsplit("-", 1)[0]
        with contextlib.suppress(OSError):
            out[topic] = out.get(topic, 0) + f.stat().st_size
    return out


def _monitor_stats(port: int | None) -> dict[str, float]:
    """The monitor's checks by result and their total duration (its /metrics)."""
    if port is None:
        return {}
    vals: dict[str, float] = {}
    url = f"http://127.0.0.1:{port}/metrics"
    with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(("wearmon_monitor_checks_total", "wearmon_monitor_check_seconds")):
                name, v = line.rsplit(" ", 1)
                vals[name] = float(v)
    return vals


def _snapshot(ports: list[int], pids: dict[str, int], workers: list[int], r: Any,
              kafka_root: Path, monitor_port: int | None) -> dict[str, Any]:  # fmt: skip
    return {
        "t": time.monotonic(),
        "metrics": _scrape(ports),
        "cpu": {k: _cpu_s(pid) for k, pid in pids.items()},
        "busy": _machine_busy_s(),
        "threads": _threads_cpu_s(workers),
        "redis": _redis_stats(r),
        "kafka": _kafka_log_bytes(kafka_root),
        "monitor": _monitor_stats(monitor_port),
        "load1": os.getloadavg()[0],
    }


def _interval_row(a: dict[str, Any], b: dict[str, Any], n: int) -> dict[str, Any]:
    """The figures of one measuring interval between snapshots ``a`` and ``b`` with ``n``
    devices."""
    ma, mb = a["metrics"], b["metrics"]
    elapsed = b["t"] - a["t"]

    def d(name: str) -> float:
        return mb.get(name, 0.0) - ma.get(name, 0.0)

    cores = {k: (b["cpu"][k] - a["cpu"][k]) / elapsed for k in b["cpu"]}
    cores["worker"] = sum(v for k, v in cores.items() if k.startswith("worker"))
    preds = d("predictions")
    msgs = d("messages")
    nb = d("wearmon_stream_batch_size_count")
    expected = n * 0.5 * elapsed
    dev_s = n * elapsed  # device-seconds of the interval
    ra, rb = a["redis"], b["redis"]
    cmds = {k[4:]: rb[k] - ra.get(k, 0.0) for k in rb if k.startswith("cmd:")}
    kafka = {t: b["kafka"][t] - a["kafka"].get(t, 0) for t in b["kafka"]}
    mona, monb = a["monitor"], b["monitor"]
    checks = {
        k.split('result="')[1].split('"')[0]: monb[k] - mona.get(k, 0.0)
        for k in monb
        if k.startswith("wearmon_monitor_checks_total{")
    }
    thr = {k: (b["threads"][k] - a["threads"][k]) / elapsed for k in b["threads"]}
    return {
        "seconds": round(elapsed, 2),
        "p50_s_le": _quantile_le(ma, mb, 0.5),
        "p90_s_le": _quantile_le(ma, mb, 0.9),
        "p99_s_le": _quantile_le(ma, mb, 0.99),
        # where the latency goes: message to cut window, cut window to batch start
        "ingest_p50_p99_s_le": [_quantile_le(ma, mb, q, "ingest") for q in (0.5, 0.99)],
        "queue_p50_p99_s_le": [_quantile_le(ma, mb, q, "queue") for q in (0.5, 0.99)],
        "predictions": int(preds),
        "expected": int(expected),
        "expected_f": round(expected, 2),
        "windows_share": round(preds / expected, 4) if expected else 0.0,
        # cores used by each process over the interval (2 cores = 2.0)
        "cores": {k: round(v, 4) for k, v in cores.items()},
        # CPU milliseconds per device-second, per process
        "cpu_ms_per_device_s": {k: round(v * elapsed * 1000 / dev_s, 4) for k, v in cores.items()},
        # worker CPU per sample message it consumed (independent of contention)
        "worker_cpu_us_per_msg": round(cores["worker"] * elapsed / max(1.0, msgs) * 1e6, 1),
        # the worker's threads: TensorFlow's pools (inference); the event loop (consuming,
        # windowing, batch cycle); the rest (the inference thread, where an XLA-compiled
        # call runs, the Redis writes, Kafka client threads)
        "worker_tf_cores": round(thr["tf"], 3),
        "worker_main_cores": round(thr["main"], 3),
        "worker_other_cores": round(thr["python"], 3),
        "mean_batch": round(d("wearmon_stream_batch_size_sum") / nb, 1) if nb else 0,
        "inference_ms_per_window": round(
            d("wearmon_stream_inference_seconds_sum") * 1000 / max(1.0, preds), 2
        ),
        "redis": {
            "commands_per_device_s": round((rb["commands"] - ra["commands"]) / dev_s, 3),
            "bytes_in_per_device_s": round((rb["net_in"] - ra["net_in"]) / dev_s, 1),
            "bytes_out_per_device_s": round((rb["net_out"] - ra["net_out"]) / dev_s, 1),
            "calls_per_device_s": {
                k: round(v / dev_s, 3) for k, v in sorted(cmds.items()) if v > 0
            },
        },
        # bytes the broker appended to each topic's log (samples in, predictions out, ...)
        "kafka_log_bytes_per_device_s": {
            t: round(v / dev_s, 1) for t, v in sorted(kafka.items()) if v > 0
        },
        "monitor_checks": {k: int(v) for k, v in checks.items() if v},
        "monitor_check_s": round(
            monb.get("wearmon_monitor_check_seconds_sum", 0.0)
            - mona.get("wearmon_monitor_check_seconds_sum", 0.0),
            2,
        ),
        # the 1-minute load average at the end of the interval
        "load1": round(b["load1"], 2),
        # the whole machine over the interval (every process, the kernel): busy cores out of
        # os.cpu_count(), and time stolen by the hypervisor
        "machine_busy_cores": round((b["busy"][0] - a["busy"][0]) / elapsed, 2),
        "machine_steal_cores": round((b["busy"][1] - a["busy"][1]) / elapsed, 2),
        # time the workers' event loops stood still for garbage collection
        "gc_pause_s": round(d('wearmon_stream_gc_pause_seconds_sum{generation="2"}'), 3),
    }


def windows_kept(predicted: int, expected: float) -> bool:
    """At least PASS_SHARE of the windows due in the measuring time were predicted in it
    (to the window: the time due is not a whole number of windows)."""
    return predicted >= math.floor(PASS_SHARE * expected)


def _spread(values: list[float]) -> dict[str, float]:
    """Median and range of repeated measurements."""
    return {
        "median": round(float(statistics.median(values)), 4),
        "min": round(float(min(values)), 4),
        "max": round(float(max(values)), 4),
        "n": len(values),
    }


def summarize_step(n: int, whole: dict[str, Any], reps: list[dict[str, Any]]) -> dict[str, Any]:
    """A step's row: the figures over its whole measuring time (``whole``, what the pass rule
    reads), each repeat's row, and the median and range over the repeats of the main ones."""
    ok = whole["p99_s_le"] < 1.0 and windows_kept(whole["predictions"], whole["expected_f"])
    comps = sorted({k for r in reps for k in r["cpu_ms_per_device_s"]})
    return {
        "devices": n,
        "ok": ok,
        **whole,
        "repeats": reps,
        "spread": {
            "p50_s_le": _spread([r["p50_s_le"] for r in reps]),
            "p90_s_le": _spread([r["p90_s_le"] for r in reps]),
            "p99_s_le": _spread([r["p99_s_le"] for r in reps]),
            "windows_share": _spread([r["windows_share"] for r in reps]),
            "cpu_ms_per_device_s": {
                k: _spread([r["cpu_ms_per_device_s"].get(k, 0.0) for r in reps]) for k in comps
            },
            "redis_commands_per_device_s": _spread(
                [r["redis"]["commands_per_device_s"] for r in reps]
            ),
            "redis_bytes_in_per_device_s": _spread(
                [r["redis"]["bytes_in_per_device_s"] for r in reps]
            ),
            "kafka_bytes_per_device_s": _spread(
                [float(sum(r["kafka_log_bytes_per_device_s"].values())) for r in reps]
            ),
        },
    }


def _start_worker(
    env: dict[str, str], log_path: Path, public_api: bool = False
) -> subprocess.Popen[bytes]:
    fh = open(log_path, "ab")  # noqa: SIM115
    if public_api:  # the worker with Faust's public delivery path (benchmarks/public_api_worker)
        cmd = [str(Path(__file__).with_name("public_api_worker.py"))]
    else:
        cmd = ["-m", "wearmon.cli.main"]
    return subprocess.Popen(
        [sys.executable, *cmd, "process"],
        env=env,
        stdout=fh,
        stderr=subprocess.STDOUT,
    )


def _start_monitor(settings: Any, work: Path) -> tuple[subprocess.Popen[bytes], int]:
    """``wearmon monitor`` against the same Redis with its default interval and windows,
    retraining off (the benchmark's synthetic devices drift from the reference, and a
    retraining would take the cores the measurement is about). Started as the monitor
    starts its children (wearmon.processes: the same settings in its environment)."""
    from wearmon import processes
    from wearmon.stack import free_port

    port = free_port()
    s = settings.model_copy(
        update={
            "monitor": settings.monitor.model_copy(update={"retrain": False}),
            "metrics": settings.metrics.model_copy(update={"monitor_port": port}),
        }
    )
    return processes.start(s, ["monitor"], work / "monitor.log"), port


def _wait_monitor_checked(port: int, gen_stop: Any, timeout: float = 240.0) -> None:
    """Wait until the monitor has finished a check (its reference is loaded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = _monitor_stats(port)
        if any(v > 0 for k, v in st.items() if 'result="ok"' in k or 'result="drift"' in k):
            return
        time.sleep(2)
    raise SystemExit("the monitor did not finish a check in time; see its log")


class RetrainLoop:
    """Real retrainings back to back: ``wearmon model retrain`` (the default recipe), each
    started as the monitor starts it (wearmon.processes at ``monitor.nice + retrain_nice``), the
    next as soon as the previous ends, until stopped. Their new data: a labelled recording in
    the incoming folder (without it a retraining refuses without training). The gate is set
    to refuse (``lifecycle.min_gain`` 1.0), so no challenger is promoted and the measured
    worker keeps its model."""

    def __init__(self, settings: Any, work: Path) -> None:
        from trainer import pool
        from wearmon.signals.recording_gen import make_recording

        self.settings = settings.model_copy(
            update={"lifecycle": settings.lifecycle.model_copy(update={"min_gain": 1.0})}
        )
        self.work = work
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0
        self.finished: list[tuple[float, int]] = []  # (seconds, exit code)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        incoming = pool.incoming_dir(settings) / "bench-wearer"
        if not incoming.exists():
            make_recording(incoming, subject=7, seed=2, max_exercises=4)

    def _run(self) -> None:
        from wearmon import processes

        m = self.settings.monitor  # the monitor runs at +nice, its retrainings below it
        nice = min(19, m.nice + m.retrain_nice)
        while not self._stop.is_set():
            self.started += 1
            args = ["model", "retrain", "--trigger-id", f"bench-{int(time.time())}-{self.started}"]
            t0 = time.monotonic()
            self.proc = processes.start(self.settings, args, self.work / "retrain.log", nice=nice)
            while self.proc.poll() is None and not self._stop.wait(0.5):
                pass
            if self.proc.poll() is not None:
                self.finished.append((round(time.monotonic() - t0, 1), int(self.proc.returncode)))

    def start(self) -> RetrainLoop:
        self._thread.start()
        return self

    def stop(self) -> None:
        from wearmon import processes

        self._stop.set()
        self._thread.join(10)
        if self.proc is not None:
            processes.stop(self.proc, timeout_s=10)


def bench_pipeline(
    settings: Any,
    env: dict[str, str],
    steps: list[int],
    work: Path,
    profile: Path | None = None,
    services: dict[str, int] | None = None,
    n_workers: int = 1,
    message_ms: int = 500,
    kafka_probe: bool = False,
    measure_s: float = MEASURE_S,
    repeats: int = 1,
    monitor: bool = True,
    public_api: bool = False,
    beside_retrain: bool = False,
    label: str = "pipeline",
) -> list[dict[str, Any]]:
    """Step through ``steps`` device counts (stopping at the first that fails); each step
    warms up, then measures ``repeats`` intervals of ``measure_s`` back to back.
    ``beside_retrain``: real retrainings run back to back through every step's intervals."""
    import redis

    from wearmon.stack import free_port

    r = redis.Redis.from_url(settings.redis.url)
    ports = [settings.metrics.stream_port] + [free_port() for _ in range(n_workers - 1)]
    logs = [work / f"{label}-worker-{i}.log" for i in range(n_workers)]
    workers = [
        _start_worker({**env, "WEARMON_METRICS__STREAM_PORT": str(p)}, lp, public_api)
        for p, lp in zip(ports, logs, strict=True)
    ]
    worker = workers[0]
    mon, mon_port = _start_monitor(settings, work) if monitor else (None, None)
    retraining = None
    children: list[Any] = []  # the step's generator and probe (stopped on the way out)
    results = []
    try:
        deadline = time.monotonic() + 240
        while True:  # ready when every worker serves the model
            try:
                _scrape(ports)
                if all("now serving" in lp.read_text() for lp in logs):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
                raise SystemExit(f"a worker did not start; see {work}/{label}-worker-*.log")
            time.sleep(1)
        if n_workers > 1:
            time.sleep(10)  # the group's rebalance settles
        for n in steps:
            stop = _MP.Event()
            g = _MP.Process(
                target=_generate,
                args=(
                    settings.kafka.bootstrap_servers,
                    settings.kafka.samples_topic,
                    n,
                    False,
                    f"p{n}",
                    stop,
                    message_ms,
                ),
            )
            g.start()
            children[:] = [g]
            time.sleep(WARM_S)
            if mon_port is not None and not results:
                _wait_monitor_checked(mon_port, stop)  # its reference loaded before measuring
            if beside_retrain:
                retraining = RetrainLoop(settings, work).start()
                time.sleep(RETRAIN_WARM_S)  # the first one past its imports, training
            prof = None
            if profile is not None:
                prof = _start_profiler(worker.pid, profile / f"worker-{n}.txt", measure_s * repeats)
            pids = {"generator": g.pid or 0, **(services or {})}
            pids.update({f"worker{i}": w.pid for i, w in enumerate(workers)})
            if mon is not None:
                pids["monitor"] = mon.pid
            probe_q: Any = _MP.Queue()
            probe = None
            if kafka_probe:  # off by default: its consumer adds load to the two cores
                probe = _MP.Process(
                    target=_kafka_probe,
                    args=(
                        settings.kafka.bootstrap_servers,
                        settings.kafka.samples_topic,
                        measure_s * repeats,
                        probe_q,
                    ),
                )
                probe.start()
                children.append(probe)
            wpids = [w.pid for w in workers]
            snap = [_snapshot(ports, pids, wpids, r, settings.data_dir, mon_port)]
            for _ in range(repeats):
                time.sleep(measure_s)
                snap.append(_snapshot(ports, pids, wpids, r, settings.data_dir, mon_port))
            retrain_info = None
            if retraining is not None:
                retraining.stop()
                retrain_info = {
                    "started": retraining.started,
                    "finished_s_and_exit": retraining.finished,
                }
                retraining = None
            stop.set()
            g.join(20)
            if prof is not None:
                prof.wait(60)
            reps = [_interval_row(snap[i], snap[i + 1], n) for i in range(repeats)]
            row = summarize_step(n, _interval_row(snap[0], snap[-1], n), reps)
            if probe is not None:
                # Kafka alone (a separate consumer): p50, p99, max seconds from sent_ms
                row["kafka_delay_s"] = probe_q.get(timeout=60)
                probe.join(10)
            if beside_retrain:
                # retrainings started during the step (the last one stopped at its end),
                # and the wall seconds and exit code of each that ended by itself
                row["retrainings"] = retrain_info
            log.info(
                "%s %d devices: p50/p90/p99 <= %s/%s/%s s, %d of %d windows, ok %s",
                label, n, row["p50_s_le"], row["p90_s_le"], row["p99_s_le"],
                row["predictions"], row["expected"], row["ok"],
            )  # fmt: skip
            results.append(row)
            time.sleep(6)  # drain
            r.delete(*[k for k in r.scan_iter(match=f"pred:*:{{p{n}-*", count=5000)] or ["-"])
            if not row["ok"]:
                break
    finally:
        from wearmon import processes

        _kill_children(children)
        if retraining is not None:
            retraining.stop()
        if mon is not None:
            processes.stop(mon, timeout_s=20)
        for w in workers:
            w.terminate()
        for w in workers:  # a worker stops within its stop deadline (stream.shutdown_timeout_s)
            try:
                w.wait(60)
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait(10)
    return results


def _naive_measure(
    c: Any, g: Any, q: Any, services: dict[str, int] | None, measure_s: float, repeats: int
) -> tuple[list[list[float]], float, dict[str, float], dict[str, float]]:
    """The naive step's latencies per interval, its length, and CPU seconds per process
    before and after."""
    time.sleep(WARM_S)
    while not q.empty():
        q.get()
    pids = {"consumer": c.pid or 0, "generator": g.pid or 0, **(services or {})}
    cpu_a = {k: _cpu_s(pid) for k, pid in pids.items()}
    t_a = time.monotonic()
    parts: list[list[float]] = []
    for _ in range(repeats):
        t_end = time.monotonic() + measure_s
        lats: list[float] = []
        while time.monotonic() < t_end:
            with contextlib.suppress(Exception):
                lats.append(q.get(timeout=0.5))
        parts.append(lats)
    elapsed = time.monotonic() - t_a
    return parts, elapsed, cpu_a, {k: _cpu_s(pid) for k, pid in pids.items()}


def _kill_children(children: list[Any]) -> None:
    """End multiprocessing children still running (an interrupted step)."""
    for c in children:
        if c.is_alive():
            c.kill()
            c.join(5)


def bench_naive(
    settings: Any,
    steps: list[int],
    services: dict[str, int] | None = None,
    measure_s: float = MEASURE_S,
    repeats: int = 1,
) -> list[dict[str, Any]]:
    """The naive baseline, stepping like the pipeline (the same pass rule), each step's
    measuring time split into ``repeats`` intervals for the spread."""
    from confluent_kafka.admin import AdminClient, NewTopic

    results = []
    for n in steps:
        topic = f"bench.naive.{n}.{int(time.time())}"
        admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[
            topic
        ].result(30)
        q: Any = _MP.Queue()
        stop_c, stop_g = _MP.Event(), _MP.Event()
        c = _MP.Process(target=_naive_consumer, args=(settings.model_dump_json(), topic, q, stop_c))
        c.start()
        g = _MP.Process(
            target=_generate,
            args=(settings.kafka.bootstrap_servers, topic, n, True, f"n{n}", stop_g),
        )
        try:
            time.sleep(20)  # TF + model load
            g.start()
            parts, elapsed, cpu_a, cpu_b = _naive_measure(c, g, q, services, measure_s, repeats)
        finally:
            stop_g.set()
            stop_c.set()
            if g.pid is not None:  # started
                g.join(20)
            c.join(30)
            _kill_children([g, c])
        every = [v for part in parts for v in part]
        p99 = float(np.percentile(every, 99)) if every else float("inf")
        expected = n * 0.5 * elapsed
        ok = p99 < 1.0 and windows_kept(len(every), expected)
        dev_s = n * elapsed
        row = {
            "devices": n,
            "p50_s": round(float(np.percentile(every, 50)), 3) if every else float("inf"),
            "p99_s": round(p99, 3),
            "predictions": len(every),
            "expected": int(expected),
            "ok": ok,
            "cpu_ms_per_device_s": {
                k: round((cpu_b[k] - cpu_a[k]) * 1000 / dev_s, 3) for k in cpu_b
            },
            "spread": {
                "p99_s": _spread(
                    [float(np.percentile(x, 99)) if x else float("inf") for x in parts]
                ),
                "windows_share": _spread([len(x) / (n * 0.5 * measure_s) for x in parts]),
            },
        }
        log.info("naive %d devices: p99 %.3f s, %d of %d windows, ok %s",
                 n, p99, len(every), int(expected), ok)  # fmt: skip
        results.append(row)
        if not ok:
            break
    return results


def _register_model(settings: Any) -> str:
    from trainer.registry import import_model, set_alias

    if (THESIS / "model.keras").is_file():
        v = import_model(
            settings,
            THESIS / "model.keras",
            labels=THESIS / "label_mapping.json",
            scaler=THESIS / "scaler_config.json",
        )
    else:  # pragma: no cover - the anchors are part of this project's machines
        sys.path.insert(0, str(REPO))
        from tests.integration.stream_support import tiny_model_dir
        from trainer.registry import register_dir

        v = register_dir(settings, tiny_model_dir(Path(tempfile.mkdtemp()) / "m"))
    set_alias(settings, "champion", v)
    return v


def _interrupted(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _services(stack: Any) -> dict[str, int]:
    """PIDs of the stack's processes (Kafka broker, Redis, Prometheus)."""
    return {st.name: st.pid for st in stack.status() if st.pid}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", default="250,500,1000,1500,2000")
    ap.add_argument("--naive", default="5,10,20,40")
    ap.add_argument("--out", default=None, help="Write the results as JSON here.")
    ap.add_argument(
        "--workers", type=int, default=1, help="Worker processes in one consumer group."
    )
    ap.add_argument(
        "--message-ms",
        type=int,
        default=500,
        help="Each device sends one accel and one gyro message per this many ms (500: 25 "
        "samples each; 1000: 50, like a watch app's one-second sensor callback).",
    )
    ap.add_argument(
        "--measure-s",
        type=float,
        default=MEASURE_S,
        help="Length of each measuring interval (a soak: e.g. 300).",
    )
    ap.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="Measuring intervals per step, back to back (medians and ranges over them).",
    )
    ap.add_argument(
        "--no-monitor",
        action="store_true",
        help="Without `wearmon monitor` (by default it runs against the same Redis).",
    )
    ap.add_argument(
        "--kafka-probe",
        action="store_true",
        help="Also measure Kafka's own delay with a separate consumer (adds load).",
    )
    ap.add_argument(
        "--profile",
        default=None,
        help="Folder: py-spy samples the worker during each measuring interval (raw stacks).",
    )
    ap.add_argument(
        "--keep-data",
        action="store_true",
        help="Keep the run's data directory (Kafka, Redis, registry); else only the logs stay.",
    )
    ap.add_argument(
        "--beside-retrain",
        action="store_true",
        help="Each step twice: alone, then while a real `wearmon model retrain` runs at "
        "monitor.retrain_nice (e.g. --steps 100 --naive '' --measure-s 90).",
    )
    ap.add_argument(
        "--public-api",
        action="store_true",
        help="Each step also with a worker whose sample messages come through Faust's "
        "public API (an agent over stream.take_events with manual acks; "
        "benchmarks/public_api_worker.py), in the same run.",
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    # SIGTERM (and SIGINT, which a shell's background job ignores) unwinds like Ctrl-C: the
    # stack, workers and monitor are stopped on the way out
    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGINT, _interrupted)

    from wearmon.settings import Settings
    from wearmon.stack import LocalStack, free_port

    work = Path(tempfile.mkdtemp(prefix="wearmon-bench-"))
    ports = sorted({free_port() for _ in range(8)})[:5]
    settings = Settings(
        data_dir=work / "data",
        ports={
            "kafka": ports[0],
            "kafka_controller": ports[1],
            "redis": ports[2],
            "prometheus": ports[3],
        },
        metrics={"stream_port": ports[4]},
    )
    stack = LocalStack(settings)
    load_start = [round(v, 2) for v in os.getloadavg()]
    stack.up(timeout=180)
    extra: dict[str, Any] = {}
    try:
        version = _register_model(settings)
        env = dict(os.environ)
        env.update(
            WEARMON_DATA_DIR=str(settings.data_dir),
            WEARMON_PORTS__KAFKA=str(settings.ports.kafka),
            WEARMON_PORTS__KAFKA_CONTROLLER=str(settings.ports.kafka_controller),
            WEARMON_PORTS__REDIS=str(settings.ports.redis),
            WEARMON_PORTS__PROMETHEUS=str(settings.ports.prometheus),
            WEARMON_METRICS__STREAM_PORT=str(settings.metrics.stream_port),
            PYTHONPATH=str(REPO),
        )
        steps = [int(s) for s in args.steps.split(",") if s]
        naive_steps = [int(s) for s in args.naive.split(",") if s]
        profile = Path(args.profile) if args.profile else None
        if profile is not None:
            profile.mkdir(parents=True, exist_ok=True)
        services = _services(stack)

        def run(label: str, **kw: Any) -> list[dict[str, Any]]:
            return bench_pipeline(
                settings,
                env,
                steps,
                work,
                profile,
                services,
                args.workers,
                message_ms=args.message_ms,
                kafka_probe=args.kafka_probe,
                measure_s=args.measure_s,
                repeats=args.repeats,
                monitor=not args.no_monitor,
                label=label,
                **kw,
            )

        pipe = run("pipeline")
        if args.beside_retrain:
            extra["beside_retrain"] = run("beside-retrain", beside_retrain=True)
        if args.public_api:
            extra["public_api"] = run("public-api", public_api=True)
        naive = bench_naive(settings, naive_steps, services, args.measure_s, args.repeats)
    finally:
        stack.down()
        if not args.keep_data:  # the broker's log alone is 1 GB after a few steps
            shutil.rmtree(settings.data_dir, ignore_errors=True)
        log.info("logs of the workers, the monitor and retrainings: %s", work)
    best = max([r["devices"] for r in pipe if r["ok"]], default=0)
    best_naive = max([r["devices"] for r in naive if r["ok"]], default=0)
    summary = {
        "model_version": version,
        "cpus": os.cpu_count(),
        "loadavg_start": load_start,
        "loadavg_end": [round(v, 2) for v in os.getloadavg()],
        "workers": args.workers,
        "message_ms": args.message_ms,
        "measure_s": args.measure_s,
        "repeats": args.repeats,
        "monitor": not args.no_monitor,
        "pass_share": PASS_SHARE,
        "pipeline": pipe,
        "naive": naive,
        **extra,
        "pipeline_devices": best,
        "naive_devices": best_naive,
        "ratio": round(best / best_naive, 1) if best_naive else None,
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
