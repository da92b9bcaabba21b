"""The monitor's CPU priority: ``wearmon monitor`` lowers its own by ``monitor.nice`` (its
checks yield to the stream workers), and the retraining it starts sits ``retrain_nice``
below it. Real processes; their priorities read back from the kernel."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from wearmon.settings import Settings


def _child_priority(code: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return int(out.stdout.strip().splitlines()[-1])


def test_the_monitor_lowers_its_own_priority_by_its_setting() -> None:
    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert Settings().monitor.nice == 5
    code = (
        "import os\nfrom wearmon.processes import lower_priority\n"
        "lower_priority({n})\nprint(os.getpriority(os.PRIO_PROCESS, 0))"
    )
    assert _child_priority(code.format(n=5)) == min(19, base + 5)
    assert _child_priority(code.format(n=0)) == base
    assert _child_priority(code.format(n=19)) == 19  # capped, not an error


def test_the_retraining_sits_below_the_niced_monitor(tmp_path: Path) -> None:
    """processes.start(nice=...) from a process at nice +5: the child at +5 + increment."""
    base = os.getpriority(os.PRIO_PROCESS, 0)
    code = (
        "import os, sys, time\n"
        "from pathlib import Path\n"
        "from wearmon import processes\n"
        "from wearmon.processes import lower_priority\n"
        "from wearmon.settings import Settings\n"
        "lower_priority(5)\n"
        f"p = processes.start(Settings(data_dir=Path({str(tmp_path)!r})), ['--help'], "
        f"Path({str(tmp_path / 'child.log')!r}), nice=10)\n"
        "print(os.getpriority(os.PRIO_PROCESS, p.pid))\n"
        "p.wait(60)\n"
    )
    assert _child_priority(code) == min(19, base + 15)
