"""Evaluation metrics and reports (JSON, Markdown, PNG). Pure functions plus file writers."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def compute_metrics(
    y_true: np.ndarray, proba: np.ndarray, classes: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro/weighted P/R/F1, Cohen's kappa, MCC, one-vs-rest ROC-AUC, per-class
    report and confusion matrix. ``proba`` is (n, n_classes) over ``classes``."""
    import warnings

    from sklearn import metrics as skm

    with warnings.catch_warnings():
        # degenerate held-out sets (one class) give NaN kappa etc.; that is reported as is
        warnings.simplefilter("ignore")
        return _metrics(skm, y_true, proba, classes)


def _metrics(
    skm: Any, y_true: np.ndarray, proba: np.ndarray, classes: Sequence[str]
) -> dict[str, Any]:
    y_true = np.asarray(y_true, dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    labels = list(range(len(classes)))
    y_pred = proba.argmax(axis=1) if len(proba) else np.zeros(0, dtype=np.int64)
    out: dict[str, Any] = {"n": len(y_true), "classes": list(classes)}
    out["accuracy"] = float(skm.accuracy_score(y_true, y_pred)) if len(y_true) else float("nan")
    for avg in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=avg, zero_division=0
        )
        out[f"{avg}_precision"], out[f"{avg}_recall"], out[f"{avg}_f1"] = (
            float(p),
            float(r),
            float(f),
        )
    out["cohen_kappa"] = float(skm.cohen_kappa_score(y_true, y_pred, labels=labels))
    out["mcc"] = float(skm.matthews_corrcoef(y_true, y_pred))
    present = np.unique(y_true)
    auc = float("nan")
    if len(present) >= 2:
        try:
            # one-vs-rest over the classes present in y_true (absent classes have no AUC)
            auc = float(
                skm.roc_auc_score(
                    y_true,
                    proba[:, present]
                    / np.clip(proba[:, present].sum(1, keepdims=True), 1e-12, None),
                    multi_class="ovr",
                    labels=present,
                    average="macro",
                )
                if len(present) > 2
                else skm.roc_auc_score(y_true == present[1], proba[:, present[1]])
            )
        except ValueError as exc:
            log.warning("ROC-AUC not computed: %s", exc)
    out["roc_auc_ovr"] = auc
    report = skm.classification_report(
        y_true, y_pred, labels=labels, target_names=list(classes), output_dict=True, zero_division=0
    )
    out["per_class"] = {
        c: {k: float(v) for k, v in report[c].items()} for c in classes if c in report
    }
    out["confusion_matrix"] = skm.confusion_matrix(y_true, y_pred, labels=labels).tolist()
    return out


SUMMARY_KEYS = (
    "accuracy",
    "macro_f1",
    "weighted_f1",
    "macro_precision",
    "macro_recall",
    "cohen_kappa",
    "mcc",
    "roc_auc_ovr",
)


def scalar_metrics(m: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The scalar metrics of :func:`compute_metrics` (finite values only), for MLflow."""
    return {
        f"{prefix}{k}": float(m[k]) for k in SUMMARY_KEYS if k in m and np.isfinite(float(m[k]))
    }


def to_markdown(m: dict[str, Any], title: str = "Evaluation") -> str:
    lines = [f"# {title}", "", f"Windows: {m['n']}", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {m[k]:.4f} |" for k in SUMMARY_KEYS if k in m]
    lines += [
        "",
        "## Per class",
        "",
        "| class | precision | recall | f1 | support |",
        "|---|---|---|---|---|",
    ]
    for c, r in m["per_class"].items():
        lines.append(
            f"| {c} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1-score']:.3f} "
            f"| {int(r['support'])} |"
        )
    lines += ["", "## Confusion matrix (rows: true, columns: predicted)", ""]
    classes = m["classes"]
    lines.append("| | " + " | ".join(classes) + " |")
    lines.append("|---" * (len(classes) + 1) + "|")
    for c, row in zip(classes, m["confusion_matrix"], strict=True):
        lines.append(f"| **{c}** | " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def plot_confusion(m: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(m["confusion_matrix"], dtype=np.float64)
    norm = cm / np.clip(cm.sum(axis=1, keepdims=True), 1, None)
    n = len(m["classes"])
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * n, 0.8 + 0.55 * n))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), m["classes"], rotation=45, ha="right")
    ax.set_yticks(range(n), m["classes"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                str(int(cm[i, j])),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if norm[i, j] > 0.5 else "black",
            )
    ax.set_title(f"accuracy {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_history(history: dict[str, list[float]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, key in zip(axes, ("loss", "accuracy"), strict=True):
        for name in (key, f"val_{key}"):
            if name in history:
                ax.plot(range(1, len(history[name]) + 1), history[name], label=name)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(
    m: dict[str, Any],
    out_dir: Path,
    *,
    history: dict[str, list[float]] | None = None,
    title: str = "Evaluation",
) -> list[Path]:
    """metrics.json, report.md, confusion_matrix.png (and training_curves.png)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "metrics.json", out_dir / "report.md"]
    paths[0].write_text(json.dumps(m, indent=2, default=float))
    paths[1].write_text(to_markdown(m, title))
    paths.append(plot_confusion(m, out_dir / "confusion_matrix.png"))
    if history:
        paths.append(plot_history(history, out_dir / "training_curves.png"))
    return paths
