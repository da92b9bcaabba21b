"""Grid-anchored windows (200 x 6, hop 100) with deterministic starts and majority labels.

A window starts at ``phase_ms`` plus a multiple of ``hop * GRID_MS`` ms since the epoch
(2000 ms by default), so the id (device, start_ms) of a window does not depend on where a
recording or a stream began. The phase is 0 on the training path; the stream gives each
device its own fixed phase (:func:`window_phase_ms`, derived from the device id) so that
thousands of devices do not all complete a window in the same instant.

Candidate windows are those whose ``window`` grid points all lie inside the grid; a
candidate holding an invalid grid point (a gap) is skipped and counted as ``"gap"``. With
labels, a window takes its majority label when that label covers at least ``purity`` of its
grid points; otherwise it is skipped as ``"impure"`` (or ``"unlabeled"`` when no label covers
any of its points).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from wearmon.signals.grid import Grid, fuse_to_grid
from wearmon.signals.types import CHANNELS, GRID_MS, HOP, WINDOW, LabelSpan, Recording, Windows

if TYPE_CHECKING:
    from wearmon.settings import SignalSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WindowResult:
    windows: Windows
    skipped: dict[str, int] = field(default_factory=dict)


def empty_windows(
    *, window: int = WINDOW, labelled: bool = False, device: str | None = None
) -> Windows:
    return Windows(
        start_ms=np.empty(0, dtype=np.int64),
        x=np.empty((0, window, len(CHANNELS)), dtype=np.float32),
        labels=np.empty(0, dtype=object) if labelled else None,
        device=device,
    )


def window_phase_ms(device: str | None, hop: int = HOP, *, spread: bool = True) -> int:
    """The fixed offset of a device's window starts from the epoch hop grid: a multiple of
    ``GRID_MS`` in ``[0, hop * GRID_MS)``, the same for a device id on every run and every
    worker (CRC-32 of the id, not Python's salted ``hash``). 0 when ``spread`` is off or
    there is no device (the training path)."""
    if not spread or device is None:
        return 0
    return (zlib.crc32(device.encode("utf-8")) % int(hop)) * GRID_MS


def check_phase(phase_ms: int, hop: int) -> None:
    """A window phase is a multiple of ``GRID_MS`` in ``[0, hop * GRID_MS)``."""
    hop_ms = hop * GRID_MS
    if phase_ms % GRID_MS or not 0 <= phase_ms < hop_ms:
        raise ValueError(
            f"window phase must be a multiple of {GRID_MS} ms in [0, {hop_ms}): {phase_ms}"
        )


def first_start_at_or_after(t_ms: int, hop_ms: int, phase_ms: int = 0) -> int:
    """The first window start ``>= t_ms`` on the grid ``phase_ms + k * hop_ms``."""
    return -(-(int(t_ms) - phase_ms) // hop_ms) * hop_ms + phase_ms


def last_start_at_or_before(t_ms: int, hop_ms: int, phase_ms: int = 0) -> int:
    """The last window start ``<= t_ms`` on the grid ``phase_ms + k * hop_ms``."""
    return ((int(t_ms) - phase_ms) // hop_ms) * hop_ms + phase_ms


def candidate_offsets(
    grid_t0: int, n_points: int, *, window: int, hop: int, phase_ms: int = 0
) -> np.ndarray:
    """Indices into a contiguous grid (first point ``grid_t0``) where candidate windows start."""
    hop_ms = hop * GRID_MS
    check_phase(phase_ms, hop)
    first_start = first_start_at_or_after(grid_t0, hop_ms, phase_ms)
    i0 = (first_start - int(grid_t0)) // GRID_MS
    if n_points - window < i0:
        return np.empty(0, dtype=np.int64)
    return np.arange(i0, n_points - window + 1, hop, dtype=np.int64)


def _label_points(t_ms: np.ndarray, labels: Sequence[LabelSpan]) -> tuple[np.ndarray, list[str]]:
    """Class index per grid point (-1: unlabeled). Later spans win where spans overlap."""
    names = sorted({s.label for s in labels})
    index = {n: k for k, n in enumerate(names)}
    out = np.full(t_ms.shape[0], -1, dtype=np.int64)
    for span in labels:
        a = np.searchsorted(t_ms, span.start_ms, side="left")
        b = np.searchsorted(t_ms, span.end_ms, side="left")
        out[a:b] = index[span.label]
    return out, names


def make_windows(
    grid: Grid,
    *,
    window: int = WINDOW,
    hop: int = HOP,
    labels: Sequence[LabelSpan] = (),
    purity: float = 0.8,
    device: str | None = None,
    phase_ms: int = 0,
) -> WindowResult:
    """Cut ``grid`` into grid-anchored windows (starts ``phase_ms`` + k * hop); skip (and
    count) gaps and impure labels."""
    labelled = len(labels) > 0
    skipped = {"gap": 0}
    if labelled:
        skipped.update(impure=0, unlabeled=0)
    n = len(grid)
    if n == 0:
        return WindowResult(empty_windows(window=window, labelled=labelled, device=device), skipped)
    offs = candidate_offsets(int(grid.t_ms[0]), n, window=window, hop=hop, phase_ms=phase_ms)
    if offs.size == 0:
        return WindowResult(empty_windows(window=window, labelled=labelled, device=device), skipped)
    bad = np.concatenate(([0], np.cumsum(~grid.valid, dtype=np.int64)))
    ok = (bad[offs + window] - bad[offs]) == 0
    skipped["gap"] = int(offs.size - np.count_nonzero(ok))
    offs = offs[ok]
    win_labels: np.ndarray | None = None
    if labelled:
        cls, names = _label_points(grid.t_ms, labels)
        onehot = np.zeros((n + 1, len(names)), dtype=np.int64)
        lab = cls >= 0
        onehot[1:][lab, cls[lab]] = 1
        np.cumsum(onehot, axis=0, out=onehot)
        counts = onehot[offs + window] - onehot[offs]  # (m, n_classes)
        best = counts.argmax(axis=1)
        top = counts[np.arange(offs.size), best]
        anylab = counts.sum(axis=1) > 0
        pure = top >= purity * window
        skipped["unlabeled"] = int(np.count_nonzero(~anylab))
        skipped["impure"] = int(np.count_nonzero(anylab & ~pure))
        offs = offs[pure]
        win_labels = np.asarray(names, dtype=object)[best[pure]]
    x = grid.values[offs[:, None] + np.arange(window, dtype=np.int64)[None, :]]
    wins = Windows(
        start_ms=grid.t_ms[offs].astype(np.int64, copy=False),
        x=np.ascontiguousarray(x, dtype=np.float32),
        labels=win_labels,
        device=device,
    )
    return WindowResult(wins, skipped)


def window_recording(
    rec: Recording, signal: SignalSettings | None = None, *, device: str | None = None
) -> WindowResult:
    """Fuse a recording onto the grid and window it with its labels (the training path)."""
    from wearmon.settings import SignalSettings

    s = signal if signal is not None else SignalSettings()
    grid = fuse_to_grid(rec.accel, rec.gyro, max_gap_ms=s.max_gap_ms)
    res = make_windows(
        grid,
        window=s.window,
        hop=s.hop,
        labels=rec.labels,
        purity=s.label_purity,
        device=device,
    )
    if any(res.skipped.values()):
        log.debug("windows skipped for %s: %s", rec.source or "recording", res.skipped)
    return res
