"""Benchmark: how many real-time 50 Hz devices the stream pipeline sustains with p99
end-to-end latency under 1 s, against a naive baseline, in the same run on this machine.

    .venv/bin/python benchmarks/bench_stream.py [--steps 250,500,1000,1500] [--naive 5,10,20]

It starts an isolated local stack (Kafka, Redis, Prometheus) on free ports, registers the
thesis model (or a small stand-in when the anchors are absent), then for each device count:

- pipeline: a generator process sends, per device, one accel and one gyro SampleBatch of
  25 samples every 0.5 s (50 Hz, real time) to ``wearmon.samples``; one ``wearmon process``
  worker (micro-batched compiled inference, pipelined Redis writes) consumes them.
- naive: the same devices send one message per sample (100 msgs/s per device); a plain
  consumer windows them with the same IncrementalWindower and calls ``model.predict`` per
  window, writing each prediction to Redis with single commands.

End-to-end latency = time of the Redis write - ``sent_ms`` of the message that completed the
window (the event-time lateness wait is not part of it). A step passes when p99 < 1 s and the
pipeline keeps up (>= 90 % of the expected windows predicted in the measuring interval).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
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


def _start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    fh = open(log_path, "ab")  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", "wearmon.cli.main", "process"],
        env=env,
        stdout=fh,
        stderr=subprocess.STDOUT,
    )


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
) -> list[dict[str, Any]]:
    import redis

    from wearmon.stack import free_port

    r = redis.Redis.from_url(settings.redis.url)
    ports = [settings.metrics.stream_port] + [free_port() for _ in range(n_workers - 1)]
    logs = [work / f"worker-{i}.log" for i in range(n_workers)]
    workers = [
        _start_worker({**env, "WEARMON_METRICS__STREAM_PORT": str(p)}, lp)
        for p, lp in zip(ports, logs, strict=True)
    ]
    worker = workers[0]
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
                raise SystemExit(f"a worker did not start; see {work}/worker-*.log")
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
            time.sleep(WARM_S)
            prof = None
            if profile is not None:
                prof = _start_profiler(worker.pid, profile / f"worker-{n}.txt", measure_s)
            pids = {"generator": g.pid or 0, **(services or {})}
            pids.update({f"worker{i}": w.pid for i, w in enumerate(workers)})
            probe_q: Any = _MP.Queue()
            probe = None
            if kafka_probe:  # off by default: its consumer adds load to the two cores
                probe = _MP.Process(
                    target=_kafka_probe,
                    args=(
                        settings.kafka.bootstrap_servers,
                        settings.kafka.samples_topic,
                        measure_s,
                        probe_q,
                    ),
                )
                probe.start()
            a = _scrape(ports)
            cpu_a = {k: _cpu_s(pid) for k, pid in pids.items()}
            busy_a = _machine_busy_s()
            thr_a = _threads_cpu_s([w.pid for w in workers])
            t_a = time.monotonic()
            time.sleep(measure_s)
            b = _scrape(ports)
            cpu_b = {k: _cpu_s(pid) for k, pid in pids.items()}
            busy_b = _machine_busy_s()
            thr_b = _threads_cpu_s([w.pid for w in workers])
            elapsed = time.monotonic() - t_a
            cores = {k: (cpu_b[k] - cpu_a[k]) / elapsed for k in pids}
            cores["worker"] = sum(v for k, v in cores.items() if k.startswith("worker"))
            load1 = os.getloadavg()[0]
            stop.set()
            g.join(20)
            if prof is not None:
                prof.wait(60)
            p99 = _quantile_le(a, b, 0.99)
            kafka_delay = None
            if probe is not None:
                kafka_delay = probe_q.get(timeout=60)
                probe.join(10)
            preds = b.get("predictions", 0) - a.get("predictions", 0)
            msgs = b.get("messages", 0) - a.get("messages", 0)

            def d(name: str, a: dict[str, float] = a, b: dict[str, float] = b) -> float:
                return b.get(name, 0.0) - a.get(name, 0.0)

            nb = d("wearmon_stream_batch_size_count")
            expected = n * 0.5 * measure_s
            ok = p99 < 1.0 and preds >= 0.9 * expected
            row = {
                "devices": n,
                "p99_s_le": p99,
                "p50_s_le": _quantile_le(a, b, 0.5),
                "p90_s_le": _quantile_le(a, b, 0.9),
                # where the latency goes: message to cut window, cut window to batch start
                "ingest_p50_p99_s_le": [_quantile_le(a, b, q, "ingest") for q in (0.5, 0.99)],
                "queue_p50_p99_s_le": [_quantile_le(a, b, q, "queue") for q in (0.5, 0.99)],
                # Kafka alone (a separate consumer): p50, p99, max seconds from sent_ms
                "kafka_delay_s": kafka_delay,
                "predictions": int(preds),
                "expected": int(expected),
                "ok": ok,
                # cores used by each process over the interval (2 cores = 2.0)
                "cores": {k: round(v, 3) for k, v in cores.items()},
                # worker CPU per sample message it consumed (independent of contention)
                "worker_cpu_us_per_msg": round(cores["worker"] * elapsed / max(1.0, msgs) * 1e6, 1),
                # of the worker's cores: TensorFlow's thread pools (inference)
                "worker_tf_cores": round((thr_b["tf"] - thr_a["tf"]) / elapsed, 3),
                # the event loop thread(s): consuming, windowing, batch cycle
                "worker_main_cores": round((thr_b["main"] - thr_a["main"]) / elapsed, 3),
                # the other Python threads: the inference thread (an XLA-compiled call runs
                # here, not in TensorFlow's pools), the Redis writes, Kafka client threads
                "worker_other_cores": round((thr_b["python"] - thr_a["python"]) / elapsed, 3),
                "mean_batch": round(d("wearmon_stream_batch_size_sum") / nb, 1) if nb else 0,
                "inference_ms_per_window": round(
                    d("wearmon_stream_inference_seconds_sum") * 1000 / max(1.0, preds), 2
                ),
                "load1": round(load1, 2),
                # the whole machine over the interval (every process, the kernel): busy
                # cores out of os.cpu_count(), and time stolen by the hypervisor
                "machine_busy_cores": round((busy_b[0] - busy_a[0]) / elapsed, 2),
                # time the workers' event loops stood still for garbage collection
                "gc_pause_s": round(d('wearmon_stream_gc_pause_seconds_sum{generation="2"}'), 3),
                "machine_steal_cores": round((busy_b[1] - busy_a[1]) / elapsed, 2),
            }
            log.info("pipeline %s", row)
            results.append(row)
            time.sleep(6)  # drain
            r.delete(*[k for k in r.scan_iter(match=f"pred:*:p{n}-*", count=5000)] or ["-"])
            if not ok:
                break
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(30)
    return results


def bench_naive(settings: Any, steps: list[int]) -> list[dict[str, Any]]:
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
        time.sleep(20)  # TF + model load
        g = _MP.Process(
            target=_generate,
            args=(settings.kafka.bootstrap_servers, topic, n, True, f"n{n}", stop_g),
        )
        g.start()
        time.sleep(WARM_S)
        while not q.empty():
            q.get()
        t_end = time.monotonic() + MEASURE_S
        lats: list[float] = []
        while time.monotonic() < t_end:
            with contextlib.suppress(Exception):
                lats.append(q.get(timeout=0.5))
        stop_g.set()
        stop_c.set()
        g.join(20)
        c.join(30)
        if c.is_alive():
            c.kill()
        p99 = float(np.percentile(lats, 99)) if lats else float("inf")
        expected = n * 0.5 * MEASURE_S
        ok = p99 < 1.0 and len(lats) >= 0.9 * expected
        row = {
            "devices": n,
            "p99_s": round(p99, 3),
            "predictions": len(lats),
            "expected": int(expected),
            "ok": ok,
        }
        log.info("naive %s", row)
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
        help="Length of each pipeline step's measuring interval (a soak: e.g. 300).",
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
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

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
    stack.up(timeout=180)
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
        services = {st.name: st.pid for st in stack.status() if st.pid and st.name != "prometheus"}
        pipe = bench_pipeline(
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
        )
        naive = bench_naive(settings, naive_steps)
    finally:
        stack.down()
    best = max([r["devices"] for r in pipe if r["ok"]], default=0)
    best_naive = max([r["devices"] for r in naive if r["ok"]], default=0)
    summary = {
        "model_version": version,
        "cpus": os.cpu_count(),
        "loadavg_end": [round(v, 2) for v in os.getloadavg()],
        "workers": args.workers,
        "message_ms": args.message_ms,
        "pipeline": pipe,
        "naive": naive,
        "pipeline_devices": best,
        "naive_devices": best_naive,
        "ratio": round(best / best_naive, 1) if best_naive else None,
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
