"""Replay options as plain frozen dataclasses (no IO), shared by the CLI and the Python API."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from wearmon.errors import ConfigError
from wearmon.signals.types import Recording

SENSORS: tuple[str, str] = ("accel", "gyro")

#: ``--drift-axes mirror``: the watch on the other wrist, modelled as a reflection across the
#: plane normal to the sensor's x axis. Acceleration is a polar vector (x flips), angular
#: velocity an axial vector (y and z flip).
MIRROR_AXES: dict[str, str] = {"accel": "-x,y,z", "gyro": "x,-y,-z"}


def parse_speed(text: str | float) -> float:
    """``"1"``, ``"10"``, ``"0.5"`` or ``"max"`` (returned as ``math.inf``)."""
    if isinstance(text, float | int):
        value = float(text)
    elif text.strip().lower() in ("max", "inf"):
        return math.inf
    else:
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"--speed must be a number or 'max', not {text!r}") from None
    if not value > 0:
        raise ConfigError(f"--speed must be positive, not {text!r}")
    return value


def parse_axes(spec: str) -> tuple[tuple[int, float], ...]:
    """``"-x,y,z"`` / ``"y,x,-z"`` -> ((source axis, sign), ...) for the three output axes."""
    parts = [p.strip().lower() for p in spec.split(",")]
    out: list[tuple[int, float]] = []
    for p in parts:
        sign = -1.0 if p.startswith("-") else 1.0
        name = p.lstrip("+-")
        if name not in ("x", "y", "z"):
            out = []
            break
        out.append(("xyz".index(name), sign))
    if len(out) != 3 or len({a for a, _ in out}) != 3:
        raise ConfigError(
            f"axis spec {spec!r} must name x, y, z once each, e.g. '-x,y,z' or 'y,x,z'"
        )
    return tuple(out)


@dataclass(frozen=True)
class FaultConfig:
    """Transport faults. Each draws from its own random stream derived from ``seed`` and
    the device index, so turning one on does not change what another one does."""

    seed: int = 0
    #: every sample timestamp moved by a uniform integer in [-jitter_ms, +jitter_ms]
    #: (then made strictly increasing again per sensor); values unchanged.
    jitter_ms: int = 0
    #: probability that a sample batch is not sent (its seq number is skipped)
    drop: float = 0.0
    #: probability that a sample batch is sent twice in a row (same seq)
    duplicate: float = 0.0
    #: batches of a sensor leave in an order where each is at most this many places from
    #: its own (send times stay those of the slots)
    reorder: int = 0
    #: mean seconds between gaps (exponential spacing, per device); 0 = no gaps
    gap_every_s: float = 0.0
    #: length of each gap: every batch of both sensors due inside it is not sent
    gap_s: float = 0.0
    #: added to every gyroscope timestamp (clock skew between the two sensors)
    skew_ms: int = 0

    def __post_init__(self) -> None:
        for name in ("drop", "duplicate"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"--{name} must be a probability in [0, 1], not {v}")
        if self.jitter_ms < 0 or self.reorder < 0 or self.gap_every_s < 0 or self.gap_s < 0:
            raise ConfigError("fault sizes (jitter, reorder, gaps) must not be negative")
        if (self.gap_every_s > 0) != (self.gap_s > 0):
            raise ConfigError("--gap-every and --gap-len go together")

    @property
    def any(self) -> bool:
        return bool(
            self.jitter_ms
            or self.drop
            or self.duplicate
            or self.reorder
            or self.gap_every_s
            or self.skew_ms
        )


@dataclass(frozen=True)
class DriftConfig:
    """Changes of the signal itself from ``at_s`` seconds into each device's replay on."""

    at_s: float = 0.0
    #: which sensors gain/offset/noise/axes apply to
    sensors: tuple[str, ...] = SENSORS
    gain: float = 1.0
    #: added to every axis, in the sensor's canonical unit (m/s2, deg/s)
    offset: float = 0.0
    #: standard deviation of added Gaussian noise, canonical units
    noise: float = 0.0
    #: axis permutation/sign spec ("-x,y,z") or "mirror" (see MIRROR_AXES)
    axes: str | None = None
    #: resample both sensors to this rate (linear interpolation) from ``at_s`` on
    rate_hz: float | None = None
    #: replace both sensors' values (and the labels) by these recordings, played cyclically
    donor: tuple[Recording, ...] = ()
    donor_name: str = ""
    #: only the first ``devices`` devices drift (None: all)
    devices: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.at_s < 0:
            raise ConfigError("--drift-at must not be negative")
        bad = [s for s in self.sensors if s not in SENSORS]
        if bad:
            raise ConfigError(f"--drift-sensor must be accel, gyro or both, not {bad[0]!r}")
        if self.noise < 0:
            raise ConfigError("--drift-noise must not be negative")
        if self.rate_hz is not None and not self.rate_hz > 0:
            raise ConfigError("--drift-rate must be positive")
        if self.axes is not None and self.axes != "mirror":
            parse_axes(self.axes)

    @property
    def any(self) -> bool:
        return bool(
            self.gain != 1.0 or self.offset or self.noise or self.axes or self.rate_hz or self.donor
        )

    def axes_for(self, sensor: str) -> tuple[tuple[int, float], ...] | None:
        if self.axes is None:
            return None
        if self.axes == "mirror":
            return parse_axes(MIRROR_AXES[sensor])
        return parse_axes(self.axes) if sensor in self.sensors else None

    def applies_to(self, device_index: int) -> bool:
        return self.any and (self.devices is None or device_index < self.devices)


#: samples per message for recordings without batches of their own (about a Garmin row)
DEFAULT_BATCH_SIZE = 25


@dataclass(frozen=True)
class ReplayConfig:
    """What to replay and how. ``speed`` is a factor of real time; ``math.inf`` = max."""

    speed: float = 1.0
    devices: int = 1
    loop: bool = False
    #: stop after this many seconds of replay time (timeline, = wall seconds at speed 1)
    duration_s: float | None = None
    #: samples per message (1 = per-sample messages); None: the recording's own batches
    #: (a Garmin row) where it has them, else DEFAULT_BATCH_SIZE
    batch_size: int | None = None
    #: start offset between consecutive virtual devices, seconds of replay time
    stagger_s: float = 1.0
    #: seed of the device ids
    device_seed: int = 0
    #: "live": timestamps shifted so the replay starts now (grid phase kept);
    #: "original": the recording's own times (later loop passes shifted by whole cycles)
    timestamps: Literal["live", "original"] = "live"
    send_labels: bool = True
    faults: FaultConfig = field(default_factory=FaultConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)

    def __post_init__(self) -> None:
        if not self.speed > 0:
            raise ConfigError("--speed must be positive")
        if self.devices < 1:
            raise ConfigError("--devices must be at least 1")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError("--batch-size must be at least 1")
        if self.duration_s is not None and not self.duration_s > 0:
            raise ConfigError("--duration must be positive")
        if self.stagger_s < 0:
            raise ConfigError("--stagger must not be negative")
        if self.timestamps not in ("live", "original"):
            raise ConfigError("--timestamps must be live or original")


def check_recordings(recordings: Sequence[Recording]) -> None:
    if not recordings:
        raise ConfigError("nothing to replay: no recordings")
