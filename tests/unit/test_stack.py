"""Pure parts of the local stack: prerequisites, the jar cache, the Prometheus config."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from wearmon.errors import PrerequisiteError, StackError
from wearmon.settings import Settings
from wearmon.stack import (
    LocalStack,
    fetch_kafka,
    kafka_libs_dir,
    new_cluster_id,
    pid_alive,
    require,
)


def test_missing_prerequisite_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(PrerequisiteError) as exc:
        require("redis-server")
    msg = str(exc.value)
    assert "\n" not in msg
    assert "redis-server not found" in msg
    assert "apt-get install -y redis-server" in msg


def test_complete_jar_cache_is_reused_without_maven(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")
    libs = kafka_libs_dir(settings)
    libs.mkdir(parents=True)
    (libs / "kafka_2.13-9.9.9.jar").write_bytes(b"")
    (libs / ".complete").write_text("kafka_2.13-9.9.9.jar\n")
    # With no mvn (and no network) on PATH, a complete cache must still be found.
    monkeypatch.setenv("PATH", "/nonexistent")
    assert fetch_kafka(settings) == libs


def test_incomplete_cache_needs_maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")
    kafka_libs_dir(settings).mkdir(parents=True)  # no .complete marker
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(PrerequisiteError, match="mvn not found"):
        fetch_kafka(settings)


def test_cache_key_follows_the_pom(tmp_path: Path) -> None:
    deploy = tmp_path / "deploy"
    (deploy / "kafka").mkdir(parents=True)
    (deploy / "kafka" / "pom.xml").write_text("<project>a</project>")
    s = Settings(deploy_dir=deploy, cache_dir=tmp_path)
    first = kafka_libs_dir(s)
    (deploy / "kafka" / "pom.xml").write_text("<project>b</project>")
    assert kafka_libs_dir(s) != first


def test_missing_pom_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StackError, match=r"pom\.xml not found"):
        kafka_libs_dir(Settings(deploy_dir=tmp_path))


def test_prometheus_config_scrapes_every_wearmon_process(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        ports={"prometheus": 19999},
        metrics={"stream_port": 18001, "replay_port": 18002, "monitor_port": 18003},
    )
    cfg = LocalStack(settings).prometheus_config()
    for target in ("127.0.0.1:19999", "127.0.0.1:18001", "127.0.0.1:18002", "127.0.0.1:18003"):
        assert f"'{target}'" in cfg
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (make setup installs it)")
    path = tmp_path / "prometheus.yml"
    path.write_text(cfg)
    proc = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_down_without_up_stops_nothing(tmp_path: Path) -> None:
    assert LocalStack(Settings(data_dir=tmp_path)).down() == []


def test_down_leaves_a_reused_pid_alone(tmp_path: Path) -> None:
    """A stale state file whose pid now belongs to another program is not killed."""
    proc = subprocess.Popen(["sleep", "30"])
    try:
        stack = LocalStack(Settings(data_dir=tmp_path))
        stack._save_state({"redis": {"pid": proc.pid, "argv0": "/usr/bin/redis-server"}})
        assert stack.down() == []
        assert pid_alive(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def test_cluster_ids_never_look_like_an_option(monkeypatch: pytest.MonkeyPatch) -> None:
    """An id starting with '-' made `kafka-storage format -t ID` fail (1 start in 64)."""
    import uuid as uuid_mod

    dash = uuid_mod.UUID(bytes=b"\xfb" + bytes(15))  # base64 of 0xfb... starts with '-'
    fresh = iter([dash, uuid_mod.UUID(int=1)])
    monkeypatch.setattr("wearmon.stack.uuid.uuid4", lambda: next(fresh))
    cid = new_cluster_id()
    assert not cid.startswith("-")
    assert len(cid) == 22
