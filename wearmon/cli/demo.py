"""`wearmon demo`: the whole pipeline, locally, on built-in data, start to finish.

The demo keeps everything in its own data directory, ``<data_dir>/demo``: its own stack
state, model registry and recordings. Each run starts the stack with empty Kafka and Redis
data (a run never sees the messages of an earlier one) and reuses the model trained by the
first run.

1. the demo's local stack (Kafka, Redis, Prometheus) starts, fresh;
2. a model is trained on the built-in seglearn watch data if none is registered as champion;
3. realistic session recordings (Garmin-style Excel pairs with labels) are generated from
   real seglearn subjects;
4. a stream-processor worker starts (`wearmon process`);
5. the recordings are replayed as several virtual devices (`wearmon replay`);
6. the predictions land in Redis; a per-device summary is printed, with the live accuracy
   against the ground truth the replay sent on the labels topic, and what Prometheus scraped
   from the worker;
7. the worker and the stack stop (``--keep-stack`` leaves the stack up to look around).
   Nothing else is left running.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from wearmon.cli.common import settings_of
from wearmon.errors import WearmonError
from wearmon.processes import child_env, wearmon_command
from wearmon.settings import Settings

console = Console()


def _env(settings: Settings) -> dict[str, str]:
    """Environment that hands the demo's settings to the child commands."""
    return child_env(settings.model_copy(update={"data_dir": settings.data_dir.resolve()}))


def _run(args: list[str], settings: Settings, what: str) -> None:
    console.print(f"[bold]$ wearmon {' '.join(args)}")
    proc = subprocess.run(wearmon_command(*args), env=_env(settings))
    if proc.returncode != 0:
        raise WearmonError(f"{what} failed (exit code {proc.returncode})")


def _stop(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _predictions(client: Any) -> dict[str, dict[str, Any]]:
    """Per device: number of predictions, label mix and the latest prediction."""
    out: dict[str, dict[str, Any]] = {}
    for key in client.scan_iter(match="pred:latest:*", count=500):
        device = key.decode().split(":", 2)[2]
        latest = {k.decode(): v.decode() for k, v in client.hgetall(key).items()}
        hist = client.xrange(f"pred:hist:{device}")
        labels = Counter(fields.get(b"label", b"?").decode() for _, fields in hist)
        out[device] = {"n": len(hist), "labels": labels, "latest": latest}
    return out


def _prometheus(settings: Settings, query: str) -> float | None:
    """One instant query against the stack's Prometheus; None when there is no sample."""
    import urllib.parse
    import urllib.request

    url = f"http://127.0.0.1:{settings.ports.prometheus}/api/v1/query?" + urllib.parse.urlencode(
        {"query": query}
    )
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            result = json.load(resp)["data"]["result"]
    except Exception:
        return None
    return float(result[0]["value"][1]) if result else None


def _wait_serving(settings: Settings, worker: subprocess.Popen[bytes], log: Path) -> str:
    """Wait until the worker serves a model (its metrics say which); return the version."""
    import re
    import urllib.request

    url = f"http://127.0.0.1:{settings.metrics.stream_port}/metrics"
    pattern = re.compile(
        r'^wearmon_stream_model_version_info\{model_version="([^"]+)"\} 1\.0$', re.M
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise WearmonError(f"the worker exited during start-up; see {log}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=2) as resp:
                found = pattern.search(resp.read().decode())
            if found:
                return found.group(1)
        time.sleep(0.5)
    raise WearmonError(f"the worker served no model within 180 s; see {log}")


def _live_accuracy(client: Any) -> dict[str, tuple[int, int]]:
    """Model version -> (windows judged against ground truth, correct), over all workers."""
    raw = {k.decode(): int(v) for k, v in client.hgetall("acc:live").items()}
    out: dict[str, tuple[int, int]] = {}
    for key, value in raw.items():
        version, _, field = key.rpartition(":")
        total, correct = out.get(version, (0, 0))
        out[version] = (value, correct) if field == "total" else (total, value)
    return out


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo_cmd(
        ctx: typer.Context,
        devices: int = typer.Option(6, "--devices", min=1, help="Virtual devices to replay."),
        subjects: str = typer.Option("1,2,3", "--subjects", help="seglearn subjects to record."),
        speed: str = typer.Option("20", "--speed", help="Replay speed (factor or max)."),
        epochs: int = typer.Option(8, "--epochs", help="Epochs if a model must be trained."),
        settle_s: float = typer.Option(120.0, "--timeout", help="Seconds to wait for results."),
        keep_stack: bool = typer.Option(False, "--keep-stack", help="Leave the stack running."),
    ) -> None:
        """Run the whole pipeline locally on built-in data, then stop everything."""
        import redis

        from trainer.serving import champion_version
        from wearmon.signals.recording_gen import make_recording
        from wearmon.stack import LocalStack

        base = settings_of(ctx)
        settings = base.model_copy(update={"data_dir": base.data_dir / "demo"})
        stack = LocalStack(settings)
        t0 = time.monotonic()
        console.rule("1. local stack")
        stack.down()  # a stack left up by an earlier `demo --keep-stack`
        for state in ("kafka", "redis", "prometheus"):
            shutil.rmtree(stack.root / state, ignore_errors=True)
        stack.up()
        for name in ("kafka", "redis", "prometheus"):
            console.print(f"{name:<11} {stack.address(name)}")
        console.print(f"data in {settings.data_dir}")
        worker: subprocess.Popen[bytes] | None = None
        try:
            console.rule("2. model")
            version = champion_version(settings)
            if version is None:
                console.print("no champion registered: training one on the seglearn watch data")
                _run(["train", "--epochs", str(epochs)], settings, "training")
                version = champion_version(settings)
                if version is None:
                    raise WearmonError("training finished but no champion is registered")
            console.print(f"serving {settings.model_name} version {version} (alias champion)")

            console.rule("3. recordings")
            rec_dir = settings.data_dir / "recordings"
            folders: list[Path] = []
            for subj in [s.strip() for s in subjects.split(",") if s.strip()]:
                folder = rec_dir / f"subject-{subj}"
                if not any(folder.glob("*-labels.csv")):
                    make_recording(folder, subject=subj, seed=int(subj))
                folders.append(folder)
                console.print(
                    f"subject {subj}: {', '.join(sorted(p.name for p in folder.iterdir()))}"
                )

            console.rule("4. stream processor")
            log_path = settings.data_dir / "worker.log"
            log_path.parent.mkdir(parents=True, exist_ok=True)
            client = redis.Redis.from_url(settings.redis.url, **settings.redis.client_kwargs())
            with open(log_path, "wb") as logf:
                worker = subprocess.Popen(
                    wearmon_command("process"),
                    env=_env(settings),
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                )
            console.print(f"worker pid {worker.pid}, log {log_path}")
            served = _wait_serving(settings, worker, log_path)
            console.print(f"worker is serving model version {served}")

            console.rule("5. replay")
            _run(
                ["replay", *map(str, folders), "--devices", str(devices), "--speed", speed],
                settings,
                "replay",
            )

            console.rule("6. results")
            deadline = time.monotonic() + settle_s
            last, stable_since = -1, time.monotonic()
            while time.monotonic() < deadline:
                if worker.poll() is not None:
                    raise WearmonError(f"the worker exited early; see {log_path}")
                total = sum(d["n"] for d in _predictions(client).values())
                if total != last:
                    last, stable_since = total, time.monotonic()
                elif total > 0 and time.monotonic() - stable_since > 5:
                    break
                time.sleep(1.0)
            results = _predictions(client)
            table = Table("device", "windows", "top predicted labels", "latest (confidence)")
            for device, d in sorted(results.items()):
                top = ", ".join(f"{k} {v}" for k, v in d["labels"].most_common(3))
                latest = d["latest"]
                table.add_row(
                    device,
                    str(d["n"]),
                    top,
                    f"{latest.get('label', '?')} ({float(latest.get('confidence', 0)):.2f})",
                )
            console.print(table)
            total = sum(d["n"] for d in results.values())
            if total == 0:
                raise WearmonError(f"no predictions arrived in Redis; see {log_path}")
            for ver, (judged, correct) in sorted(_live_accuracy(client).items()):
                if judged:
                    console.print(
                        f"live accuracy of version {ver} against the replayed ground truth: "
                        f"{correct / judged:.1%} ({correct} of {judged} labelled windows)"
                    )
            time.sleep(6)  # one more Prometheus scrape (every 5 s) of the final counters
            for what, query in (
                ("windows cut", "sum(wearmon_stream_windows_emitted_total)"),
                ("predictions written", "sum(wearmon_stream_predictions_total)"),
                ("dead letters", "sum(wearmon_stream_deadletters_total) or vector(0)"),
                (
                    "p50 end-to-end latency (s)",
                    "histogram_quantile(0.5, sum by (le) "
                    "(wearmon_stream_e2e_latency_seconds_bucket))",
                ),
                (
                    "p99 end-to-end latency (s)",
                    "histogram_quantile(0.99, sum by (le) "
                    "(wearmon_stream_e2e_latency_seconds_bucket))",
                ),
            ):
                value = _prometheus(settings, query)
                shown = "no data" if value is None else f"{value:,.3g}"
                console.print(f"prometheus: {what:<27} {shown}")
            console.print(
                f"{total} windows classified for {len(results)} devices; "
                f"demo took {time.monotonic() - t0:.0f} s"
            )
        finally:
            if worker is not None:
                _stop(worker)
            if not keep_stack:
                with contextlib.suppress(Exception):
                    stack.down()
                console.print("stack stopped")
            else:
                console.print(
                    f"stack left running: WEARMON_DATA_DIR={settings.data_dir} wearmon stack down"
                )
