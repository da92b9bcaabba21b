"""The IO of ``wearmon monitor backtest`` (monitoring.backtest holds the scenarios and the
measures): an isolated local stack, a champion trained on the base subjects, a real worker,
and per scenario a paced replay beside the real monitor driven check by check.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitoring import keys
from monitoring.backtest import (
    BASE_SUBJECTS,
    SCENARIOS,
    UNSEEN_SUBJECTS,
    CheckRecord,
    Scenario,
    ScenarioResult,
    accuracy_phases,
    alarms_per_device_hour,
    count_alarms,
    detection,
    drive,
    interleave_subjects,
    markdown_table,
    plot_timeline,
    retrain_gaps,
    scored_windows,
)
from wearmon import processes
from wearmon.errors import WearmonError
from wearmon.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BacktestConfig:
    out_dir: Path
    scenarios: tuple[str, ...] = tuple(SCENARIOS)
    devices: int = 12
    #: replay speed (multiple of real time); the policy's clock runs at it too. A check
    #: that takes w wall seconds delays the next by w x speed device-seconds: keep it low.
    speed: float = 5.0
    #: device-seconds between two checks
    check_every_s: float = 20.0
    #: epochs of the base champion trained when none is given
    epochs: int = 8
    #: use this registered version as the base champion instead of training one
    champion: str | None = None
    #: extra ``wearmon train`` arguments of the base champion (e.g. ("--preset", "accurate"))
    train_args: tuple[str, ...] = ()
    #: ``wearmon model retrain`` arguments (default: a full retraining)
    retrain_args: tuple[str, ...] = ()
    #: policy and gate settings of the monitor during the backtest (device time)
    cooldown_s: float = 900.0
    min_windows: int = 100
    #: DRIFT waits for this many labelled windows since the onset, at most label_wait_s
    min_labelled: int = 600
    label_wait_s: float = 300.0


class Pipeline:
    """The stack, the base champion and one worker, for all scenarios (a context manager)."""

    def __init__(
        self, settings: Settings, cfg: BacktestConfig, *, keep_stack: bool = False
    ) -> None:
        self.settings = settings
        self.cfg = cfg
        self.keep_stack = keep_stack
        self.worker: Any = None
        self.base_version = ""
        self._stack: Any = None
        #: device ids of every run are new: a device id seen before keeps its windower
        #: state in the checkpoint, and a replay older than it would all be "late"
        self.seed = int(time.time()) % 1_000_000 * 100

    def __enter__(self) -> Pipeline:
        from wearmon.stack import LocalStack

        self._stack = LocalStack(self.settings)
        self._stack.up(timeout=120)
        try:
            self.base_version = self.cfg.champion or self._train_base()
            self._reset_champion()
            logfile = self.cfg.out_dir / "logs" / "worker.log"
            self.worker = processes.start(self.settings, ["process"], logfile)
            wait_serving(self.settings, self.worker, logfile)
        except BaseException:  # Ctrl-C while the worker starts, too: nothing left running
            if self.worker is not None:
                processes.stop(self.worker)
            self._stack.down()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.worker is not None:
            processes.stop(self.worker)
        if self._stack is not None and not self.keep_stack:
            self._stack.down()

    @property
    def stack(self) -> Any:
        """The running LocalStack."""
        return self._stack

    def _train_base(self) -> str:
        """The base champion: the one an earlier run in the same folder trained, else a new
        one trained on the base subjects (its version is kept in ``base_version.txt``)."""
        from trainer import registry

        mark = self.cfg.out_dir / "base_version.txt"
        if mark.is_file():
            version = mark.read_text().strip()
            registry.resolve(self.settings, version)  # RegistryError if it is gone
            return version
        version = self._train_new()
        mark.write_text(version + "\n")
        return version

    def _train_new(self) -> str:
        from trainer import registry

        # two test subjects (the gate's held-out base windows: one subject's 270 windows made
        # a 1-point margin a matter of 3 windows), no validation subjects: five people form
        # the reference profile and its calibration (between-person variation needs people)
        args = ["train", "--subjects", ",".join(BASE_SUBJECTS), "--epochs", str(self.cfg.epochs),
                "--test-fraction", "0.3", "--val-fraction", "0", *self.cfg.train_args]  # fmt: skip
        log.info("training the base champion on subjects %s", ",".join(BASE_SUBJECTS))
        logfile = self.cfg.out_dir / "logs" / "train.log"
        if processes.start(self.settings, args, logfile).wait() != 0:
            raise WearmonError(f"training the base champion failed: see {logfile}")
        version = registry.alias_version(self.settings)
        if version is None:
            raise WearmonError("training finished but no champion is registered")
        return str(version)

    def _reset_champion(self) -> None:
        from trainer import registry
        from trainer.promotion import set_champion

        if registry.alias_version(self.settings) != self.base_version:
            set_champion(
                self.settings, self.base_version, reason="backtest: back to the base champion"
            )

    def client(self) -> Any:

        return self.settings.redis.connect()


def wait_serving(settings: Settings, worker: Any, logfile: Path, timeout_s: float = 180) -> str:
    """Wait until the worker serves a model (its metrics say which) and return the version:
    a replay started before would time its first minutes by the worker's start-up."""
    import re
    import urllib.request

    url = f"http://127.0.0.1:{settings.metrics.stream_port}/metrics"
    pattern = re.compile(
        r'^wearmon_stream_model_version_info\{model_version="([^"]+)"\} 1\.0$', re.M
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise WearmonError(f"the worker exited during start-up; see {logfile}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                found = pattern.search(resp.read().decode())
        except OSError:
            found = None
        if found:
            return found.group(1)
        time.sleep(0.5)
    raise WearmonError(f"the worker served no model within {timeout_s:.0f} s; see {logfile}")


def _newest_window_ms(client: Any) -> int:
    top = client.xrevrange(keys.FEATURES_KEY, "+", "-", count=1)
    if not top:
        return 0
    fields = {k.decode() if isinstance(k, bytes) else k: v for k, v in top[0][1].items()}
    return int(fields.get("window_start_ms", 0)) + 4000


def _reset_monitor(client: Any) -> str:
    """A fresh policy, the cursor at the newest live window, no ground truth of earlier
    scenarios (the retraining pool would find it); returns the policy log's end."""
    from stream_processor.sinks import labels_key, raw_windows_key

    top = client.xrevrange(keys.FEATURES_KEY, "+", "-", count=1)
    pipe = client.pipeline()
    for pattern in (labels_key("*"), raw_windows_key("*")):
        for key in client.scan_iter(match=pattern, count=1000):
            pipe.delete(key)
    pipe.delete(keys.POLICY_STATE, keys.DRIFT_LATEST)
    if top:
        pipe.set(keys.MONITOR_CURSOR, top[0][0])
    pipe.execute()
    last = client.xrevrange(keys.POLICY_LOG, "+", "-", count=1)
    return last[0][0].decode() if last else "0-0"


def _drift_config(sc: Scenario) -> Any:
    from producers import DriftConfig, load_seglearn

    if sc.drift is None:
        return DriftConfig()
    kw = dict(sc.drift)
    donors = kw.pop("donor_subjects", None)
    if donors:
        kw["donor"] = tuple(load_seglearn(list(donors)))
        kw["donor_name"] = "seglearn " + ",".join(donors)
    return DriftConfig(at_s=sc.onset_s, **kw)


def _monitor_settings(base: Settings, sc: Scenario, cfg: BacktestConfig) -> Settings:
    m = base.monitor.model_copy(
        update={
            "interval_s": cfg.check_every_s,
            "min_windows": cfg.min_windows,
            "cooldown_s": cfg.cooldown_s,
            "retrain": sc.retrain,
            "min_labelled": cfg.min_labelled,
            "label_wait_s": cfg.label_wait_s,
            # by default a full retraining (from scratch): a quick fine-tune on axis-swapped
            # windows was refused for losing 10 points on the base data (0.756 vs 0.852)
            "retrain_args": cfg.retrain_args,
        }
    )
    # the retraining's base data are the base champion's subjects: the replayed people
    # (UNSEEN_SUBJECTS) reach the pool only as the stream saw them
    lc = base.lifecycle.model_copy(update={"base_data": "seglearn:" + ",".join(BASE_SUBJECTS)})
    return base.model_copy(update={"monitor": m, "lifecycle": lc})


def run_scenario(
    pipe: Pipeline,
    sc: Scenario,
    index: int,
    *,
    recordings: list[Any] | None = None,
    metrics: Any = None,
    on_check: Callable[[CheckRecord, Any], None] | None = None,
    onset_out: list[int] | None = None,
) -> tuple[ScenarioResult, list[Any]]:
    """Replay one scenario beside the monitor; measure it (see monitoring.backtest).
    ``recordings``: what the watches play (default: the seglearn subjects the champion never
    saw); ``metrics``: the monitor's MonitorMetrics (to serve them); ``on_check(record,
    monitor)`` after every check (progress); ``onset_out[0]`` is set to the onset (device
    time, ms) once the replay's clock is known."""
    from monitoring.service import Monitor
    from producers import ReplayConfig, device_ids, load_seglearn, replay
    from producers.engine import live_start_ms
    from producers.schedule import live_anchor

    cfg = pipe.cfg
    settings = _monitor_settings(pipe.settings, sc, cfg)
    client = pipe.client()
    pipe._reset_champion()
    log_start = _reset_monitor(client)
    rc = ReplayConfig(
        speed=cfg.speed,
        devices=cfg.devices,
        loop=True,
        duration_s=sc.device_s,
        stagger_s=0.5,
        device_seed=pipe.seed + index,
        send_labels=sc.labels,
        drift=_drift_config(sc),
    )
    devices = device_ids(cfg.devices, rc.device_seed)
    now = int(time.time() * 1000)
    anchor = live_anchor(live_start_ms(now, int(sc.device_s * 1000), rc))
    t0 = time.monotonic()

    def device_clock() -> int:
        return anchor + int(min(sc.device_s, (time.monotonic() - t0) * cfg.speed) * 1000)

    mon = Monitor(settings, client, metrics, clock=device_clock)
    stop = threading.Event()
    stats: dict[str, Any] = {}

    def run_replay() -> None:
        recs = interleave_subjects(recordings or load_seglearn(list(UNSEEN_SUBJECTS)))
        stats["replay"] = replay(settings, recs, rc, stop=stop, anchor_ms=anchor)

    thread = threading.Thread(target=run_replay, name="backtest-replay", daemon=True)
    thread.start()
    onset = None if sc.drift is None else anchor + int(sc.onset_s * 1000)
    if onset_out is not None:
        onset_out[0] = onset or anchor
    retrain_ended_ms: list[float] = []  # device time the closed loop's retraining ended
    replay_ended: list[float] = []  # wall time (monotonic) the replay ended

    def done() -> bool:
        if thread.is_alive():
            return _loop_done(mon, sc, device_clock, retrain_ended_ms, stop)
        if not replay_ended:
            replay_ended.append(time.monotonic())
        return time.monotonic() - replay_ended[0] > 3.0 * cfg.check_every_s / cfg.speed + 2.0

    def checked(r: CheckRecord) -> None:
        log.debug("check %s", r)
        if on_check is not None:
            on_check(r, mon)

    try:
        checks = drive(
            mon.check_once,
            device_clock,
            lambda: _newest_window_ms(client),
            interval_wall_s=cfg.check_every_s / cfg.speed,
            done=done,
            state=lambda: mon.state.state,
            version=lambda: _champion(pipe.settings),
            on_check=checked,
        )
    finally:  # also on Ctrl-C: the replay and a running retraining stop
        stop.set()
        thread.join(timeout=60)
        mon.stop_retraining()
        mon.flush_reports()
    # the worker is still writing what the replay sent last: measure once it has settled, so
    # that every figure of the result counts the same windows as Redis does afterwards
    _settle(client, devices, quiet_s=max(3.0, 2 * pipe.settings.stream.checkpoint_s))
    result = _measure(pipe, sc, client, devices, checks, log_start, onset, rc)
    result.wall_s = time.monotonic() - t0
    st = stats.get("replay")
    result.samples = int(st.samples) if st is not None else 0
    return result, scored_windows(client, devices)


def _settle(client: Any, devices: list[str], quiet_s: float, cap_s: float = 60.0) -> int:
    """Wait until the windows written for ``devices`` stop changing for ``quiet_s`` (at most
    ``cap_s``); the count then."""
    end = time.monotonic() + cap_s
    last, since = -1, time.monotonic()
    while time.monotonic() < end:
        n = _windows_written(client, devices)
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            break
        time.sleep(0.25)
    return last


def _loop_done(mon: Any, sc: Scenario, clock: Any, done_at: list[float], stop: Any) -> bool:
    """A closed-loop scenario ends ``after_s`` device-seconds after its retraining ended."""
    if not sc.retrain:
        return False
    st = mon.state
    if st.state == "cooldown" and st.last_result:
        if not done_at:
            done_at.append(float(clock()))
        if clock() - done_at[0] >= sc.after_s * 1000:
            stop.set()
            return True
    return False


def _champion(settings: Settings) -> str:
    from trainer import registry

    return str(registry.alias_version(settings) or "")


def _measure(
    pipe: Pipeline,
    sc: Scenario,
    client: Any,
    devices: list[str],
    checks: list[CheckRecord],
    log_start: str,
    onset: int | None,
    rc: Any,
) -> ScenarioResult:
    raw = client.xrange(keys.POLICY_LOG, f"({log_start}", "+")
    transitions = [{_s(k): _s(v) for k, v in f.items()} for _, f in raw]
    triggers = sorted({t["trigger_id"] for t in transitions if t.get("to") == "retraining"})
    retrain: dict[str, str] = {}
    for tid in triggers:
        from trainer.retrain import retrain_key

        retrain = {_s(k): _s(v) for k, v in client.hgetall(retrain_key(tid)).items()}
        if not retrain:  # none ran (monitor.retrain off): the policy's own words
            ends = [t for t in transitions if t["trigger_id"] == tid and t["to"] == "cooldown"]
            retrain = {"status": "not run", "reason": ends[-1]["reason"] if ends else ""}
    first, detected = detection(checks, onset)
    promoted = retrain.get("challenger_version") if retrain.get("status") == "promoted" else None
    windows = scored_windows(client, devices)
    # device time monitored = windows classified x the hop (each window adds one hop)
    hop_h = pipe.settings.signal.hop / pipe.settings.signal.rate_hz / 3600.0
    all_windows = _windows_written(client, devices)
    device_h = all_windows * hop_h
    clean_h = device_h if onset is None else _windows_written(client, devices, onset) * hop_h
    alarms = count_alarms(transitions, before_ms=onset)
    spans = _retraining_spans(raw)
    return ScenarioResult(
        scenario=sc,
        devices=len(devices),
        device_hours=device_h,
        onset_ms=onset,
        checks=checks,
        transitions=transitions,
        retrain=retrain,
        accuracy=accuracy_phases(
            windows, onset, pipe.base_version, promoted, held_out_devices(retrain)
        ),
        windows=len(windows),
        first_drifted_s=first,
        detected_s=detected,
        alarms=alarms,
        alarms_per_device_hour=alarms_per_device_hour(alarms, clean_h),
        retrainings=len(triggers),
        retrain_gaps_s=retrain_gaps(transitions),
        stream_while_retraining=(
            _stream_latency(pipe.settings, spans[0]) if spans and sc.retrain else {}
        ),
    )


def _retraining_spans(raw: list[Any]) -> list[tuple[float, float]]:
    """Wall time (Unix s) of each retraining, from the policy log's entry ids (Redis time)."""
    spans, start = [], None
    for entry_id, f in raw:
        at = int(_s(entry_id).split("-")[0]) / 1000.0
        to = _s(f.get(b"to", f.get("to", "")))
        if to == "retraining":
            start = at
        elif start is not None:
            spans.append((start, at))
            start = None
    return spans


def _stream_latency(settings: Settings, span: tuple[float, float]) -> dict[str, float | None]:
    """p50 and p99 of the stream's end-to-end latency over ``span`` (Prometheus histogram;
    interpolated within its buckets), and the span's length."""
    start, end = span
    time.sleep(max(0.0, end + 6.0 - time.time()))  # one more scrape after the end
    out = stream_latency(settings, (0.5, 0.99), range_s=max(15, round(end - start)), at_s=end + 5)
    return {**out, "wall_s": end - start}


def stream_latency(
    settings: Settings,
    quantiles: tuple[float, ...],
    range_s: int | None = None,
    at_s: float | None = None,
) -> dict[str, float | None]:
    """Quantiles of the stream's end-to-end latency histogram in the stack's Prometheus: of
    every window since the worker started, or of the ``range_s`` seconds before ``at_s``."""
    from monitoring.dashboards.live import Prometheus

    prom = Prometheus(f"http://127.0.0.1:{settings.ports.prometheus}", timeout_s=5)
    series = "wearmon_stream_e2e_latency_seconds_bucket"
    if range_s is not None:
        series = f"increase({series}[{range_s}s])"
    q = "histogram_quantile({}, sum by (le) (" + series + "))"
    return {f"p{int(p * 100)}": prom.instant(q.format(p), at_s=at_s) for p in quantiles}


def held_out_devices(retrain: dict[str, str]) -> list[str]:
    """The stream devices a retraining held out (its ``held_out``: "devices new:stream:a,...")."""
    from trainer.pool import NEW_PREFIX

    how = retrain.get("held_out", "")
    if not how.startswith("devices "):
        return []
    prefix = f"{NEW_PREFIX}stream:"
    return [n[len(prefix) :] for n in how[len("devices ") :].split(",") if n.startswith(prefix)]


def _windows_written(client: Any, devices: list[str], before_ms: int | None = None) -> int:
    from stream_processor.sinks import history_key

    if before_ms is None:
        return sum(int(client.xlen(history_key(d))) for d in devices)
    return sum(len(client.xrange(history_key(d), "-", f"({before_ms}")) for d in devices)


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def run_backtest(settings: Settings, cfg: BacktestConfig) -> list[ScenarioResult]:
    """Every scenario of ``cfg`` through one pipeline; writes backtest.md, results.json and
    one timeline PNG per scenario into ``cfg.out_dir``."""
    unknown = [s for s in cfg.scenarios if s not in SCENARIOS]
    if unknown:
        raise WearmonError(
            f"unknown backtest scenario {unknown[0]!r}: choose from {', '.join(SCENARIOS)}"
        )
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    results: list[ScenarioResult] = []
    with Pipeline(settings, cfg) as pipe:
        for i, name in enumerate(cfg.scenarios):
            log.info("backtest scenario %s", name)
            res, windows = run_scenario(pipe, SCENARIOS[name], i)
            plot_timeline(res, windows, cfg.out_dir / f"timeline-{name}.png")
            results.append(res)
            _write(cfg.out_dir, results)
    return results


def _write(out: Path, results: list[ScenarioResult]) -> None:
    (out / "backtest.md").write_text(markdown_table(results))
    rows = []
    for r in results:
        rows.append(
            {
                "scenario": r.scenario.name,
                "devices": r.devices,
                "device_hours": r.device_hours,
                "windows": r.windows,
                "first_drifted_s": r.first_drifted_s,
                "detected_s": r.detected_s,
                "alarms": r.alarms,
                "alarms_per_device_hour": None
                if math.isnan(r.alarms_per_device_hour)
                else r.alarms_per_device_hour,
                "retrainings": r.retrainings,
                "retrain_gaps_s": r.retrain_gaps_s,
                "stream_while_retraining": r.stream_while_retraining,
                "retrain": r.retrain,
                "accuracy": {k: (None if math.isnan(v) else v) for k, v in r.accuracy.items()},
                "transitions": r.transitions,
                "checks": [dataclasses.asdict(c) for c in r.checks],
                "wall_s": r.wall_s,
            }
        )
    (out / "results.json").write_text(json.dumps(rows, indent=2))


def isolated_settings(out_dir: Path, base: Settings | None = None) -> Settings:
    """Settings of a stack of its own: free loopback ports, a data dir under ``out_dir``."""
    from wearmon.stack import free_port

    ports: set[int] = set()
    while len(ports) < 7:
        ports.add(free_port())
    k, c, r, p, m1, m2, m3 = sorted(ports)
    base = base or Settings()
    return replace_settings(
        base,
        data_dir=(out_dir / "data").resolve(),
        ports={"kafka": k, "kafka_controller": c, "redis": r, "prometheus": p},
        metrics={"stream_port": m1, "replay_port": m2, "monitor_port": m3},
    )


def replace_settings(base: Settings, **fields: Any) -> Settings:
    """``base`` with some fields replaced, Kafka and Redis addresses recomputed."""
    data = base.model_dump()
    for name in ("kafka", "redis"):
        data[name].pop("bootstrap_servers" if name == "kafka" else "url", None)
    data.update(fields)
    return Settings(**data)
