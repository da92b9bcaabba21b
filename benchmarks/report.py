"""`make bench`: a bounded set of benchmarks, their figures in one JSON file, and
docs/benchmarks.md rendered from that file (and only from it).

    .venv/bin/python benchmarks/report.py                  # the default set, about 15 min
    .venv/bin/python benchmarks/report.py --render-only    # docs/benchmarks.md from the JSON
    .venv/bin/python benchmarks/report.py --soak           # 120 s measuring intervals

What runs, one after the other (each a benchmark of its own, called with --json/--out):

- ``bench_stream.py``: the whole co-located pipeline (Kafka, Redis, Prometheus, one
  ``wearmon process`` worker, ``wearmon monitor`` checking on its default interval, the
  generator of real-time 50 Hz devices) stepped over device counts until a step fails, each
  step measured in ``--repeats`` intervals back to back; then the naive baseline, stepped
  the same way, in the same run;
- ``bench_drift.py --table``: one drift check against reference and live sizes;
- ``bench_inference.py``: the inference paths on one core (a shorter set than its default).

The machine (CPU model, cores), its load average before, during (sampled every 5 s) and
after, and the time each part took are recorded with the figures. The projection for larger
deployments is computed by the renderer from the measured figures and the assumptions
written in the JSON file (``ASSUMPTIONS``), so the document never says more than the file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
JSON_OUT = REPO / "docs" / "benchmarks.json"
MD_OUT = REPO / "docs" / "benchmarks.md"

#: the default, bounded set (about 15 minutes on the 2 cores)
STREAM_STEPS = "100,500,1000,1500,2000,2500"
NAIVE_STEPS = "10,20,40"
MEASURE_S = 15.0
#: worker processes in one consumer group (a worker is one Python process: its event loop
#: uses at most one core)
WORKERS = 2
REPEATS = 3
SOAK_MEASURE_S = 120.0
INFERENCE_ARGS = [
    "--paths",
    "keras.predict,tf,onnx,openvino,gemm-bound",
    "--batches",
    "1,32,256",
    "--seconds",
    "1",
    "--repeats",
    "3",
    "--no-tta",
]

#: what the projection assumes (stored in the JSON with the figures it is applied to)
ASSUMPTIONS: dict[str, Any] = {
    # share of each core a component may use at the projected size (headroom for
    # rebalances, garbage collection, bursts and catch-up after an outage)
    "target_utilisation": 0.6,
    # a worker is one process: one event loop and one inference thread (the runtime with
    # one thread); it is given one core
    "cores_per_worker": 1.0,
    # partitions per worker: room to double the workers without repartitioning
    "partitions_per_worker": 2,
    # a broker host's cores (the broker's measured CPU per device-second is divided by them)
    "cores_per_broker": 4,
    # topic replication in production (the benchmark's single broker writes each byte once)
    "replication": 3,
    # what one broker is given for the appends of all replicas it holds, bytes/s (an
    # assumption about the hardware, not measured here)
    "broker_write_bytes_s": 50e6,
    # Redis executes commands on one thread: one shard = one core
    "cores_per_redis_shard": 1.0,
    # windows per device-second (one 4 s window every 2 s hop)
    "windows_per_device_s": 0.5,
}
#: the pipeline's processes, as named in bench_stream's rows
MONITOR_WORDS = (
    "checking against the same Redis on its default interval (30 s, earlier after 2,000 new "
    "windows; retraining off)"
)
COMPONENTS = ("worker", "kafka", "redis", "prometheus", "monitor", "generator")


# ---------------------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _busy_s() -> float:
    """Busy CPU seconds of the whole machine so far (/proc/stat, idle and iowait excluded)."""
    f = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(f[:8]) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")


class LoadSampler:
    """The 1-minute load average and the machine's busy cores every ``every`` seconds."""

    def __init__(self, every: float = 5.0) -> None:
        self.every = every
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last_t, last_b = time.monotonic(), _busy_s()
        while not self._stop.wait(self.every):
            t, b = time.monotonic(), _busy_s()
            self.samples.append((os.getloadavg()[0], (b - last_b) / (t - last_t)))
            last_t, last_b = t, b

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(10)

    def summary(self) -> dict[str, Any]:
        loads = [s[0] for s in self.samples] or [os.getloadavg()[0]]
        busy = [s[1] for s in self.samples] or [0.0]
        return {
            "load1_median": round(statistics.median(loads), 2),
            "load1_max": round(max(loads), 2),
            "busy_cores_median": round(statistics.median(busy), 2),
            "busy_cores_max": round(max(busy), 2),
            "samples": len(self.samples),
        }


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        )
        return out.stdout.strip()
    except OSError:
        return ""


# ---------------------------------------------------------------------------- running


def _run_part(name: str, cmd: list[str], log_dir: Path) -> dict[str, Any]:
    """Run one benchmark; its output goes to ``log_dir/<name>.log``."""
    log = log_dir / f"{name}.log"
    print(f"== {name}: {' '.join(cmd[1:])}  (log: {log})", flush=True)
    before = [round(v, 2) for v in os.getloadavg()]
    t0 = time.monotonic()
    with LoadSampler() as sampler, log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        try:
            code = proc.wait()
        except KeyboardInterrupt:  # the benchmark stops its stack and processes on SIGTERM
            proc.terminate()
            proc.wait(120)
            raise
    if code != 0:
        raise SystemExit(f"{name} failed with exit code {code}; see {log}")
    seconds = round(time.monotonic() - t0, 1)
    print(f"   {name} done in {seconds:.0f} s", flush=True)
    return {
        "seconds": seconds,
        "load_before": before,
        "during": sampler.summary(),
        "load_after": [round(v, 2) for v in os.getloadavg()],
    }


def _options(argv: list[str]) -> list[str]:
    """The command line's options that change what is measured (not --note's text)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--note":
            skip = True
        elif not a.startswith("--note="):
            out.append(a)
    return out


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="wearmon-bench-report-"))
    py = sys.executable
    measure = SOAK_MEASURE_S if args.soak else args.measure_s
    parts: dict[str, Any] = {}
    data: dict[str, Any] = {}
    t0 = time.monotonic()
    load_before = [round(v, 2) for v in os.getloadavg()]
    with LoadSampler() as whole:
        stream = [
            py,
            str(BENCH / "bench_stream.py"),
            "--steps",
            args.steps,
            "--naive",
            args.naive,
            "--workers",
            str(args.workers),
            "--measure-s",
            str(measure),
            "--repeats",
            str(args.repeats),
            "--out",
            str(work / "stream.json"),
        ]
        parts["stream"] = _run_part("stream", stream, work)
        data["stream"] = json.loads((work / "stream.json").read_text())
        if not args.skip_drift:
            drift = [
                py,
                str(BENCH / "bench_drift.py"),
                "--table",
                "--repeats",
                str(args.repeats),
                "--json",
                str(work / "drift.json"),
            ]
            parts["drift"] = _run_part("drift", drift, work)
            data["drift"] = json.loads((work / "drift.json").read_text())
        if not args.skip_inference:
            inf = [
                py,
                str(BENCH / "bench_inference.py"),
                *INFERENCE_ARGS,
                "--json",
                str(work / "inference.json"),
            ]
            parts["inference"] = _run_part("inference", inf, work)
            data["inference"] = json.loads((work / "inference.json").read_text())
    return {
        "schema": 1,
        "generated_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _git_commit(),
        "command": " ".join(["benchmarks/report.py", *_options(sys.argv[1:])]),
        "note": args.note,
        "seconds": round(time.monotonic() - t0, 1),
        "machine": {
            "cpu_model": cpu_model(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "kernel": platform.release(),
            "load_before": load_before,
            "during": whole.summary(),
            "load_after": [round(v, 2) for v in os.getloadavg()],
        },
        "parts": parts,
        "assumptions": dict(ASSUMPTIONS),
        **data,
    }


# ---------------------------------------------------------------------------- projection


def best_step(stream: dict[str, Any]) -> dict[str, Any] | None:
    """The pipeline step with the most devices that held."""
    ok = [r for r in stream.get("pipeline", []) if r.get("ok")]
    return max(ok, key=lambda r: r["devices"]) if ok else None


def step_of(stream: dict[str, Any], devices: int) -> dict[str, Any] | None:
    return next((r for r in stream.get("pipeline", []) if r["devices"] == devices), None)


def per_device_s(step: dict[str, Any]) -> dict[str, float]:
    """CPU ms per device-second of each component: the median over the step's repeats."""
    spread = step["spread"]["cpu_ms_per_device_s"]
    return {c: spread[c]["median"] for c in COMPONENTS if c in spread}


def monitor_check_s(
    drift: dict[str, Any] | None, reference: int = 10_000, live: int = 2_000
) -> float | None:
    """Median seconds of one check (``reference`` x ``live`` windows) in the drift table."""
    for row in (drift or {}).get("rows", []):
        if row["reference"] == reference and row["live"] == live:
            return float(row["check_s"]["median"])
    return None


def _ceil(x: float) -> int:
    """Whole units for a need of ``x`` (3.0 / 0.6 is 5, not the 6 float division gives)."""
    return math.ceil(round(x, 9))


def project(data: dict[str, Any], devices: int) -> dict[str, Any]:
    """What ``devices`` real-time devices need, from the figures of the best pipeline step
    and the assumptions of ``data`` (see ASSUMPTIONS and the rendered section)."""
    a = {**ASSUMPTIONS, **data.get("assumptions", {})}
    step = best_step(data["stream"])
    if step is None:
        raise ValueError("no pipeline step held: nothing to project from")
    cpu = per_device_s(step)  # ms per device-second
    u = a["target_utilisation"]
    cores = {c: cpu[c] * devices / 1000.0 for c in cpu}
    workers = _ceil(cores["worker"] / (a["cores_per_worker"] * u))
    partitions = workers * a["partitions_per_worker"]
    kafka_bytes = step["spread"]["kafka_bytes_per_device_s"]["median"] * devices
    brokers_cpu = _ceil(cores["kafka"] * a["replication"] / (a["cores_per_broker"] * u))
    brokers_bytes = _ceil(kafka_bytes * a["replication"] / a["broker_write_bytes_s"])
    brokers = max(a["replication"], brokers_cpu, brokers_bytes)
    shards = _ceil(cores["redis"] / (a["cores_per_redis_shard"] * u))
    redis_ops = step["spread"]["redis_commands_per_device_s"]["median"] * devices
    redis_in = step["spread"]["redis_bytes_in_per_device_s"]["median"] * devices
    # the monitor checks every interval, or as soon as max_windows new windows are waiting:
    # past max_windows / interval_s windows per second it checks max_windows at a time
    windows_s = a["windows_per_device_s"] * devices
    interval_s, max_windows = 30.0, 2000
    checks_s = max(1.0 / interval_s, windows_s / max_windows)
    check_s = monitor_check_s(data.get("drift"))
    monitor_cores = None if check_s is None else round(checks_s * check_s, 3)
    return {
        "devices": devices,
        "from_step": step["devices"],
        "cores": {c: round(v, 2) for c, v in cores.items()},
        "workers": workers,
        "partitions": partitions,
        "kafka_bytes_s": round(kafka_bytes),
        "brokers": brokers,
        "brokers_by": {"replication": a["replication"], "cpu": brokers_cpu, "bytes": brokers_bytes},
        "redis_shards": max(1, shards),
        "redis_ops_s": round(redis_ops),
        "redis_bytes_in_s": round(redis_in),
        "monitor_checks_s": round(checks_s, 3),
        "monitor_check_cores": monitor_cores,
    }


# ---------------------------------------------------------------------------- rendering


def _sp(s: dict[str, Any] | None, fmt: str = "{:.2f}") -> str:
    """``median (min-max)`` of a spread."""
    if not s:
        return "-"
    med, lo, hi = (fmt.format(s[k]) for k in ("median", "min", "max"))
    return med if lo == hi == med else f"{med} ({lo}-{hi})"


def _range(s: dict[str, Any]) -> str:
    """`` (p99 a-b over the repeats)`` when the repeats differ."""
    if s["min"] == s["max"]:
        return ""
    return f" (p99 {s['min']:g}-{s['max']:g} over the repeats)"


def _le(v: float) -> str:
    return "> 10" if v == float("inf") else f"≤ {v:g}"


def render(data: dict[str, Any]) -> str:
    m = data["machine"]
    out: list[str] = []
    w = out.append
    w("# Benchmarks")
    w("")
    w(
        f"Generated by `make bench` (`{data['command'].strip()}`) from `docs/benchmarks.json`, "
        f"commit {data.get('commit') or '?'}, {data['generated_utc']}; the whole run took "
        f"{data['seconds'] / 60:.1f} min. Every figure below is in that file; this page is "
        "rendered from it (`benchmarks/report.py --render-only`)."
    )
    w("")
    w(
        "Run it with `make bench` (the default set, unattended; `make bench "
        'BENCH_ARGS="--soak"` for 120 s intervals, `--steps 1000,1250,1500` to step finer, '
        "`--render-only` to redraw this page from the JSON). Absolute times drift on shared "
        "machines: compare the ratios measured within the run."
    )
    if data.get("note"):
        w("")
        w(f"**{data['note']}**")
    w("")
    w("## The machine")
    w("")
    d = m["during"]
    w(f"- {m['cpu_model']}, {m['cores']} cores; Python {m['python']}, kernel {m['kernel']}.")
    w(
        f"- Load average (1, 5, 15 min) before: {', '.join(f'{v:g}' for v in m['load_before'])}; "
        f"after: {', '.join(f'{v:g}' for v in m['load_after'])}. During (sampled every 5 s): "
        f"1-min load median {d['load1_median']:g}, max {d['load1_max']:g}; busy cores median "
        f"{d['busy_cores_median']:g}, max {d['busy_cores_max']:g} of {m['cores']}."
    )
    w("")
    w("| part | minutes | load before | load during (median / max) | busy cores during |")
    w("|---|---|---|---|---|")
    for name, p in data.get("parts", {}).items():
        pd_ = p["during"]
        w(
            f"| {name} | {p['seconds'] / 60:.1f} | {p['load_before'][0]:g} | "
            f"{pd_['load1_median']:g} / {pd_['load1_max']:g} | {pd_['busy_cores_median']:g} |"
        )
    w("")
    _render_pipeline(w, data)
    _render_cpu(w, data)
    _render_io(w, data)
    if data.get("drift"):
        _render_drift(w, data["drift"])
    if data.get("inference"):
        _render_inference(w, data["inference"])
    _render_projection(w, data)
    return "\n".join(out) + "\n"


def _render_pipeline(w: Any, data: dict[str, Any]) -> None:
    st = data["stream"]
    best = best_step(st)
    w("## The pipeline: devices at p99 < 1 s")
    w("")
    w(
        f"`benchmarks/bench_stream.py`: an isolated local stack (Kafka, Redis, Prometheus) on "
        f"free ports, {st['workers']} `wearmon process` worker(s) in one consumer group, "
        "`wearmon monitor` "
        f"{MONITOR_WORDS if st.get('monitor') else 'not running'}, "
        f"and a generator process sending, per device, one accel and one gyro message of 25 "
        f"samples every {st['message_ms']} ms (50 Hz, real time), all on the same "
        f"{st['cpus']} cores. Each step warms up 12 s, then measures {st['repeats']} intervals of "
        f"{st['measure_s']:g} s back to back; the stepping stops at the first step that fails. "
        f"A step holds when p99 end-to-end latency (Redis write - the message's `sent_ms`; "
        f"histogram bucket bounds) is under 1 s and at least {st['pass_share']:.0%} of the "
        f"windows due in its measuring time were predicted in it (predicted can exceed due: "
        f"windows due just before the interval and predicted in it count too, as those due "
        f"at its end and predicted after it do not). Ranges are over the repeats."
    )
    w("")
    w(
        "| devices | holds | p50 / p90 / p99 end-to-end | windows predicted of due "
        "| worker CPU µs per message | machine busy cores | load |"
    )
    w("|---|---|---|---|---|---|---|")
    for r in st["pipeline"]:
        sp = r["spread"]
        w(
            f"| {r['devices']:,} | {'yes' if r['ok'] else 'no'} | {_le(r['p50_s_le'])} / "
            f"{_le(r['p90_s_le'])} / {_le(r['p99_s_le'])} s{_range(sp['p99_s_le'])} | "
            f"{r['predictions']:,} of {r['expected']:,} | {r['worker_cpu_us_per_msg']:g} | "
            f"{r['machine_busy_cores']:g} | {r['load1']:g} |"
        )
    w("")
    w(
        "Naive baseline, same run, same stack: one message per sample (100 messages/s per "
        "device), a plain consumer with the same windower calling `model.predict` per window "
        "and writing each prediction with single Redis commands."
    )
    w("")
    w(
        "| devices | holds | p50 / p99 end-to-end | windows predicted of due "
        "| consumer CPU ms per device-second |"
    )
    w("|---|---|---|---|---|")
    for r in st["naive"]:
        w(
            f"| {r['devices']:,} | {'yes' if r['ok'] else 'no'} | {r['p50_s']:g} / "
            f"{r['p99_s']:g} s{_range(r['spread']['p99_s'])} | "
            f"{r['predictions']:,} of {r['expected']:,} | "
            f"{r['cpu_ms_per_device_s'].get('consumer', 0):g} |"
        )
    w("")
    ratio = st.get("ratio")
    w(
        f"**Held: {st['pipeline_devices']:,} devices through the pipeline, "
        f"{st['naive_devices']:,} naive"
        + (f": {ratio:g}x the naive baseline" if ratio else "")
        + ".** (The goal is 2,000 devices on the 2 cores, at least 100x the naive baseline.)"
    )
    s100 = step_of(st, 100)
    if s100:
        w("")
        w(
            f"At 100 devices: p50 {_le(s100['p50_s_le'])} s, p90 {_le(s100['p90_s_le'])} s, p99 "
            f"{_le(s100['p99_s_le'])} s; message to cut window p50/p99 "
            f"{' / '.join(_le(v) for v in s100['ingest_p50_p99_s_le'])} s, cut window to batch "
            f"start {' / '.join(_le(v) for v in s100['queue_p50_p99_s_le'])} s."
        )
    if best is None:
        w("")
        w("No step held.")
    w("")


def _render_cpu(w: Any, data: dict[str, Any]) -> None:
    st = data["stream"]
    w("## Where the CPU goes, per device-second")
    w("")
    w(
        "CPU milliseconds (user + system, from `/proc/<pid>/stat`, children included) of each "
        "process over the measuring time, divided by devices x seconds; median (range) over the "
        "repeats. The monitor's share depends on whether a check (and the Evidently report of "
        "a policy change) fell in an interval: its range shows it."
    )
    w("")
    w("| devices | " + " | ".join(COMPONENTS) + " | all |")
    w("|---" * (len(COMPONENTS) + 2) + "|")
    for r in st["pipeline"]:
        sp = r["spread"]["cpu_ms_per_device_s"]
        total = sum(sp[c]["median"] for c in COMPONENTS if c in sp)
        w(
            f"| {r['devices']:,} | "
            + " | ".join(_sp(sp.get(c), "{:.3f}") for c in COMPONENTS)
            + f" | {total:.3f} |"
        )
    w("")
    w("The naive baseline (its consumer in place of worker and monitor):")
    w("")
    cols = ("consumer", "kafka", "redis", "prometheus", "generator")
    w("| devices | " + " | ".join(cols) + " | all |")
    w("|---" * (len(cols) + 2) + "|")
    for r in st["naive"]:
        c = r["cpu_ms_per_device_s"]
        w(
            f"| {r['devices']:,} | "
            + " | ".join(f"{c.get(k, 0):.3f}" for k in cols)
            + f" | {sum(c.get(k, 0) for k in cols):.3f} |"
        )
    best = best_step(st)
    naive_ok = [r for r in st["naive"] if r["ok"]]
    if best and naive_ok:
        nb = max(naive_ok, key=lambda r: r["devices"])
        pcpu = per_device_s(best)
        ptot = sum(pcpu.values())
        ntot = sum(nb["cpu_ms_per_device_s"].values())
        w("")
        w(
            f"Per device-second the whole pipeline at {best['devices']:,} devices used "
            f"{ptot:.3f} CPU ms, the naive baseline at {nb['devices']:,} {ntot:.3f} ms: "
            f"{ntot / ptot:.1f}x less CPU per device-second (same run)."
        )
    w("")


def _render_io(w: Any, data: dict[str, Any]) -> None:
    st = data["stream"]
    w("## Redis and Kafka per device-second")
    w("")
    w(
        "Redis: `INFO stats` (`total_commands_processed`, `total_net_input_bytes`, "
        "`total_net_output_bytes`) and `INFO commandstats` before and after each interval "
        "(every client: worker, monitor, the benchmark's few reads). Kafka: the bytes the broker "
        "appended to each topic's log segments (record batches as stored, one replica)."
    )
    w("")
    w(
        "| devices | Redis commands | Redis bytes in | Redis bytes out "
        "| Kafka bytes appended (all topics) |"
    )
    w("|---|---|---|---|---|")
    for r in st["pipeline"]:
        sp = r["spread"]
        w(
            f"| {r['devices']:,} | {_sp(sp['redis_commands_per_device_s'])} | "
            f"{_sp(sp['redis_bytes_in_per_device_s'], '{:,.0f}')} | "
            f"{r['redis']['bytes_out_per_device_s']:,.0f} | "
            f"{_sp(sp['kafka_bytes_per_device_s'], '{:,.0f}')} |"
        )
    best = best_step(st)
    if best:
        calls = best["redis"]["calls_per_device_s"]
        w("")
        w(
            f"At {best['devices']:,} devices, Redis calls per device-second by command: "
            + ", ".join(
                f"{k} {v:g}"
                for k, v in sorted(calls.items(), key=lambda kv: -kv[1])
                if v >= 0.001  # fewer than one call per 1,000 device-seconds: left out
            )
            + "; Kafka bytes per device-second by topic: "
            + ", ".join(f"{k} {v:,.0f}" for k, v in best["kafka_log_bytes_per_device_s"].items())
            + "."
        )
    w("")


def _render_drift(w: Any, drift: dict[str, Any]) -> None:
    w("## Drift check cost")
    w("")
    w(
        f"`benchmarks/bench_drift.py --table`: real seglearn watch windows (reference drawn from "
        f"subjects 1-8, {drift['reference_pool_windows']:,} distinct windows at a 20-sample hop, "
        f"drawn with replacement past that; live from subjects 9 and 10, {drift['devices']} "
        f"devices), the monitor's default CheckConfig; median (range) of {drift['repeats']} "
        f"runs. Building the reference happens once per champion; a check reads at most "
        f"`max_live` live windows (2,000 by default; raised to the live size past it). Load "
        f"{drift['loadavg_start'][0]:g} -> {drift['loadavg_end'][0]:g}."
    )
    w("")
    w("| reference windows | live windows | build reference, s | one check, s |")
    w("|---|---|---|---|")
    for r in drift["rows"]:
        w(
            f"| {r['reference']:,} | {r['live']:,} | {_sp(r['build_s'], '{:.3f}')} | "
            f"{_sp(r['check_s'], '{:.3f}')} |"
        )
    w("")


def _render_inference(w: Any, inf: dict[str, Any]) -> None:
    sys.path.insert(0, str(BENCH))
    from bench_inference import table

    mach = inf["machine"]
    batches = sorted({r["batch"] for r in inf["results"].values()})
    w("## Inference paths (one core)")
    w("")
    w(
        f"`benchmarks/bench_inference.py {' '.join(INFERENCE_ARGS)}` (docs/inference.md has "
        f"the full set): one process pinned to core {mach['pinned_core']}, one thread; "
        f"windows per CPU-second, median (range) of {mach['repeats']} interleaved rounds of "
        f"{mach['seconds']:g} s, x the XLA-compiled tf.function in the same round; agreement "
        f"with Keras on every seglearn window. Load {mach['load_start'][0]:.2f} -> "
        f"{mach['load_end'][0]:.2f}."
    )
    gemm = inf["agreement"].get("gemm-bound", {})
    if "macs_per_window" in gemm:
        w("")
        w(
            f"`gemm-bound` serves nothing: it is the model's matrix products alone "
            f"({gemm['macs_per_window'] / 1e6:.1f} M multiply-adds per window) through "
            f"numpy's BLAS on the same core, whose peak on a large product measured "
            f"{gemm['blas_peak_macs'] / 1e9:.0f} G multiply-adds per CPU-second: the ceiling "
            f"of an fp32 engine that spent nothing outside its GEMMs."
        )
    w("")
    w(table(inf["results"], inf["agreement"], batches))
    w("")


def _render_projection(w: Any, data: dict[str, Any]) -> None:
    st = data["stream"]
    best = best_step(st)
    w("## Projection: 10,000 and 100,000 devices")
    w("")
    if best is None:
        w("Not computed: no pipeline step held.")
        return
    a = {**ASSUMPTIONS, **data.get("assumptions", {})}
    cpu = per_device_s(best)
    w(
        f"From the step with the most devices that held ({best['devices']:,}), where the fixed "
        "costs are spread thinnest: CPU ms per device-second "
        + ", ".join(f"{c} {cpu[c]:.3f}" for c in cpu)
        + f"; Redis {best['spread']['redis_commands_per_device_s']['median']:g} commands and "
        f"{best['spread']['redis_bytes_in_per_device_s']['median']:,.0f} bytes in; Kafka "
        f"{best['spread']['kafka_bytes_per_device_s']['median']:,.0f} bytes appended. "
        "Scaled linearly with the devices (a measured cost per device-second, no economies of "
        "scale assumed), under these assumptions (`assumptions` in the JSON):"
    )
    steps = [(r["devices"], sum(per_device_s(r).values()), r["ok"]) for r in st["pipeline"]]
    if len(steps) > 1:
        w("")
        w(
            "All the processes' CPU per device-second, by step: "
            + ", ".join(
                f"{n:,} devices {t:.3f} ms" + ("" if ok else " (did not hold)")
                for n, t, ok in steps
            )
            + ". Where it falls as the devices rise (fixed costs spread over more devices), "
            "a projection from a larger step that holds comes out lower."
        )
    w("")
    w(f"- each component runs at most {a['target_utilisation']:.0%} of its cores;")
    w(
        f"- a worker is one process given {a['cores_per_worker']:g} core; "
        f"{a['partitions_per_worker']} partitions per worker;"
    )
    w(
        f"- brokers have {a['cores_per_broker']} cores and {a['broker_write_bytes_s'] / 1e6:g} "
        f"MB/s for appends; replication {a['replication']} (the broker CPU and bytes measured on "
        "one unreplicated broker are multiplied by it); at least as many brokers as replicas;"
    )
    w(
        f"- a Redis shard is {a['cores_per_redis_shard']:g} core (Redis runs commands on one "
        "thread); memory was not measured; the load is taken to spread over the shards by key, "
        "which holds for the per-device keys and the checkpoints (a slot per partition, most "
        "of the bytes: a device's checkpointed state is 13-18 KB every 2 s, estimated from its "
        "encoding, not measured apart here), not for the feature stream, one slot "
        "(`{stream}`, docs/deploy.md) and so one primary of a Redis Cluster: it costs that "
        "primary 7-8 CPU ms per 1,000 windows (`bench_sink.py --server-cpu`), a core at about "
        "125,000 windows/s, so at 60 % about 150,000 devices;"
    )
    w(
        "- the generator stands for the devices' own producers and is not part of a deployment; "
        "Prometheus' cost follows its series (per worker), not the devices;"
    )
    w(
        "- the monitor checks every 30 s or once 2,000 new windows wait, and one check of 2,000 "
        "live windows against a 10,000-window reference costs the drift table's median."
    )
    w("")
    rows = [project(data, n) for n in (10_000, 100_000)]
    w("| | " + " | ".join(f"{r['devices']:,} devices" for r in rows) + " |")
    w("|---|" + "---|" * len(rows))

    def line(label: str, f: Any) -> None:
        w(f"| {label} | " + " | ".join(f(r) for r in rows) + " |")

    line("worker cores", lambda r: f"{r['cores']['worker']:g}")
    line("workers", lambda r: f"{r['workers']:,}")
    line("partitions of the samples topic", lambda r: f"{r['partitions']:,}")
    line("broker cores (one replica)", lambda r: f"{r['cores']['kafka']:g}")
    line("Kafka bytes appended/s (one replica)", lambda r: f"{r['kafka_bytes_s'] / 1e6:.1f} MB")
    line(
        "brokers (replication / CPU / bytes)",
        lambda r: (
            f"{r['brokers']} ({r['brokers_by']['replication']} / {r['brokers_by']['cpu']} / "
            f"{r['brokers_by']['bytes']})"
        ),
    )
    line("Redis cores", lambda r: f"{r['cores']['redis']:g}")
    line("Redis shards", lambda r: f"{r['redis_shards']}")
    line("Redis commands/s", lambda r: f"{r['redis_ops_s']:,}")
    line("Redis bytes in/s", lambda r: f"{r['redis_bytes_in_s'] / 1e6:.1f} MB")
    line("monitor checks/s", lambda r: f"{r['monitor_checks_s']:g}")
    line(
        "monitor cores for checks",
        lambda r: "-" if r["monitor_check_cores"] is None else f"{r['monitor_check_cores']:g}",
    )
    w("")
    big = rows[-1]
    if (
        big["monitor_check_cores"] is not None
        and big["monitor_check_cores"] > a["target_utilisation"]
    ):
        w(
            f"At {big['devices']:,} devices one monitor process would need "
            f"{big['monitor_check_cores']:g} cores for its checks (it is one process, checking "
            "one batch at a time): it would fall behind and check a sample of the windows, not "
            "all of them. A larger deployment runs monitors per group of devices, or checks a "
            "sample by design."
        )
        w("")


# ---------------------------------------------------------------------------- main


def _interrupted(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--render-only", action="store_true", help="Only render --json into --md.")
    ap.add_argument("--json", type=Path, default=JSON_OUT, help="The figures (written, read).")
    ap.add_argument("--md", type=Path, default=MD_OUT, help="The rendered page.")
    ap.add_argument("--steps", default=STREAM_STEPS, help="Pipeline device counts to step.")
    ap.add_argument("--naive", default=NAIVE_STEPS, help="Naive baseline device counts.")
    ap.add_argument("--measure-s", type=float, default=MEASURE_S, help="Measuring interval.")
    ap.add_argument("--repeats", type=int, default=REPEATS, help="Intervals per step.")
    ap.add_argument("--workers", type=int, default=WORKERS, help="Pipeline worker processes.")
    ap.add_argument("--soak", action="store_true", help=f"{SOAK_MEASURE_S:g} s intervals.")
    ap.add_argument("--skip-drift", action="store_true")
    ap.add_argument("--skip-inference", action="store_true")
    ap.add_argument(
        "--note", default="", help="A line printed at the top (e.g. the machine's state)."
    )
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGINT, _interrupted)
    if not args.render_only:
        data = run_all(args)
        args.json.write_text(json.dumps(data, indent=2, default=float) + "\n")
    data = json.loads(args.json.read_text())
    args.md.write_text(render(data))
    print(f"wrote {args.md} from {args.json}")


if __name__ == "__main__":
    main()
