"""Retraining from the training pool: fine-tuning from the champion vs training from scratch.

A champion is trained on the seglearn watch data (the `wearmon train` default recipe). The
new labelled data: the recordings of some of its training subjects with the watch's x and y
axes swapped (accelerometer and gyroscope), dropped into the incoming folder as flat CSV
tables. Each mode then runs `trainer.retrain.retrain` (the `wearmon model retrain` code
path) against the same champion; printed per run: training seconds, accuracy of the
challenger and the champion on the held-out new windows and on the held-out base windows
(the champion's own test subjects), the gate's decision.

    nice -n 10 .venv/bin/python benchmarks/bench_retrain.py [--epochs 3,8] [--subjects 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

SWAP = [1, 0, 2, 4, 3, 5]  # Ax<->Ay, Gx<->Gy


def write_incoming(folder: Path, subjects: list[str]) -> int:
    """The subjects' seglearn recordings, axes swapped, one CSV per recording."""
    import pandas as pd

    from wearmon.signals.readers import load_seglearn_watch

    n = 0
    for rec in load_seglearn_watch():
        if str(rec.subject) not in subjects or not rec.labels:
            continue
        t = np.asarray(rec.accel.t_ms, dtype=np.int64)
        x = np.concatenate([np.asarray(rec.accel.xyz), np.asarray(rec.gyro.xyz)], axis=1)[:, SWAP]
        lab = np.full(len(t), "", dtype=object)
        for span in rec.labels:
            lab[(t >= span.start_ms) & (t < span.end_ms)] = span.label
        frame = pd.DataFrame(x, columns=["Ax", "Ay", "Az", "Gx", "Gy", "Gz"])
        frame.insert(0, "timestamp", t)
        frame["activity"] = lab
        out = folder / f"s{rec.subject}" / f"rec{n:03d}.csv"
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out, index=False)
        n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", default="3,8", help="retraining epochs to measure, e.g. 3,8")
    ap.add_argument("--champion-epochs", type=int, default=8)
    ap.add_argument("--subjects", type=int, default=3, help="training subjects made new data")
    ap.add_argument("--seeds", default="42", help="seeds of the retraining, e.g. 42,43")
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    args = ap.parse_args()

    from trainer import promotion, registry
    from trainer.pool import incoming_dir
    from trainer.retrain import retrain
    from trainer.train import train, train_options
    from wearmon.settings import Settings

    tmp = Path(tempfile.mkdtemp(prefix="bench-retrain-"))
    s = Settings(data_dir=tmp / "data")
    s = s.model_copy(update={"lifecycle": s.lifecycle.model_copy(update={"min_gain": 0.01})})
    t0 = time.perf_counter()
    champ = train(s, train_options(None, {"epochs": args.champion_epochs})).version
    assert champ is not None
    meta = registry.read_metadata(s, champ)
    print(f"champion v{champ}: {time.perf_counter() - t0:.0f} s, split {meta['split']}")
    new_subjects = sorted(meta["split"]["train"])[: args.subjects]
    n = write_incoming(incoming_dir(s), new_subjects)
    print(f"incoming: {n} recordings of subjects {new_subjects}, x/y axes swapped")
    rows: list[dict[str, Any]] = []
    runs = [
        (int(e), int(seed), mode)
        for seed in args.seeds.split(",")
        for e in args.epochs.split(",")
        for mode in ("champion", "none")
    ]
    for epochs, seed, mode in runs:
        trig = f"bench-{mode}-{epochs}-{seed}"
        t1 = time.perf_counter()
        over = {"epochs": epochs, "seed": seed}
        out = retrain(s, trig, init_from=mode, config_overrides=over)
        secs = time.perf_counter() - t1
        rec = promotion.read_decisions(s, out.challenger_version)[0]
        m = json.loads(json.dumps(rec["params"]))
        row = {
            "init_from": mode,
            "epochs": epochs,
            "seed": seed,
            "seconds": round(secs, 1),
            "status": out.status,
            "reason": out.reason,
            "challenger": out.challenger_version,
            "new_n": m.get("new.n"),
        }
        run = registry.client(s).get_run(rec["run_id"])
        for k, v in run.data.metrics.items():
            if k.endswith(".accuracy"):
                row[k] = round(v, 4)
        rows.append(row)
        print(json.dumps(row))
        if out.status == "promoted":  # the next run is compared with the same champion
            promotion.set_champion(s, champ, reason="bench reset", decision="override")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
