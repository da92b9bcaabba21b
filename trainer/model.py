"""The 1D-CNN-BiLSTM activity classifier: architecture, augmentation and the fit loop.

Inputs are windows (n, 200, 6) in canonical units (m/s^2, deg/s). Normalisation is *not* a
layer of the model: the shared :class:`~wearmon.signals.normalize.Scaler` is fitted on the
training windows, saved with the model version, and applied by
:func:`~wearmon.signals.normalize.standardize` in training and in serving alike.

TensorFlow/Keras are imported inside the functions (nothing heavy at import time).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wearmon.signals.normalize import Scaler, standardize
from wearmon.signals.types import CHANNELS, WINDOW

log = logging.getLogger(__name__)

SCHEDULES = ("plateau", "cosine")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and training hyper-parameters (logged to MLflow as params)."""

    conv_filters: tuple[int, ...] = (32, 64)
    kernel_size: int = 5
    pool_size: int = 2
    lstm_units: int = 32
    lstm_layers: int = 1
    dense_units: int = 64
    dropout: float = 0.3
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    batch_size: int = 64
    epochs: int = 8
    patience: int = 8
    # augmentation of training windows, in canonical units, before standardisation
    augment: bool = True
    rotate_deg: float = 20.0
    scale_range: float = 0.1
    # speed: each training window is resampled about its centre by a factor in
    # [1 - time_warp, 1 + time_warp] (the same exercise done faster or slower); 0 = off
    time_warp: float = 0.0
    seed: int = 42
    # left/right wrist: with probability 0.5 a training window is mirrored (MIRROR_SIGNS);
    # mirror_tta serves the mean of p(x) and p(mirror(x)) (inside the one Keras model)
    mirror: bool = False
    mirror_tta: bool = False
    # "plateau": ReduceLROnPlateau; "cosine": cosine decay over all epochs (no plateau logic)
    schedule: str = "plateau"
    label_smoothing: float = 0.0
    # members trained with seeds seed, seed+1, ...; served as one Keras model that
    # averages their probabilities (one compiled call, same serving API)
    ensemble: int = 1

    def __post_init__(self) -> None:
        from wearmon.errors import ConfigError

        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}: {self.schedule!r}")
        if self.ensemble < 1:
            raise ConfigError(f"ensemble needs at least 1 member, got {self.ensemble}")
        if not 0.0 <= self.time_warp < 1.0:
            raise ConfigError(f"time warp must be in [0, 1), got {self.time_warp}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label smoothing must be in [0, 1), got {self.label_smoothing}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = {f for f in cls.__dataclass_fields__}
        kw = {k: v for k, v in d.items() if k in known}
        if "conv_filters" in kw:
            kw["conv_filters"] = tuple(int(v) for v in kw["conv_filters"])
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["conv_filters"] = list(self.conv_filters)
        return d


def set_seeds(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow (Keras' one call)."""
    import keras

    keras.utils.set_random_seed(seed)


def build_model(config: ModelConfig, n_classes: int, *, window: int = WINDOW) -> Any:
    """A Keras 1D-CNN-BiLSTM: Conv blocks (Conv1D+BN+ReLU, pooling) -> BiLSTM x N -> Dense.

    Convolution layers are named ``conv_*`` so fine-tuning can freeze them.
    """
    import keras
    from keras import layers

    inp = keras.Input(shape=(window, len(CHANNELS)), name="window")
    h = inp
    for i, filters in enumerate(config.conv_filters):
        h = layers.Conv1D(
            filters, config.kernel_size, padding="same", use_bias=False, name=f"conv_{i}"
        )(h)
        h = layers.BatchNormalization(name=f"conv_{i}_bn")(h)
        h = layers.Activation("relu", name=f"conv_{i}_relu")(h)
        if config.pool_size > 1:
            h = layers.MaxPooling1D(config.pool_size, name=f"conv_{i}_pool")(h)
        h = layers.SpatialDropout1D(config.dropout / 2, name=f"conv_{i}_drop")(h)
    for j in range(config.lstm_layers):
        h = layers.Bidirectional(
            layers.LSTM(config.lstm_units, return_sequences=True), name=f"bilstm_{j}"
        )(h)
        h = layers.Dropout(config.dropout, name=f"bilstm_{j}_drop")(h)
    h = layers.Concatenate(name="pool")(
        [layers.GlobalAveragePooling1D()(h), layers.GlobalMaxPooling1D()(h)]
    )
    h = layers.Dense(config.dense_units, activation="relu", name="dense")(h)
    h = layers.Dropout(config.dropout, name="dense_drop")(h)
    out = layers.Dense(n_classes, activation="softmax", name="probs")(h)
    return keras.Model(inp, out, name="wearmon_cnn_bilstm")


def compile_model(model: Any, config: ModelConfig, *, steps_per_epoch: int | None = None) -> None:
    """AdamW; with ``schedule="cosine"`` the learning rate decays over ``epochs`` epochs of
    ``steps_per_epoch`` steps. With label smoothing the labels are fed one-hot."""
    import keras

    lr: Any = config.learning_rate
    if config.schedule == "cosine":
        if not steps_per_epoch:
            raise ValueError("a cosine schedule needs steps_per_epoch")
        lr = keras.optimizers.schedules.CosineDecay(
            config.learning_rate, decay_steps=config.epochs * steps_per_epoch, alpha=0.01
        )
    if config.label_smoothing > 0:
        loss: Any = keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
        metrics: list[Any] = [keras.metrics.CategoricalAccuracy(name="accuracy")]
    else:
        loss = "sparse_categorical_crossentropy"
        metrics = ["accuracy"]
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=lr, weight_decay=config.weight_decay),
        loss=loss,
        metrics=metrics,
    )


def steps_per_epoch(n_windows: int, config: ModelConfig) -> int:
    return max(1, math.ceil(n_windows / config.batch_size))


def average_models(members: list[Any], *, window: int = WINDOW) -> Any:
    """One Keras model whose output is the mean of the members' probabilities."""
    import keras
    from keras import layers

    if len(members) == 1:
        return members[0]
    inp = keras.Input(shape=(window, len(CHANNELS)), name="window")
    outs = []
    for j, m in enumerate(members):
        m.name = f"member_{j}"  # unique names inside the ensemble
        outs.append(m(inp))
    out = layers.Average(name="probs_mean")(outs)
    return keras.Model(inp, out, name=f"wearmon_ensemble_{len(members)}")


def freeze_conv(model: Any) -> int:
    """Freeze every convolution layer (and its batch norm); returns how many were frozen."""
    n = 0
    for layer in model.layers:
        if "conv" in layer.name.lower() or "batch_normalization" in layer.name.lower():
            layer.trainable = False
            n += 1
    return n


def class_weights(y: np.ndarray, n_classes: int) -> dict[int, float]:
    """Balanced class weights n / (k * count_c); classes absent from y get weight 1."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    present = counts > 0
    w = np.ones(n_classes)
    w[present] = counts.sum() / (present.sum() * counts[present])
    return {i: float(w[i]) for i in range(n_classes)}


# The same exercise on the other arm (watch on the other wrist) is a reflection of the
# motion: on the seglearn watch data, side 0 vs side 1 flips the sign of Ax (accelerometer,
# a vector) and of Gy, Gz (gyroscope, a pseudo-vector: a reflection flips the other two axes).
MIRROR_SIGNS: tuple[float, ...] = (-1.0, 1.0, 1.0, 1.0, -1.0, -1.0)


def mirror(x: np.ndarray) -> np.ndarray:
    """Windows (n, t, 6) as seen on the other wrist (see ``MIRROR_SIGNS``)."""
    return (x * np.asarray(MIRROR_SIGNS, dtype=np.float32)).astype(np.float32, copy=False)


def with_mirror_tta(model: Any, scaler: Scaler, *, window: int = WINDOW) -> Any:
    """One Keras model averaging ``model`` on the standardised window and on its mirror.

    The model takes standardised inputs; mirroring raw x then standardising equals
    ``xs * s + 2 * (m * s - m) / scale`` per channel, with s the sign and m, scale the
    scaler's mean and scale: a constant affine map, built into the graph here."""
    import keras
    from keras import layers

    sign = np.asarray(MIRROR_SIGNS, dtype=np.float32)
    mean = np.asarray(scaler.mean, dtype=np.float32)
    scale = np.asarray(scaler.scale, dtype=np.float32)
    offset = ((sign - 1.0) * mean / scale).astype(np.float32)
    inp = keras.Input(shape=(window, len(CHANNELS)), name="window")
    # a frozen per-channel affine map as a built-in Dense layer (no custom objects to load)
    affine = layers.Dense(len(CHANNELS), trainable=False, name="mirror")
    mirrored = affine(inp)
    affine.set_weights([np.diag(sign), offset])
    out = layers.Average(name="probs_tta")([model(inp), model(mirrored)])
    return keras.Model(inp, out, name=f"{model.name}_mirror_tta")


def random_rotations(n: int, max_deg: float, rng: np.random.Generator) -> np.ndarray:
    """n rotation matrices about random axes by angles uniform in [-max_deg, max_deg]."""
    axis = rng.normal(size=(n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True) + 1e-12
    theta = np.deg2rad(rng.uniform(-max_deg, max_deg, size=n))
    k = np.zeros((n, 3, 3))
    k[:, 0, 1], k[:, 0, 2] = -axis[:, 2], axis[:, 1]
    k[:, 1, 0], k[:, 1, 2] = axis[:, 2], -axis[:, 0]
    k[:, 2, 0], k[:, 2, 1] = -axis[:, 1], axis[:, 0]
    s, c = np.sin(theta)[:, None, None], np.cos(theta)[:, None, None]
    return np.eye(3)[None] + s * k + (1 - c) * (k @ k)


def time_warp(x: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Windows (n, t, c) resampled about their centre: output sample i is the input at
    ``centre + (i - centre) * factor`` (linear interpolation; beyond the edges the edge
    value). A factor above 1 shows the motion faster, below 1 slower. Gyro values are
    rates and keep their scale: the warp changes when things happen, not the units."""
    n, t, _ = x.shape
    centre = (t - 1) / 2.0
    pos = centre + (np.arange(t)[None, :] - centre) * np.asarray(factors)[:, None]
    pos = np.clip(pos, 0.0, t - 1.0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, t - 1)
    w = (pos - lo)[..., None].astype(x.dtype)
    rows = np.arange(n)[:, None]
    return (x[rows, lo] * (1 - w) + x[rows, hi] * w).astype(x.dtype, copy=False)


def augment(x: np.ndarray, config: ModelConfig, rng: np.random.Generator) -> np.ndarray:
    """Rotate accel and gyro by the same small random rotation (a watch worn differently),
    scale each sensor by a random factor and (``time_warp``) change the speed, in
    canonical units."""
    n = x.shape[0]
    if config.time_warp > 0:
        factors = rng.uniform(1 - config.time_warp, 1 + config.time_warp, size=n)
        x = time_warp(x, np.asarray(factors))
    out = np.empty_like(x, dtype=np.float32)
    r = random_rotations(n, config.rotate_deg, rng).astype(np.float32)
    scale = rng.uniform(1 - config.scale_range, 1 + config.scale_range, size=(n, 1, 2))
    out[:, :, 0:3] = np.einsum("ntc,ndc->ntd", x[:, :, 0:3], r) * scale[:, :, 0:1]
    out[:, :, 3:6] = np.einsum("ntc,ndc->ntd", x[:, :, 3:6], r) * scale[:, :, 1:2]
    if config.mirror:
        flip = rng.random(n) < 0.5
        out[flip] *= np.asarray(MIRROR_SIGNS, dtype=np.float32)
    return out


def _batches(
    x: np.ndarray,
    y: np.ndarray,
    scaler: Scaler,
    config: ModelConfig,
    weights: dict[int, float] | None,
    n_classes: int,
) -> Any:
    """A Keras PyDataset that shuffles, augments (raw units) and standardises per batch."""
    import keras

    class _Seq(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.rng = np.random.default_rng(config.seed)
            self.order = self.rng.permutation(len(x))
            self.w = (
                np.array([weights[i] for i in range(len(weights))], dtype=np.float32)
                if weights
                else None
            )

        def __len__(self) -> int:
            return math.ceil(len(x) / config.batch_size)

        def __getitem__(self, i: int) -> Any:
            idx = self.order[i * config.batch_size : (i + 1) * config.batch_size]
            xb = x[idx]
            if config.augment:
                xb = augment(xb, config, self.rng)
            xb = standardize(xb, scaler)
            yb = y[idx]
            sw = None if self.w is None else self.w[yb]
            if config.label_smoothing > 0:
                yb = np.eye(n_classes, dtype=np.float32)[yb]
            if sw is None:
                return xb, yb
            return xb, yb, sw

        def on_epoch_end(self) -> None:
            self.order = self.rng.permutation(len(x))

    return _Seq()


@dataclass
class FitResult:
    model: Any
    history: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = 0
    seconds: float = 0.0
    epochs: int = 0
    members: list[Any] = field(default_factory=list)  # ensemble members (reporting)


def fit(
    model: Any,
    config: ModelConfig,
    scaler: Scaler,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    *,
    n_classes: int,
    checkpoint_dir: Path | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> FitResult:
    """Train with class weights, EarlyStopping, ReduceLROnPlateau and ModelCheckpoint
    (monitoring validation loss when validation data is given, else training loss).
    The best weights are restored at the end."""
    import time

    import keras

    set_seeds(config.seed)
    has_val = x_val is not None and y_val is not None and len(x_val) > 0
    monitor = "val_loss" if has_val else "loss"
    callbacks: list[Any] = []
    if has_val or config.schedule == "plateau":
        # without validation subjects and with a cosine schedule: a fixed number of epochs
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=monitor, patience=config.patience, restore_best_weights=True
            )
        )
    if config.schedule == "plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=monitor, factor=0.5, patience=max(1, config.patience // 2), min_lr=1e-5
            )
        )
    if checkpoint_dir is not None:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        callbacks.append(
            keras.callbacks.ModelCheckpoint(
                str(checkpoint_dir / "best.keras"), monitor=monitor, save_best_only=True
            )
        )
    if on_epoch is not None:
        cb = on_epoch

        class _Progress(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
                cb(epoch, {k: float(v) for k, v in (logs or {}).items()})

        callbacks.append(_Progress())

    weights = class_weights(y_train, n_classes)
    data = _batches(x_train, y_train, scaler, config, weights, n_classes)
    val = None
    if has_val and x_val is not None and y_val is not None:
        yv = np.eye(n_classes, dtype=np.float32)[y_val] if config.label_smoothing > 0 else y_val
        val = (standardize(x_val, scaler), yv)
    t0 = time.perf_counter()
    hist = model.fit(
        data, validation_data=val, epochs=config.epochs, callbacks=callbacks, verbose=0
    )
    seconds = time.perf_counter() - t0
    history = {k: [float(v) for v in vs] for k, vs in hist.history.items()}
    losses = history.get(monitor, [])
    best = int(np.argmin(losses)) + 1 if losses else 0
    epochs = len(history.get("loss", []))
    return FitResult(model=model, history=history, best_epoch=best, seconds=seconds, epochs=epochs)


def predict_proba(model: Any, x: np.ndarray, scaler: Scaler, batch_size: int = 256) -> np.ndarray:
    """Offline batched probabilities for evaluation (serving uses trainer.serving)."""
    xs = standardize(x, scaler)
    out = [
        np.asarray(model(xs[i : i + batch_size], training=False))
        for i in range(0, len(xs), batch_size)
    ]
    if not out:
        return np.zeros((0, int(model.output_shape[-1])), dtype=np.float32)
    return np.concatenate(out).astype(np.float32)
