"""Inference paths of one model on ONE core: windows/s, CPU ms per window and agreement.

Every path serves the same model on the same raw windows through ``ServingModel.predict_proba``
(standardise, pad/chunk, one call per batch), except ``keras.predict`` (``model.predict``
per batch). The process is pinned to one core (os.sched_setaffinity) and every runtime gets
one thread. Each figure is the median over ``--repeats`` rounds (paths interleaved, so load
from other jobs spreads over all of them) of ``--seconds`` of calls; ratios are against the
XLA-compiled tf.function (what served before stream.inference_backend) in the same round.
Agreement is measured on real windows (every seglearn window) against Keras'
``predict_on_batch``: max abs probability difference and argmax label agreement.

``gemm-bound`` is not a serving path but a ceiling: every matrix product of the model at the
batch size (convolutions as im2col products, each LSTM direction's input projection over
all steps and its recurrent product step by step, the dense layers), fp32 through numpy's
BLAS on the same core, with no activation, gate, copy or runtime overhead: what an fp32
engine that spends nothing outside its GEMMs would reach. The BLAS's own peak (a large
square product) is printed beside it.

    .venv/bin/python benchmarks/bench_inference.py [--model DIR] [--batches 1,8,32,128,256]
        [--seconds 2] [--repeats 3] [--paths tf,onnx,...] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "anchors" / "thesis-model"
PATHS = (
    "keras.predict",
    "tf",
    "tf-graph",
    "onnx",
    "openvino",
    "onnx-int8",
    "onnx-int8-static",
    "openvino-bf16",
    "litert",
    "gemm-bound",
)
BASELINE = "tf"
#: not a serving path: the model's matrix products alone (below), its ceiling in fp32
GEMM_BOUND = "gemm-bound"


def pin_one_core() -> int:
    """Pin this process to its first allowed core and give TensorFlow one thread."""
    core = sorted(os.sched_getaffinity(0))[0]
    os.sched_setaffinity(0, {core})
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # numpy's BLAS (the gemm-bound path)
    return core


def gemm_shapes(model: Any) -> list[tuple[int, int, int, int]]:
    """The matrix products of one window through a Sequential Conv1D / LSTM / Dense model:
    (rows per window, inner, columns, calls). An LSTM direction's recurrent product is one
    row per window, ``steps`` calls. Other layers with weights raise ValueError."""
    import keras

    steps, feats = model.input_shape[1], model.input_shape[2]
    flat: int | None = None
    out: list[tuple[int, int, int, int]] = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv1D):
            k, cin, cout = layer.kernel.shape
            if layer.padding != "valid" or layer.strides != (1,):
                raise ValueError(f"{layer.name}: only valid, stride-1 convolutions")
            steps = steps - k + 1
            out.append((steps, k * cin, cout, 1))
            feats = cout
        elif isinstance(layer, keras.layers.Bidirectional):
            for rnn in (layer.forward_layer, layer.backward_layer):
                if not isinstance(rnn, keras.layers.LSTM):
                    raise ValueError(f"{layer.name}: only bidirectional LSTMs")
                u = rnn.units
                out += [(steps, feats, 4 * u, 1), (1, u, 4 * u, steps)]
            feats = 2 * layer.forward_layer.units
            if not layer.forward_layer.return_sequences:
                steps, flat = 1, feats
        elif isinstance(layer, keras.layers.Flatten):
            flat = steps * feats
        elif isinstance(layer, keras.layers.Dense):
            din = flat if flat is not None else feats
            out.append((1 if flat is not None else steps, din, layer.units, 1))
            flat, feats = (layer.units, layer.units) if flat is not None else (None, layer.units)
        elif layer.get_weights() and not isinstance(layer, keras.layers.BatchNormalization):
            raise ValueError(f"{layer.name}: {type(layer).__name__} is not counted")
    return out


def gemm_bound(model: Any) -> Callable[[np.ndarray], None]:
    """A callable doing the model's matrix products (``gemm_shapes``) for a batch of
    ``len(x)`` windows, into preallocated outputs."""
    shapes = gemm_shapes(model)
    rng = np.random.default_rng(0)
    cache: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray, int]]] = {}

    def run(x: np.ndarray) -> None:
        b = len(x)
        if b not in cache:
            cache[b] = [
                (
                    rng.standard_normal((b * rows, inner), dtype=np.float32),
                    rng.standard_normal((inner, cols), dtype=np.float32),
                    np.empty((b * rows, cols), dtype=np.float32),
                    calls,
                )
                for rows, inner, cols, calls in shapes
            ]
        for a, w, o, calls in cache[b]:
            for _ in range(calls):
                np.matmul(a, w, out=o)

    return run


def blas_peak(seconds: float) -> float:
    """Multiply-adds per CPU-second of one large fp32 product (1024^3) on this core."""
    a = np.ones((1024, 1024), dtype=np.float32)
    o = np.empty_like(a)
    np.matmul(a, a, out=o)
    n, c0, t0 = 0, time.process_time(), time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        np.matmul(a, a, out=o)
        n += 1
    return n * 1024**3 / (time.process_time() - c0)


def load_model(model_dir: Path, work: Path) -> tuple[Any, Any, list[str], Path]:
    """The Keras model, scaler and classes of a model folder (thesis layout or a version's
    metadata.json); ``work`` gets a copy of the model file (exports are cached there)."""
    from trainer.inspect import load_keras, read_labels
    from trainer.registry import METADATA_FILE, model_file
    from wearmon.signals.normalize import Scaler

    src = model_file(model_dir)
    shutil.copy(src, work / src.name)
    if (model_dir / METADATA_FILE).is_file():
        meta = json.loads((model_dir / METADATA_FILE).read_text())
        classes, scaler = list(meta["classes"]), Scaler.from_dict(meta["scaler"])
    else:
        classes = read_labels(model_dir / "label_mapping.json")
        scaler = Scaler.from_dict(json.loads((model_dir / "scaler_config.json").read_text()))
    return load_keras(work / src.name), scaler, classes, work / src.name


def real_windows() -> np.ndarray:
    from trainer.datasets import load_dataset

    return np.ascontiguousarray(load_dataset("seglearn").x, dtype=np.float32)


def _served(model: Any, scaler: Any, classes: list[str], **kw: Any) -> Any:
    from trainer.serving import ServingModel

    return ServingModel(model, version="bench", classes=classes, scaler=scaler, **kw)


def build_path(name: str, model: Any, scaler: Any, classes: list[str], mfile: Path) -> Any:
    """A callable raw windows -> probabilities for one path (None if it is not built here)."""
    from trainer import export

    if name == "keras.predict":
        from wearmon.signals.normalize import standardize

        return lambda x: model.predict(standardize(x, scaler), batch_size=len(x), verbose=0)
    if name in ("tf", "tf-graph"):
        served = _served(model, scaler, classes, jit_compile=name == "tf")
        return served.predict_proba
    if name in export.EXPORTED:
        path, _ = export.cached_files(mfile.parent, model, mfile, name)
        runner = export.make_runner(name, path, threads=1)
        return _served(model, scaler, classes, runner=runner).predict_proba
    if name == "onnx-int8-static":
        return _static_int8(model, scaler, classes, mfile)
    if name == "litert":
        return _litert(model, scaler)
    if name == GEMM_BOUND:
        return gemm_bound(model)
    raise SystemExit(f"unknown path {name!r}: use {', '.join(PATHS)}")


def _static_int8(model: Any, scaler: Any, classes: list[str], mfile: Path) -> Any:
    """ONNX Runtime static (QDQ) int8 quantisation calibrated on 256 real windows."""
    from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize_static

    from trainer import export
    from wearmon.signals.normalize import standardize

    src, _ = export.cached_files(mfile.parent, model, mfile, "onnx")
    calib = standardize(real_windows()[::8][:256], scaler)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            import onnxruntime as ort

            name = ort.InferenceSession(str(src)).get_inputs()[0].name
            self.it = iter([{name: calib[i : i + 32]} for i in range(0, len(calib), 32)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.it, None)

    dest = mfile.parent / "model.int8-static.onnx"
    quantize_static(
        str(src), str(dest), Reader(), weight_type=QuantType.QInt8, activation_type=QuantType.QInt8
    )
    runner = export.OnnxRunner(dest, name="onnx-int8-static", threads=1)
    return _served(model, scaler, classes, runner=runner).predict_proba


def _litert(model: Any, scaler: Any) -> Any:
    """TFLite conversion (TF's converter) run by ai-edge-litert, one fixed batch size per
    interpreter (the converter needs static LSTM shapes)."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from wearmon.signals.normalize import standardize

    interpreters: dict[int, Any] = {}

    def call(x: np.ndarray) -> np.ndarray:
        n = len(x)
        if n not in interpreters:
            with tempfile.TemporaryDirectory() as tmp:
                spec = [tf.TensorSpec((n, *x.shape[1:]), tf.float32)]
                model.export(tmp, format="tf_saved_model", input_signature=spec, verbose=False)
                flat = tf.lite.TFLiteConverter.from_saved_model(tmp).convert()
            it = Interpreter(model_content=flat, num_threads=1)
            it.allocate_tensors()
            interpreters[n] = it
        it = interpreters[n]
        it.set_tensor(it.get_input_details()[0]["index"], standardize(x, scaler))
        it.invoke()
        return np.asarray(it.get_tensor(it.get_output_details()[0]["index"]))

    return call


def agreement_on(
    fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, ref: np.ndarray, b: int
) -> Any:
    from trainer.export import agreement

    got = np.concatenate([fn(x[i : i + b]) for i in range(0, len(x) - b + 1, b)])
    return agreement(ref[: len(got)], got)


def time_calls(fn: Callable[[np.ndarray], Any], xb: np.ndarray, seconds: float) -> dict[str, float]:
    """Call ``fn(xb)`` for ``seconds`` of wall time: windows per CPU-second and per second."""
    n = 0
    c0, t0 = time.process_time(), time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn(xb)
        n += len(xb)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    return {"win_per_cpu_s": n / cpu, "win_per_s": n / wall, "cpu_ms_per_win": 1e3 * cpu / n}


def measure(fns: dict[str, Any], x: np.ndarray, batches: list[int], args: Any) -> dict[str, Any]:
    """Interleaved rounds: each path at each batch size once per round."""
    rounds: dict[tuple[str, int], list[dict[str, float]]] = {}
    for b in batches:
        for fn in fns.values():
            fn(x[:b])  # compile / trace / allocate outside the timing
    for r in range(args.repeats):
        for b in batches:
            for name, fn in fns.items():
                rounds.setdefault((name, b), []).append(time_calls(fn, x[:b], args.seconds))
        print(f"round {r + 1}/{args.repeats} done (load {os.getloadavg()[0]:.2f})", flush=True)
    out: dict[str, Any] = {}
    for (name, b), runs in rounds.items():
        base = rounds.get((BASELINE, b))
        ratio = (
            [a["win_per_cpu_s"] / c["win_per_cpu_s"] for a, c in zip(runs, base, strict=True)]
            if base
            else []
        )
        out[f"{name}@{b}"] = {
            "path": name,
            "batch": b,
            "runs": runs,
            **{k: statistics.median(r[k] for r in runs) for k in runs[0]},
            "spread_win_per_cpu_s": [
                min(r["win_per_cpu_s"] for r in runs),
                max(r["win_per_cpu_s"] for r in runs),
            ],
            "ratio_vs_tf": statistics.median(ratio) if ratio else None,
        }
    return out


def tta_fusion(model: Any, x: np.ndarray, args: Any) -> dict[str, Any]:
    """Mirror test-time augmentation as served by our trained models (two passes of the
    network inside one Keras model) vs one pass over the doubled batch, both XLA-compiled."""
    import keras
    import tensorflow as tf

    from trainer.model import MIRROR_SIGNS, with_mirror_tta
    from wearmon.signals.normalize import Scaler

    ident = Scaler(mean=np.zeros(6, np.float32), scale=np.ones(6, np.float32))
    two = with_mirror_tta(model, ident)
    sign = tf.constant(np.asarray(MIRROR_SIGNS, dtype=np.float32))
    spec = [tf.TensorSpec((None, *x.shape[1:]), tf.float32)]

    @tf.function(input_signature=spec, jit_compile=True)
    def fused(a: Any) -> Any:
        p = model(tf.concat([a, a * sign], axis=0), training=False)
        n = tf.shape(a)[0]
        return (p[:n] + p[n:]) / 2.0

    two_fn = tf.function(lambda a: two(a, training=False), input_signature=spec, jit_compile=True)
    xb = x[:32]
    ref = np.asarray(keras.ops.convert_to_numpy(two(xb, training=False)))
    diff = float(np.abs(np.asarray(fused(xb)) - ref).max())
    res: dict[str, Any] = {}
    for name, fn in (("tta-2pass", two_fn), ("tta-fused", fused)):
        fn(xb)

        def call(a: np.ndarray, fn: Any = fn) -> np.ndarray:
            return np.asarray(fn(a))

        runs = [time_calls(call, xb, args.seconds) for _ in range(args.repeats)]
        res[name] = statistics.median(r["win_per_cpu_s"] for r in runs)
    res["max_abs_diff"] = diff
    return res


def machine() -> dict[str, Any]:
    model = platform.processor() or ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpu": model, "cores": os.cpu_count(), "load_start": os.getloadavg()}


def table(results: dict[str, Any], agree: dict[str, Any], batches: list[int]) -> str:
    lines = [
        "| path | "
        + " | ".join(f"batch {b}: win/CPU-s (spread), x tf" for b in batches)
        + " | CPU ms/win @32 | max abs diff | labels agree |",
        "|---" * (len(batches) + 4) + "|",
    ]
    names = dict.fromkeys(r["path"] for r in results.values())
    for name in names:
        cells = []
        for b in batches:
            r = results.get(f"{name}@{b}")
            if r is None:
                cells.append("-")
                continue
            lo, hi = r["spread_win_per_cpu_s"]
            ratio = r["ratio_vs_tf"]
            cells.append(f"{r['win_per_cpu_s']:,.0f} ({lo:,.0f}-{hi:,.0f}), {ratio:.2f}x")
        r32 = results.get(f"{name}@32")
        ms = f"{r32['cpu_ms_per_win']:.3f}" if r32 else "-"
        a = agree.get(name, {})
        d = f"{a['max_abs']:.1e}" if "max_abs" in a else "-"
        la = f"{a['label_agreement']:.2%}" if "label_agreement" in a else "-"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {ms} | {d} | {la} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--model",
        type=Path,
        default=DEFAULT,
        help="model folder (thesis layout or a version's files)",
    )
    ap.add_argument("--batches", default="1,8,32,128,256")
    ap.add_argument(
        "--seconds", type=float, default=2.0, help="timed seconds per path, batch and round"
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--paths", default=",".join(PATHS))
    ap.add_argument("--no-tta", action="store_true", help="skip the mirror-TTA fusion check")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    core = pin_one_core()
    batches = [int(b) for b in args.batches.split(",")]
    info = {
        **machine(),
        "pinned_core": core,
        "threads": 1,
        "model": args.model.name,
        "seconds": args.seconds,
        "repeats": args.repeats,
    }
    with tempfile.TemporaryDirectory() as tmp:
        model, scaler, classes, mfile = load_model(args.model, Path(tmp))
        x = real_windows()
        from wearmon.signals.normalize import standardize

        ref = np.asarray(model.predict_on_batch(standardize(x, scaler)))
        fns: dict[str, Any] = {}
        agree: dict[str, Any] = {}
        for name in args.paths.split(","):
            t0 = time.perf_counter()
            try:
                fn = build_path(name, model, scaler, classes, mfile)
                if name == GEMM_BOUND:
                    macs = sum(r * i * c * n for r, i, c, n in gemm_shapes(model))
                    agree[name] = {"macs_per_window": macs, "blas_peak_macs": blas_peak(1.0)}
                    fns[name] = fn
                    print(
                        f"{name}: {macs / 1e6:.1f} M multiply-adds per window; BLAS peak "
                        f"{agree[name]['blas_peak_macs'] / 1e9:.0f} G multiply-adds per CPU-s",
                        flush=True,
                    )
                    continue
                a = agreement_on(fn, x, ref, 32)
            except Exception as exc:  # a path that does not convert is reported, not fatal
                agree[name] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
                print(f"{name}: not measured: {agree[name]['error']}", flush=True)
                continue
            fns[name] = fn
            agree[name] = {
                "max_abs": a.max_abs,
                "label_agreement": a.label_agreement,
                "n": a.n,
                "build_s": round(time.perf_counter() - t0, 1),
            }
            print(f"{name}: built in {agree[name]['build_s']} s; {a.describe()}", flush=True)
        results = measure(fns, x, batches, args)
        tta = None if args.no_tta else tta_fusion(model, standardize(x, scaler), args)
    info["load_end"] = os.getloadavg()
    print(
        f"\n{info['cpu']}, {info['cores']} cores, pinned to core {core}, 1 thread; load "
        f"{info['load_start'][0]:.2f} -> {info['load_end'][0]:.2f}; median of {args.repeats} "
        f"rounds x {args.seconds:g} s; agreement on {len(x)} real windows (seglearn)\n"
    )
    print(table(results, agree, batches))
    if tta:
        print(
            f"\nmirror TTA at batch 32 (XLA): two passes {tta['tta-2pass']:,.0f} win/CPU-s, "
            f"fused into one doubled batch {tta['tta-fused']:,.0f} "
            f"(max abs diff {tta['max_abs_diff']:.1e})"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {"machine": info, "results": results, "agreement": agree, "tta": tta},
                indent=2,
                default=float,
            )
        )


if __name__ == "__main__":
    main()
