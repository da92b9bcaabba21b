"""Inspect and validate Keras models against the canonical window (200 x 6)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wearmon.errors import IncompatibleModelError
from wearmon.signals.types import CHANNELS, WINDOW


def load_keras(path: Path | str) -> Any:
    """Load a Keras model file (``.keras`` or legacy ``.h5``) without compiling it."""
    import keras

    path = Path(path)
    if not path.is_file():
        raise IncompatibleModelError(f"{path}: no such model file")
    try:
        return keras.saving.load_model(str(path), compile=False)
    except Exception as exc:  # keras raises many kinds; wrap at the boundary
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise IncompatibleModelError(f"{path}: cannot load Keras model: {first}") from None


def io_shapes(model: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    inp = model.input_shape
    out = model.output_shape
    if isinstance(inp, list):
        if len(inp) != 1:
            raise IncompatibleModelError(f"model has {len(inp)} inputs, expected one window input")
        inp = inp[0]
    if isinstance(out, list):
        if len(out) != 1:
            raise IncompatibleModelError(f"model has {len(out)} outputs, expected one")
        out = out[0]
    return tuple(inp), tuple(out)


def validate_model(
    model: Any,
    classes: Sequence[str] | None = None,
    *,
    window: int = WINDOW,
    name: str = "model",
) -> int:
    """Check the model takes (None, window, 6) and outputs (None, n_classes); returns
    n_classes. Raises IncompatibleModelError with a one-line message otherwise."""
    inp, out = io_shapes(model)
    want = (None, window, len(CHANNELS))
    if len(inp) != 3 or tuple(inp[1:]) != want[1:]:
        raise IncompatibleModelError(
            f"{name} input shape {inp} does not fit the canonical window {want} "
            f"({window} samples x {len(CHANNELS)} channels {','.join(CHANNELS)})"
        )
    if len(out) != 2 or out[1] is None:
        raise IncompatibleModelError(f"{name} output shape {out} is not (None, n_classes)")
    n = int(out[1])
    if classes is not None and len(classes) != n:
        raise IncompatibleModelError(
            f"{name} outputs {n} classes but {len(classes)} class names were given"
        )
    return n


def read_labels(path: Path | str) -> list[str]:
    """Class names from a label mapping JSON: ``{"0": "a", ...}``, ``{"a": 0, ...}`` or a list."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise IncompatibleModelError(f"{path}: cannot read label mapping: {exc}") from None
    if isinstance(data, list) and all(isinstance(v, str) for v in data):
        return list(data)
    if isinstance(data, dict) and data:
        try:
            if all(str(k).lstrip("-").isdigit() for k in data):
                pairs = sorted((int(k), str(v)) for k, v in data.items())
            else:
                pairs = sorted((int(v), str(k)) for k, v in data.items())
        except (TypeError, ValueError):
            pairs = []
        if pairs and [i for i, _ in pairs] == list(range(len(pairs))):
            return [c for _, c in pairs]
    raise IncompatibleModelError(
        f"{path}: label mapping must be a list of names or a mapping index <-> name over 0..n-1"
    )


def describe(model: Any, classes: Sequence[str] | None = None) -> dict[str, Any]:
    """Layers, parameter counts, input/output shapes and class names (when known)."""
    inp, out = io_shapes(model)
    trainable = int(sum(int(w.numpy().size) for w in model.trainable_weights))
    total = int(model.count_params())
    layers = []
    for layer in model.layers:
        try:
            shape = layer.output.shape
        except (AttributeError, ValueError):
            shape = None
        layers.append(
            {
                "name": layer.name,
                "type": type(layer).__name__,
                "output_shape": None if shape is None else tuple(shape),
                "params": int(layer.count_params()) if layer.built else 0,
                "trainable": bool(layer.trainable),
            }
        )
    return {
        "name": model.name,
        "input_shape": inp,
        "output_shape": out,
        "n_classes": out[-1] if len(out) == 2 else None,
        "classes": list(classes) if classes is not None else None,
        "params": total,
        "trainable_params": trainable,
        "non_trainable_params": total - trainable,
        "layers": layers,
    }
