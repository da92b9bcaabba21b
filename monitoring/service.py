"""``wearmon monitor``: the long-running drift monitor (IO around the pure check and policy).

Every ``monitor.interval_s`` (or early, once ``monitor.max_windows`` new windows arrived) a
check reads the newest live windows after its cursor from ``feat:live``, scores them against
the serving champion's reference profile (monitoring.drift), feeds the result to the trigger
policy (monitoring.policy) and writes: ``drift:latest`` / ``drift:hist``, the policy state and
its transitions, the Prometheus metrics, an Evidently report for a check that changes the
policy state, and a Grafana annotation per transition where ``grafana.url`` is set. On DRIFT it
starts ``wearmon model retrain --trigger-id ID`` as a separate, niced process and feeds its
result back (RETRAINING -> COOLDOWN). State and cursor live in Redis, so a restarted monitor
resumes where it was.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from monitoring import keys
from monitoring.drift import (
    CheckConfig,
    DriftResult,
    LiveBatch,
    Reference,
    align,
    check,
    config_for,
)
from monitoring.metrics import MonitorMetrics
from monitoring.policy import (
    RETRAINING,
    Check,
    Event,
    PolicyConfig,
    PolicyState,
    PolicyStore,
    RetrainFinished,
    Step,
    Tick,
    Transition,
    step,
)
from wearmon.errors import GrafanaError, MonitorError, RegistryError, WearmonError
from wearmon.signals.features import FEATURE_NAMES

log = logging.getLogger(__name__)

FINAL = ("promoted", "refused", "failed")
#: a promotion reaches the monitor's reference within this many seconds
CHAMPION_TTL_S = 15.0
#: consecutive loop turns (about a second apart) without Redis after which the service stops
MAX_REDIS_FAILURES = 30


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


# --- reading the live windows -----------------------------------------------------------


@dataclass
class LiveRead:
    batch: LiveBatch | None
    newest_id: str | None
    bad: int = 0


def read_live(client: Any, cursor: str | None, max_windows: int) -> LiveRead:
    """The newest ``max_windows`` entries of ``feat:live`` after ``cursor``, oldest first.
    Entries that cannot be decoded are skipped and counted (``bad``)."""
    low = f"({cursor}" if cursor else "-"
    rows = client.xrevrange(keys.FEATURES_KEY, "+", low, count=max_windows)
    if not rows:
        return LiveRead(None, None)
    raw_names = client.get(keys.FEATURE_NAMES_KEY)
    names = json.loads(raw_names) if raw_names else list(FEATURE_NAMES)
    feats, devs, labels, conf, starts, versions = [], [], [], [], [], []
    bad = 0
    for _, raw in reversed(rows):
        f = {_s(k): _s(v) for k, v in raw.items()}
        try:
            vec = [float(v) for v in json.loads(f["f"])]
            if len(vec) != len(names) or not all(map(math.isfinite, vec)):
                raise ValueError(f"{len(vec)} features for {len(names)} names, or not finite")
            feats.append(vec)
            starts.append(int(f.get("window_start_ms", 0)))
        except (KeyError, ValueError, TypeError):
            bad += 1
            continue
        devs.append(f.get("device", ""))
        labels.append(f.get("label", ""))
        versions.append(f.get("model_version", ""))
        c = f.get("confidence", "")
        conf.append(float(c) if c else math.nan)
    if bad:
        log.warning("%d undecodable entries of %s skipped", bad, keys.FEATURES_KEY)
    newest = _s(rows[0][0])
    if not feats:
        return LiveRead(None, newest, bad)
    x = align(np.asarray(feats, dtype=np.float64), names)
    batch = LiveBatch(
        x,
        np.asarray(devs, dtype=object).astype(str),
        np.asarray(labels, dtype=object).astype(str),
        np.asarray(conf, dtype=np.float64),
        np.asarray(starts, dtype=np.int64),
        np.asarray(versions, dtype=object).astype(str),
    )
    return LiveRead(batch, newest, bad)


# --- data quality from the stream workers' counters -------------------------------------

QUALITY_COUNTERS = {
    "emitted": "wearmon_stream_windows_emitted_total",
    "skipped": "wearmon_stream_windows_skipped_total",
    "messages": "wearmon_stream_messages_in_total",
    "deadletters": "wearmon_stream_deadletters_total",
}


def scrape_counters(urls: Sequence[str], timeout_s: float = 2.0) -> dict[str, float] | None:
    """Sums of the stream's window/message counters over its metrics pages (None if none
    answered)."""
    from prometheus_client.parser import text_string_to_metric_families

    total = dict.fromkeys(QUALITY_COUNTERS, 0.0)
    wanted = {v: k for k, v in QUALITY_COUNTERS.items()}
    answered = False
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as resp:
                text = resp.read().decode()
        except (urllib.error.URLError, OSError) as exc:
            log.debug("stream metrics %s: %s", url, exc)
            continue
        answered = True
        for fam in text_string_to_metric_families(text):
            for sample in fam.samples:
                if sample.name in wanted:
                    total[wanted[sample.name]] += float(sample.value)
    return total if answered else None


def quality_between(
    prev: dict[str, float] | None, cur: dict[str, float] | None
) -> dict[str, float]:
    """Skipped-window share and dead-letter rate (per message) between two scrapes."""
    nan = {"skipped_share": math.nan, "deadletter_rate": math.nan}
    if prev is None or cur is None:
        return nan
    d = {k: max(0.0, cur[k] - prev[k]) for k in cur}  # a restarted worker: counters reset
    windows = d["emitted"] + d["skipped"]
    return {
        "skipped_share": d["skipped"] / windows if windows else math.nan,
        "deadletter_rate": d["deadletters"] / d["messages"] if d["messages"] else math.nan,
    }


# --- the reference of the champion ------------------------------------------------------


class References:
    """The reference (profile, class mix, calibration) of a model version, loaded once."""

    def __init__(self, settings: Any, cfg: CheckConfig) -> None:
        self.settings = settings
        self.cfg = cfg
        self._cache: dict[str, Reference] = {}
        self._champion: tuple[float, str] | None = None

    def champion(self) -> str:
        """The champion's version, looked up in the registry at most every CHAMPION_TTL_S."""
        from trainer import registry

        now = time.monotonic()
        if self._champion is not None and now - self._champion[0] < CHAMPION_TTL_S:
            return self._champion[1]
        v = registry.alias_version(self.settings)
        if v is None:
            raise MonitorError(f"{self.settings.model_name} has no champion to check against")
        self._champion = (now, str(v))
        return str(v)

    def get(self, version: str) -> Reference:
        if version not in self._cache:
            self._cache = {version: self._load(version)}  # only the champion's is kept
        return self._cache[version]

    def _load(self, version: str) -> Reference:
        from monitoring.calibration import base_features, calibration_for
        from monitoring.drift import build_reference
        from trainer import registry

        meta = registry.read_metadata(self.settings, version)
        profile = registry.read_reference_profile(self.settings, version)
        if profile is None:
            log.info("version %s has no reference profile: using the base data's", version)
            profile, _ = base_features(self.settings)
        cal = calibration_for(self.settings, version, profile)
        counts = (meta.get("data") or {}).get("class_counts") or {}
        cfg = config_for(cal, self.cfg)
        return build_reference(
            profile, version=version, calibration=cal, class_counts=counts, cfg=cfg
        )


# --- the monitor ------------------------------------------------------------------------


@dataclass
class CheckOutcome:
    at_ms: int
    result: DriftResult | None = None
    skipped: str = ""
    transitions: list[Transition] = field(default_factory=list)
    report: Path | None = None


def policy_config(settings: Any) -> PolicyConfig:
    m = settings.monitor
    return PolicyConfig(
        n_of_m=tuple(m.n_of_m),
        min_windows=m.min_windows,
        cooldown_s=m.cooldown_s,
        max_retrains_per_day=m.max_retrains_per_day,
        retrain_timeout_s=m.retrain_timeout_s,
        min_labelled=m.min_labelled,
        label_wait_s=m.label_wait_s,
    )


def labelled_total(client: Any) -> int:
    """Labelled windows the stream has scored so far, all versions (the devices'
    ``acc:live`` hashes, :func:`stream_processor.sinks.accuracy_totals`)."""
    from stream_processor.sinks import accuracy_totals

    return sum(total for _, total in accuracy_totals(client).values())


def _now_ms() -> int:
    return int(time.time() * 1000)


class Monitor:
    """One monitor: state in Redis, the check, the policy, the retraining process."""

    def __init__(
        self,
        settings: Any,
        client: Any,
        metrics: MonitorMetrics | None = None,
        *,
        references: References | None = None,
        clock: Callable[[], int] = _now_ms,
        cfg: CheckConfig | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.metrics = metrics or MonitorMetrics()
        self.cfg = cfg or CheckConfig(max_live=settings.monitor.max_windows)
        self.references = references or References(settings, self.cfg)
        self.clock = clock
        self.policy = policy_config(settings)
        self.store = PolicyStore(client)
        self.state: PolicyState = self.store.load()
        self.proc: subprocess.Popen[bytes] | None = None
        self._counters: dict[str, float] | None = None
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="drift-report")
        self._pending: list[Future[Any]] = []
        self.metrics.set_state(self.state.state)

    # the policy ----------------------------------------------------------------------

    def feed(self, event: Event) -> Step:
        """Step the policy, persist it, export and announce its transitions, act."""
        s = step(self.state, event, self.policy)
        changed = s.state != self.state
        self.state = s.state
        if changed or s.transitions:
            self.store.save(s.state, s.transitions)
        self.metrics.set_state(s.state.state)
        self.metrics.observe_transitions(s.transitions)
        if self.proc is not None and s.state.state != RETRAINING:  # timed out: stop it
            from wearmon import processes

            log.warning("retraining pid %d stopped: the policy left RETRAINING", self.proc.pid)
            processes.stop(self.proc, timeout_s=10)
            self.proc = None
            if s.transitions:
                self._mark_stopped(s.transitions[0].trigger_id, s.transitions[0].reason)
            self.metrics.retrainings.labels(result="failed").inc()
        for t in s.transitions:
            log.info("policy %s -> %s (%s) [%s]", t.from_state, t.to_state, t.reason, t.trigger_id)
            self._annotate(t)
        if s.action == "retrain":
            self._start_retraining(s.state.trigger_id)
        return s

    def _annotate(self, t: Transition) -> None:
        if not self.settings.grafana.url:
            return
        from monitoring.dashboards.push import annotate

        text = f"policy {t.from_state} -> {t.to_state}: {t.reason} [{t.trigger_id}]"
        try:
            annotate(self.settings, text, ["wearmon", "drift", t.to_state], t.at_ms)
        except GrafanaError as exc:
            log.warning("annotation not posted: %s", exc)

    # the retraining process ----------------------------------------------------------

    def retrain_command(self, trigger_id: str) -> list[str]:
        """The ``wearmon`` arguments of the retraining of ``trigger_id``: the episode's onset
        (``--since-ms``) tells it where the new data start."""
        args = ["model", "retrain", "--trigger-id", trigger_id, *self.settings.monitor.retrain_args]
        if self.state.onset_ms > 0:
            args += ["--since-ms", str(self.state.onset_ms)]
        return args

    def _start_retraining(self, trigger_id: str) -> None:
        """``wearmon model retrain --trigger-id ID`` in its own, niced process, with this
        monitor's settings (wearmon.processes), output in data_dir/monitor/retrain/ID.log."""
        from wearmon import processes

        self.metrics.retrainings.labels(result="started").inc()
        m = self.settings.monitor
        if not m.retrain:
            log.info("retraining %s not started (monitor.retrain is off)", trigger_id)
            return
        args = self.retrain_command(trigger_id)
        logfile = Path(self.settings.data_dir) / "monitor" / "retrain" / f"{trigger_id}.log"
        self.proc = processes.start(self.settings, args, logfile, nice=m.retrain_nice)
        log.info(
            "retraining %s started (pid %d, nice +%d)", trigger_id, self.proc.pid, m.retrain_nice
        )

    def poll_retraining(self) -> Step | None:
        """Feed the result of a finished retraining (process exit or its Redis hash)."""
        if self.state.state != RETRAINING:
            return None
        tid = self.state.trigger_id
        code = None if self.proc is None else self.proc.poll()
        if self.proc is not None and code is None:
            return None
        h = {_s(k): _s(v) for k, v in self.client.hgetall(keys.retrain_key(tid)).items()}
        status = h.get("status", "")
        if self.proc is None and status not in FINAL:
            if not self.settings.monitor.retrain:
                status = "failed"
                h["reason"] = "retraining is off (monitor.retrain)"
            else:
                return None  # after a restart: the process runs on, or the timeout ends it
        if status not in FINAL:
            status, h["reason"] = "failed", f"exit code {code} without a final status"
        self.proc = None
        self.metrics.retrainings.labels(result=status).inc()
        ev = RetrainFinished(self.clock(), tid, status, h.get("reason", ""))  # type: ignore[arg-type]
        return self.feed(ev)

    def stop_retraining(self) -> None:
        """Stop a running retraining (the monitor stops): it counts as failed."""
        from wearmon import processes

        if self.proc is None or self.proc.poll() is not None:
            return
        processes.stop(self.proc, timeout_s=10)
        self.proc = None
        self.metrics.retrainings.labels(result="failed").inc()
        self._mark_stopped(self.state.trigger_id, "the monitor stopped")
        ev = RetrainFinished(self.clock(), self.state.trigger_id, "failed", "the monitor stopped")
        self.feed(ev)

    def _mark_stopped(self, trigger_id: str, reason: str) -> None:
        """A retraining the monitor stopped cannot write its own end: its hash says failed
        (unless it ended first), so ``retrain:{id}`` never stays "running"."""
        from trainer.retrain import write_status

        h = {_s(k): _s(v) for k, v in self.client.hgetall(keys.retrain_key(trigger_id)).items()}
        if h.get("status") not in FINAL:
            write_status(
                self.client, self.settings, trigger_id, status="failed", reason=reason,
                finished_ms=self.clock(),
            )  # fmt: skip

    # the check -----------------------------------------------------------------------

    def check_once(self) -> CheckOutcome:
        """Read new live windows, check them, feed the policy, write results."""
        now = self.clock()
        t0 = time.perf_counter()
        self.poll_retraining()
        cursor = self.client.get(keys.MONITOR_CURSOR)
        live = read_live(
            self.client, _s(cursor) if cursor else None, self.settings.monitor.max_windows
        )
        n = 0 if live.batch is None else len(live.batch)
        if live.batch is None or n < self.settings.monitor.min_windows:
            self.metrics.checks.labels(result="skipped").inc()
            s = self.feed(Check(now, False, n))
            return CheckOutcome(
                now, None, f"{n} new windows (< {self.settings.monitor.min_windows})", s.transitions
            )
        ref = self.references.get(self.references.champion())
        res = check(live.batch, ref, now, config_for(ref.calibration, self.cfg))
        self.metrics.check_seconds.observe(time.perf_counter() - t0)
        # the wall clock, not the monitor's clock: "since the last check" on the Drift
        # dashboard is time() minus it (a backtest's or demo's clock is device time)
        self.metrics.observe_check(res, time.time())
        self._quality()
        self._write_result(res)
        starts = live.batch.window_start_ms
        oldest = int(starts.min()) if len(starts) else 0
        s = self.feed(
            Check(now, res.drifted, res.n_windows, res.score, oldest, labelled_total(self.client))
        )
        report = self._report(ref, live.batch, res, s.transitions)
        if live.newest_id:
            self.client.set(keys.MONITOR_CURSOR, live.newest_id)
        return CheckOutcome(now, res, "", s.transitions, report)

    def _quality(self) -> None:
        m = self.settings
        urls = m.monitor.stream_metrics_urls or (
            f"http://{m.metrics.host}:{m.metrics.stream_port}/metrics",
        )
        cur = scrape_counters(urls)
        self.metrics.set_quality(quality_between(self._counters, cur))
        self._counters = cur if cur is not None else self._counters

    def _write_result(self, res: DriftResult) -> None:
        fields = {k: str(v) for k, v in res.summary().items()}
        fields["state"] = self.state.state
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(keys.DRIFT_LATEST)
        pipe.hset(keys.DRIFT_LATEST, mapping=fields)
        pipe.xadd(keys.DRIFT_HIST, fields, maxlen=keys.HIST_MAXLEN, approximate=True)
        pipe.execute()

    def _report(
        self, ref: Reference, batch: LiveBatch, res: DriftResult, trans: list[Transition]
    ) -> Path | None:
        if not trans:
            return None
        from monitoring.reports import report_dir, write_report

        name = f"drift-{res.at_ms}-{trans[-1].to_state}"
        folder = report_dir(self.settings)
        keep = self.settings.monitor.reports_keep
        # off the check's thread: an Evidently report takes 3-12 s (30 s under load), and a
        # check that waits for it delays the next by as much (one writer thread, in order)
        self._pending.append(self._writer.submit(write_report, folder, name, ref, batch, res, keep))
        return folder / f"{name}.html"

    def flush_reports(self, timeout_s: float = 120.0) -> None:
        """Wait for the reports being written (a report that fails is logged)."""
        pending, self._pending = self._pending, []
        for fut in pending:
            try:
                fut.result(timeout=timeout_s)
            except Exception as exc:  # a report is an output, never the check's failure
                log.warning("drift report not written: %s: %s", type(exc).__name__, exc)

    # the service loop ----------------------------------------------------------------

    def _entries_added(self) -> int:
        import redis

        try:
            info = self.client.xinfo_stream(keys.FEATURES_KEY)
        except redis.ResponseError:  # no stream yet
            return 0
        return int(info.get("entries-added", info.get("length", 0)))

    def run(self, stop: threading.Event) -> None:
        """Check every interval (or early on many new windows) until ``stop`` is set."""
        from wearmon.settings import redis_errors

        m = self.settings.monitor
        down, last, seen = 0, 0.0, 0
        while not stop.is_set():
            now = time.monotonic()
            try:
                added = self._entries_added()
                if now - last >= m.interval_s or added - seen >= m.max_windows:
                    last, seen = now, added
                    self._guarded_check()
                else:
                    self.poll_retraining() or self.feed(Tick(self.clock()))
                down = 0
            except redis_errors() as exc:  # bounded: Redis gone for good ends the service
                down += 1
                log.warning("Redis unavailable (%d in a row): %s", down, exc)
                if down >= MAX_REDIS_FAILURES:
                    raise MonitorError(f"Redis unavailable {down} times in a row: {exc}") from None
            stop.wait(1.0)

    def _guarded_check(self) -> None:
        """One check of the loop; a check that cannot run (no champion yet, a bad profile)
        is counted and logged, and the next interval tries again."""
        try:
            log.info("%s", describe(self.check_once()))
        except WearmonError as exc:
            self.metrics.checks.labels(result="error").inc()
            log.warning("check failed: %s", exc)


def describe(out: CheckOutcome) -> str:
    """One line, in words, about a check."""
    if out.result is None:
        return f"check skipped: {out.skipped}"
    r = out.result
    top = ", ".join(f"{n} {v:.2f}" for n, v in r.top_features(3))
    verdict = "DRIFT" if r.drifted else "no drift"
    words = (
        f"{verdict}: score {r.score:.2f} (classifier {r.c2st_score:.2f}, gravity "
        f"{r.gravity_score:.2f}; 1.00 = threshold) on {r.n_windows} windows of model "
        f"{r.model_version}; {r.share:.0%} of features over threshold (top: {top}); "
        f"{r.drifted_devices} of {r.devices_checked} devices drifted"
    )
    for t in out.transitions:
        words += f"; policy {t.from_state} -> {t.to_state}: {t.reason}"
    return words


def serve(settings: Any, stop: threading.Event | None = None) -> None:
    """``wearmon monitor``: metrics endpoint + the check loop, until interrupted."""
    from prometheus_client import start_http_server

    client = settings.redis.connect()
    metrics = MonitorMetrics()
    start_http_server(
        settings.metrics.monitor_port, addr=settings.metrics.host, registry=metrics.registry
    )
    mon = Monitor(settings, client, metrics)
    log.info(
        "monitor on :%d, state %s, checks every %.0f s",
        settings.metrics.monitor_port,
        mon.state.state,
        settings.monitor.interval_s,
    )
    stop = stop or threading.Event()
    try:
        mon.run(stop)
    finally:
        mon.stop_retraining()
        mon.flush_reports()
        client.close()


def status(settings: Any, client: Any, n: int = 5) -> list[str]:
    """``wearmon monitor status``, in words: the policy state, the last checks and decisions."""
    from datetime import UTC, datetime

    def when(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    st = PolicyStore(client).load()
    lines = [f"policy: {st.state.upper()} since {when(st.since_ms) if st.since_ms else 'start'}"]
    if st.trigger_id:
        lines.append(f"  trigger {st.trigger_id}")
    if st.onset_ms:
        lines.append(
            f"  drift onset (oldest window of the first drifted check): {when(st.onset_ms)}"
        )
    m = settings.monitor
    if st.state == "drift" and m.min_labelled > 0 and st.labelled_at_onset >= 0:
        have = max(0, labelled_total(client) - st.labelled_at_onset)
        lines.append(
            f"  labelled windows since the onset: {have} of {m.min_labelled} (retrains then, "
            f"or {m.label_wait_s:.0f} s after entering DRIFT)"
        )
    lines.append(
        f"  recent checks drifted: {sum(st.recent)} of {len(st.recent)}; "
        f"retrainings in the last 24 h: {len(st.retrain_starts_ms)}"
        + (f"; last retraining {st.last_result}" if st.last_result else "")
    )
    hist = client.xrevrange(keys.DRIFT_HIST, count=n)
    lines.append(f"last {len(hist)} checks:" if hist else "no checks yet")
    for _, raw in hist:
        f = {_s(k): _s(v) for k, v in raw.items()}
        verdict = "DRIFT" if f.get("drifted") == "1" else "ok"
        lines.append(
            f"  {when(int(f['ts_ms']))}  {verdict:5}  score {float(f['score']):.2f}  "
            f"{f['n_windows']} windows  model {f['model_version']}  "
            f"devices drifted {f.get('drifted_devices', '?')}"
        )
    log_ = PolicyStore(client).log(n)
    lines.append(f"last {len(log_)} decisions:" if log_ else "no decisions yet")
    for t in log_:
        lines.append(
            f"  {when(t.at_ms)}  {t.from_state} -> {t.to_state}: {t.reason} [{t.trigger_id}]"
        )
    return lines


def check_once(settings: Any) -> CheckOutcome:
    """``wearmon monitor check --once``: one check, with the state kept in Redis."""

    client = settings.redis.connect()
    mon = None
    try:
        mon = Monitor(settings, client)
        return mon.check_once()
    except RegistryError as exc:
        raise MonitorError(f"no reference to check against: {exc}") from None
    finally:
        if mon is not None:
            mon.flush_reports()  # the report it names is on disk when it returns
        client.close()
