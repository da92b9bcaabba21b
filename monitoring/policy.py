"""The retraining trigger policy: a pure state machine, and its Redis adapter.

States (docs/drift.md, "Policy")::

    OK --drifted check--> SUSPECT --N of the last M checks drifted--> DRIFT
    DRIFT --retrainings in the last 24 h < cap--> RETRAINING --finished, whatever the result-->
    COOLDOWN --cooldown over--> OK

- Only checks with at least ``min_windows`` new live windows count; the others are skipped
  and change nothing.
- From OK a drifted check leads to SUSPECT (or straight to DRIFT when N = 1). SUSPECT and a
  capped DRIFT go back to OK once none of the last M counted checks drifted.
- DRIFT asks for a retraining when the cap allows it (the step's ``action`` is
  ``"retrain"``); at the cap it stays in DRIFT and asks again at every later check. With
  ``min_labelled`` set, it first waits for that many labelled windows (ground truth joined
  by the stream) since the episode's onset, at most ``label_wait_s``: a retraining on the
  drifted data needs labels of the drifted data, and one started at the first sign of drift
  would train on windows from before it (it still starts after the wait, and is refused
  without labels).
- The episode's onset is the oldest window of the check that left OK (``onset_ms``); the
  retraining takes the windows from it on as "the new data".
- RETRAINING ends in COOLDOWN when the retraining reports its result (promoted, refused or
  failed) or runs past ``retrain_timeout_s``; checks during RETRAINING and COOLDOWN count for
  nothing. The cooldown ends on the first event after ``cooldown_s``, with the check history
  cleared, so a drift that lasts needs N of M fresh checks before the next retraining.

Every transition is a :class:`Transition` carrying the trigger id of the episode it belongs to
(one id from leaving OK until the return to OK). :func:`step` is pure: same state and event,
same result. :class:`PolicyStore` persists the state as JSON in ``policy:state`` and appends
transitions to the ``policy:log`` stream.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from monitoring.keys import HIST_MAXLEN, POLICY_LOG, POLICY_STATE
from wearmon.errors import MonitorError

OK = "ok"
SUSPECT = "suspect"
DRIFT = "drift"
RETRAINING = "retraining"
COOLDOWN = "cooldown"
STATES: tuple[str, ...] = (OK, SUSPECT, DRIFT, RETRAINING, COOLDOWN)
DAY_MS = 24 * 3600 * 1000
RetrainResult = Literal["promoted", "refused", "failed"]


@dataclass(frozen=True)
class PolicyConfig:
    n_of_m: tuple[int, int] = (2, 3)
    min_windows: int = 100
    cooldown_s: float = 3600.0
    max_retrains_per_day: int = 3
    retrain_timeout_s: float = 3 * 3600.0
    #: labelled windows since the onset that DRIFT waits for (0: start at once) ...
    min_labelled: int = 0
    #: ... for at most this long after entering DRIFT
    label_wait_s: float = 0.0

    def __post_init__(self) -> None:
        n, m = self.n_of_m
        if not 1 <= n <= m:
            raise MonitorError(f"policy n_of_m must satisfy 1 <= N <= M, got {n} of {m}")


@dataclass(frozen=True)
class Transition:
    from_state: str
    to_state: str
    reason: str
    trigger_id: str
    at_ms: int

    def to_fields(self) -> dict[str, str]:
        """The fields of its ``policy:log`` entry."""
        return {
            "from": self.from_state,
            "to": self.to_state,
            "reason": self.reason,
            "trigger_id": self.trigger_id,
            "at_ms": str(self.at_ms),
        }


@dataclass(frozen=True)
class PolicyState:
    state: str = OK
    since_ms: int = 0
    trigger_id: str = ""
    #: drifted flags of the last M counted checks, oldest first
    recent: tuple[bool, ...] = ()
    #: start times of the retrainings of the last 24 h
    retrain_starts_ms: tuple[int, ...] = ()
    cooldown_until_ms: int = 0
    last_result: str = ""
    #: the oldest window of the check that left OK (0: unknown)
    onset_ms: int = 0
    #: the labelled-window count when the episode left OK (-1: unknown)
    labelled_at_onset: int = -1

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> PolicyState:
        try:
            d = json.loads(text)
            st = cls(
                state=str(d["state"]),
                since_ms=int(d["since_ms"]),
                trigger_id=str(d["trigger_id"]),
                recent=tuple(bool(v) for v in d["recent"]),
                retrain_starts_ms=tuple(int(v) for v in d["retrain_starts_ms"]),
                cooldown_until_ms=int(d["cooldown_until_ms"]),
                last_result=str(d.get("last_result", "")),
                onset_ms=int(d.get("onset_ms", 0)),
                labelled_at_onset=int(d.get("labelled_at_onset", -1)),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise MonitorError(f"{POLICY_STATE}: not a policy state ({exc})") from None
        if st.state not in STATES:
            raise MonitorError(f"{POLICY_STATE}: unknown state {st.state!r}")
        return st


@dataclass(frozen=True)
class Check:
    """The result of one drift check, as the policy sees it."""

    at_ms: int
    drifted: bool
    n_windows: int
    score: float = 0.0
    #: the oldest live window the check read (0: unknown)
    oldest_ms: int = 0
    #: labelled windows the stream has scored so far, a running total (-1: unknown)
    labelled: int = -1


@dataclass(frozen=True)
class RetrainFinished:
    at_ms: int
    trigger_id: str
    result: RetrainResult
    reason: str = ""


@dataclass(frozen=True)
class Tick:
    """Time passes (cooldown and retraining time-outs)."""

    at_ms: int


Event = Check | RetrainFinished | Tick


@dataclass(frozen=True)
class Step:
    state: PolicyState
    transitions: list[Transition] = field(default_factory=list)
    #: "retrain": start the retraining of ``state.trigger_id`` now
    action: str | None = None


def new_trigger_id(at_ms: int) -> str:
    return f"drift-{at_ms}"


def step(st: PolicyState, event: Event, cfg: PolicyConfig) -> Step:
    """The next state of the policy after ``event``, the transitions and an action."""
    out: list[Transition] = []
    st = _expire(st, event.at_ms, cfg, out)
    if isinstance(event, RetrainFinished):
        return _on_finished(st, event, cfg, out)
    if isinstance(event, Check):
        return _on_check(st, event, cfg, out)
    return Step(st, out)


def _move(st: PolicyState, to: str, reason: str, at_ms: int, out: list[Transition]) -> PolicyState:
    tid = st.trigger_id or new_trigger_id(at_ms)
    out.append(Transition(st.state, to, reason, tid, at_ms))
    st = replace(st, state=to, since_ms=at_ms, trigger_id="" if to == OK else tid)
    return replace(st, onset_ms=0, labelled_at_onset=-1) if to == OK else st


def _expire(st: PolicyState, now: int, cfg: PolicyConfig, out: list[Transition]) -> PolicyState:
    """Time-driven transitions: cooldown over, retraining timed out."""
    st = replace(st, retrain_starts_ms=tuple(t for t in st.retrain_starts_ms if now - t < DAY_MS))
    if st.state == RETRAINING and now - st.since_ms >= cfg.retrain_timeout_s * 1000:
        st = _move(
            st, COOLDOWN, f"retraining timed out after {cfg.retrain_timeout_s:.0f} s", now, out
        )
        st = replace(st, cooldown_until_ms=now + int(cfg.cooldown_s * 1000), last_result="failed")
    if st.state == COOLDOWN and now >= st.cooldown_until_ms:
        st = _move(st, OK, f"cooldown of {cfg.cooldown_s:.0f} s over", now, out)
        st = replace(st, recent=())
    return st


def _on_finished(
    st: PolicyState, ev: RetrainFinished, cfg: PolicyConfig, out: list[Transition]
) -> Step:
    if st.state != RETRAINING or ev.trigger_id != st.trigger_id:
        return Step(st, out)  # a stale report (another episode): nothing to do
    why = f"retraining {ev.result}" + (f": {ev.reason}" if ev.reason else "")
    st = _move(st, COOLDOWN, why, ev.at_ms, out)
    st = replace(st, cooldown_until_ms=ev.at_ms + int(cfg.cooldown_s * 1000), last_result=ev.result)
    return Step(st, out)


def _on_check(st: PolicyState, ev: Check, cfg: PolicyConfig, out: list[Transition]) -> Step:
    if st.state in (RETRAINING, COOLDOWN) or ev.n_windows < cfg.min_windows:
        return Step(st, out)
    n, m = cfg.n_of_m
    recent = (*st.recent, bool(ev.drifted))[-m:]
    st = replace(st, recent=recent)
    hits = sum(recent)
    tally = f"{hits} of the last {len(recent)} checks drifted (score {ev.score:.2f})"
    if st.state == OK and hits >= 1:  # the episode starts here
        st = replace(st, onset_ms=ev.oldest_ms, labelled_at_onset=ev.labelled)
    if st.state in (OK, SUSPECT) and hits >= n:
        st = _move(st, DRIFT, f"{tally}, trigger at {n} of {m}", ev.at_ms, out)
    elif st.state == OK and hits >= 1:
        st = _move(st, SUSPECT, tally, ev.at_ms, out)
    elif st.state in (SUSPECT, DRIFT) and hits == 0:
        return Step(_move(st, OK, tally, ev.at_ms, out), out)
    if st.state != DRIFT:
        return Step(st, out)
    if len(st.retrain_starts_ms) >= cfg.max_retrains_per_day:
        return Step(st, out)  # capped: stays in DRIFT, asks again at the next check
    have = labelled_since_onset(st, ev)
    waited = ev.at_ms - st.since_ms >= cfg.label_wait_s * 1000
    if cfg.min_labelled > 0 and (have is None or have < cfg.min_labelled) and not waited:
        return Step(st, out)  # waits for labels of the drifted data
    used = len(st.retrain_starts_ms) + 1
    why = f"retraining {used} of at most {cfg.max_retrains_per_day} per 24 h"
    if cfg.min_labelled > 0:
        got = "unknown" if have is None else str(have)
        why += (
            f", {got} labelled windows since the onset"
            if have is not None and have >= cfg.min_labelled
            else f", after waiting {cfg.label_wait_s:.0f} s for labels ({got} of "
            f"{cfg.min_labelled} labelled windows since the onset)"
        )
    st = _move(st, RETRAINING, why, ev.at_ms, out)
    st = replace(st, retrain_starts_ms=(*st.retrain_starts_ms, ev.at_ms))
    return Step(st, out, action="retrain")


def labelled_since_onset(st: PolicyState, ev: Check) -> int | None:
    """Labelled windows scored since the episode left OK (None: a count is unknown)."""
    if st.labelled_at_onset < 0 or ev.labelled < 0:
        return None
    return max(0, ev.labelled - st.labelled_at_onset)


class PolicyStore:
    """The policy state as JSON in ``policy:state``; transitions appended to ``policy:log``."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def load(self) -> PolicyState:
        raw = self.client.get(POLICY_STATE)
        return PolicyState() if raw is None else PolicyState.from_json(raw)

    def save(self, st: PolicyState, transitions: Sequence[Transition] = ()) -> None:
        """Write the state and its transitions in one pipeline (one round trip)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.set(POLICY_STATE, st.to_json())
        for t in transitions:
            pipe.xadd(POLICY_LOG, t.to_fields(), maxlen=HIST_MAXLEN, approximate=True)
        pipe.execute()

    def log(self, count: int = 20) -> list[Transition]:
        """The newest ``count`` transitions, newest first."""
        out = []
        for _, raw in self.client.xrevrange(POLICY_LOG, count=count):
            f = {_s(k): _s(v) for k, v in raw.items()}
            out.append(
                Transition(f["from"], f["to"], f["reason"], f["trigger_id"], int(f["at_ms"]))
            )
        return out


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
