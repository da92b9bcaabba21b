"""Named training recipes (``--preset``): what they set, and explicit settings win."""

from __future__ import annotations

import pytest

from trainer.model import ModelConfig
from trainer.train import PRESETS, train_options
from wearmon.errors import ConfigError


def test_accurate_preset_sets_the_measured_recipe() -> None:
    opts = train_options("accurate", data="seglearn")
    c = opts.config
    assert (c.epochs, c.schedule, c.conv_filters, c.lstm_units) == (40, "cosine", (64, 128), 64)
    assert c.mirror and c.mirror_tta and c.label_smoothing == 0.1 and c.time_warp == 0.2
    assert c.rotate_deg == 30.0 and opts.val_fraction == 0.0 and opts.data == "seglearn"
    # the default preset is the plain defaults
    d = train_options()
    assert d.config == ModelConfig() and d.val_fraction == 0.1 and d.train_hop == 50
    assert set(PRESETS) >= {"default", "accurate"}


def test_explicit_settings_override_the_preset() -> None:
    opts = train_options("accurate", {"epochs": 1, "seed": None, "val_fraction": 0.25})
    assert opts.config.epochs == 1 and opts.val_fraction == 0.25
    assert opts.config.seed == ModelConfig().seed  # None = not set
    assert opts.config.lstm_units == 64  # the rest stays the preset's


def test_unknown_preset_or_setting_is_a_config_error(cli_error) -> None:
    with pytest.raises(ConfigError, match="unknown preset 'fast'"):
        train_options("fast")
    with pytest.raises(ConfigError, match="not a training setting: epoch"):
        train_options(None, {"epoch": 3})
    err = cli_error(["train", "--preset", "fast", "--no-register"])
    assert err[-1] == "error: unknown preset 'fast': choose one of default, accurate"
