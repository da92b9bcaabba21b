"""The local single-machine stack: a real Kafka broker (KRaft), Redis and Prometheus.

With ``stack.kafka_brokers`` > 1 Kafka is a cluster of that many KRaft nodes (each a broker
and a controller, one process each, one quorum), on loopback ports of their own; with
``stack.redis_shards`` > 1 Redis is a Redis Cluster of that many primaries (no replicas), its
slots assigned by ``redis-cli --cluster create`` on the first start.
Everything binds to loopback. Each service runs as its own process session; its pid, command
and address are kept in ``<data_dir>/stack/state.json`` so that ``down`` stops exactly what
``up`` started. Logs go to ``<data_dir>/stack/logs/``.

The Kafka broker's jars are resolved from Maven Central by ``deploy/kafka/pom.xml`` into
``<cache_dir>/kafka-<hash of the pom>/libs`` once; later runs find them there and touch no
network.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from wearmon.errors import ConfigError, PrerequisiteError, StackError
from wearmon.settings import REDIS_BUS_OFFSET, Settings

log = logging.getLogger(__name__)

SERVICES = ("kafka", "redis", "prometheus")

#: The Debian packages that provide each program the stack needs.
PREREQUISITES: dict[str, str] = {
    "java": "apt-get install -y openjdk-17-jre-headless",
    "mvn": "apt-get install -y maven",
    "redis-server": "apt-get install -y redis-server",
    "redis-cli": "apt-get install -y redis-tools",
    "prometheus": "apt-get install -y prometheus",
}


def require(program: str) -> str:
    """The path of ``program``, or a PrerequisiteError naming the command that installs it."""
    path = shutil.which(program)
    if path is None:
        hint = PREREQUISITES.get(program, f"install {program}")
        raise PrerequisiteError(f"{program} not found on PATH: install it with `{hint}`")
    return path


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        return s.connect_ex((host, port)) == 0


def free_port() -> int:
    """A port that is free on loopback right now (for tests and ad-hoc stacks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


# --------------------------------------------------------------------------- Kafka jars


def kafka_libs_dir(settings: Settings) -> Path:
    pom = settings.deploy_dir / "kafka" / "pom.xml"
    if not pom.is_file():
        raise StackError(f"{pom} not found: set WEARMON_DEPLOY_DIR to the repository's deploy/")
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:12]
    return settings.cache_dir / f"kafka-{digest}" / "libs"


def fetch_kafka(settings: Settings, *, quiet: bool = True) -> Path:
    """Resolve the broker jars once; a complete cache is reused without touching the network."""
    libs = kafka_libs_dir(settings)
    marker = libs / ".complete"
    if marker.is_file():
        return libs
    mvn = require("mvn")
    require("java")
    pom = settings.deploy_dir / "kafka" / "pom.xml"
    tmp = libs.with_name("libs.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    cmd = [
        mvn,
        "-B",
        *(["-q"] if quiet else []),
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={tmp}",
        "-DincludeScope=runtime",
    ]
    log.info("resolving the Kafka broker jars with Maven into %s", libs)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["no output"]
        raise StackError(f"mvn could not resolve the Kafka jars ({pom}): {tail[0]}")
    jars = sorted(p.name for p in tmp.glob("*.jar"))
    if not any(j.startswith("kafka_2.13-") for j in jars):
        raise StackError(f"mvn ran but no kafka_2.13 jar arrived in {tmp}")
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    marker.write_text("\n".join(jars) + "\n")
    return libs


def kafka_version(libs: Path) -> str:
    for jar in libs.glob("kafka_2.13-*.jar"):
        return jar.stem.removeprefix("kafka_2.13-")
    return "unknown"


def new_cluster_id() -> str:
    """A random KRaft cluster id: 16 bytes, URL-safe base64 without padding.

    Like Kafka's own ``Uuid.randomUuid`` it never starts with '-': the storage tool's
    argument parser would read such an id as an option (about 1 start in 64 failed so).
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


# --------------------------------------------------------------------------- Kafka config


#: the SCRAM mechanisms a SASL_SSL listener can accept besides PLAIN
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class SecureListener:
    """A TLS client listener of the broker, SASL/PLAIN over TLS (``SASL_SSL``) or TLS alone.

    ``keystore_pem`` holds the broker's private key (PKCS#8, unencrypted) and certificate
    chain, ``truststore_pem`` the CA certificates; ``users`` the SASL/PLAIN accounts, the
    first of them also the broker's own identity on its inter-broker connections.
    ``ssl_port``: a second client listener there, TLS without SASL (``SSL``). ``scram``: SCRAM
    mechanisms (``SCRAM-SHA-256``, ``SCRAM-SHA-512``) the SASL_SSL listener accepts besides
    PLAIN; KRaft keeps SCRAM credentials in its metadata log, so they are created once the
    broker runs (the Admin API's ``alter_user_scram_credentials``), not here.
    """

    keystore_pem: Path
    truststore_pem: Path
    users: tuple[tuple[str, str], ...] = ()
    protocol: str = "SASL_SSL"
    ssl_port: int | None = None
    scram: tuple[str, ...] = ()


def _listener_lines(
    settings: Settings, secure: SecureListener | None, ports: tuple[int, int]
) -> list[str]:
    client_port, controller_port = ports
    proto = "PLAINTEXT" if secure is None else secure.protocol
    clients = [(proto, client_port)]
    if secure is not None and secure.ssl_port is not None and proto != "SSL":
        clients.append(("SSL", secure.ssl_port))
    endpoints = ",".join(f"{name}://127.0.0.1:{port}" for name, port in clients)
    protocols = ",".join(f"{name}:{name}" for name, _ in clients)
    lines = [
        f"listeners={endpoints},CONTROLLER://127.0.0.1:{controller_port}",
        f"advertised.listeners={endpoints}",
        f"listener.security.protocol.map={protocols},CONTROLLER:PLAINTEXT",
        f"inter.broker.listener.name={proto}",
    ]
    if secure is None:
        return lines
    lines += [
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={secure.keystore_pem}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={secure.truststore_pem}",
    ]
    if proto == "SASL_SSL":
        if not secure.users:
            raise StackError("a SASL_SSL listener needs at least one SASL/PLAIN user")
        bad = [m for m in secure.scram if m not in SCRAM_MECHANISMS]
        if bad:
            raise StackError(f"unknown SCRAM mechanism {bad[0]!r} (one of {SCRAM_MECHANISMS})")
        (admin, admin_pw), *_ = secure.users
        accounts = " ".join(f'user_{u}="{pw}"' for u, pw in secure.users)
        lines += [
            f"sasl.enabled.mechanisms={','.join(('PLAIN', *secure.scram))}",
            "sasl.mechanism.inter.broker.protocol=PLAIN",
            "listener.name.sasl_ssl.plain.sasl.jaas.config="
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{admin}" password="{admin_pw}" {accounts};',
            *(
                f"listener.name.sasl_ssl.{m.lower()}.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                for m in secure.scram
            ),
        ]
    return lines


def kafka_server_properties(
    settings: Settings, data: Path, secure: SecureListener | None = None, node: int = 1
) -> str:
    """``server.properties`` of KRaft node ``node`` (from 1) of ``stack.kafka_brokers``
    broker+controller nodes, loopback listeners only. Internal topics (consumer offsets,
    transactions) and topics the broker creates itself get the replication the settings
    give a topic on this many brokers (:meth:`KafkaSettings.replication`)."""
    brokers = settings.stack.kafka_brokers
    nodes = settings.ports.kafka_nodes(brokers)
    if not 1 <= node <= brokers:
        raise StackError(f"Kafka node {node} is not one of the stack's {brokers}")
    if secure is not None and brokers > 1:
        raise StackError("a TLS/SASL listener is supported on a single-node stack only")
    replicas, min_isr = settings.kafka.replication(brokers)
    voters = ",".join(f"{i}@127.0.0.1:{ctrl}" for i, (_, ctrl) in enumerate(nodes, start=1))
    lines = [
        "process.roles=broker,controller",
        f"node.id={node}",
        f"controller.quorum.voters={voters}",
        *_listener_lines(settings, secure, nodes[node - 1]),
        "controller.listener.names=CONTROLLER",
        f"log.dirs={data}",
        f"num.partitions={settings.kafka.partitions}",
        "auto.create.topics.enable=true",
        f"default.replication.factor={replicas}",
        f"min.insync.replicas={min_isr}",
        f"offsets.topic.replication.factor={replicas}",
        "offsets.topic.num.partitions=1",
        f"transaction.state.log.replication.factor={replicas}",
        f"transaction.state.log.min.isr={min_isr}",
        "transaction.state.log.num.partitions=1",
        f"share.coordinator.state.topic.replication.factor={replicas}",
        f"share.coordinator.state.topic.min.isr={min_isr}",
        "group.initial.rebalance.delay.ms=0",
        "log.retention.hours=24",
    ]
    return "\n".join(lines) + "\n"


KAFKA_LOG4J = """\
rootLogger.level=INFO
rootLogger.appenderRef.stdout.ref=STDOUT
appender.stdout.type=Console
appender.stdout.name=STDOUT
appender.stdout.layout.type=PatternLayout
appender.stdout.layout.pattern=[%d] %p %m (%c)%n
logger.kafka.name=kafka
logger.kafka.level=WARN
logger.apache.name=org.apache.kafka
logger.apache.level=WARN
logger.started.name=kafka.server.KafkaRaftServer
logger.started.level=INFO
"""


def prepare_kafka(
    settings: Settings,
    d: Path,
    secure: SecureListener | None = None,
    *,
    node: int = 1,
    cluster_id: str | None = None,
) -> list[str]:
    """Write node ``node``'s config into ``d``, format its storage once (with ``cluster_id``,
    the same for every node of a cluster; a new one when None); the broker's argv.

    The config file is private (mode 0600): with a SASL listener it holds the accounts.
    """
    libs = fetch_kafka(settings)
    java = require("java")
    data = d / "data"
    d.mkdir(parents=True, exist_ok=True)
    props = d / "server.properties"
    write_private(props, kafka_server_properties(settings, data, secure, node))
    (d / "log4j2.properties").write_text(KAFKA_LOG4J)
    classpath = f"{libs}/*"
    if not (data / "meta.properties").is_file():
        fmt = subprocess.run(
            [java, "-cp", classpath, "kafka.tools.StorageTool", "format",
             "-t", cluster_id or new_cluster_id(), "-c", str(props)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if fmt.returncode != 0:
            last = (fmt.stdout + fmt.stderr).strip().splitlines()[-1:] or ["no output"]
            raise StackError(f"formatting Kafka storage in {data} failed: {last[0]}")
    return [
        java,
        "-Xms256m",
        "-Xmx512m",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={d / 'log4j2.properties'}",
        "-cp",
        classpath,
        "kafka.Kafka",
        str(props),
    ]


def stored_cluster_id(data: Path) -> str | None:
    """The cluster id a formatted node's storage (``data``) belongs to, None if unformatted."""
    try:
        text = (data / "meta.properties").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "cluster.id":
            return value.strip()
    return None


def redis_quote(directive: str, value: SecretStr) -> str:
    """One ``redis.conf`` line setting ``directive`` to a secret, quoted for Redis."""
    raw = value.get_secret_value()
    escaped = raw.replace("\\", "\\\\").replace('"', '\\"')
    if any(c in raw for c in "\r\n\0"):
        raise ConfigError(f"the {directive} value contains a line break or NUL character")
    return f'{directive} "{escaped}"\n'


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (mode 0600 from the start)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(text)


# --------------------------------------------------------------------------- readiness


def kafka_ready(
    bootstrap: str,
    timeout: float = 2.0,
    conf: dict[str, Any] | None = None,
    *,
    node_id: int | None = None,
    brokers: int = 1,
) -> bool:
    """True once the broker answers a metadata request (``conf``: client security settings)
    that lists at least ``brokers`` brokers, node ``node_id`` among them when given."""
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    if not port_open(int(port), host or "127.0.0.1"):
        return False
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({**(conf or {}), "bootstrap.servers": bootstrap, "log_level": 0})
    try:
        md = admin.list_topics(timeout=timeout)
    except Exception:
        return False
    known = set(md.brokers)
    return len(known) >= max(1, brokers) and (node_id is None or node_id in known)


def redis_ready(url: str, password: str | None = None, **kwargs: Any) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(url, password=password, socket_timeout=1.0, **kwargs)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def redis_cluster_state(url: str, password: str | None = None, **kwargs: Any) -> dict[str, str]:
    """``CLUSTER INFO`` of one Redis Cluster node as a dict ({} when it does not answer);
    ``kwargs`` go to the client (TLS files)."""
    import redis

    try:
        client = redis.Redis.from_url(url, password=password, socket_timeout=1.0, **kwargs)
        try:
            info = client.execute_command("CLUSTER INFO")
        finally:
            client.close()
    except Exception:
        return {}
    if isinstance(info, dict):  # redis-py parses the reply
        return {_text(k): _text(v) for k, v in info.items()}
    text = _text(info)
    return dict(line.strip().split(":", 1) for line in text.splitlines() if ":" in line)


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def prometheus_ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1.0) as resp:
            return bool(resp.status == 200)
    except Exception:
        return False


# --------------------------------------------------------------------------- the stack


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    address: str
    pid: int | None
    running: bool
    ready: bool
    log: str


class LocalStack:
    """Start, stop and inspect the local stack described by ``settings``.

    Its processes are named ``kafka``, ``redis`` and ``prometheus``; with
    ``stack.kafka_brokers`` = N > 1 the Kafka nodes are ``kafka-1`` .. ``kafka-N`` (one
    process each), and ``kafka`` names the whole cluster (its address: every node); with
    ``stack.redis_shards`` = M > 1 the Redis Cluster's primaries are ``redis-1`` ..
    ``redis-M``.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = (settings.data_dir / "stack").resolve()
        self.logs = self.root / "logs"
        self.state_file = self.root / "state.json"
        self._cluster_id: str | None = None  # the id a new cluster's nodes are formatted with

    # -- state
    def _load_state(self) -> dict[str, dict[str, object]]:
        try:
            data = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save_state(self, state: dict[str, dict[str, object]]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)

    # -- the processes
    def kafka_nodes(self) -> list[tuple[str, int, int]]:
        """(process name, client port, controller port) of each Kafka node."""
        n = self.settings.stack.kafka_brokers
        ports = self.settings.ports.kafka_nodes(n)
        if n == 1:
            return [("kafka", *ports[0])]
        return [(f"kafka-{i}", client, ctrl) for i, (client, ctrl) in enumerate(ports, start=1)]

    def redis_nodes(self) -> list[tuple[str, int, int]]:
        """(process name, client port, cluster bus port) of each Redis node."""
        n = self.settings.stack.redis_shards
        ports = self.settings.ports.redis_nodes(n)
        if n == 1:
            return [("redis", ports[0][0], 0)]
        return [(f"redis-{i}", client, bus) for i, (client, bus) in enumerate(ports, start=1)]

    def processes(self, services: Sequence[str] = SERVICES) -> list[str]:
        """The process names of ``services``, in start order."""
        out: list[str] = []
        for name in SERVICES:
            if name == "kafka" and name in services:
                out += [n for n, _, _ in self.kafka_nodes()]
            elif name == "redis" and name in services:
                out += [n for n, _, _ in self.redis_nodes()]
            elif name in services:
                out.append(name)
        return out

    @staticmethod
    def _rank(name: str) -> tuple[int, str]:
        service = name.partition("-")[0]
        return (SERVICES.index(service) if service in SERVICES else len(SERVICES), name)

    def _node(self, name: str) -> tuple[int, int, int] | None:
        """(node id, client port, controller port) of a Kafka process name of this stack."""
        for i, (n, client, ctrl) in enumerate(self.kafka_nodes(), start=1):
            if n == name:
                return i, client, ctrl
        return None

    def _redis_node(self, name: str) -> tuple[int, int] | None:
        """(client port, bus port; 0 for a single server) of a Redis process name."""
        for n, client, bus in self.redis_nodes():
            if n == name:
                return client, bus
        return None

    def _check_ports(self) -> None:
        """Every port of the stack distinct and valid: one line naming the clash."""
        p = self.settings.ports
        wanted = [("prometheus", p.prometheus)]
        for name, client, bus in self.redis_nodes():
            wanted += [(name, client)] + ([(f"{name} cluster bus", bus)] if bus else [])
        for name, client, ctrl in self.kafka_nodes():
            wanted += [(name, client), (f"{name} controller", ctrl)]
        seen: dict[int, str] = {}
        for what, port in wanted:
            if not 0 < port < 65536:
                raise StackError(f"{what}: port {port} is out of range (WEARMON_PORTS__*)")
            if port in seen:
                raise StackError(
                    f"{what} and {seen[port]} both want port {port}: change WEARMON_PORTS__* "
                    "(a cluster's node i uses the Kafka ports + i * WEARMON_PORTS__KAFKA_STEP, "
                    "the Redis port + i * WEARMON_PORTS__REDIS_STEP and that + "
                    f"{REDIS_BUS_OFFSET} for its bus)"
                )
            seen[port] = what

    # -- addresses and checks
    def bootstrap(self) -> str:
        """The Kafka bootstrap servers of this stack: every node."""
        return ",".join(f"127.0.0.1:{client}" for _, client, _ in self.kafka_nodes())

    def address(self, name: str) -> str:
        p = self.settings.ports
        node = self._node(name)
        if node is not None:
            return f"127.0.0.1:{node[1]}"
        rnode = self._redis_node(name)
        if rnode is not None:
            return f"127.0.0.1:{rnode[0]}"
        return {
            "kafka": self.bootstrap(),
            "redis": ",".join(f"127.0.0.1:{c}" for _, c, _ in self.redis_nodes()),
            "prometheus": f"http://127.0.0.1:{p.prometheus}",
        }[name]

    def _ports(self, name: str) -> list[int]:
        p = self.settings.ports
        node = self._node(name)
        if node is not None:
            return [node[1], node[2]]
        rnode = self._redis_node(name)
        if rnode is not None:
            return [port for port in rnode if port]
        return [p.prometheus]

    def _redis_password(self) -> str | None:
        pw = self.settings.redis.password
        return pw.get_secret_value() if pw else None

    def ready(self, name: str, *, brokers: int = 1, formed: bool = True) -> bool:
        """Whether process ``name`` answers; a Kafka node: it is in the cluster's metadata
        (with at least ``brokers`` brokers); a Redis Cluster node: it sees the cluster whole
        (``formed`` False: it answers a PING, before its slots are assigned)."""
        node = self._node(name)
        if node is not None:
            return kafka_ready(self.address(name), node_id=node[0], brokers=brokers)
        if name == "kafka":
            return kafka_ready(self.bootstrap(), brokers=brokers)
        rnode = self._redis_node(name)
        if rnode is not None:
            url = f"redis://{self.address(name)}/0"
            if not redis_ready(url, self._redis_password()):
                return False
            return not rnode[1] or formed is False or self._cluster_ok(name)
        return prometheus_ready(self.settings.ports.prometheus)

    def _cluster_ok(self, name: str) -> bool:
        """Redis Cluster node ``name`` sees the cluster whole: every slot served, every
        primary known."""
        info = redis_cluster_state(f"redis://{self.address(name)}/0", self._redis_password())
        return info.get("cluster_state") == "ok" and int(info.get("cluster_known_nodes", 0)) >= len(
            self.redis_nodes()
        )

    def _form_redis_cluster(self, timeout: float) -> None:
        """Assign the slots of new Redis Cluster nodes (``redis-cli --cluster create``, the
        password through the environment, never argv), then wait until every node sees
        the cluster whole. Nodes that already form one (their nodes.conf) are left as they
        are."""
        nodes = [n for n, _, _ in self.redis_nodes()]
        pw = self._redis_password()
        infos = [redis_cluster_state(f"redis://{self.address(n)}/0", pw) for n in nodes]
        if all(int(i.get("cluster_slots_assigned", 0)) == 0 for i in infos):
            env = dict(os.environ)
            env.pop("REDISCLI_AUTH", None)
            if pw is not None:
                env["REDISCLI_AUTH"] = pw
            proc = subprocess.run(
                [require("redis-cli"), "--cluster", "create",
                 *(self.address(n) for n in nodes),
                 "--cluster-replicas", "0", "--cluster-yes"],
                capture_output=True, text=True, check=False, env=env, timeout=timeout,
            )  # fmt: skip
            if proc.returncode != 0:
                last = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["no output"]
                raise StackError(f"redis-cli --cluster create failed: {last[0]}")
        deadline = time.monotonic() + timeout
        while not all(self._cluster_ok(n) for n in nodes):
            if time.monotonic() > deadline:
                raise StackError(
                    f"the Redis Cluster ({', '.join(nodes)}) is not whole after "
                    f"{timeout:.0f} s; see the logs in {self.logs}"
                )
            time.sleep(0.2)

    # -- service definitions
    def _kafka_argv(self, name: str) -> list[str]:
        node = self._node(name)
        assert node is not None
        if len(self.kafka_nodes()) == 1:
            return prepare_kafka(self.settings, self.root / "kafka")
        cluster_id = self._nodes_cluster_id()
        return prepare_kafka(self.settings, self.root / name, node=node[0], cluster_id=cluster_id)

    def _nodes_cluster_id(self) -> str:
        """The cluster id of the nodes' storage: the one formatted nodes have, else one new
        id for every node (kept, so that nodes formatted one by one agree)."""
        ids = {stored_cluster_id(self.root / n / "data") for n, _, _ in self.kafka_nodes()}
        ids.discard(None)
        if len(ids) > 1:
            raise StackError(
                f"the Kafka nodes' storage in {self.root} belongs to different clusters "
                f"({', '.join(sorted(str(i) for i in ids))}): remove the kafka-* folders"
            )
        if ids:
            return str(next(iter(ids)))
        if self._cluster_id is None:
            self._cluster_id = new_cluster_id()
        return self._cluster_id

    def redis_config(self, name: str) -> str:
        """The private ``redis.conf`` of Redis process ``name``: the password (never on the
        command line, `ps` shows that), and a cluster node's cluster settings (its bus port
        is Redis's default, the client port + 10000; ``nodes.conf`` in its folder)."""
        pw = self.settings.redis.password
        lines = "" if pw is None else redis_quote("requirepass", pw)
        node = self._redis_node(name)
        if node is not None and node[1]:
            if pw is not None:
                lines += redis_quote("masterauth", pw)
            lines += (
                "cluster-enabled yes\n"
                "cluster-config-file nodes.conf\n"
                "cluster-node-timeout 5000\n"
                # a node that lost a primary still serves the slots it has
                "cluster-require-full-coverage no\n"
            )
        return lines

    def _redis_argv(self, name: str = "redis") -> list[str]:
        exe = require("redis-server")
        node = self._redis_node(name)
        assert node is not None
        d = self.root / name
        d.mkdir(parents=True, exist_ok=True)
        conf = d / "redis.conf"
        write_private(conf, self.redis_config(name))
        argv = [
            exe,
            str(conf),
            "--bind", "127.0.0.1",
            "--port", str(node[0]),
            "--dir", str(d),
            "--daemonize", "no",
            "--appendonly", "yes",
            "--save", "",
            # a full Redis refuses writes (the worker retries them) and never evicts a key:
            # an evicted checkpoint would lose windows (docs/stream.md)
            "--maxmemory", self.settings.redis.maxmemory,
            "--maxmemory-policy", "noeviction",
        ]  # fmt: skip
        return argv

    def prometheus_config(self) -> str:
        """The local Prometheus config: itself plus every wearmon metrics endpoint."""
        m = self.settings.metrics
        rules = sorted((self.settings.deploy_dir / "prometheus" / "rules").glob("*.yml"))
        lines = [
            "global:",
            "  scrape_interval: 5s",
            "  evaluation_interval: 5s",
        ]
        if rules:
            lines.append("rule_files:")
            lines += [f"  - {r}" for r in rules]
        lines += [
            "scrape_configs:",
            "  - job_name: prometheus",
            "    static_configs:",
            f"      - targets: ['127.0.0.1:{self.settings.ports.prometheus}']",
        ]
        for job, port in (
            ("wearmon-stream", m.stream_port),
            ("wearmon-replay", m.replay_port),
            ("wearmon-monitor", m.monitor_port),
        ):
            lines += [
                f"  - job_name: {job}",
                "    static_configs:",
                f"      - targets: ['127.0.0.1:{port}']",
            ]
        return "\n".join(lines) + "\n"

    def _prometheus_argv(self) -> list[str]:
        exe = require("prometheus")
        d = self.root / "prometheus"
        (d / "tsdb").mkdir(parents=True, exist_ok=True)
        cfg = d / "prometheus.yml"
        cfg.write_text(self.prometheus_config())
        return [
            exe,
            f"--config.file={cfg}",
            f"--storage.tsdb.path={d / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.settings.ports.prometheus}",
            "--storage.tsdb.retention.time=2d",
        ]

    def _argv(self, name: str) -> list[str]:
        if self._node(name) is not None:
            return self._kafka_argv(name)
        if self._redis_node(name) is not None:
            return self._redis_argv(name)
        return self._prometheus_argv()

    def _other_layout(self, state: dict[str, dict[str, object]], service: str) -> list[str]:
        """Processes of ``service`` (kafka, redis) recorded as running that this configuration
        does not have (a cluster under a single-node configuration, or the other way round)."""
        mine = set(self.processes([service]))
        return sorted(
            name
            for name, entry in state.items()
            if name.partition("-")[0] == service
            and name not in mine
            and isinstance(entry.get("pid"), int)
            and pid_alive(int(str(entry["pid"])))
        )

    # -- lifecycle
    def up(self, timeout: float = 90.0, services: Sequence[str] = SERVICES) -> dict[str, float]:
        """Start every service (of ``services``) that is not running and wait until all are
        ready (a Kafka cluster: every node in the metadata).

        Returns the seconds each process took to become ready (0 for one already running).
        """
        unknown = sorted(set(services) - set(SERVICES))
        if unknown:
            raise StackError(f"unknown stack service {unknown[0]!r}; known: {', '.join(SERVICES)}")
        programs = {"kafka": "java", "redis": "redis-server", "prometheus": "prometheus"}
        for name in services:
            require(programs[name])
        self._check_ports()
        state = self._load_state()
        if "kafka" in services:
            other = self._other_layout(state, "kafka")
            if other:
                raise StackError(
                    f"this stack's Kafka runs as {', '.join(other)}, not as configured "
                    f"({self.settings.stack.kafka_brokers} node(s)): `wearmon stack down` first"
                )
            fetch_kafka(self.settings)
        if "redis" in services:
            other = self._other_layout(state, "redis")
            if other:
                raise StackError(
                    f"this stack's Redis runs as {', '.join(other)}, not as configured "
                    f"({self.settings.stack.redis_shards} node(s)): `wearmon stack down` first"
                )
            if self.settings.stack.redis_shards > 1:
                require("redis-cli")
        self.logs.mkdir(parents=True, exist_ok=True)
        brokers = self.settings.stack.kafka_brokers
        t0 = time.monotonic()
        started: dict[str, subprocess.Popen[bytes]] = {}
        timings: dict[str, float] = {}
        try:
            to_start = []
            for name in self.processes(services):
                entry = state.get(name)
                if entry and pid_alive(int(str(entry["pid"]))):
                    timings[name] = 0.0
                    continue
                for port in self._ports(name):
                    if port_open(port):
                        raise StackError(
                            f"{name}: port {port} on 127.0.0.1 is already in use by another "
                            "process; choose other ports with WEARMON_PORTS__*"
                        )
                to_start.append(name)
            if brokers > 1 and any(self._node(n) for n in to_start):
                self._nodes_cluster_id()  # decided once, before the nodes format side by side
            with ThreadPoolExecutor(max(1, len(to_start))) as pool:  # JVM storage formats
                argvs = dict(zip(to_start, pool.map(self._argv, to_start), strict=True))
            for name in to_start:
                argv = argvs[name]
                logf = self.logs / f"{name}.log"
                with open(logf, "ab") as out:
                    proc = subprocess.Popen(
                        argv,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        start_new_session=True,
                        cwd=self.root,
                    )
                started[name] = proc
                state[name] = {
                    "pid": proc.pid,
                    "argv0": argv[0],
                    "address": self.address(name),
                    "log": str(logf),
                    "started": time.time(),
                }
                self._save_state(state)
            pending = set(started)
            deadline = t0 + timeout
            while pending:
                for name in sorted(pending):
                    proc = started[name]
                    if proc.poll() is not None:
                        raise StackError(
                            f"{name} exited with code {proc.returncode} during start-up; "
                            f"see {self.logs / (name + '.log')}"
                        )
                    if self.ready(name, brokers=brokers, formed=False):
                        timings[name] = time.monotonic() - t0
                        pending.discard(name)
                if pending and time.monotonic() > deadline:
                    raise StackError(
                        f"not ready after {timeout:.0f} s: {', '.join(sorted(pending))}; "
                        f"see the logs in {self.logs}"
                    )
                if pending:
                    time.sleep(0.2)
            redis_cluster = [n for n in started if (self._redis_node(n) or (0, 0))[1]]
            if redis_cluster:
                self._form_redis_cluster(max(5.0, deadline - time.monotonic()))
                for name in redis_cluster:
                    timings[name] = time.monotonic() - t0
        except BaseException:
            self._stop_all([(name, state.get(name, {})) for name in started])
            for name in started:
                state.pop(name, None)
            self._save_state(state)
            raise
        return timings

    def _signal(self, name: str, entry: dict[str, object]) -> int | None:
        """SIGTERM to one recorded process (and its group); its pid, None if it was not up."""
        pid = entry.get("pid")
        if not isinstance(pid, int) or not pid_alive(pid):
            return None
        argv0 = str(entry.get("argv0", ""))
        if argv0 and Path(argv0).name not in _cmdline(pid):
            log.warning("pid %d is no longer %s; leaving it alone", pid, name)
            return None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
        return pid

    def _stop_all(
        self, entries: list[tuple[str, dict[str, object]]], grace: float = 20.0
    ) -> list[str]:
        """Stop recorded processes together (the nodes of a cluster shut down side by side:
        one after the other, the last ones would wait for a lost quorum): SIGTERM to each,
        SIGKILL to those still up after ``grace`` seconds. Returns the names that were up."""
        pids = {name: pid for name, entry in entries if (pid := self._signal(name, entry))}
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(pid_alive(p) for p in pids.values()):
            for p in pids.values():
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(p, os.WNOHANG)
            time.sleep(0.1)
        for name, pid in pids.items():
            if pid_alive(pid):
                log.warning("%s (pid %d) ignored SIGTERM for %.0f s; killing it", name, pid, grace)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                while pid_alive(pid):
                    time.sleep(0.05)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        return list(pids)

    def down(self) -> list[str]:
        """Stop exactly what ``up`` started (whatever its Kafka nodes were). Returns the
        names of the processes stopped."""
        state = self._load_state()
        stopped: list[str] = []
        names = sorted(state, key=self._rank, reverse=True)
        for service in reversed(SERVICES):  # prometheus, redis, then every Kafka node at once
            group = [n for n in names if n.partition("-")[0] == service]
            stopped += self._stop_all([(n, state.pop(n)) for n in group])
        self._save_state(state)
        return stopped

    def status(self) -> list[ServiceStatus]:
        """Every process of this configuration, and any other recorded one (a cluster's
        nodes under a single-node configuration)."""
        state = self._load_state()
        names = set(self.processes()) | set(state)
        for service in ("kafka", "redis"):
            if self._other_layout(state, service):  # it runs as recorded, not as configured
                names -= set(self.processes([service])) - set(state)
        out = []
        for name in sorted(names, key=self._rank):
            entry = state.get(name) or {}
            pid = entry.get("pid")
            running = isinstance(pid, int) and pid_alive(pid)
            if name in self.processes():
                address = self.address(name)
                ready = running and self.ready(name)
            else:  # recorded by an `up` with other settings: its recorded address
                address = str(entry.get("address", "?"))
                node = name.partition("-")[2]
                ready = running and node.isdigit()
                if name.startswith("kafka-"):
                    ready = ready and kafka_ready(address, node_id=int(node))
                elif name.startswith("redis-"):
                    info = redis_cluster_state(f"redis://{address}/0", self._redis_password())
                    ready = ready and info.get("cluster_state") == "ok"
                else:
                    ready = False
            out.append(
                ServiceStatus(
                    name=name,
                    address=address,
                    pid=pid if isinstance(pid, int) else None,
                    running=running,
                    ready=ready,
                    log=str(self.logs / f"{name}.log"),
                )
            )
        return out
