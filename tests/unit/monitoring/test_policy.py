"""The trigger policy, transition by transition (pure: no Redis)."""

from __future__ import annotations

import pytest

from monitoring.policy import (
    COOLDOWN,
    DRIFT,
    OK,
    RETRAINING,
    SUSPECT,
    Check,
    PolicyConfig,
    PolicyState,
    RetrainFinished,
    Tick,
    step,
)
from wearmon.errors import MonitorError

CFG = PolicyConfig(
    n_of_m=(2, 3), min_windows=10, cooldown_s=60, max_retrains_per_day=2, retrain_timeout_s=600
)
S = 1000  # ms per second


def check(at_s: float, drifted: bool, n: int = 50) -> Check:
    return Check(at_ms=int(at_s * S), drifted=drifted, n_windows=n, score=2.0 if drifted else 0.1)


def run(st: PolicyState, *events: object, cfg: PolicyConfig = CFG) -> tuple[PolicyState, list]:
    trans, actions = [], []
    for ev in events:
        s = step(st, ev, cfg)  # type: ignore[arg-type]
        st = s.state
        trans += s.transitions
        actions.append(s.action)
    return st, [(t.from_state, t.to_state) for t in trans] + [a for a in actions if a]


def test_clean_checks_stay_ok() -> None:
    st, log = run(PolicyState(), check(1, False), check(2, False), check(3, False))
    assert st.state == OK and log == []


def test_one_drifted_check_is_suspect_with_a_trigger_id() -> None:
    s = step(PolicyState(), check(1, True), CFG)
    assert s.state.state == SUSPECT and s.action is None
    (t,) = s.transitions
    assert (t.from_state, t.to_state, t.at_ms) == (OK, SUSPECT, 1000)
    assert t.trigger_id == s.state.trigger_id == "drift-1000"
    assert "1 of the last 1" in t.reason


def test_n_of_m_leads_to_drift_then_retraining_at_once() -> None:
    st = step(PolicyState(), check(1, True), CFG).state
    st = step(st, check(2, False), CFG).state
    s = step(st, check(3, True), CFG)
    assert [(t.from_state, t.to_state) for t in s.transitions] == [
        (SUSPECT, DRIFT),
        (DRIFT, RETRAINING),
    ]
    assert s.action == "retrain" and s.state.state == RETRAINING
    assert {t.trigger_id for t in s.transitions} == {"drift-1000"}
    assert s.state.retrain_starts_ms == (3000,)


def test_suspect_returns_to_ok_once_no_recent_check_drifted() -> None:
    st, _log = run(PolicyState(), check(1, True), check(2, False), check(3, False))
    assert st.state == SUSPECT
    s = step(st, check(4, False), CFG)
    assert s.state.state == OK and s.state.trigger_id == ""
    assert [(t.from_state, t.to_state) for t in s.transitions] == [(SUSPECT, OK)]
    assert s.transitions[0].trigger_id == "drift-1000"


def test_checks_with_too_few_windows_count_for_nothing() -> None:
    st, log = run(PolicyState(), check(1, True, n=9), check(2, True, n=0))
    assert st.state == OK and st.recent == () and log == []


def test_n_equal_one_goes_straight_to_drift() -> None:
    cfg = PolicyConfig(n_of_m=(1, 1), min_windows=1)
    _st, log = run(PolicyState(), check(1, True), cfg=cfg)
    assert log == [(OK, DRIFT), (DRIFT, RETRAINING), "retrain"]


def test_retraining_ignores_checks_and_ends_in_cooldown_whatever_the_result() -> None:
    for result in ("promoted", "refused", "failed"):
        st, _ = run(PolicyState(), check(1, True), check(2, True))
        assert st.state == RETRAINING
        st, log = run(st, check(3, True), check(4, False))
        assert st.state == RETRAINING and log == []
        s = step(st, RetrainFinished(5 * S, st.trigger_id, result, "why"), CFG)  # type: ignore[arg-type]
        assert s.state.state == COOLDOWN and s.state.last_result == result
        assert s.transitions[0].reason == f"retraining {result}: why"
        assert s.state.cooldown_until_ms == 5 * S + 60 * S


def test_a_stale_retraining_report_changes_nothing() -> None:
    st, _ = run(PolicyState(), check(1, True), check(2, True))
    s = step(st, RetrainFinished(5 * S, "drift-999", "promoted"), CFG)
    assert s.state == st and s.transitions == []


def test_cooldown_holds_then_ends_with_a_fresh_history() -> None:
    st, _ = run(PolicyState(), check(1, True), check(2, True))
    st = step(st, RetrainFinished(5 * S, st.trigger_id, "refused"), CFG).state
    st, log = run(st, check(30, True), check(64, True))
    assert st.state == COOLDOWN and log == []
    s = step(st, check(65, True), CFG)  # cooldown over: back to OK, then this check counts
    assert [(t.from_state, t.to_state) for t in s.transitions] == [(COOLDOWN, OK), (OK, SUSPECT)]
    assert s.state.recent == (True,)
    assert s.transitions[0].trigger_id == "drift-1000"  # closes the old episode
    assert s.state.trigger_id == "drift-65000"  # a new one


def test_tick_ends_the_cooldown() -> None:
    st, _ = run(PolicyState(), check(1, True), check(2, True))
    st = step(st, RetrainFinished(5 * S, st.trigger_id, "failed"), CFG).state
    assert step(st, Tick(64 * S), CFG).state.state == COOLDOWN
    s = step(st, Tick(65 * S), CFG)
    assert s.state.state == OK and s.state.recent == ()


def test_retraining_times_out_into_cooldown() -> None:
    st, _ = run(PolicyState(), check(1, True), check(2, True))
    s = step(st, Tick(2 * S + 600 * S), CFG)
    assert [(t.from_state, t.to_state) for t in s.transitions] == [(RETRAINING, COOLDOWN)]
    assert "timed out" in s.transitions[0].reason and s.state.last_result == "failed"


def _episode(st: PolicyState, t0: float) -> PolicyState:
    st, _ = run(st, check(t0, True), check(t0 + 1, True))
    if st.state == RETRAINING:
        st = step(st, RetrainFinished(int((t0 + 2) * S), st.trigger_id, "refused"), CFG).state
        st = step(st, Tick(int((t0 + 2 + 60) * S)), CFG).state
    return st


def test_cap_per_rolling_day_holds_in_drift_and_frees_up_after_24h() -> None:
    st = _episode(PolicyState(), 0)
    st = _episode(st, 100)
    assert st.state == OK and len(st.retrain_starts_ms) == 2
    st, log = run(st, check(200, True), check(201, True), check(202, True))
    assert st.state == DRIFT and "retrain" not in log
    # the first retraining (at 1 s) leaves the 24 h window
    s = step(st, check(1 + 24 * 3600, True), CFG)
    assert s.action == "retrain" and s.state.state == RETRAINING
    assert len(s.state.retrain_starts_ms) == 2


def test_capped_drift_goes_back_to_ok_when_the_drift_goes() -> None:
    st = _episode(_episode(PolicyState(), 0), 100)
    st, _ = run(st, check(200, True), check(201, True))
    assert st.state == DRIFT
    st, log = run(st, check(202, False), check(203, False), check(204, False))
    assert st.state == OK and log[-1] == (DRIFT, OK)


def test_state_round_trips_through_json() -> None:
    st, _ = run(PolicyState(), check(1, True), check(2, True))
    assert PolicyState.from_json(st.to_json()) == st


@pytest.mark.parametrize("text", ["", "{", '{"state": "ok"}', '{"state": "x"}', "[]"])
def test_a_bad_stored_state_is_a_one_line_error(text: str) -> None:
    good = PolicyState().to_json()
    if text == '{"state": "x"}':
        text = good.replace('"ok"', '"x"')
    with pytest.raises(MonitorError, match="policy:state"):
        PolicyState.from_json(text)


def test_n_of_m_must_be_sane() -> None:
    with pytest.raises(MonitorError, match="n_of_m"):
        PolicyConfig(n_of_m=(3, 2))


# --- waiting for labels of the drifted data ------------------------------------------------

LCFG = PolicyConfig(
    n_of_m=(2, 3),
    min_windows=10,
    cooldown_s=60,
    max_retrains_per_day=2,
    retrain_timeout_s=600,
    min_labelled=100,
    label_wait_s=300,
)


def lcheck(at_s: float, drifted: bool, labelled: int, oldest_s: float = 0.0) -> Check:
    return Check(
        at_ms=int(at_s * S),
        drifted=drifted,
        n_windows=50,
        score=2.0 if drifted else 0.1,
        oldest_ms=int(oldest_s * S),
        labelled=labelled,
    )


def test_the_onset_is_the_oldest_window_of_the_check_that_left_ok() -> None:
    st = step(PolicyState(), lcheck(10, True, 500, oldest_s=4), LCFG).state
    assert (st.state, st.onset_ms, st.labelled_at_onset) == (SUSPECT, 4000, 500)
    st = step(st, lcheck(20, True, 540, oldest_s=14), LCFG).state  # DRIFT: onset kept
    assert (st.state, st.onset_ms, st.labelled_at_onset) == (DRIFT, 4000, 500)
    st = step(st, lcheck(30, False, 560), LCFG).state
    st = step(st, lcheck(40, False, 580), LCFG).state
    st = step(st, lcheck(50, False, 600), LCFG).state
    assert (st.state, st.onset_ms, st.labelled_at_onset) == (OK, 0, -1)


def test_drift_waits_for_labelled_windows_since_the_onset() -> None:
    st = step(PolicyState(), lcheck(10, True, 500, oldest_s=4), LCFG).state
    s = step(st, lcheck(20, True, 560), LCFG)
    assert s.state.state == DRIFT and s.action is None  # 60 labelled since the onset
    s = step(s.state, lcheck(30, True, 599), LCFG)
    assert s.state.state == DRIFT and s.action is None and s.transitions == []
    s = step(s.state, lcheck(40, True, 600), LCFG)  # 100 since the onset
    assert s.state.state == RETRAINING and s.action == "retrain"
    assert "100 labelled windows since the onset" in s.transitions[-1].reason
    assert s.state.onset_ms == 4000


def test_drift_retrains_after_the_wait_without_labels() -> None:
    st = step(PolicyState(), lcheck(10, True, 0), LCFG).state
    st = step(st, lcheck(20, True, 0), LCFG).state
    assert st.state == DRIFT
    s = step(st, lcheck(319, True, 0), LCFG)
    assert s.state.state == DRIFT and s.action is None  # 299 s in DRIFT
    s = step(s.state, lcheck(320, True, 0), LCFG)
    assert s.action == "retrain"
    assert "after waiting 300 s for labels (0 of 100" in s.transitions[-1].reason


def test_an_unknown_label_count_waits_the_whole_wait() -> None:
    st = step(PolicyState(), lcheck(10, True, -1), LCFG).state
    st = step(st, lcheck(20, True, -1), LCFG).state
    assert step(st, lcheck(300, True, 10_000), LCFG).action is None  # no count at the onset
    s = step(st, lcheck(320, True, 10_000), LCFG)
    assert s.action == "retrain" and "unknown of 100" in s.transitions[-1].reason


def test_drift_that_ends_while_waiting_goes_back_to_ok() -> None:
    st = step(PolicyState(), lcheck(10, True, 0), LCFG).state
    st = step(st, lcheck(20, True, 0), LCFG).state
    for t in (30, 40, 50):
        st = step(st, lcheck(t, False, 0), LCFG).state
    assert st.state == OK and st.retrain_starts_ms == ()


def test_the_onset_survives_the_json_round_trip() -> None:
    st = step(PolicyState(), lcheck(10, True, 7, oldest_s=3), LCFG).state
    assert PolicyState.from_json(st.to_json()) == st
    assert PolicyState.from_json(PolicyState().to_json().replace('"onset_ms": 0, ', "")) == (
        PolicyState()
    )
