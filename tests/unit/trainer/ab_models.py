"""Tiny two-class models with known behaviour, registered as versions, for promotion tests.

Classes ``a`` and ``b``; inputs are fed unscaled (identity scaler). ``const_a`` always says
``a``, ``const_b`` always ``b``; ``smart`` says ``b`` when the window's mean Ax is above 0.5.
Base windows (Ax = 0) are ``a``; new windows (Ax = 1) are ``b``: on the base data const_a
and smart are right and const_b wrong; on the new data smart and const_b are right.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from trainer.promotion import Holdout
from wearmon.settings import Settings

KINDS = ("const_a", "const_b", "smart")


def keras_file(folder: Path, kind: str) -> Path:
    import keras

    inp = keras.Input(shape=(200, 6))
    h = keras.layers.GlobalAveragePooling1D()(inp)
    dense = keras.layers.Dense(2, activation="softmax", kernel_initializer="zeros")
    model = keras.Model(inp, dense(h))
    kernel = np.zeros((6, 2), dtype=np.float32)
    bias = np.zeros(2, dtype=np.float32)
    if kind == "const_a":
        bias[0] = 5.0
    elif kind == "const_b":
        bias[1] = 5.0
    else:
        kernel[0, 1], bias[1] = 10.0, -5.0
    dense.set_weights([kernel, bias])
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / f"{kind}.keras"
    model.save(str(p))
    return p


def register(
    settings: Settings, folder: Path, kind: str, classes: tuple[str, str] = ("a", "b")
) -> str:
    from trainer import registry

    labels = folder / "labels.json"
    folder.mkdir(parents=True, exist_ok=True)
    labels.write_text(json.dumps(list(classes)))
    return registry.import_model(settings, keras_file(folder, kind), labels=labels)


def windows(n: int, ax: float) -> np.ndarray:
    x = np.zeros((n, 200, 6), dtype=np.float32)
    x[:, :, 0] = ax
    return x


def base_holdout(n: int = 30) -> Holdout:
    return Holdout(windows(n, 0.0), ("a",) * n, "test:base", f"base{n}")


def new_holdout(n: int = 30, label: str = "b") -> Holdout:
    return Holdout(windows(n, 1.0), (label,) * n, "test:new", f"new{n}")
