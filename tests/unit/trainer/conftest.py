"""Fixtures of the trainer tests: a tmp data dir per test, a tiny model config."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from trainer.model import ModelConfig
from wearmon.settings import Settings

THESIS = Path(__file__).resolve().parents[4] / "shared" / "anchors" / "thesis-model"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Unit settings: their own data dir, and a Redis port nothing listens on (a stack left
    up on the default ports, a demo's, must not be written to by unit tests)."""
    from wearmon.stack import free_port

    return Settings(data_dir=tmp_path / "data", ports={"redis": free_port()})


#: a tiny model configuration (frozen: tests share it)
TINY_CONFIG = ModelConfig(
    conv_filters=(4,),
    kernel_size=3,
    pool_size=4,
    lstm_units=4,
    dense_units=8,
    epochs=1,
    batch_size=16,
    patience=1,
)


@pytest.fixture
def tiny_config() -> ModelConfig:
    return TINY_CONFIG


@pytest.fixture
def thesis_dir() -> Path:
    if not (THESIS / "model.keras").is_file():
        pytest.skip(f"thesis model not found at {THESIS}")
    return THESIS


@pytest.fixture
def cli_error(capsys: pytest.CaptureFixture[str]) -> Callable[[list[str]], list[str]]:
    """Run ``wearmon ARGS`` through the CLI's entry point, expect exit status 1 and return
    the stderr lines."""

    def run(args: list[str]) -> list[str]:
        from wearmon.cli.main import main

        argv = sys.argv
        try:
            sys.argv = ["wearmon", *args]
            with pytest.raises(SystemExit) as exc:
                main()
        finally:
            sys.argv = argv
        assert exc.value.code == 1
        return capsys.readouterr().err.strip().splitlines()

    return run
