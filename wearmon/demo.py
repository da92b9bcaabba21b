"""``wearmon demo``: the whole story on built-in data, unattended, start to finish.

1. its own data directory (``<data_dir>/demo``) and local stack, started with empty Kafka,
   Redis and Prometheus data (a run never sees an earlier one's messages);
2. a champion trained on seglearn subjects 1-7 if the demo's registry has none (kept for the
   next run; ``--accurate`` trains it with the accurate recipe);
3. Garmin-style Excel recordings of three real people the champion never saw (seglearn
   subjects 8, 9 and 10), four sessions each with no exercise in common, one per watch;
4. a real ``wearmon process`` worker, and the real drift monitor (monitoring.service.Monitor,
   its metrics on ``metrics.monitor_port`` for Prometheus) checking every 20 device-seconds
   with its policy clock in device time;
5. the twelve watches replayed faster than real time with their ground truth on the labels
   topic; from ``onset_s`` into each watch's timeline the drift (by default the x and y axes
   swapped, as a watch worn turned) is injected by the replay;
6. the monitor detects it, waits for labelled drifted windows, starts a retraining, the gate
   decides, a promoted challenger is published and the worker swaps; the replay goes on
   ``after_s`` device-seconds after that;
7. a summary (``summary.json`` and printed) and the pictures: the timeline PNG, the Evidently
   drift report, the challenger's evaluation report, the rendered dashboards.

Everything it started stops at the end or on Ctrl-C (``keep_stack`` leaves the stack up).
This is :mod:`monitoring.backtest_pipeline` (the backtest's pipeline and measures) with one
scenario, Garmin recordings and a person watching.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from wearmon.errors import WearmonError
from wearmon.settings import Settings

#: drift kinds of ``wearmon demo --drift`` (producers.DriftConfig arguments)
DRIFTS: dict[str, dict[str, Any]] = {
    "axis_swap": {"axes": "y,x,z"},
    "gain": {"gain": 1.5},
    "offset": {"offset": 2.0},
    "mirror": {"axes": "mirror"},
}
#: the people the watches play (never in the champion's training data)
DEMO_SUBJECTS: tuple[str, ...] = ("8", "9", "10")
SESSIONS_PER_SUBJECT = 4


@dataclass(frozen=True)
class DemoConfig:
    devices: int = 12
    speed: float = 10.0
    drift: str = "axis_swap"
    #: device-seconds into each watch's timeline where the drift starts
    onset_s: float = 180.0
    #: after the retraining ended, replay this many device-seconds more
    after_s: float = 240.0
    #: the replay stops at the latest after this many device-seconds
    max_device_s: float = 7200.0
    epochs: int = 8
    accurate: bool = False
    #: a short form (tests, a first look): a quick retraining
    quick: bool = False
    keep_stack: bool = False
    #: labelled windows since the onset the policy waits for before retraining
    min_labelled: int = 600


@dataclass
class DemoSummary:
    devices: int
    samples: int
    windows: int
    drift: str
    detected_s: float | None
    first_drifted_s: float | None
    retrain: dict[str, str]
    accuracy: dict[str, float | None]
    latency_s: dict[str, float | None]
    champion_before: str
    champion_after: str
    wall_s: float
    pictures: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def demo_dir(base: Settings) -> Path:
    return (base.data_dir / "demo").resolve()


def log_to_file(base: Settings) -> Path:
    """The demo's log goes to ``<data_dir>/demo/demo.log`` (the console gets stage lines and
    warnings); returns the file."""
    import logging

    path = demo_dir(base) / "demo.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    for h in root.handlers:
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
            h.setLevel(logging.WARNING)
    fh = logging.FileHandler(path, mode="w", encoding="utf-8")
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(fh)
    return path


def recordings(folder: Path, say: Callable[[str], None]) -> list[Any]:
    """The demo's Garmin-style sessions (written on the first run, read back every run):
    per subject, sessions of exercises k, k+4, ... in the data set's order."""
    from wearmon.signals.readers import read_garmin_pair
    from wearmon.signals.recording_gen import make_recording

    out = []
    for subj in DEMO_SUBJECTS:
        for k in range(SESSIONS_PER_SUBJECT):
            sub = folder / f"subject-{subj}" / f"session-{k + 1}"
            accel = sorted(sub.glob("*-accelerometer_data.xlsx"))
            gyro = sorted(sub.glob("*-gyroscope_data.xlsx"))
            if not (accel and gyro and any(sub.glob("*-labels.csv"))):
                shutil.rmtree(sub, ignore_errors=True)
                paths = make_recording(
                    sub, subject=subj, seed=100 * int(subj) + k, exercises=range(k, 14, 4)
                )
                accel, gyro = [paths[0]], [paths[1]]
            out.append(read_garmin_pair(accel[0], gyro[0]))
    say(f"{len(out)} Garmin sessions of subjects {', '.join(DEMO_SUBJECTS)} in {folder}")
    return out


def _latency(settings: Settings) -> dict[str, float | None]:
    from monitoring.backtest_pipeline import stream_latency

    return stream_latency(settings, (0.5, 0.95, 0.99))


def _newest(folder: Path, pattern: str) -> Path | None:
    found = sorted(folder.glob(pattern), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


class Progress:
    """Stage lines while the scenario runs: every transition, and a status line a minute."""

    def __init__(self, say: Callable[[str], None], onset_ms: Callable[[], int]) -> None:
        self.say = say
        self.onset_ms = onset_ms
        self.last_state = "ok"
        self.last_at_ms = 0
        self.last_line = 0.0
        self.t0 = time.monotonic()

    def __call__(self, rec: Any, mon: Any) -> None:
        state = mon.state.state
        now = time.monotonic()
        device_s = (rec.device_ms - self.onset_ms()) / 1000.0
        when = f"[{now - self.t0:5.0f} s, onset {device_s:+6.0f} device-s]"
        if state != self.last_state:
            for t in reversed(mon.store.log(5)):  # every transition since the last line
                if t.at_ms > self.last_at_ms:
                    self.say(f"{when} policy {t.from_state} -> {t.to_state}: {t.reason}")
                    self.last_at_ms = t.at_ms
            self.last_state = state
            self.last_line = now
        elif now - self.last_line >= 15.0:
            score = "—" if math.isnan(rec.score) else f"{rec.score:.2f}"
            self.say(
                f"{when} check: drift score {score} (threshold 1.00), {rec.n_windows} windows, "
                f"policy {state}, serving version {rec.model_version}"
            )
            self.last_line = now


def run_demo(base: Settings, cfg: DemoConfig, say: Callable[[str], None]) -> DemoSummary:
    """The demo (module doc); returns its summary (also written to summary.json)."""
    from prometheus_client import start_http_server

    from monitoring.backtest import Scenario, plot_timeline
    from monitoring.backtest_pipeline import BacktestConfig, Pipeline, run_scenario
    from monitoring.metrics import MonitorMetrics
    from trainer.serving import champion_version
    from wearmon.stack import LocalStack

    if cfg.drift not in DRIFTS:
        raise WearmonError(f"unknown drift {cfg.drift!r}: choose one of {', '.join(DRIFTS)}")
    t0 = time.monotonic()
    settings = base.model_copy(update={"data_dir": demo_dir(base)})
    out = settings.data_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    stack = LocalStack(settings)
    stack.down()  # a stack left up by an earlier `demo --keep-stack`
    for state in ("kafka", "redis", "prometheus"):
        shutil.rmtree(stack.root / state, ignore_errors=True)
    say(f"1. set-up: data in {settings.data_dir}")
    recs = recordings(settings.data_dir / "recordings", say)
    bcfg = BacktestConfig(
        out_dir=settings.data_dir,
        scenarios=("demo",),
        devices=cfg.devices,
        speed=cfg.speed,
        epochs=cfg.epochs,
        train_args=("--preset", "accurate") if cfg.accurate else (),
        retrain_args=("--quick",) if cfg.quick else (),
        min_labelled=cfg.min_labelled,
    )
    sc = Scenario(
        "demo",
        f"demo: {cfg.drift.replace('_', ' ')}, labels flowing, retraining on",
        DRIFTS[cfg.drift],
        retrain=True,
        device_s=cfg.max_device_s,
        onset_s=cfg.onset_s,
        after_s=cfg.after_s,
    )
    say("2. local stack, champion, worker (a champion is trained on the first run)")
    pipe = Pipeline(settings, bcfg, keep_stack=cfg.keep_stack)
    with pipe:
        for name in ("kafka", "redis", "prometheus"):
            say(f"   {name:<11} {pipe.stack.address(name)}")
        say(f"   champion: version {pipe.base_version}; worker pid {pipe.worker.pid}")
        metrics = MonitorMetrics()
        start_http_server(
            settings.metrics.monitor_port, addr=settings.metrics.host, registry=metrics.registry
        )
        say(
            f"3. {cfg.devices} watches at {cfg.speed:g}x real time; {cfg.drift.replace('_', ' ')} "
            f"from {cfg.onset_s:.0f} device-s on; the monitor checks every "
            f"{bcfg.check_every_s:.0f} device-s"
        )
        onset: list[int] = [0]
        progress = Progress(say, lambda: onset[0])
        res, windows = run_scenario(
            pipe, sc, 0, recordings=recs, metrics=metrics, on_check=progress, onset_out=onset
        )
        say("4. results")
        time.sleep(6)  # one more Prometheus scrape of the final counters
        pictures = _pictures(pipe, res, windows, out, time.monotonic() - t0, plot_timeline)
        summary = DemoSummary(
            devices=res.devices,
            samples=res.samples,
            windows=res.windows,
            drift=cfg.drift,
            detected_s=res.detected_s,
            first_drifted_s=res.first_drifted_s,
            retrain=res.retrain,
            accuracy={k: (None if math.isnan(v) else v) for k, v in res.accuracy.items()},
            latency_s=_latency(settings),
            champion_before=pipe.base_version,
            champion_after=str(champion_version(settings) or ""),
            wall_s=time.monotonic() - t0,
            pictures=pictures,
        )
    (out / "summary.json").write_text(summary.to_json())
    return summary


def _pictures(
    pipe: Any, res: Any, windows: list[Any], out: Path, wall_s: float, plot: Any
) -> dict[str, str]:
    from monitoring.dashboards.live import Window
    from monitoring.dashboards.render import render_all
    from monitoring.reports import report_dir

    settings = pipe.settings
    pics = {"timeline": str(plot(res, windows, out / "timeline.png"))}
    drift_html = None
    for state in ("drift", "retraining", "suspect"):  # the report of the detection
        drift_html = drift_html or _newest(report_dir(settings), f"drift-*-{state}.html")
    if drift_html is not None:
        pics["drift_report"] = str(drift_html)
    run_id = res.retrain.get("run_id", "")
    evaluation = settings.data_dir / "reports" / f"run-{run_id}"
    if run_id and evaluation.is_dir():
        pics["evaluation"] = str(evaluation)
    minutes = max(5.0, wall_s / 60.0 + 1.0)
    step = max(5, round(minutes * 60 / 240))
    render_all(settings, out / "dashboards", window=Window.last(minutes * 60, step_s=step))
    pics["dashboards"] = str(out / "dashboards")
    return pics


def summary_lines(s: DemoSummary) -> list[str]:
    """The summary, in words."""

    def pct(key: str) -> str:
        v = s.accuracy.get(key)
        return "—" if v is None else f"{100 * v:.1f} %"

    def sec(v: float | None) -> str:
        return "—" if v is None else f"{v:.0f} device-s"

    lat = ", ".join(f"{k} {'—' if v is None else f'{v:.2f} s'}" for k, v in s.latency_s.items())
    r = s.retrain
    gate = r.get("status", "no retraining") + (f": {r['reason']}" if r.get("reason") else "")
    lines = [
        f"devices {s.devices}; samples sent {s.samples:,}; windows scored {s.windows:,}",
        f"end-to-end latency (Prometheus histogram): {lat}",
        f"drift ({s.drift.replace('_', ' ')}): first drifted check {sec(s.first_drifted_s)}, "
        f"policy DRIFT {sec(s.detected_s)} after the onset",
        f"retraining {r.get('challenger_version') or '—'} vs champion "
        f"{r.get('champion_version') or s.champion_before}: {gate}",
        f"champion before: version {s.champion_before}; after: version {s.champion_after}",
        f"live accuracy, all watches: before {pct('before')} / during {pct('during')} / "
        f"after promotion {pct('after')}",
    ]
    if s.accuracy.get("n_after_held_out"):
        lines.append(
            "live accuracy, the watches the retraining held out (never trained on): before "
            f"{pct('before_held_out')} / during {pct('during_held_out')} / after "
            f"{pct('after_held_out')}"
        )
    lines += [f"{k.replace('_', ' ')}: {v}" for k, v in s.pictures.items()]
    lines.append(f"demo took {s.wall_s:.0f} s")
    return lines
