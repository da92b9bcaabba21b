"""`wearmon data ...` commands: look at recordings, generate realistic ones."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Recordings: analyze them, generate realistic ones.", no_args_is_help=True)


@app.command("analyze")
def analyze_cmd(
    ctx: typer.Context,
    files: list[Path] = typer.Argument(
        ..., help="One recording: a flat table, a Garmin pair (or one of it), labels CSV."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Folder for summary.json and PNGs [default: <data_dir>/analysis/<name>]"
    ),
    accel_unit: str | None = typer.Option(None, help="Force the accelerometer unit: mg, g, m/s2."),
    gyro_unit: str | None = typer.Option(None, help="Force the gyroscope unit: rad/s, deg/s."),
    tz: str | None = typer.Option(None, help="Time zone of naive local timestamps (else UTC)."),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON summary instead."),
) -> None:
    """Format, columns, duration, native rate and jitter, gaps, units, labels, channel stats."""
    import json

    from rich.console import Console

    from wearmon.cli.common import settings_of
    from wearmon.signals.analyze import analyze, render

    settings = settings_of(ctx)
    if out is None:
        stem = files[0].name.split(".")[0]
        out = settings.data_dir / "analysis" / stem
    summary = analyze(
        files,
        out,
        accel_unit=accel_unit,
        gyro_unit=gyro_unit,
        tz=tz,
        max_gap_ms=settings.signal.max_gap_ms,
    )
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        Console().print(render(summary))


@app.command("make-recording")
def make_recording_cmd(
    out: Path = typer.Option(..., "--out", help="Folder to write the recording into."),
    subject: int | None = typer.Option(None, help="seglearn subject 1..10 [default: by seed]"),
    seed: int = typer.Option(0, help="Random seed (same seed, same files)."),
    rest_s: float = typer.Option(10.0, "--rest-s", help="Rest between exercises, seconds."),
    max_exercises: int | None = typer.Option(None, help="Keep only this many exercises."),
    duration_s: float | None = typer.Option(
        None, "--duration-s", help="Repeat exercises until the session is this long."
    ),
    rate_hz: float = typer.Option(100.0, help="Native sensor rate."),
    start: str = typer.Option(
        "2025-03-24T07:52:19+00:00", help="Session start (ISO time; naive = UTC)."
    ),
) -> None:
    """Write a Garmin-style Excel pair + labels CSV from real seglearn exercises."""
    from wearmon.signals.recording_gen import make_recording

    paths = make_recording(
        out,
        subject=subject,
        seed=seed,
        rest_s=rest_s,
        max_exercises=max_exercises,
        duration_s=duration_s,
        rate_hz=rate_hz,
        start=start,
    )
    for p in paths:
        typer.echo(str(p))
