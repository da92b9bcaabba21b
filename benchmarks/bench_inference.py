"""Inference throughput of the thesis model: model.predict one window at a time vs the
compiled, batched call of trainer.serving (batch 256), measured in the same run.

    .venv/bin/python benchmarks/bench_inference.py [--model DIR] [--windows 2048] [--single 60]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "anchors" / "thesis-model"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", type=Path, default=DEFAULT, help="folder with model.keras etc.")
    ap.add_argument("--windows", type=int, default=2048, help="windows for the batched call")
    ap.add_argument("--single", type=int, default=60, help="windows for model.predict per window")
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args()

    from trainer import registry
    from trainer.serving import load_version
    from wearmon.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        version = registry.import_model(
            settings,
            args.model / "model.keras",
            labels=args.model / "label_mapping.json",
            scaler=args.model / "scaler_config.json",
        )
        served = load_version(settings, version)
        rng = np.random.default_rng(0)
        x = rng.normal(size=(args.windows, 200, 6)) * served.scaler.scale + served.scaler.mean
        x = x.astype(np.float32)

        # baseline: model.predict, one window per call (what a naive consumer does)
        model = served.keras_model
        from wearmon.signals.normalize import standardize

        xs = standardize(x[: args.single], served.scaler)
        model.predict(xs[:1], verbose=0)
        t0 = time.perf_counter()
        for i in range(args.single):
            model.predict(xs[i : i + 1], verbose=0)
        single = args.single / (time.perf_counter() - t0)

        # serving: standardise + one compiled call per batch
        served.warmup()
        t0 = time.perf_counter()
        for i in range(0, args.windows, args.batch):
            served.predict_proba(x[i : i + args.batch])
        batched = args.windows / (time.perf_counter() - t0)

    print(f"model.predict, 1 window per call: {single:9.1f} windows/s ({args.single} windows)")
    print(f"compiled call, batch {args.batch:<4}      : {batched:9.1f} windows/s ({args.windows})")
    print(f"ratio                           : {batched / single:9.1f} x")


if __name__ == "__main__":
    main()
