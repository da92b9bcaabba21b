"""The model registry: MLflow registered models under ``settings.model_name``.

A version's files live as artifacts of an MLflow run under ``model/``:

- ``model.keras`` (or ``model.h5``): the Keras model, input (None, 200, 6), softmax output
- ``metadata.json``: classes, window/hop/rate, channels and units, scaler, data hash, split
- ``reference_profile.parquet``: per-window features of the training windows and their
  ``subject`` (drift checks)
- ``drift_calibration.json``: the drift thresholds calibrated on the training subjects
  (``monitoring.calibration``; :func:`read_calibration`)

Versions are immutable; the alias ``champion`` names what the stream serves, and only
:mod:`trainer.promotion` moves it. Only MLflow's ``RESOURCE_DOES_NOT_EXIST`` means "not
there"; any other registry failure is a one-line :class:`RegistryError`. Downloaded
versions are cached read-only under ``data_dir/models/<name>/<version>/``. MLflow is
imported inside the functions.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wearmon.errors import IncompatibleModelError, RegistryError
from wearmon.settings import Settings
from wearmon.signals.normalize import Scaler
from wearmon.signals.types import ACCEL_UNIT, CHANNELS, GYRO_UNIT, HOP, RATE_HZ, WINDOW

log = logging.getLogger(__name__)

MODEL_ARTIFACT = "model"
METADATA_FILE = "metadata.json"
PROFILE_FILE = "reference_profile.parquet"
#: The contract's name of the drift calibration file (monitoring.calibration.CALIBRATION_FILE
#: is the source; this is used only when the monitor package is not importable).
DEFAULT_CALIBRATION_FILE = "drift_calibration.json"
CHAMPION = "champion"
CHALLENGER = "challenger"


def client(settings: Settings) -> Any:
    """An MlflowClient on ``settings.tracking_uri`` (creating the local store folder)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    if settings.tracking_uri.startswith("sqlite:///"):
        (settings.data_dir / "mlflow").mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    with registry_call(settings, "open the store"):
        return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def experiment_id(settings: Settings, name: str) -> str:
    """Get or create an experiment whose artifacts go to ``settings.artifact_dir``."""
    c = client(settings)
    with registry_call(settings, f"look up experiment {name}"):
        exp = c.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    location = None
    if not settings.mlflow_tracking_uri:
        settings.artifact_dir.mkdir(parents=True, exist_ok=True)
        location = settings.artifact_dir.as_uri()
    with registry_call(settings, f"create experiment {name}"):
        return str(c.create_experiment(name, artifact_location=location))


def save_model_dir(
    out_dir: Path,
    model: Any,
    meta: dict[str, Any],
    profile: Any | None = None,
) -> Path:
    """Write a version's files (model.keras, metadata.json, reference profile) to a folder."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(str(out_dir / "model.keras"))
    (out_dir / METADATA_FILE).write_text(json.dumps(meta, indent=2, default=_json_default))
    if profile is not None:
        profile.to_parquet(out_dir / PROFILE_FILE, index=False)
    return out_dir


def reference_profile(x: np.ndarray) -> Any:
    """Per-window features (wearmon.signals.features) of windows, as a DataFrame."""
    from wearmon.signals.features import features_frame

    return features_frame(np.asarray(x, dtype=np.float32))


def register_dir(
    settings: Settings,
    model_dir: Path,
    *,
    run_id: str | None = None,
    description: str = "",
    tags: dict[str, str] | None = None,
) -> str:
    """Log a version folder as ``model/`` artifacts of a run and register it; returns the
    new version number (as a string). Without ``run_id`` a run is created."""
    import mlflow

    c = client(settings)
    meta = json.loads((model_dir / METADATA_FILE).read_text())
    if run_id is None:
        exp = experiment_id(settings, "wearmon-registry")
        with mlflow.start_run(experiment_id=exp, run_name="register") as run:
            run_id = run.info.run_id
    c.log_artifacts(run_id, str(model_dir), artifact_path=MODEL_ARTIFACT)
    run = c.get_run(run_id)
    source = f"{run.info.artifact_uri.rstrip('/')}/{MODEL_ARTIFACT}"
    if _lookup(settings, "look up the model", c.get_registered_model, settings.model_name) is None:
        with registry_call(settings, "create the registered model"):
            c.create_registered_model(
                settings.model_name, description="wearmon activity classifier (200x6 windows)"
            )
    vtags = {
        "classes": ",".join(meta.get("classes", [])),
        "data_hash": str((meta.get("data") or {}).get("hash", "")),
        "window": str(meta.get("window", "")),
    }
    vtags.update(tags or {})
    with registry_call(settings, "register a version"):
        mv = c.create_model_version(
            settings.model_name, source=source, run_id=run_id, tags=vtags, description=description
        )
    log.info("registered %s version %s (run %s)", settings.model_name, mv.version, run_id)
    return str(mv.version)


def import_model(
    settings: Settings,
    path: Path | str,
    *,
    labels: Path | str | None = None,
    scaler: Path | str | None = None,
    description: str = "",
) -> str:
    """Register a model a user already has (a Keras file plus label mapping and scaler
    JSON), after checking it fits the canonical window. Returns the version."""
    import mlflow

    from trainer.inspect import load_keras, read_labels, validate_model

    path = Path(path)
    model = load_keras(path)
    classes = read_labels(labels) if labels is not None else None
    n = validate_model(model, classes, name=path.name)
    if classes is None:
        classes = [f"class_{i}" for i in range(n)]
        log.warning("no label mapping given: classes named class_0..class_%d", n - 1)
    if scaler is not None:
        try:
            scaler_dict = json.loads(Path(scaler).read_text())
        except (OSError, ValueError) as exc:
            raise IncompatibleModelError(f"{scaler}: cannot read scaler: {exc}") from None
        sc = Scaler.from_dict(scaler_dict)
    else:
        log.warning("no scaler given: inputs are fed in canonical units (identity scaler)")
        sc = Scaler(
            mean=np.zeros(len(CHANNELS), np.float32), scale=np.ones(len(CHANNELS), np.float32)
        )
    meta = {
        "format": 1,
        "window": WINDOW,
        "hop": HOP,
        "rate_hz": RATE_HZ,
        "channels": list(CHANNELS),
        "units": {"accel": ACCEL_UNIT, "gyro": GYRO_UNIT},
        "classes": list(classes),
        "scaler": sc.to_dict(),
        "scaler_source": str(scaler) if scaler is not None else "identity",
        "data": {"source": f"imported:{path.name}", "hash": _file_hash(path)},
        "split": None,
        "imported_from": str(path.resolve()),
    }
    exp = experiment_id(settings, "wearmon-import")
    with (
        tempfile.TemporaryDirectory(prefix="wearmon-import-") as tmp,
        mlflow.start_run(experiment_id=exp, run_name=f"import {path.name}") as run,
    ):
        d = Path(tmp)
        shutil.copyfile(path, d / f"model{path.suffix or '.keras'}")
        (d / METADATA_FILE).write_text(json.dumps(meta, indent=2))
        mlflow.log_params({"imported_from": path.name, "n_classes": n})
        return register_dir(
            settings,
            d,
            run_id=run.info.run_id,
            description=description or f"imported from {path.name}",
            tags={"imported": "true"},
        )


# --- registry errors ----------------------------------------------------------------------

_MISSING = "RESOURCE_DOES_NOT_EXIST"


def is_missing(exc: BaseException) -> bool:
    """True for MLflow's "does not exist" (the only error that means "not there")."""
    from mlflow.exceptions import MlflowException

    return isinstance(exc, MlflowException) and getattr(exc, "error_code", "") == _MISSING


def _where(settings: Settings) -> str:
    """The tracking URI without any user:password part (safe for messages)."""
    from urllib.parse import urlsplit, urlunsplit

    uri = settings.tracking_uri
    parts = urlsplit(uri)
    if parts.password or parts.username:
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        uri = urlunsplit(parts._replace(netloc=netloc))
    return uri


def registry_error(settings: Settings, what: str, exc: BaseException) -> RegistryError:
    """A one-line RegistryError for a failed registry call."""
    text = str(getattr(exc, "message", None) or exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    if len(first) > 200:
        first = first[:200] + "..."
    return RegistryError(f"model registry {_where(settings)}: cannot {what}: {first}")


@contextlib.contextmanager
def registry_call(settings: Settings, what: str) -> Iterator[None]:
    """Turn any failure of the registry calls inside into a one-line RegistryError."""
    try:
        yield
    except RegistryError:
        raise
    except Exception as exc:  # wrapped at the boundary, with the cause chained
        raise registry_error(settings, what, exc) from exc


def _lookup(settings: Settings, what: str, fn: Any, *args: Any) -> Any | None:
    """``fn(*args)``; None when MLflow says the thing does not exist, RegistryError for
    any other failure."""
    try:
        return fn(*args)
    except Exception as exc:
        if is_missing(exc):
            return None
        raise registry_error(settings, what, exc) from exc


# --- aliases ------------------------------------------------------------------------------


def set_alias(settings: Settings, alias: str, version: str) -> None:
    """Point ``alias`` at ``version`` (a low-level move: the champion alias is moved only
    by :mod:`trainer.promotion`, which also publishes and records the change)."""
    c = client(settings)
    got = _lookup(
        settings,
        f"look up version {version}",
        c.get_model_version,
        settings.model_name,
        str(version),
    )
    if got is None:
        raise RegistryError(f"{settings.model_name} has no version {version}")
    with registry_call(settings, f"set alias {alias}"):
        c.set_registered_model_alias(settings.model_name, alias, str(version))
    log.info("alias %s of %s -> version %s", alias, settings.model_name, version)


def delete_alias(settings: Settings, alias: str) -> None:
    c = client(settings)
    with registry_call(settings, f"delete alias {alias}"):
        c.delete_registered_model_alias(settings.model_name, alias)


def version_run_id(settings: Settings, version: str) -> str | None:
    """The MLflow run that holds a version's files (None: no such version, or no run)."""
    c = client(settings)
    mv = _lookup(
        settings, f"look up version {version}", c.get_model_version, settings.model_name, version
    )
    return None if mv is None or not mv.run_id else str(mv.run_id)


def alias_version(settings: Settings, alias: str = CHAMPION) -> str | None:
    """The version an alias points to; None when there is no such model or alias.
    Any other registry failure is a RegistryError (never "no such alias")."""
    c = client(settings)
    rm = _lookup(settings, "look up the model", c.get_registered_model, settings.model_name)
    if rm is None:
        return None
    v = (rm.aliases or {}).get(alias)
    return None if v is None else str(v)


def list_versions(settings: Settings) -> list[dict[str, Any]]:
    c = client(settings)
    rm = _lookup(settings, "look up the model", c.get_registered_model, settings.model_name)
    if rm is None:
        return []
    aliases: dict[str, list[str]] = {}
    for a, v in (rm.aliases or {}).items():
        aliases.setdefault(str(v), []).append(a)
    with registry_call(settings, "list versions"):
        versions = c.search_model_versions(f"name='{settings.model_name}'")
    rows = [
        {
            "version": str(v.version),
            "aliases": sorted(aliases.get(str(v.version), [])),
            "run_id": v.run_id,
            "created_ms": v.creation_timestamp,
            "description": v.description or "",
            "tags": dict(v.tags or {}),
        }
        for v in versions
    ]
    return sorted(rows, key=lambda r: int(r["version"]))


def latest_version(settings: Settings) -> str | None:
    rows = list_versions(settings)
    return rows[-1]["version"] if rows else None


def resolve(settings: Settings, ref: str) -> str:
    """A version number for ``ref``: a version number, an alias, or ``latest``."""
    ref = str(ref)
    if ref.isdigit():
        return ref
    v = latest_version(settings) if ref == "latest" else alias_version(settings, ref)
    if v is None:
        raise RegistryError(f"{settings.model_name} has no version or alias {ref!r}")
    return v


# --- files of a version -------------------------------------------------------------------


def version_dir(settings: Settings, version: str) -> Path:
    """The files of a version, downloaded once into a read-only cache folder."""
    import mlflow

    version = str(version)
    dest = settings.data_dir / "models" / settings.model_name / version
    if (dest / METADATA_FILE).is_file():
        return dest
    c = client(settings)
    mv = _lookup(
        settings, f"look up version {version}", c.get_model_version, settings.model_name, version
    )
    if mv is None:
        raise RegistryError(f"{settings.model_name} has no version {version}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=dest.parent))
    try:
        with _quiet_downloads(), registry_call(settings, f"download version {version}"):
            if mv.run_id:
                got = mlflow.artifacts.download_artifacts(
                    run_id=mv.run_id,
                    artifact_path=MODEL_ARTIFACT,
                    dst_path=str(tmp),
                    tracking_uri=settings.tracking_uri,
                )
            else:
                got = mlflow.artifacts.download_artifacts(artifact_uri=mv.source, dst_path=str(tmp))
        src = Path(got)
        if not (src / METADATA_FILE).is_file():
            raise RegistryError(f"{settings.model_name} version {version} has no {METADATA_FILE}")
        try:
            src.rename(dest)
        except OSError:
            if not (dest / METADATA_FILE).is_file():  # not a concurrent download
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


_PROGRESS_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


@contextlib.contextmanager
def _quiet_downloads() -> Iterator[None]:
    """No "Downloading artifacts" progress bar while a version is fetched, unless the user
    set MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR; the variable is put back afterwards."""
    if _PROGRESS_ENV in os.environ:
        yield
        return
    os.environ[_PROGRESS_ENV] = "false"
    try:
        yield
    finally:
        os.environ.pop(_PROGRESS_ENV, None)


def model_file(directory: Path) -> Path:
    for name in ("model.keras", "model.h5"):
        if (directory / name).is_file():
            return directory / name
    raise RegistryError(f"{directory}: no model.keras in the version's files")


def read_metadata(settings: Settings, version: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((version_dir(settings, version) / METADATA_FILE).read_text())
    return data


def read_reference_profile(settings: Settings, version: str) -> Any | None:
    """The version's reference profile as a DataFrame (None for imported models)."""
    import pandas as pd

    p = version_dir(settings, version) / PROFILE_FILE
    return pd.read_parquet(p) if p.is_file() else None


def calibration_file_name() -> str:
    """The drift calibration's file name in a version folder (monitoring.calibration's)."""
    try:
        from monitoring.calibration import CALIBRATION_FILE
    except ImportError:  # the monitor package is optional for training and serving
        return DEFAULT_CALIBRATION_FILE
    return str(CALIBRATION_FILE)


def read_calibration(settings: Settings, version: str) -> dict[str, Any] | None:
    """The version's drift calibration (None when it has none: an imported model, or a
    version trained before calibrations were stored)."""
    p = version_dir(settings, version) / calibration_file_name()
    if not p.is_file():
        return None
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise RegistryError(f"{p}: cannot read the drift calibration: {exc}") from None
    if not isinstance(data, dict):
        raise RegistryError(f"{p}: the drift calibration is not a JSON object")
    return data


def _file_hash(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, Sequence):
        return list(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")
