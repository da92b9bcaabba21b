"""Exported inference paths: convert a Keras model once, cache it with the version, check it.

A backend runs the same model on standardised windows outside TensorFlow:

- ``onnx``: Keras 3 ``model.export(format="onnx")`` (tf2onnx) run by ONNX Runtime, fp32
- ``openvino``: the same ONNX file compiled by OpenVINO for the CPU, fp32, one compiled
  model per batch size (static shapes: dynamic ones cost it about 3x, docs/inference.md)
- ``onnx-int8``: ONNX Runtime on a dynamically int8-quantised copy (reduced precision)
- ``openvino-bf16``: OpenVINO with bfloat16 inference precision (reduced precision; AMX)

The converted files live beside the version's cached files, under
``data_dir/models/<name>/<version>/serving/``, with a stamp naming the source model's hash;
a later load reuses them. Every load checks the backend against a direct Keras call on probe
windows (:func:`check_agreement`); a backend outside its :data:`TOLERANCES` is refused.
Heavy packages (onnxruntime, openvino, tf2onnx) are imported inside the functions.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from wearmon.errors import ExportError
from wearmon.signals.normalize import Scaler, standardize
from wearmon.signals.types import CHANNELS, WINDOW

log = logging.getLogger(__name__)

#: Exported backends; ``tf`` (the compiled tf.function) and ``auto`` are chosen in
#: trainer.serving.
EXPORTED = ("onnx", "openvino", "onnx-int8", "openvino-bf16")
BACKENDS = ("auto", "tf", *EXPORTED)
#: What ``auto`` tries, in order: the fastest fp32 path measured (docs/inference.md).
AUTO_ORDER: tuple[str, ...] = ("onnx",)
#: Reduced-precision backends: served only when named explicitly.
REDUCED = frozenset({"onnx-int8", "openvino-bf16"})
SERVING_DIR = "serving"
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
STAMP_FILE = "export.json"
#: ONNX Runtime's throughput per core is best at small batches (measured with the thesis
#: model on one core: chunks of 8 give 0.97-1.02x the XLA tf.function at batch 32-128, chunks
#: of 32 0.88-0.93x; docs/inference.md): larger batches are run in chunks of this size.
ORT_CHUNK = 8


@dataclass(frozen=True)
class Tolerance:
    """How close a backend must stay to Keras on the probe windows."""

    max_abs: float  # largest |p_backend - p_keras| over all probe windows and classes
    min_label_agreement: float  # share of probe windows whose argmax label is the same


#: fp32 paths: identical labels and max abs probability difference < 1e-3. Reduced-precision
#: paths: < 0.2 and 99 % of labels (int8 and bf16 round the LSTM's weights and states; bf16
#: measured 0.13 / 99.4 % on the thesis model's real windows, int8 0.61 / 95 %: refused).
TOLERANCES: dict[str, Tolerance] = {
    "onnx": Tolerance(1e-3, 1.0),
    "openvino": Tolerance(1e-3, 1.0),
    "onnx-int8": Tolerance(0.2, 0.99),
    "openvino-bf16": Tolerance(0.2, 0.99),
}


class Runner(Protocol):
    """A backend's batched call on standardised windows (n, window, 6) -> probabilities."""

    name: str
    #: largest batch one call takes (larger ones are split)
    max_batch: int
    #: True when a batch must be padded to one of the serving buckets (static shapes)
    pads: bool

    def __call__(self, xs: np.ndarray) -> np.ndarray: ...


# --- agreement ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Agreement:
    max_abs: float
    label_agreement: float
    n: int

    def within(self, tol: Tolerance) -> bool:
        return self.max_abs < tol.max_abs and self.label_agreement >= tol.min_label_agreement

    def describe(self) -> str:
        return (
            f"max abs probability difference {self.max_abs:.2e}, "
            f"labels agree on {self.label_agreement:.1%} of {self.n} windows"
        )


def agreement(reference: np.ndarray, got: np.ndarray) -> Agreement:
    """Max abs probability difference and argmax label agreement of two (n, k) outputs."""
    reference = np.asarray(reference, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    if reference.shape != got.shape:
        raise ExportError(f"backend output {got.shape} differs from Keras {reference.shape}")
    if not np.isfinite(got).all():
        return Agreement(float("inf"), 0.0, len(got))
    same = reference.argmax(axis=1) == got.argmax(axis=1)
    diff = float(np.abs(reference - got).max()) if got.size else 0.0
    return Agreement(diff, float(same.mean()) if len(same) else 1.0, len(got))


@functools.lru_cache(maxsize=1)
def _real_windows(window: int) -> np.ndarray | None:
    """Up to 128 real windows (seglearn's watch data, canonical units), spread over the set;
    None where it cannot be read."""
    from trainer.datasets import load_dataset
    from wearmon.errors import WearmonError

    if window != WINDOW:
        return None
    try:
        ds = load_dataset("seglearn")
    except (WearmonError, OSError, ImportError) as exc:
        log.warning("no real probe windows (%s): random ones only", exc)
        return None
    idx = np.linspace(0, len(ds) - 1, num=min(128, len(ds))).astype(int)
    return np.ascontiguousarray(ds.x[idx], dtype=np.float32)


def probe_windows(scaler: Scaler, *, window: int = WINDOW, n_random: int = 64) -> np.ndarray:
    """Standardised probe windows: real windows where available plus seeded random ones."""
    rng = np.random.default_rng(20261201)
    parts = [rng.normal(size=(n_random, window, len(CHANNELS))).astype(np.float32)]
    real = _real_windows(window)
    if real is not None:
        parts.insert(0, standardize(real, scaler))
    return np.concatenate(parts)


def keras_reference(keras_model: Any, xs: np.ndarray) -> np.ndarray:
    """Keras' own inference-mode probabilities (``predict_on_batch``: one traced graph call,
    no XLA), the reference of every check."""
    return np.asarray(keras_model.predict_on_batch(xs), dtype=np.float32)


def check_agreement(name: str, runner: Runner, xs: np.ndarray, reference: np.ndarray) -> Agreement:
    """Run ``runner`` on probe windows and compare with Keras; ExportError outside the
    backend's tolerance."""
    got = run_batched(runner, xs, buckets=(runner.max_batch,))
    agree = agreement(reference, got)
    tol = TOLERANCES[name]
    if not agree.within(tol):
        raise ExportError(
            f"{name} disagrees with Keras: {agree.describe()} (needs < {tol.max_abs:g} and "
            f">= {tol.min_label_agreement:.0%})"
        )
    return agree


def run_batched(runner: Runner, xs: np.ndarray, buckets: tuple[int, ...]) -> np.ndarray:
    """Call ``runner`` chunk by chunk (padding to a bucket where it needs static shapes)."""
    out: list[np.ndarray] = []
    step = runner.max_batch
    for start in range(0, len(xs), step):
        chunk = xs[start : start + step]
        m = len(chunk)
        if runner.pads:
            b = next((b for b in sorted(buckets) if b >= m), m)
            if b != m:
                pad = np.zeros((b - m, *chunk.shape[1:]), dtype=np.float32)
                chunk = np.concatenate([chunk, pad])
        out.append(np.asarray(runner(np.ascontiguousarray(chunk)))[:m])
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


# --- conversion and cache ------------------------------------------------------------------


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def _converting(what: str) -> Iterator[None]:
    """Turn a converter's failure into one ExportError naming the step (third-party
    converters raise anything from ValueError to their own classes)."""
    try:
        yield
    except ExportError:
        raise
    except ImportError as exc:
        raise ExportError(f"{what}: {exc.name or exc} is not installed") from exc
    except Exception as exc:  # re-raised as ExportError with its reason
        raise ExportError(f"{what} failed: {type(exc).__name__}: {exc}") from exc


def _atomic_write(dest: Path, write: Any) -> None:
    """Write through a temporary file in the same folder, then rename (workers loading the
    same version at once never see half a file)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}-", dir=dest.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _batchnorm_affine(layer: Any) -> tuple[np.ndarray, np.ndarray]:
    """A BatchNormalization layer at inference as y = x * s + c (per channel)."""
    w = {v.path.split("/")[-1]: np.asarray(v.numpy(), np.float64) for v in layer.weights}
    n = int(w["moving_mean"].shape[0])
    s = w.get("gamma", np.ones(n)) / np.sqrt(w["moving_variance"] + layer.epsilon)
    return s, w.get("beta", np.zeros(n)) - w["moving_mean"] * s


def _fold_into(kernel: np.ndarray, bias: np.ndarray, s: np.ndarray, c: np.ndarray) -> list[Any]:
    """A kernel (..., in, out) and bias applied to x * s + c, as a kernel and bias on x."""
    k = kernel.astype(np.float64)
    scale = s.reshape([1] * (k.ndim - 2) + [-1, 1])
    shift = np.einsum("io,i->o", k.reshape(-1, *k.shape[-2:]).sum(axis=0), c)
    return [(k * scale).astype(np.float32), (bias.astype(np.float64) + shift).astype(np.float32)]


def _folded_weights(
    layer: Any, w: list[np.ndarray], s: np.ndarray, c: np.ndarray
) -> list[Any] | None:
    """The weights of ``layer`` with a preceding per-channel affine folded in; None where
    that is not exact (padding, no bias, another layer type)."""
    from keras import layers

    if isinstance(layer, layers.Conv1D) and layer.padding == "valid" and layer.use_bias:
        return _fold_into(w[0], w[1], s, c) if layer.groups == 1 else None
    if isinstance(layer, layers.Dense) and layer.use_bias:
        return _fold_into(w[0], w[1], s, c)
    inner = getattr(layer, "forward_layer", None)
    if isinstance(layer, layers.Bidirectional) and isinstance(inner, layers.LSTM) and len(w) == 6:
        # [kernel, recurrent kernel, bias] of the forward, then the backward LSTM
        fk, fb = _fold_into(w[0], w[2], s, c)
        bk, bb = _fold_into(w[3], w[5], s, c)
        return [fk, w[1], fb, bk, w[4], bb]
    return None


def fold_batchnorm(model: Any) -> Any | None:
    """The same function as a Sequential ``model`` without its BatchNormalization and
    Dropout layers: each batch norm (an affine map at inference) is folded into the input
    side of the next linear layer (Conv1D with valid padding, Dense after an optional
    Flatten, a bidirectional LSTM's input kernels). None when some batch norm cannot be
    folded exactly. Saves ONNX Runtime the Mul/Add after each layer (measured 4-16 %)."""
    import keras
    from keras import layers

    if not isinstance(model, keras.Sequential):
        return None
    kept: list[tuple[Any, list[Any]]] = []
    pending: tuple[np.ndarray, np.ndarray] | None = None
    for layer in model.layers:
        if isinstance(layer, layers.Dropout):
            continue  # the identity at inference
        if isinstance(layer, layers.BatchNormalization):
            if pending is not None or layer.axis not in (-1, len(layer.input.shape) - 1):
                return None
            pending = _batchnorm_affine(layer)
            continue
        w: list[Any] | None = [np.asarray(a) for a in layer.get_weights()]
        if pending is not None and isinstance(layer, layers.Flatten):
            steps = int(np.prod(layer.input.shape[1:-1]))
            pending = (np.tile(pending[0], steps), np.tile(pending[1], steps))
        elif pending is not None:
            w = _folded_weights(layer, w or [], *pending)
            if w is None:
                return None
            pending = None
        kept.append((keras.layers.deserialize(keras.layers.serialize(layer)), w or []))
    if pending is not None:
        return None
    folded = keras.Sequential(
        [keras.Input(shape=model.input_shape[1:]), *(lay for lay, _ in kept)],
        name=f"{model.name}_folded",
    )
    for lay, (_, w) in zip(folded.layers, kept, strict=True):
        lay.set_weights(w)
    return folded


def export_onnx(keras_model: Any, dest: Path) -> bool:
    """Keras 3's ONNX export (tf2onnx) of ``keras_model`` to ``dest``, its batch norms
    folded where :func:`fold_batchnorm` can; returns whether they were."""
    folded: list[bool] = []

    def write(tmp: Path) -> None:
        with _converting("ONNX export"):
            zeros = np.zeros((1, *keras_model.input_shape[1:]), dtype=np.float32)
            keras_model.predict_on_batch(zeros)  # export needs a model that has been called
            model = fold_batchnorm(keras_model)
            folded.append(model is not None)
            model = model or keras_model
            model.predict_on_batch(zeros)
            model.export(str(tmp), format="onnx", verbose=False)

    _atomic_write(dest, write)
    return bool(folded and folded[0])


def quantize_int8(src: Path, dest: Path) -> None:
    """ONNX Runtime dynamic int8 quantisation (weights int8, activations per batch)."""

    def write(tmp: Path) -> None:
        with _converting("int8 quantisation"):
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8)

    _atomic_write(dest, write)


def cached_files(
    directory: Path, keras_model: Any, model_path: Path, name: str
) -> tuple[Path, bool]:
    """The exported file ``name`` needs under ``directory/serving`` (converted now unless a
    stamp for this model file is there); returns (path, reused)."""
    out = directory / SERVING_DIR
    source = file_hash(model_path)
    stamp_path = out / STAMP_FILE
    stamp: dict[str, Any] = {}
    if stamp_path.is_file():
        with contextlib.suppress(ValueError):
            stamp = json.loads(stamp_path.read_text())
    fresh = stamp.get("source_sha256") == source
    want = out / (INT8_FILE if name == "onnx-int8" else ONNX_FILE)
    reused = fresh and want.is_file() and (out / ONNX_FILE).is_file()
    if reused:
        return want, True
    t0 = time.perf_counter()
    folded = stamp.get("batchnorm_folded", False) if fresh else False
    if not (fresh and (out / ONNX_FILE).is_file()):
        folded = export_onnx(keras_model, out / ONNX_FILE)
    if name == "onnx-int8":
        quantize_int8(out / ONNX_FILE, want)
    files = dict(stamp.get("files", {})) if fresh else {}
    files[want.name] = round(time.perf_counter() - t0, 2)
    new_stamp = {
        "source": model_path.name,
        "source_sha256": source,
        "batchnorm_folded": folded,
        "files": files,
    }
    _atomic_write(stamp_path, lambda tmp: tmp.write_text(json.dumps(new_stamp, indent=2)))
    log.info("exported %s for %s in %.1f s", want.name, directory.name, files[want.name])
    return want, False


# --- runners -----------------------------------------------------------------------------


class OnnxRunner:
    """ONNX Runtime session on the CPU; ``threads`` 0 = ONNX Runtime's default."""

    pads = False

    def __init__(self, path: Path, *, name: str = "onnx", threads: int = 0) -> None:
        with _converting(f"ONNX Runtime load of {path.name}"):
            import onnxruntime as ort

            so = ort.SessionOptions()
            if threads:
                so.intra_op_num_threads = int(threads)
                so.inter_op_num_threads = 1
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            so.log_severity_level = 3
            self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.name = name
        self.max_batch = ORT_CHUNK
        self.input = self.session.get_inputs()[0].name

    def __call__(self, xs: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {self.input: xs})[0])


class OpenVinoRunner:
    """OpenVINO on the CPU, one compiled model per batch size (compiled on first use)."""

    pads = True

    def __init__(
        self,
        path: Path,
        *,
        name: str = "openvino",
        precision: str = "f32",
        threads: int = 0,
        max_batch: int = 256,
    ) -> None:
        with _converting(f"OpenVINO read of {path.name}"):
            import openvino as ov

            self.core = ov.Core()
            self._path = path
            self.core.read_model(str(path))  # fails here, not at the first batch
        self.name = name
        self.max_batch = int(max_batch)
        self.config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision, "NUM_STREAMS": 1}
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = int(threads)
        self._requests: dict[int, Any] = {}

    def _request(self, shape: tuple[int, ...]) -> Any:
        req = self._requests.get(shape[0])
        if req is None:
            with _converting(f"OpenVINO compile for batch {shape[0]}"):
                model = self.core.read_model(str(self._path))
                model.reshape(list(shape))
                req = self.core.compile_model(model, "CPU", self.config).create_infer_request()
            self._requests[shape[0]] = req
        return req

    def __call__(self, xs: np.ndarray) -> np.ndarray:
        req = self._request(tuple(xs.shape))
        return np.asarray(next(iter(req.infer([xs]).values())))


def make_runner(name: str, path: Path, *, threads: int = 0) -> Runner:
    if name in ("onnx", "onnx-int8"):
        return OnnxRunner(path, name=name, threads=threads)
    if name in ("openvino", "openvino-bf16"):
        precision = "bf16" if name == "openvino-bf16" else "f32"
        return OpenVinoRunner(path, name=name, precision=precision, threads=threads)
    raise ExportError(f"unknown inference backend {name!r}: use one of {', '.join(BACKENDS)}")


@dataclass(frozen=True)
class Exported:
    """A checked backend for one model version."""

    runner: Runner
    agreement: Agreement
    reused: bool  # the converted file came from the cache
    path: Path


def export_and_check(
    name: str,
    keras_model: Any,
    directory: Path,
    model_path: Path,
    scaler: Scaler,
    *,
    window: int = WINDOW,
    threads: int = 0,
) -> Exported:
    """Convert (or reuse) backend ``name`` for a version folder and check it against Keras
    on probe windows; ExportError with the reason when it cannot be served."""
    if name not in EXPORTED:
        raise ExportError(f"unknown inference backend {name!r}: use one of {', '.join(BACKENDS)}")
    xs = probe_windows(scaler, window=window)
    reference = keras_reference(keras_model, xs)
    path, reused = cached_files(directory, keras_model, model_path, name)
    try:
        runner = make_runner(name, path, threads=threads)
    except ExportError as exc:
        if not reused:
            raise
        log.warning("cached %s does not load (%s): converting again", path, exc)
        (directory / SERVING_DIR / STAMP_FILE).unlink(missing_ok=True)
        path, reused = cached_files(directory, keras_model, model_path, name)
        runner = make_runner(name, path, threads=threads)
    agree = check_agreement(name, runner, xs, reference)
    return Exported(runner=runner, agreement=agree, reused=reused, path=path)
