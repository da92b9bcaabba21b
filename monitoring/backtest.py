"""``wearmon monitor backtest``: the drift loop replayed through the real pipeline.

Per scenario (:data:`SCENARIOS`): real Kafka, a real ``wearmon process`` worker, real Redis and
the real monitor (:class:`monitoring.service.Monitor`, driven check by check); seglearn
subjects the champion was not trained on are replayed faster than real time as several
virtual watches, with drift injected from a point on (producers' drift injection). Time is
device time throughout: the policy's clock (cooldown, cap per day) runs at the replay's speed,
and delays are measured from the drift onset to the newest window the deciding check saw.

What is measured (:class:`ScenarioResult`): the first drifted check and the policy reaching
DRIFT (detection delay in device-seconds), alarms (entries into DRIFT) per device-hour, the
retraining and the gate's decision and reason, and live accuracy before the drift, during it
and after a promotion, from the stream's own join of predictions with ground truth
(``acc:scored:{device}``: 1 right, 0 wrong). The pure parts (:func:`detection`,
:func:`accuracy_phases`, :func:`alarms_per_device_hour`, :func:`markdown_table`) take plain
records, so they are tested without the pipeline.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

#: seglearn subjects held out of the backtest's own champion (replayed as the live people)
UNSEEN_SUBJECTS: tuple[str, ...] = ("8", "9", "10")
BASE_SUBJECTS: tuple[str, ...] = ("1", "2", "3", "4", "5", "6", "7")
DRIFT_STATES = ("drift", "retraining")


@dataclass(frozen=True)
class Scenario:
    """One backtest run: what is replayed, what drifts, what is expected."""

    name: str
    title: str
    #: keyword arguments of producers.DriftConfig (None: clean)
    drift: Mapping[str, Any] | None = None
    labels: bool = True
    #: the monitor may start a retraining (the closed loop)
    retrain: bool = False
    #: device-seconds replayed per device (before the loop ends)
    device_s: float = 600.0
    #: device-seconds into each device's replay where the drift starts
    onset_s: float = 240.0
    #: after a promotion, keep replaying this many device-seconds (the "after" phase)
    after_s: float = 300.0
    #: the expected outcome, in words (for the table)
    expect: str = ""


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "clean", "clean replay of unseen subjects", None, device_s=720.0, expect="no alarm"
        ),
        Scenario("gain125", "gain x1.25", {"gain": 1.25}, expect="detected"),
        Scenario("gain150", "gain x1.5", {"gain": 1.5}, expect="detected"),
        Scenario("offset", "offset +2 (m/s2, deg/s)", {"offset": 2.0}, expect="detected"),
        Scenario("noise", "noise sd 1.0", {"noise": 1.0}, expect="reported"),
        Scenario("axis_swap", "axis swap x<->y", {"axes": "y,x,z"}, expect="detected"),
        Scenario(
            "mirror",
            "other wrist (mirror)",
            {"axes": "mirror"},
            expect="quiet: both wrists are in the training data",
        ),
        Scenario("rate", "sampling rate 25 Hz", {"rate_hz": 25.0}, expect="reported"),
        Scenario(
            "population",
            "another population (base subject 1 replayed as donor)",
            {"donor_subjects": ("1",)},
            expect="quiet: a seen subject",
        ),
        Scenario(
            "closed_loop",
            "axis swap, labels flowing, retraining on",
            {"axes": "y,x,z"},
            retrain=True,
            device_s=7200.0,
            expect="detected, promoted, accuracy recovers",
        ),
        Scenario(
            "label_free",
            "axis swap, no labels, retraining on",
            {"axes": "y,x,z"},
            labels=False,
            retrain=True,
            device_s=2400.0,
            # past a whole cooldown after the refusal: a second retraining, if any, shows
            # whether the cooldown held
            after_s=1500.0,
            expect="detected, refused, no storm",
        ),
    )
}


# --- records of a run and the pure measures ---------------------------------------------


@dataclass(frozen=True)
class CheckRecord:
    """One monitor check as the backtest saw it (times are device time, ms)."""

    device_ms: int
    newest_window_ms: int
    score: float
    drifted: bool
    state: str
    n_windows: int
    model_version: str
    #: wall seconds the check took (a check stalls a fast replay's device clock)
    wall_s: float = 0.0


@dataclass(frozen=True)
class ScoredWindow:
    start_ms: int
    correct: bool
    model_version: str
    device: str = ""


@dataclass
class ScenarioResult:
    scenario: Scenario
    devices: int
    device_hours: float
    onset_ms: int | None
    checks: list[CheckRecord] = field(default_factory=list)
    transitions: list[dict[str, str]] = field(default_factory=list)
    retrain: dict[str, str] = field(default_factory=dict)
    accuracy: dict[str, float] = field(default_factory=dict)
    windows: int = 0
    first_drifted_s: float | None = None
    detected_s: float | None = None
    alarms: int = 0
    alarms_per_device_hour: float = 0.0
    retrainings: int = 0
    #: device-seconds between consecutive retrainings (a storm shows as gaps < the cooldown)
    retrain_gaps_s: list[float] = field(default_factory=list)
    #: the stream's end-to-end latency (p50, p99; s) while a retraining ran, from Prometheus
    stream_while_retraining: dict[str, float | None] = field(default_factory=dict)
    wall_s: float = 0.0
    #: samples the replay sent
    samples: int = 0


def detection(
    checks: Sequence[CheckRecord], onset_ms: int | None
) -> tuple[float | None, float | None]:
    """(first drifted check, policy at DRIFT) after the onset, in device-seconds from it,
    measured to the newest window the check saw; None when it never happened."""
    if onset_ms is None:
        return None, None
    first = policy = None
    for c in checks:
        if c.newest_window_ms < onset_ms:
            continue
        delay = (c.newest_window_ms - onset_ms) / 1000.0
        if first is None and c.drifted:
            first = delay
        if policy is None and c.state in DRIFT_STATES:
            policy = delay
    return first, policy


def count_alarms(transitions: Iterable[Mapping[str, str]], before_ms: int | None = None) -> int:
    """Entries into DRIFT (before ``before_ms`` device time when given)."""
    n = 0
    for t in transitions:
        if t.get("to") != "drift":
            continue
        if before_ms is not None and int(t.get("at_ms", 0)) >= before_ms:
            continue
        n += 1
    return n


def retrain_gaps(transitions: Iterable[Mapping[str, str]]) -> list[float]:
    """Device-seconds between consecutive entries into RETRAINING."""
    starts = [int(t.get("at_ms", 0)) for t in transitions if t.get("to") == "retraining"]
    return [(b - a) / 1000.0 for a, b in itertools.pairwise(starts)]


def alarms_per_device_hour(alarms: int, device_hours: float) -> float:
    return alarms / device_hours if device_hours > 0 else math.nan


def accuracy_phases(
    windows: Sequence[ScoredWindow],
    onset_ms: int | None,
    base_version: str,
    promoted_version: str | None,
    held_out: Iterable[str] = (),
) -> dict[str, float]:
    """Live accuracy before the onset, during the drift (served by the base champion) and
    after a promotion (windows served by the promoted version); NaN where a phase is empty.
    ``held_out``: the devices the retraining held out (never trained on): their windows
    also make the phases ``*_held_out`` (before and after are then the same people)."""
    held = set(held_out)
    names = ("before", "during", "after")
    phases: dict[str, list[bool]] = {k: [] for k in (*names, *(f"{n}_held_out" for n in names))}

    def add(phase: str, w: ScoredWindow) -> None:
        phases[phase].append(w.correct)
        if w.device in held:
            phases[f"{phase}_held_out"].append(w.correct)

    for w in windows:
        if promoted_version is not None and w.model_version == promoted_version:
            add("after", w)
        elif w.model_version != base_version:
            continue
        elif onset_ms is None or w.start_ms < onset_ms:
            add("before", w)
        else:
            add("during", w)
    out = {k: (sum(v) / len(v) if v else math.nan) for k, v in phases.items()}
    out.update({f"n_{k}": float(len(v)) for k, v in phases.items()})
    return out


def interleave_subjects(recordings: Sequence[Any]) -> list[Any]:
    """Recordings reordered so that dealing them round-robin to a multiple of the subject
    count of devices (producers.devices.playlists) gives every device one subject: the
    first of each subject, then the second of each, ... (a watch is one person's)."""
    by: dict[str, list[Any]] = {}
    for r in recordings:
        by.setdefault(str(r.subject), []).append(r)
    out: list[Any] = []
    for k in range(max((len(v) for v in by.values()), default=0)):
        out += [v[k] for v in by.values() if k < len(v)]
    return out


def _fmt(v: float | None, spec: str = ".1f", none: str = "—") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return none
    return format(v, spec)


def _pct(v: float | None) -> str:
    return _fmt(None if v is None else 100.0 * v, ".1f") + (
        "" if v is None or math.isnan(v) else " %"
    )


def markdown_table(results: Sequence[ScenarioResult]) -> str:
    """The backtest table (one row per scenario)."""
    head = (
        "| scenario | devices | device-hours | windows scored | first drifted check (s) "
        "| policy DRIFT (s) "
        "| alarms / device-h | retrainings | gate | accuracy before / during / after "
        "| stream p50 / p99 while retraining |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for r in results:
        acc = r.accuracy
        gate = r.retrain.get("status", "—")
        if r.retrain.get("reason"):
            gate += f": {r.retrain['reason']}"
        rows.append(
            f"| {r.scenario.title} | {r.devices} | {r.device_hours:.2f} "
            f"| {r.windows} | {_fmt(r.first_drifted_s)} | {_fmt(r.detected_s)} "
            f"| {r.alarms} ({_fmt(r.alarms_per_device_hour, '.3f')}) | {r.retrainings}"
            + (f" ({min(r.retrain_gaps_s):.0f} s apart)" if r.retrain_gaps_s else "")
            + " "
            f"| {gate.replace('|', '/')} "
            f"| {_pct(acc.get('before'))} / {_pct(acc.get('during'))} / {_pct(acc.get('after'))}"
            + (
                f" (held-out devices: {_pct(acc.get('before_held_out'))} / "
                f"{_pct(acc.get('during_held_out'))} / {_pct(acc.get('after_held_out'))})"
                if acc.get("n_after_held_out")
                else ""
            )
            + f" | {_latency_cell(r.stream_while_retraining)} |"
        )
    return head + "\n".join(rows) + "\n"


def _latency_cell(lat: Mapping[str, float | None]) -> str:
    if not lat:
        return "—"
    cell = f"{_fmt(lat.get('p50'), '.2f')} / {_fmt(lat.get('p99'), '.2f')} s"
    return cell + (f" ({lat['wall_s']:.0f} s)" if lat.get("wall_s") else "")


# --- the timeline picture ---------------------------------------------------------------

STATE_LEVEL = {"ok": 0, "suspect": 1, "drift": 2, "retraining": 3, "cooldown": 4}


def rolling_accuracy(
    windows: Sequence[ScoredWindow], t0_ms: int, bin_s: float = 30.0
) -> tuple[list[float], list[float]]:
    """(minutes since t0, accuracy) per ``bin_s`` of device time."""
    bins: dict[int, list[bool]] = {}
    for w in windows:
        bins.setdefault(int((w.start_ms - t0_ms) / 1000.0 // bin_s), []).append(w.correct)
    keys = sorted(bins)
    return [(k + 0.5) * bin_s / 60.0 for k in keys], [sum(bins[k]) / len(bins[k]) for k in keys]


def timeline_checks(result: ScenarioResult) -> list[CheckRecord]:
    """The checks a timeline shows, in device time: a check before any live window saw none
    (``newest_window_ms`` 0) and is left out (it would put the axis at 1970), and so is one
    whose newest window is ahead of its own clock: a window of an earlier scenario, whose
    replay ran on another time base (it put a stray OK / v1 point at the end)."""
    return sorted(
        (c for c in result.checks if 0 < c.newest_window_ms <= c.device_ms),
        key=lambda c: c.newest_window_ms,
    )


def plot_timeline(result: ScenarioResult, windows: Sequence[ScoredWindow], path: Any) -> Any:
    """Live accuracy, drift score, policy state and model version over device time (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    checks = timeline_checks(result)
    t0 = min([w.start_ms for w in windows] + [c.newest_window_ms for c in checks] or [0])

    def minutes(ms: int) -> float:
        return (ms - t0) / 60000.0

    fig, axes = plt.subplots(4, 1, figsize=(11, 8.5), sharex=True)
    fig.suptitle(f"wearmon backtest: {result.scenario.title}", fontsize=13)
    ax = axes[0]
    x, y = rolling_accuracy(windows, t0)
    ax.plot(x, [100 * v for v in y], color="tab:blue", marker=".", lw=1)
    ax.set_ylabel("live accuracy %\n(30 s bins)")
    ax.set_ylim(0, 100)
    ax = axes[1]
    ax.plot([minutes(c.newest_window_ms) for c in checks], [c.score for c in checks],
            color="tab:red", marker="o", ms=3, lw=1)  # fmt: skip
    ax.axhline(1.0, color="grey", ls="--", lw=1, label="calibrated threshold")
    ax.set_ylabel("drift score")
    ax.legend(loc="upper left", fontsize=8)
    ax = axes[2]
    tx = [minutes(c.newest_window_ms) for c in checks]
    ax.step(tx, [STATE_LEVEL.get(c.state, 0) for c in checks], where="post", color="tab:purple")
    ax.set_yticks(list(STATE_LEVEL.values()), list(STATE_LEVEL))
    ax.set_ylabel("policy")
    ax = axes[3]
    versions = sorted({c.model_version for c in checks if c.model_version}, key=_version_key)
    level = {v: i for i, v in enumerate(versions)}
    ax.step(tx, [level.get(c.model_version, 0) for c in checks], where="post", color="tab:green")
    ax.set_yticks(list(level.values()), [f"v{v}" for v in level])
    ax.set_ylabel("champion")
    ax.set_xlabel("device minutes since the replay started")
    for a in axes:
        if result.onset_ms is not None:
            a.axvline(minutes(result.onset_ms), color="orange", lw=1.5, ls=":")
        a.grid(alpha=0.3)
    if result.onset_ms is not None:
        axes[0].text(minutes(result.onset_ms), 102, " drift starts", color="darkorange", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _version_key(v: str) -> tuple[int, str]:
    return (int(v), v) if v.isdigit() else (10**9, v)


# --- reading a run back from Redis ------------------------------------------------------


def scored_windows(client: Any, devices: Sequence[str]) -> list[ScoredWindow]:
    """The predictions of ``devices`` joined with the stream's scoring of them."""
    from stream_processor.sinks import history_key, scored_key

    out: list[ScoredWindow] = []
    for d in devices:
        scored = {_s(k): _s(v) for k, v in client.hgetall(scored_key(d)).items()}
        if not scored:
            continue
        for entry_id, raw in client.xrange(history_key(d)):
            ws = _s(entry_id).split("-", 1)[0]
            verdict = scored.get(ws)
            if verdict is None:
                continue
            fields = {_s(k): _s(v) for k, v in raw.items()}
            version = fields.get("model_version", "")
            out.append(ScoredWindow(int(ws), verdict == "1", version, d))
    out.sort(key=lambda w: w.start_ms)
    return out


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def drive(
    check: Callable[[], Any],
    clock: Callable[[], int],
    newest_window_ms: Callable[[], int],
    *,
    interval_wall_s: float,
    done: Callable[[], bool],
    on_check: Callable[[CheckRecord], None] | None = None,
    state: Callable[[], str],
    version: Callable[[], str],
) -> list[CheckRecord]:
    """Call ``check`` every ``interval_wall_s`` until ``done()``; one record per check. A
    check that took longer than the interval is followed by a pause as long as it took: at
    20x real time the interval is one wall second, checks back to back took a whole core and
    starved the niced retraining beside them (a real monitor checks once a minute)."""
    records: list[CheckRecord] = []
    next_at = time.monotonic()
    while not done():
        now = time.monotonic()
        if now < next_at:
            time.sleep(min(0.2, next_at - now))
            continue
        next_at = now + interval_wall_s
        newest = newest_window_ms()  # what the check is about to read
        out = check()
        res = getattr(out, "result", None)
        rec = CheckRecord(
            device_ms=clock(),
            newest_window_ms=newest,
            score=math.nan if res is None else float(res.score),
            drifted=bool(res is not None and res.drifted),
            state=state(),
            n_windows=0 if res is None else int(res.n_windows),
            model_version=version(),
            wall_s=time.monotonic() - now,
        )
        next_at = max(next_at, time.monotonic() + rec.wall_s)
        records.append(rec)
        if on_check is not None:
            on_check(rec)
    return records
