"""Subject-grouped K-fold cross-validation on the seglearn watch data: accuracy and macro-F1
mean +- std, time per fold. Same code path as `wearmon train --cv K`.

    nice -n 10 .venv/bin/python benchmarks/bench_train.py [--folds 5] [--epochs 40]
    # the best recipe measured in docs/training.md (88.5 +- 4.4 %):
    nice -n 10 .venv/bin/python benchmarks/bench_train.py --epochs 40 --schedule cosine \\
        --val-fraction 0 --mirror --mirror-tta
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--only-folds", default=None, help="run a subset, e.g. 1,2 (quick screens)")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--train-hop", type=int, default=50)
    ap.add_argument("--schedule", default="plateau", choices=("plateau", "cosine"))
    ap.add_argument("--val-fraction", type=float, default=0.1, help="0: fixed epochs")
    ap.add_argument("--mirror", action="store_true")
    ap.add_argument("--mirror-tta", action="store_true")
    ap.add_argument("--ensemble", type=int, default=1)
    ap.add_argument("--label-smoothing", type=float, default=0.0)
    ap.add_argument("--time-warp", type=float, default=0.0)
    ap.add_argument("--rotate-deg", type=float, default=20.0)
    ap.add_argument("--filters", default=None, help="conv filters, e.g. 64,128")
    ap.add_argument("--lstm-units", type=int, default=None)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", type=Path, default=None, help="write the CV summary JSON here")
    ap.add_argument("--data-dir", type=Path, default=None, help="default: a temporary folder")
    args = ap.parse_args()

    from trainer.model import ModelConfig
    from trainer.train import TrainOptions, cross_validate
    from wearmon.settings import Settings

    cfg = ModelConfig(
        epochs=args.epochs,
        patience=args.patience,
        schedule=args.schedule,
        mirror=args.mirror,
        mirror_tta=args.mirror_tta,
        ensemble=args.ensemble,
        label_smoothing=args.label_smoothing,
        time_warp=args.time_warp,
        rotate_deg=args.rotate_deg,
        seed=args.seed,
        **(
            {"conv_filters": tuple(int(v) for v in args.filters.split(","))} if args.filters else {}
        ),
        **({"lstm_units": args.lstm_units} if args.lstm_units else {}),
    )
    opts = TrainOptions(config=cfg, train_hop=args.train_hop, val_fraction=args.val_fraction)
    only = [int(v) for v in args.only_folds.split(",")] if args.only_folds else None
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=args.data_dir or Path(tmp))
        s = cross_validate(settings, opts, args.folds, only_folds=only)
        for r in s["folds"]:
            print(
                f"fold {r['fold']} test {','.join(r['test_subjects']):<6} "
                f"acc {r['accuracy']:.4f} macro-F1 {r['macro_f1']:.4f} "
                f"{r['seconds']:.0f} s, {r['epochs']} epochs"
            )
        print(
            f"{args.folds}-fold CV by subject, {s['n_windows']} windows: "
            f"accuracy {s['accuracy_mean']:.4f} ± {s['accuracy_std']:.4f}, "
            f"macro-F1 {s['macro_f1_mean']:.4f} ± {s['macro_f1_std']:.4f}, "
            f"{s['seconds_mean']:.0f} ± {s['seconds_std']:.0f} s per fold"
        )
        if args.out:
            args.out.write_text(json.dumps(s, indent=2, default=str))
        print(json.dumps({k: v for k, v in s.items() if k != "folds"}, default=str))


if __name__ == "__main__":
    main()
