"""``wearmon demo`` and ``wearmon monitor`` stop cleanly on SIGINT and SIGTERM: the signal
unwinds the command (its ``finally`` blocks run), an error raised while a signal is pending
counts as the interruption, a second signal does not cut the clean-up short, and the
handlers are put back afterwards."""

from __future__ import annotations

import os
import signal
import time

import pytest

from wearmon.cli.common import interruptible


def _signal_self(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(1.0)  # the handler runs here
    raise AssertionError("the signal did not interrupt")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_interrupts_and_the_clean_up_runs(signum: int) -> None:
    cleaned: list[bool] = []

    def demo() -> str:
        try:
            _signal_self(signum)
        finally:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C again during the clean-up
            time.sleep(0.05)
            cleaned.append(True)
        return "done"

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    assert interruptible(demo) == (None, True)
    assert cleaned == [True], "the second signal cut the clean-up short"
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_an_error_while_a_signal_is_pending_is_the_interruption() -> None:
    def demo() -> None:
        try:
            _signal_self(signal.SIGINT)
        except KeyboardInterrupt:  # C code turning the signal into its own error
            raise ValueError("Invalid bounding box") from None

    assert interruptible(demo) == (None, True)


def test_without_a_signal_results_and_errors_pass_through() -> None:
    assert interruptible(lambda: 42) == (42, False)

    def broken() -> None:
        raise ValueError("a real bug")

    with pytest.raises(ValueError, match="a real bug"):
        interruptible(broken)
