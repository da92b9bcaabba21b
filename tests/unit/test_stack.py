"""Pure parts of the local stack: prerequisites, the jar cache, the Prometheus config, the
Kafka nodes' configs and process bookkeeping."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from wearmon.errors import ConfigError, PrerequisiteError, StackError
from wearmon.settings import Settings
from wearmon.stack import (
    LocalStack,
    SecureListener,
    fetch_kafka,
    kafka_libs_dir,
    kafka_server_properties,
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


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def test_single_node_config_is_replication_1(tmp_path: Path) -> None:
    props = _props(kafka_server_properties(Settings(), tmp_path / "data"))
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    for key in ("default.replication.factor", "offsets.topic.replication.factor",
                "transaction.state.log.replication.factor", "min.insync.replicas",
                "transaction.state.log.min.isr"):  # fmt: skip
        assert props[key] == "1", key


def test_a_sasl_ssl_listener_can_accept_scram_besides_plain(tmp_path: Path) -> None:
    pem = tmp_path / "x.pem"
    users = (("broker", "b-pw"), ("app", "a-pw"))
    secure = SecureListener(pem, pem, users=users, scram=("SCRAM-SHA-512",))
    props = _props(kafka_server_properties(Settings(), tmp_path / "data", secure))
    assert props["sasl.enabled.mechanisms"] == "PLAIN,SCRAM-SHA-512"
    assert props["sasl.mechanism.inter.broker.protocol"] == "PLAIN"
    assert props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"] == (
        "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    )
    plain_only = SecureListener(pem, pem, users=users)
    props = _props(kafka_server_properties(Settings(), tmp_path / "data", plain_only))
    assert props["sasl.enabled.mechanisms"] == "PLAIN"
    with pytest.raises(StackError, match="unknown SCRAM mechanism 'SCRAM-MD5'"):
        kafka_server_properties(
            Settings(),
            tmp_path / "data",
            SecureListener(pem, pem, users=users, scram=("SCRAM-MD5",)),
        )


def test_cluster_nodes_share_one_quorum_on_their_own_ports(tmp_path: Path) -> None:
    s = Settings(
        ports={"kafka": 19092, "kafka_controller": 19093, "kafka_step": 10},
        stack={"kafka_brokers": 3},
    )
    assert s.kafka.bootstrap_servers == "127.0.0.1:19092,127.0.0.1:19102,127.0.0.1:19112"
    voters = "1@127.0.0.1:19093,2@127.0.0.1:19103,3@127.0.0.1:19113"
    for node, port in ((1, 19092), (2, 19102), (3, 19112)):
        props = _props(kafka_server_properties(s, tmp_path / f"n{node}", node=node))
        assert props["node.id"] == str(node)
        assert props["controller.quorum.voters"] == voters
        assert props["listeners"] == (
            f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{port + 1}"
        )
        assert props["default.replication.factor"] == "3"
        assert props["offsets.topic.replication.factor"] == "3"
        assert props["min.insync.replicas"] == "2"
        assert props["transaction.state.log.min.isr"] == "2"
    with pytest.raises(StackError, match="node 4"):
        kafka_server_properties(s, tmp_path, node=4)


def test_cluster_process_names_and_addresses(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, ports={"kafka": 19092}, stack={"kafka_brokers": 3})
    stack = LocalStack(s)
    assert stack.processes() == ["kafka-1", "kafka-2", "kafka-3", "redis", "prometheus"]
    assert stack.processes(["kafka"]) == ["kafka-1", "kafka-2", "kafka-3"]
    assert stack.address("kafka-2") == "127.0.0.1:19102"
    assert stack.address("kafka") == s.kafka.bootstrap_servers
    assert LocalStack(Settings(data_dir=tmp_path)).processes(["kafka"]) == ["kafka"]


def test_clashing_cluster_ports_are_one_clear_error(tmp_path: Path) -> None:
    s = Settings(
        data_dir=tmp_path,
        ports={"kafka": 19092, "kafka_controller": 19093, "kafka_step": 1},
        stack={"kafka_brokers": 3},
    )
    with pytest.raises(StackError) as exc:
        LocalStack(s).up(services=["kafka"])
    assert "both want port 19093" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_replication_needs_enough_brokers() -> None:
    k = Settings().kafka
    assert k.replication(1) == (1, 1)  # the single-node stack
    assert k.replication(3) == (3, 2)
    assert k.replication(5) == (3, 2)
    with pytest.raises(ConfigError, match="replication factor 3 needs 3 Kafka brokers, 2 are up"):
        k.replication(2)
    with pytest.raises(ValidationError, match="min_insync_replicas 3 exceeds"):
        Settings(kafka={"replication_factor": 2, "min_insync_replicas": 3})


def test_down_stops_every_recorded_node_whatever_the_settings(tmp_path: Path) -> None:
    """A cluster started with --cluster is stopped (and shown) by commands without it."""
    procs = [subprocess.Popen(["sleep", "30"], start_new_session=True) for _ in range(2)]
    try:
        stack = LocalStack(Settings(data_dir=tmp_path))  # configured: a single node
        sleep = shutil.which("sleep") or "sleep"
        stack._save_state(
            {f"kafka-{i}": {"pid": p.pid, "argv0": sleep, "address": f"127.0.0.1:{9092 + i}"}
             for i, p in enumerate(procs, start=1)}
        )  # fmt: skip
        names = [st.name for st in stack.status()]
        assert names[:2] == ["kafka-1", "kafka-2"] and "kafka" not in names
        with pytest.raises(StackError, match="runs as kafka-1, kafka-2"):
            stack.up(services=["kafka"])
        assert sorted(stack.down()) == ["kafka-1", "kafka-2"]
        for p in procs:
            assert p.wait(5) is not None
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


def test_redis_cluster_nodes_names_ports_and_client_settings(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, ports={"redis": 16000, "redis_step": 5},
                 stack={"redis_shards": 3})  # fmt: skip
    assert s.redis.url == "redis://127.0.0.1:16000/0" and s.redis.cluster
    stack = LocalStack(s)
    assert stack.processes(["redis"]) == ["redis-1", "redis-2", "redis-3"]
    assert stack.address("redis-3") == "127.0.0.1:16010"
    assert stack.address("redis") == "127.0.0.1:16000,127.0.0.1:16005,127.0.0.1:16010"
    assert stack._ports("redis-2") == [16005, 26005]  # the client port and the cluster bus
    assert not Settings(data_dir=tmp_path).redis.cluster
    assert LocalStack(Settings(data_dir=tmp_path)).processes(["redis"]) == ["redis"]
    # a URL that is set is another Redis: cluster-aware only when it says so
    assert not Settings(redis={"url": "redis://db:6379/0"}, stack={"redis_shards": 3}).redis.cluster
    with pytest.raises(ValidationError, match="at least 3 primaries"):
        Settings(stack={"redis_shards": 2})


def test_redis_cluster_node_config_holds_the_password_and_the_cluster(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, stack={"redis_shards": 3}, redis={"password": 'a"b'})
    conf = LocalStack(s).redis_config("redis-2")
    assert 'requirepass "a\\"b"' in conf and 'masterauth "a\\"b"' in conf
    assert "cluster-enabled yes" in conf and "cluster-config-file nodes.conf" in conf
    argv = LocalStack(s)._redis_argv("redis-2")
    assert argv[argv.index("--port") + 1] == "6389"
    assert argv[argv.index("--dir") + 1] == str((tmp_path / "stack" / "redis-2").resolve())
    assert not any('a"b' in a for a in argv)  # the password never on the command line
    single = LocalStack(Settings(data_dir=tmp_path)).redis_config("redis")
    assert "cluster" not in single


def test_a_redis_bus_port_clash_is_one_clear_error(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, ports={"redis": 16000, "prometheus": 26010},
                 stack={"redis_shards": 3})  # fmt: skip
    with pytest.raises(StackError) as exc:
        LocalStack(s).up(services=["redis"])
    assert "redis-2 cluster bus and prometheus both want port 26010" in str(exc.value)
    assert "\n" not in str(exc.value)
