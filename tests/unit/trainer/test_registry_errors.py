"""Registry errors are errors: only MLflow's "does not exist" means "no such alias/model";
a broken store is a one-line RegistryError, never a silent None."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from trainer import registry
from wearmon.errors import RegistryError
from wearmon.settings import Settings


def _store(tmp_path: Path) -> tuple[Settings, Path]:
    db = tmp_path / "mlflow.db"
    return Settings(data_dir=tmp_path / "data", mlflow_tracking_uri=f"sqlite:///{db}"), db


def test_missing_model_and_alias_are_none_not_errors(tmp_path: Path) -> None:
    s, _ = _store(tmp_path)
    assert registry.alias_version(s) is None
    assert registry.list_versions(s) == []
    registry.client(s).create_registered_model(s.model_name)
    assert registry.alias_version(s, "champion") is None  # model exists, alias does not
    with pytest.raises(RegistryError, match="has no version 7"):
        registry.set_alias(s, "champion", "7")


def test_a_store_that_is_not_a_database_is_a_registry_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not a database " * 100)
    s = Settings(data_dir=tmp_path / "data", mlflow_tracking_uri=f"sqlite:///{bad}")
    for call in (registry.alias_version, registry.list_versions, registry.latest_version):
        with pytest.raises(RegistryError) as exc:
            call(s)
        msg = str(exc.value)
        assert "\n" not in msg and msg.startswith(f"model registry sqlite:///{bad}: cannot")
        assert "not a database" in msg


def test_a_broken_table_is_an_error_not_no_such_alias(tmp_path: Path) -> None:
    s, db = _store(tmp_path)
    registry.client(s).create_registered_model(s.model_name)
    assert registry.alias_version(s) is None
    with sqlite3.connect(db) as con:
        con.execute("DROP TABLE registered_model_aliases")
    with pytest.raises(RegistryError, match="cannot look up the model") as exc:
        registry.alias_version(s)
    assert "\n" not in str(exc.value)
    with pytest.raises(RegistryError):
        registry.resolve(s, "champion")  # not "has no version or alias"


def test_credentials_in_the_tracking_uri_are_not_shown() -> None:
    s = Settings(mlflow_tracking_uri="http://user:secret@mlflow.example:5000")
    err = registry.registry_error(s, "look up the model", RuntimeError("boom\nmore"))
    assert str(err) == ("model registry http://mlflow.example:5000: cannot look up the model: boom")
