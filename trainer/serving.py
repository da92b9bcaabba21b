"""The serving API used by the stream processor.

:class:`ServingModel` wraps one registered model version: it standardises raw windows with
the version's scaler (the shared :func:`~wearmon.signals.normalize.standardize`) and runs
one compiled call per batch: a ``tf.function`` with a fixed input signature, batches padded
up to a few bucket sizes, never ``model.predict`` per window. By default the call is
XLA-compiled (``jit_compile``; one compilation per bucket, done by :meth:`warmup`): for the
thesis model on this machine it costs 0.65-0.75 ms of CPU per window on one thread instead
of 1.0-1.8 ms (docs/stream.md).

``stream.inference_backend`` serves the same model through an exported path instead
(trainer.export: ONNX Runtime, OpenVINO, opt-in int8/bf16); the default ``auto`` picks ONNX
Runtime (fp32; measured on one core with the thesis model: 2x the XLA call per CPU-second
at batch 1, 1.2x at 8, 1.1x from 32 up, and no XLA compilation at load). The export is
converted when a version is first loaded, cached beside its files, and checked against Keras
on probe windows at every load; a backend that fails falls back to the tf.function with a
logged reason (docs/inference.md).

    model = load_alias(settings)            # the champion
    probs = model.predict_proba(x)          # x: float32 (n, 200, 6), canonical units
    if champion_version(settings) != model.version: ...   # cheap poll for hot-swap
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wearmon.errors import ConfigError, ExportError, IncompatibleModelError, RegistryError
from wearmon.settings import Settings
from wearmon.signals.normalize import Scaler, standardize
from wearmon.signals.types import CHANNELS, WINDOW

log = logging.getLogger(__name__)

#: Batch sizes a batch is padded up to. The compiled call takes any batch size (one trace),
#: so fine buckets cost only warm-up calls and save padding: measured with the thesis model,
#: 40 windows padded to 48 instead of 128 cost 68 instead of 152 ms CPU (docs/stream.md).
BUCKETS: tuple[int, ...] = (1, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 512)


class ServingModel:
    """A loaded, validated model version ready for batched inference."""

    def __init__(
        self,
        keras_model: Any,
        *,
        version: str,
        classes: Sequence[str],
        scaler: Scaler,
        window: int = WINDOW,
        channels: Sequence[str] = CHANNELS,
        metadata: dict[str, Any] | None = None,
        buckets: Sequence[int] = BUCKETS,
        jit_compile: bool = True,
        runner: Any = None,
    ) -> None:
        from trainer.inspect import validate_model

        if tuple(channels) != CHANNELS:
            raise IncompatibleModelError(
                f"model version {version} expects channels {list(channels)}, "
                f"the canonical order is {list(CHANNELS)}"
            )
        validate_model(keras_model, list(classes), window=window, name=f"model version {version}")
        self.keras_model = keras_model
        self.version = str(version)
        self.classes = [str(c) for c in classes]
        self.scaler = scaler
        self.window = int(window)
        self.channels = tuple(channels)
        self.metadata = dict(metadata or {})
        self.buckets = tuple(sorted(int(b) for b in buckets))
        self.jit_compile = bool(jit_compile)
        self._fn: Any = None
        self._lock = threading.Lock()
        #: an exported backend's call (trainer.export.Runner) or None for the tf.function
        self.runner: Any = runner
        #: how the backend was chosen and checked (for logs and benchmarks)
        self.backend_info: dict[str, Any] = {}

    @property
    def backend(self) -> str:
        """What runs the model: ``tf`` or an exported backend's name."""
        return "tf" if self.runner is None else str(self.runner.name)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def _compiled(self) -> Any:
        if self._fn is None:
            import tensorflow as tf

            model = self.keras_model

            @tf.function(
                input_signature=[
                    tf.TensorSpec(shape=(None, self.window, len(CHANNELS)), dtype=tf.float32)
                ],
                reduce_retracing=True,
                jit_compile=self.jit_compile,
            )
            def _call(x: Any) -> Any:
                return model(x, training=False)

            self._fn = _call
        return self._fn

    def _bucket(self, n: int) -> int:
        for b in self.buckets:
            if n <= b:
                return b
        return self.buckets[-1]

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities (n, n_classes) float32 for raw windows (n, window, 6)."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 3 or x.shape[1:] != (self.window, len(CHANNELS)):
            raise IncompatibleModelError(
                f"windows must be (n, {self.window}, {len(CHANNELS)}), got {x.shape}"
            )
        n = x.shape[0]
        if n == 0:
            return np.zeros((0, self.n_classes), dtype=np.float32)
        xs = standardize(x, self.scaler)
        if self.runner is not None:
            from trainer.export import run_batched

            with self._lock:
                return run_batched(self.runner, xs, self.buckets)
        fn = self._compiled()
        out = np.empty((n, self.n_classes), dtype=np.float32)
        largest = self.buckets[-1]
        with self._lock:
            for start in range(0, n, largest):
                chunk = xs[start : start + largest]
                m = chunk.shape[0]
                b = self._bucket(m)
                if b != m:
                    chunk = np.concatenate(
                        [chunk, np.zeros((b - m, *chunk.shape[1:]), dtype=np.float32)]
                    )
                out[start : start + m] = np.asarray(fn(chunk))[:m]
        return out

    def predict(self, x: np.ndarray) -> tuple[list[str], np.ndarray]:
        """(labels, confidences) for raw windows."""
        p = self.predict_proba(x)
        idx = p.argmax(axis=1)
        return [self.classes[i] for i in idx], p[np.arange(len(idx)), idx]

    def warmup(self) -> None:
        """Trace (with XLA: compile) the call for each bucket, so that no batch waits for a
        compilation."""
        zeros = np.broadcast_to(self.scaler.mean, (1, self.window, len(CHANNELS)))
        buckets = self.buckets
        if self.runner is not None:
            cap = int(self.runner.max_batch)
            buckets = tuple(b for b in buckets if b <= cap) if self.runner.pads else (1, cap)
        for b in buckets:
            self.predict_proba(np.repeat(zeros, b, axis=0))

    def __repr__(self) -> str:
        return (
            f"ServingModel(version={self.version!r}, classes={len(self.classes)}, "
            f"backend={self.backend!r})"
        )


def from_dir(
    directory: Path,
    version: str,
    *,
    jit_compile: bool = True,
    backend: str = "tf",
    threads: int = 0,
) -> ServingModel:
    """A ServingModel from a version's files (model.keras + metadata.json), served by
    ``backend`` (see :func:`attach_backend`)."""
    import json

    from trainer.inspect import load_keras
    from trainer.registry import METADATA_FILE, model_file

    meta = json.loads((directory / METADATA_FILE).read_text())
    try:
        classes = list(meta["classes"])
        scaler = Scaler.from_dict(meta["scaler"])
    except KeyError as exc:
        raise IncompatibleModelError(f"model version {version}: metadata lacks {exc}") from None
    served = ServingModel(
        load_keras(model_file(directory)),
        version=version,
        classes=classes,
        scaler=scaler,
        window=int(meta.get("window", WINDOW)),
        channels=tuple(meta.get("channels", CHANNELS)),
        metadata=meta,
        jit_compile=jit_compile,
    )
    attach_backend(served, directory, backend, threads=threads)
    return served


def attach_backend(served: ServingModel, directory: Path, backend: str, *, threads: int = 0) -> str:
    """Serve ``served`` through an exported backend when it converts and agrees with Keras.

    ``tf`` keeps the tf.function; ``auto`` tries trainer.export.AUTO_ORDER (fp32 only); a
    named backend is tried alone. A backend that fails is refused with a logged reason and
    the tf.function serves. Returns the backend now serving.
    """
    from trainer import export
    from trainer.registry import model_file

    if backend not in export.BACKENDS:
        raise ConfigError(
            f"stream.inference_backend {backend!r}: use one of {', '.join(export.BACKENDS)}"
        )
    if backend == "tf":
        served.backend_info = {"requested": "tf"}
        return "tf"
    candidates = export.AUTO_ORDER if backend == "auto" else (backend,)
    refused: dict[str, str] = {}
    for name in candidates:
        try:
            done = export.export_and_check(
                name,
                served.keras_model,
                directory,
                model_file(directory),
                served.scaler,
                window=served.window,
                threads=threads,
            )
        except (ExportError, OSError) as exc:
            refused[name] = str(exc)
            log.warning(
                "model version %s: inference backend %s refused, serving with tf: %s",
                served.version,
                name,
                exc,
            )
            continue
        served.runner = done.runner
        served.backend_info = {
            "requested": backend,
            "backend": name,
            "reused_cache": done.reused,
            "max_abs_diff": done.agreement.max_abs,
            "label_agreement": done.agreement.label_agreement,
            "probe_windows": done.agreement.n,
            "file": str(done.path),
        }
        log.info(
            "model version %s served by %s (%s; %s)",
            served.version,
            name,
            done.agreement.describe(),
            "cached" if done.reused else "converted now",
        )
        return name
    served.backend_info = {"requested": backend, "backend": "tf", "refused": refused}
    return "tf"


def load_version(settings: Settings, version: str) -> ServingModel:
    """Load and validate one registered version of ``settings.model_name``."""
    from trainer.registry import version_dir

    return from_dir(
        version_dir(settings, str(version)),
        str(version),
        jit_compile=settings.stream.jit_compile,
        backend=settings.stream.inference_backend,
        threads=settings.stream.inference_threads,
    )


def load_alias(settings: Settings, alias: str = "champion") -> ServingModel:
    """Load the version an alias points to (RegistryError when there is none)."""
    v = champion_version(settings, alias)
    if v is None:
        raise RegistryError(f"{settings.model_name} has no alias {alias!r}")
    return load_version(settings, v)


def champion_version(settings: Settings, alias: str = "champion") -> str | None:
    """The version the alias points to, or None. Cheap: one registry lookup, for polling."""
    from trainer.registry import alias_version

    return alias_version(settings, alias)
