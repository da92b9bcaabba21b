"""`wearmon demo`: the CLI of :mod:`wearmon.demo` (the whole story, unattended)."""

from __future__ import annotations

import typer
from rich.console import Console

from wearmon.cli.common import interruptible, settings_of

console = Console(soft_wrap=True)  # a stage line is one line, also in a log


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo_cmd(
        ctx: typer.Context,
        devices: int = typer.Option(12, "--devices", min=3, help="Virtual watches."),
        speed: float = typer.Option(10.0, "--speed", min=1.0, help="Replay speed (x real time)."),
        drift: str = typer.Option(
            "axis_swap", "--drift", help="Drift injected: axis_swap | gain | offset | mirror."
        ),
        onset: float = typer.Option(180.0, "--onset", help="Device-seconds before the drift."),
        after: float = typer.Option(
            240.0, "--after", help="Device-seconds replayed after the retraining ended."
        ),
        duration: float = typer.Option(
            7200.0, "--duration", help="At most this many device-seconds in all."
        ),
        epochs: int = typer.Option(8, "--epochs", help="Epochs if a champion must be trained."),
        accurate: bool = typer.Option(
            False, "--accurate", help="Train the first champion with the accurate recipe."
        ),
        quick: bool = typer.Option(
            False, "--quick", help="A short form: a quick retraining (a few epochs)."
        ),
        keep_stack: bool = typer.Option(False, "--keep-stack", help="Leave the stack running."),
    ) -> None:
        """Replay, live predictions, drift caught, retrained, promoted: the whole pipeline
        locally on built-in data (its own data directory, <data_dir>/demo), then stop
        everything. Writes summary.json and pictures to <data_dir>/demo/report."""
        from wearmon.demo import DemoConfig, log_to_file, run_demo, summary_lines

        cfg = DemoConfig(
            devices=devices,
            speed=speed,
            drift=drift,
            onset_s=onset,
            after_s=after,
            max_device_s=duration,
            epochs=epochs,
            accurate=accurate,
            quick=quick,
            keep_stack=keep_stack,
        )
        settings = settings_of(ctx)
        logfile = log_to_file(settings)
        console.print(f"stage lines here; the full log in {logfile}")
        summary, stopped = interruptible(
            lambda: run_demo(settings, cfg, lambda line: console.print(line))
        )
        if stopped or summary is None:
            console.print("interrupted: the replay, worker, retraining and stack are stopped")
            raise typer.Exit(130)
        console.rule("summary")
        for line in summary_lines(summary):
            console.print(line)
        console.print("stack left running" if keep_stack else "stack stopped")
