"""Helpers of the security tests: a throw-away PKI, a TLS-only Redis (a single server or a
Redis Cluster) and a SASL_SSL broker.

Certificates are made here with the ``cryptography`` package (EC P-256, valid one day): a CA,
a server certificate for 127.0.0.1/localhost signed by it, a client certificate, and a second,
unrelated CA for the negative tests.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from wearmon.settings import REDIS_BUS_OFFSET, KafkaSettings, Settings
from wearmon.stack import (
    SecureListener,
    free_port,
    kafka_ready,
    prepare_kafka,
    redis_cluster_state,
    redis_quote,
    redis_ready,
    require,
    write_private,
)


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA that signed server and client
    other_ca: Path  # an unrelated CA (signed nothing here)
    server_cert: Path
    server_key: Path
    server_keystore: Path  # key + certificate chain in one PEM file (Kafka's PEM keystore)
    client_cert: Path
    client_key: Path


def _name(cn: str) -> Any:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key: Any, issuer: str, issuer_key: Any, *, ca: bool, san: bool) -> Any:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    now = dt.datetime.now(dt.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        b = b.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return b.sign(issuer_key, hashes.SHA256())


def make_pki(d: Path) -> Pki:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    d.mkdir(parents=True, exist_ok=True)

    def key() -> Any:
        return ec.generate_private_key(ec.SECP256R1())

    def pem_cert(c: Any) -> bytes:
        return bytes(c.public_bytes(serialization.Encoding.PEM))

    def pem_key(k: Any) -> bytes:
        return bytes(
            k.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    ca_key, other_key, srv_key, cli_key = key(), key(), key(), key()
    ca = _cert("wearmon test CA", ca_key, "wearmon test CA", ca_key, ca=True, san=False)
    other = _cert("unrelated CA", other_key, "unrelated CA", other_key, ca=True, san=False)
    srv = _cert("127.0.0.1", srv_key, "wearmon test CA", ca_key, ca=False, san=True)
    cli = _cert("wearmon-client", cli_key, "wearmon test CA", ca_key, ca=False, san=False)
    pki = Pki(
        ca=d / "ca.pem",
        other_ca=d / "other-ca.pem",
        server_cert=d / "server.pem",
        server_key=d / "server.key",
        server_keystore=d / "server-keystore.pem",
        client_cert=d / "client.pem",
        client_key=d / "client.key",
    )
    pki.ca.write_bytes(pem_cert(ca))
    pki.other_ca.write_bytes(pem_cert(other))
    pki.server_cert.write_bytes(pem_cert(srv) + pem_cert(ca))
    pki.client_cert.write_bytes(pem_cert(cli))
    for path, k in ((pki.server_key, srv_key), (pki.client_key, cli_key)):
        path.write_bytes(pem_key(k))
        path.chmod(0o600)
    pki.server_keystore.write_bytes(pem_key(srv_key) + pem_cert(srv) + pem_cert(ca))
    pki.server_keystore.chmod(0o600)
    return pki


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@contextmanager
def tls_redis(d: Path, pki: Pki, password: str) -> Iterator[int]:
    """A redis-server that only speaks TLS (``port 0``), requires a client certificate
    signed by the CA and a password; yields its TLS port."""
    exe = require("redis-server")
    port = free_port()
    conf = d / "redis-tls.conf"
    write_private(conf, "\n".join([*_tls_node_conf(pki, password, port, d), ""]))
    log = open(d / "redis-tls.log", "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([exe, str(conf)], stdout=log, stderr=subprocess.STDOUT)
    kwargs = tls_client_kwargs(pki)
    try:
        deadline = time.monotonic() + 20
        while not redis_ready(f"rediss://127.0.0.1:{port}/0", password, **kwargs):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"TLS redis did not start: {(d / 'redis-tls.log').read_text()}")
            time.sleep(0.1)
        yield port
    finally:
        _stop(proc)
        log.close()


def _tls_node_conf(pki: Pki, password: str, port: int, d: Path) -> list[str]:
    """A TLS-only redis-server's configuration lines (no plain port): a client certificate
    signed by the CA and ``password`` required."""
    return [
        "bind 127.0.0.1",
        "port 0",
        f"tls-port {port}",
        f"tls-cert-file {pki.server_cert}",
        f"tls-key-file {pki.server_key}",
        f"tls-ca-cert-file {pki.ca}",
        "tls-auth-clients yes",
        redis_quote("requirepass", SecretStr(password)).rstrip("\n"),
        f"dir {d}",
        'save ""',
        "appendonly no",
    ]


def tls_client_kwargs(pki: Pki) -> dict[str, str]:
    """redis-py's TLS arguments of the test client certificate."""
    return {
        "ssl_ca_certs": str(pki.ca),
        "ssl_certfile": str(pki.client_cert),
        "ssl_keyfile": str(pki.client_key),
    }


@contextmanager
def tls_redis_cluster(d: Path, pki: Pki, password: str, ports: list[int]) -> Iterator[list[int]]:
    """A Redis Cluster of ``len(ports)`` primaries that only speaks TLS, clients and cluster
    bus alike (``tls-cluster yes``; a node's bus port ``REDIS_BUS_OFFSET`` above its port),
    each requiring a client certificate signed by the CA and ``password``; the slots assigned
    by the real ``redis-cli --tls --cluster create``. Yields the ports once every node sees
    the cluster whole."""
    exe, cli = require("redis-server"), require("redis-cli")
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        for i, port in enumerate(ports):
            node = d / f"node-{i}"
            node.mkdir(parents=True, exist_ok=True)
            conf = node / "redis.conf"
            lines = [
                *_tls_node_conf(pki, password, port, node),
                "tls-cluster yes",
                "cluster-enabled yes",
                "cluster-config-file nodes.conf",
                f"cluster-port {port + REDIS_BUS_OFFSET}",
                "cluster-node-timeout 5000",
                redis_quote("masterauth", SecretStr(password)).rstrip("\n"),
                "",
            ]
            write_private(conf, "\n".join(lines))
            logs.append(open(node / "redis.log", "ab"))  # noqa: SIM115 - closed below
            procs.append(
                subprocess.Popen([exe, str(conf)], stdout=logs[-1], stderr=subprocess.STDOUT)
            )
        kwargs = tls_client_kwargs(pki)
        urls = [f"rediss://127.0.0.1:{p}/0" for p in ports]
        deadline = time.monotonic() + 30
        while not all(redis_ready(u, password, **kwargs) for u in urls):
            dead = [i for i, p in enumerate(procs) if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                log = (d / f"node-{(dead or [0])[0]}" / "redis.log").read_text()
                raise RuntimeError(f"TLS Redis Cluster node did not start: {log[-2000:]}")
            time.sleep(0.1)
        tls = ["--tls", "--cacert", str(pki.ca), "--cert", str(pki.client_cert),
               "--key", str(pki.client_key)]  # fmt: skip
        created = subprocess.run(
            [cli, *tls, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            env={"REDISCLI_AUTH": password, "PATH": "/usr/bin:/bin"},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create: {created.stdout}{created.stderr}")

        def whole(url: str) -> bool:
            info = redis_cluster_state(url, password, **kwargs)
            return info.get("cluster_state") == "ok" and info.get("cluster_known_nodes") == str(
                len(ports)
            )

        while not all(whole(u) for u in urls):
            if time.monotonic() > deadline + 30:
                raise RuntimeError("the TLS Redis Cluster did not form")
            time.sleep(0.1)
        yield ports
    finally:
        for p in procs:
            _stop(p)
        for log in logs:
            log.close()


SASL_USERS = (("broker", "broker-pw-7f3a"), ("wearmon", "wearmon-pw-91c2"))


#: the SCRAM mechanism the test broker accepts besides PLAIN, and the ``wearmon`` user's SCRAM
#: password: another than its PLAIN one, so a client that got in with it used SCRAM
SCRAM = "SCRAM-SHA-512"
SCRAM_PASSWORD = "wearmon-scram-pw-5d1e"


def secure_kafka_settings(settings: Settings, pki: Pki, mechanism: str = "PLAIN") -> Settings:
    """``settings`` pointed at the SASL_SSL broker as the ``wearmon`` SASL user."""
    user, password = SASL_USERS[1]
    if mechanism == SCRAM:
        password = SCRAM_PASSWORD
    kafka = KafkaSettings.model_validate(
        {
            **settings.kafka.model_dump(),
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": mechanism,
            "sasl_username": user,
            "sasl_password": password,
            "ssl_cafile": pki.ca,
        }
    )
    return settings.model_copy(update={"kafka": kafka})


def ssl_kafka_settings(settings: Settings, pki: Pki, port: int) -> Settings:
    """``settings`` pointed at the broker's TLS-only (``SSL``) listener on ``port``."""
    kafka = KafkaSettings.model_validate(
        {
            **settings.kafka.model_dump(),
            "bootstrap_servers": f"127.0.0.1:{port}",
            "security_protocol": "SSL",
            "ssl_cafile": pki.ca,
        }
    )
    return settings.model_copy(update={"kafka": kafka})


@contextmanager
def sasl_ssl_kafka(
    d: Path, pki: Pki, settings: Settings, ssl_port: int | None = None
) -> Iterator[Path]:
    """A single-node KRaft broker whose client listeners are SASL_SSL (SASL/PLAIN) and, with
    ``ssl_port``, TLS alone (SSL); ``settings`` gives its ports. Yields the broker's log."""
    secure = SecureListener(
        keystore_pem=pki.server_keystore,
        truststore_pem=pki.ca,
        users=SASL_USERS,
        ssl_port=ssl_port,
        scram=(SCRAM,),
    )
    argv = prepare_kafka(settings, d / "kafka", secure)
    logf = d / "kafka.log"
    out = open(logf, "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=d
    )
    conf = secure_kafka_settings(settings, pki).kafka.confluent_config()
    try:
        deadline = time.monotonic() + 90
        while not kafka_ready(settings.kafka.bootstrap_servers, conf=conf):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"SASL_SSL broker did not start: {logf.read_text()[-3000:]}")
            time.sleep(0.3)
        add_scram_user(settings, pki, SASL_USERS[1][0], SCRAM_PASSWORD)
        yield logf
    finally:
        _stop(proc)
        out.close()


def add_scram_user(settings: Settings, pki: Pki, user: str, password: str) -> None:
    """Give ``user`` SCRAM credentials (mechanism :data:`SCRAM`) on the running SASL_SSL
    broker, through the Admin API as a PLAIN client; wait until a SCRAM client gets in."""
    from confluent_kafka.admin import (
        AdminClient,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    admin = AdminClient(secure_kafka_settings(settings, pki).kafka.confluent_config())
    info = ScramCredentialInfo(ScramMechanism[SCRAM.replace("-", "_")], 8192)
    upsert = UserScramCredentialUpsertion(user, info, password.encode())
    for fut in admin.alter_user_scram_credentials([upsert]).values():
        fut.result(timeout=30)
    conf = secure_kafka_settings(settings, pki, SCRAM).kafka.confluent_config()
    deadline = time.monotonic() + 30
    while not kafka_ready(settings.kafka.bootstrap_servers, timeout=2, conf=conf):
        if time.monotonic() > deadline:
            raise RuntimeError(f"a {SCRAM} client of user {user!r} is still refused after 30 s")
        time.sleep(0.3)
