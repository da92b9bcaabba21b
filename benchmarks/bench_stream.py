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
THESIS = Path("/work/shared/anchors/thesis-model")
log = logging.getLogger("bench_stream")

WARM_S = 12.0
#: spawn, not fork: the parent has TensorFlow loaded (model import)
_MP = mp.get_context("spawn")
MEASURE_S = 20.0


# ---------------------------------------------------------------------------- generator


def _generate(
    bootstrap: str, topic: str, n_devices: int, per_sample: bool, prefix: str, stop: Any
) -> None:
    """Real-time 50 Hz devices: every 0.5 s one accel + one gyro batch of 25 samples
    (or 25 single-sample messages each when ``per_sample``). Devices are staggered."""
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
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1, size=(1000, 6))
    base[:, 2] += 9.81
    base[:, 3:] *= 30
    devices = [f"{prefix}-{i}" for i in range(n_devices)]
    keys = [d.encode() for d in devices]
    start = (int(time.time() * 1000) // 500) * 500
    next_t = [start - 500 + (i % 5) * 100 for i in range(n_devices)]
    tick = 0
    while not stop.is_set():
        now = int(time.time() * 1000)
        for i in range(n_devices):
            if next_t[i] + 500 > now:
                continue
            t0 = next_t[i]
            ts = list(range(t0, t0 + 500, 20))
            j = (t0 // 20) % 975
            blk = base[j : j + 25]
            for sensor, cols, unit in (("accel", (0, 1, 2), "m/s2"), ("gyro", (3, 4, 5), "deg/s")):
                xs, ys, zs = (blk[:, c].tolist() for c in cols)
                sent = int(time.time() * 1000)
                if per_sample:
                    for k in range(25):
                        msg = SampleBatch(
                            device=devices[i],
                            sensor=sensor,
                            t_ms=[ts[k]],  # type: ignore[arg-type]
                            x=[xs[k]],
                            y=[ys[k]],
                            z=[zs[k]],
                            unit=unit,
                            sent_ms=sent,
                        )
                        p.produce(topic, key=keys[i], value=encode(msg))
                else:
                    msg = SampleBatch(
                        device=devices[i],
                        sensor=sensor,
                        t_ms=ts,
                        x=xs,
                        y=ys,  # type: ignore[arg-type]
                        z=zs,
                        unit=unit,
                        sent_ms=sent,
                    )
                    p.produce(topic, key=keys[i], value=encode(msg))
            next_t[i] = t0 + 500
            if i % 200 == 0:
                p.poll(0)
        p.poll(0)
        tick += 1
        time.sleep(0.02)
    p.flush(10)


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
                max_gap_ms=sig.max_gap_ms, lateness_ms=sig.lateness_ms
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


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    vals: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("wearmon_stream_e2e_latency_seconds_bucket") or line.startswith(
            ("wearmon_stream_predictions_total", "wearmon_stream_e2e_latency_seconds_count")
        ):
            name, v = line.rsplit(" ", 1)
            if name.startswith("wearmon_stream_predictions_total"):
                name = "predictions"
            vals[name] = vals.get(name, 0.0) + float(v)
    return vals


def _p99_from_buckets(a: dict[str, float], b: dict[str, float]) -> tuple[float, int]:
    buckets = []
    for name, v in b.items():
        if name.startswith("wearmon_stream_e2e_latency_seconds_bucket"):
            le = name.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), v - a.get(name, 0.0)))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0
    for le, cum in buckets:
        if total and cum >= 0.99 * total:
            return le, int(total)
    return float("inf"), int(total)


def _start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    fh = open(log_path, "ab")  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", "wearmon.cli.main", "process"],
        env=env,
        stdout=fh,
        stderr=subprocess.STDOUT,
    )


def bench_pipeline(
    settings: Any, env: dict[str, str], steps: list[int], work: Path
) -> list[dict[str, Any]]:
    import redis

    r = redis.Redis.from_url(settings.redis.url)
    worker = _start_worker(env, work / "worker.log")
    results = []
    try:
        port = settings.metrics.stream_port
        deadline = time.monotonic() + 180
        while True:  # ready when the model is served
            try:
                _scrape(port)
                if "now serving" in (work / "worker.log").read_text():
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or worker.poll() is not None:
                raise SystemExit("worker did not start; see " + str(work / "worker.log"))
            time.sleep(1)
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
                ),
            )
            g.start()
            time.sleep(WARM_S)
            a = _scrape(port)
            time.sleep(MEASURE_S)
            b = _scrape(port)
            stop.set()
            g.join(20)
            p99, _count = _p99_from_buckets(a, b)
            preds = b.get("predictions", 0) - a.get("predictions", 0)
            expected = n * 0.5 * MEASURE_S
            ok = p99 < 1.0 and preds >= 0.9 * expected
            row = {
                "devices": n,
                "p99_s_le": p99,
                "predictions": int(preds),
                "expected": int(expected),
                "ok": ok,
            }
            log.info("pipeline %s", row)
            results.append(row)
            time.sleep(6)  # drain
            r.delete(*[k for k in r.scan_iter(match=f"pred:*:p{n}-*", count=5000)] or ["-"])
            if not ok:
                break
    finally:
        worker.terminate()
        worker.wait(30)
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
        pipe = bench_pipeline(settings, env, steps, work)
        naive = bench_naive(settings, naive_steps)
    finally:
        stack.down()
    best = max([r["devices"] for r in pipe if r["ok"]], default=0)
    best_naive = max([r["devices"] for r in naive if r["ok"]], default=0)
    summary = {
        "model_version": version,
        "cpus": os.cpu_count(),
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
