"""`wearmon replay`: recordings into Kafka as a live feed (see docs/replay.md)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from wearmon.cli import common

if TYPE_CHECKING:
    from producers.engine import ReplayStats

HELP_TEXT = """
Replay recordings into Kafka (settings.kafka.samples_topic, key = device id) as if the
watches were live; labels go to settings.kafka.labels_topic. See docs/replay.md.

RECORDING: Garmin exports (<stamp>-accelerometer_data.xlsx / -gyroscope_data.xlsx; one of
the pair is enough; a <stamp>-labels.csv beside them is read as labels), flat tables, or
folders. No RECORDING (or --seglearn): the seglearn watch recordings.

Faults (seeded by --fault-seed): --jitter moves each sample timestamp by up to +-MS; --drop
/ --duplicate skip / repeat a batch with probability P (seq numbers show it); --reorder
sends batches up to K places out of order; --gap-every/--gap-len drop everything of a device
for LEN seconds about every EVERY seconds; --skew adds MS to gyro timestamps.

Drift (from --drift-at seconds into each device's replay): --drift-gain, --drift-offset
(canonical units), --drift-noise (std), --drift-axes ('-x,y,z', 'y,x,z' or 'mirror' = other
wrist), --drift-rate (resample to HZ), --drift-subject (values and labels replaced by
another seglearn subject's). --drift-sensor limits gain/offset/noise/axes to one sensor;
--drift-devices to the first K devices.
"""
#: paragraphs as single lines, so the terminal wraps them
HELP = "\n\n".join(" ".join(p.split()) for p in HELP_TEXT.strip().split("\n\n"))


def _split(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for v in values or []:
        out.extend(p.strip() for p in v.split(",") if p.strip())
    return out


def register(app: typer.Typer) -> None:
    """Add this module's top-level command(s) to the root app."""

    @app.command("replay", help=HELP)
    def replay_cmd(
        ctx: typer.Context,
        recordings: list[Path] = typer.Argument(None, metavar="RECORDING...", show_default=False),
        speed: str = typer.Option("1", "--speed", help="Factor of real time (1, 10, ...) or max."),
        devices: int = typer.Option(1, "--devices", min=1, help="Virtual devices."),
        loop: bool = typer.Option(
            False, "--loop", help="Start over at the end (until --duration)."
        ),
        duration: float = typer.Option(
            None, "--duration", help="Stop after S seconds of replay time."
        ),
        per_sample: bool = typer.Option(False, "--per-sample", help="One sample per message."),
        batch_size: int = typer.Option(
            None,
            "--batch-size",
            min=1,
            help="Samples per message (default: the recording's own batches, e.g. Garmin "
            "rows, else 25).",
        ),
        stagger: float = typer.Option(1.0, "--stagger", help="Seconds between device starts."),
        seed: int = typer.Option(0, "--seed", help="Seed of the pseudonymous device ids."),
        timestamps: str = typer.Option(
            "live", "--timestamps", help="live: shifted to start now; original: as recorded."
        ),
        seglearn: bool = typer.Option(False, "--seglearn", help="The seglearn recordings."),
        subjects: list[str] = typer.Option(None, "--subjects", help="seglearn subjects: 1,2"),
        labels: bool = typer.Option(True, "--labels/--no-labels", help="Send ground truth."),
        fault_seed: int = typer.Option(0, "--fault-seed", help="Seed of faults and noise."),
        jitter: int = typer.Option(0, "--jitter", help="Timestamp jitter bound, ms."),
        drop: float = typer.Option(0.0, "--drop", help="Probability a batch is dropped."),
        duplicate: float = typer.Option(0.0, "--duplicate", help="Probability of a repeat."),
        reorder: int = typer.Option(0, "--reorder", help="Max places a batch moves."),
        gap_every: float = typer.Option(0.0, "--gap-every", help="Mean seconds between gaps."),
        gap_len: float = typer.Option(0.0, "--gap-len", help="Seconds per gap."),
        skew: int = typer.Option(0, "--skew", help="ms added to gyro timestamps."),
        drift_at: float = typer.Option(0.0, "--drift-at", help="Drift from S seconds on."),
        drift_sensor: str = typer.Option("both", "--drift-sensor", help="accel, gyro, both."),
        drift_gain: float = typer.Option(1.0, "--drift-gain", help="Multiply values."),
        drift_offset: float = typer.Option(0.0, "--drift-offset", help="Add to each axis."),
        drift_noise: float = typer.Option(0.0, "--drift-noise", help="Gaussian noise std."),
        drift_axes: str = typer.Option(None, "--drift-axes", help="'-x,y,z' or mirror."),
        drift_rate: float = typer.Option(None, "--drift-rate", help="New sampling rate, Hz."),
        drift_subject: str = typer.Option(None, "--drift-subject", help="seglearn donor."),
        drift_devices: int = typer.Option(None, "--drift-devices", help="Only the first K."),
        metrics: bool = typer.Option(True, "--metrics/--no-metrics", help="Prometheus endpoint."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar."),
    ) -> None:
        from producers.config import DriftConfig, FaultConfig, ReplayConfig, parse_speed
        from producers.errors import DeliveryFailedError
        from producers.inputs import load_files, load_seglearn
        from producers.metrics import ReplayMetrics
        from wearmon.errors import ConfigError

        settings = common.settings_of(ctx)
        if timestamps not in ("live", "original"):
            raise ConfigError(f"--timestamps must be live or original, not {timestamps!r}")
        sensors = ("accel", "gyro") if drift_sensor == "both" else (drift_sensor,)
        donor = tuple(load_seglearn([drift_subject])) if drift_subject else ()
        cfg = ReplayConfig(
            speed=parse_speed(speed),
            devices=devices,
            loop=loop,
            duration_s=duration,
            batch_size=1 if per_sample else batch_size,
            stagger_s=stagger,
            device_seed=seed,
            timestamps=timestamps,  # type: ignore[arg-type]
            send_labels=labels,
            faults=FaultConfig(
                seed=fault_seed,
                jitter_ms=jitter,
                drop=drop,
                duplicate=duplicate,
                reorder=reorder,
                gap_every_s=gap_every,
                gap_s=gap_len,
                skew_ms=skew,
            ),
            drift=DriftConfig(
                at_s=drift_at,
                sensors=sensors,
                gain=drift_gain,
                offset=drift_offset,
                noise=drift_noise,
                axes=drift_axes,
                rate_hz=drift_rate,
                donor=donor,
                donor_name=drift_subject or "",
                devices=drift_devices,
                seed=fault_seed,
            ),
        )
        if cfg.loop and cfg.duration_s is None and not math.isfinite(cfg.speed):
            raise ConfigError("--loop at --speed max needs --duration")
        recs = load_files(recordings) if recordings and not seglearn else []
        if seglearn or not recordings:
            recs += load_seglearn(_split(subjects))
        m = ReplayMetrics() if metrics else None
        if m is not None:
            m.serve(settings.metrics.replay_port, settings.metrics.host)
        try:
            stats = _run_with_progress(settings, recs, cfg, m, progress)
        finally:
            if m is not None:
                m.close()
        _print_summary(stats)
        if not stats.ok:
            raise DeliveryFailedError(
                f"{stats.failed + stats.undelivered} of {stats.messages + stats.label_messages} "
                f"messages not delivered ({stats.first_error or 'flush timed out'})"
            )
        if stats.interrupted:
            raise typer.Exit(130)


def _run_with_progress(
    settings: Any, recs: list[Any], cfg: Any, metrics: Any, show: bool
) -> ReplayStats:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from producers.engine import replay

    console = Console(stderr=True)
    if not show or not console.is_terminal:
        return replay(settings, recs, cfg, metrics=metrics, handle_signals=True)
    columns = (
        TextColumn("[bold]replay[/]"),
        BarColumn(),
        TextColumn("{task.fields[samples]:>10,} samples  {task.fields[rate]:>9,.0f}/s"),
        TextColumn("{task.fields[lag]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, refresh_per_second=4) as bar:
        task = bar.add_task("replay", total=None, samples=0, rate=0.0, lag="")

        def hook(stats: ReplayStats, lag_s: float) -> None:
            lag = (
                f"lag {lag_s * 1000:6.1f} ms"
                if math.isfinite(cfg.speed)
                else f"x{stats.realtime_factor:,.0f} real time"
            )
            bar.update(
                task,
                total=stats.timeline_end_ms,
                completed=stats.timeline_ms,
                samples=stats.samples,
                rate=stats.samples_per_s,
                lag=lag,
            )

        return replay(settings, recs, cfg, metrics=metrics, progress=hook, handle_signals=True)


def _print_summary(stats: ReplayStats) -> None:
    from rich.console import Console
    from rich.table import Table

    s = stats.summary()
    table = Table(title="replay summary", show_header=False)
    for key in (
        "devices",
        "recordings",
        "samples",
        "messages",
        "label_messages",
        "bytes",
        "delivered",
        "failed",
        "undelivered",
        "elapsed_s",
        "samples_per_s",
        "messages_per_s",
        "realtime_factor",
        "lag_p50_ms",
        "lag_p99_ms",
        "lag_max_ms",
    ):
        val = s[key]
        table.add_row(key, f"{val:,}" if isinstance(val, int | float) else str(val))
    injected = {k: v for k, v in stats.injected.items() if v}
    if injected:
        table.add_row("injected", ", ".join(f"{k}={v:,}" for k, v in injected.items()))
    if stats.interrupted:
        table.add_row("interrupted", "yes")
    Console().print(table)
