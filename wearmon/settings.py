"""One frozen settings object, read once at the edge (the CLI) and passed down.

Every field can be set by an environment variable with the ``WEARMON_`` prefix (nested
fields with ``__``, e.g. ``WEARMON_KAFKA__BOOTSTRAP_SERVERS``) or in a ``.env`` file.
No other module reads ``os.environ``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from wearmon.errors import ConfigError
from wearmon.redact import redact


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


#: SASL mechanisms both Kafka clients (confluent-kafka, Faust/aiokafka) are configured for.
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI")


class KafkaSettings(_Frozen):
    #: ``host:port[,host:port]``; unset means the local stack's broker (``ports.kafka``).
    bootstrap_servers: str = ""
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    #: PLAIN when a SASL protocol is set without one; SCRAM-SHA-256/512, GSSAPI.
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    samples_topic: str = "wearmon.samples"
    predictions_topic: str = "wearmon.predictions"
    labels_topic: str = "wearmon.labels"
    deadletter_topic: str = "wearmon.deadletter"
    #: closed activity episodes (stream_processor.episodes), at least once like predictions
    episodes_topic: str = "wearmon.episodes"
    partitions: int = Field(default=4, ge=1)
    #: Replicas of every topic wearmon creates (its own, the Faust worker's assignor topic;
    #: the local stack's brokers use it for their internal topics too). A single broker (the
    #: local stack) gets 1; a cluster with fewer brokers than this is an error (docs/stack.md).
    replication_factor: int = Field(default=3, ge=1)
    #: ``min.insync.replicas`` of those topics: with producers' acks=all, a write counts once
    #: this many replicas have it (2 of 3: one broker may fail without losing an acked write).
    min_insync_replicas: int = Field(default=2, ge=1)
    create_topics: bool = True
    #: How long the broker may hold a worker's fetch for data (Faust's own value: 1,500 ms).
    #: A fetch for idle partitions (the labels topic) held that long blocked every fetch of
    #: sample messages behind it: 1.5 s stalls at 1,000 devices (docs/stream.md).
    consumer_fetch_max_wait_ms: int = Field(default=100, ge=1)

    @field_validator("sasl_mechanism", mode="before")
    @classmethod
    def _mechanism(cls, value: Any) -> Any:
        if value is None or value == "":
            return None
        name = str(value).upper()
        if name not in SASL_MECHANISMS:
            raise ValueError(f"unsupported SASL mechanism {value!r} ({', '.join(SASL_MECHANISMS)})")
        return name

    @model_validator(mode="after")
    def _insync_within_replicas(self) -> KafkaSettings:
        if self.min_insync_replicas > self.replication_factor:
            raise ValueError(
                f"min_insync_replicas {self.min_insync_replicas} exceeds replication_factor "
                f"{self.replication_factor}: no write could ever be acknowledged"
            )
        return self

    def replication(self, brokers: int) -> tuple[int, int]:
        """(replication factor, min.insync.replicas) of a topic created on ``brokers``
        brokers: (1, 1) on a single broker, the settings on a cluster that has enough."""
        if brokers <= 1:
            return 1, 1
        if brokers < self.replication_factor:
            raise ConfigError(
                f"replication factor {self.replication_factor} needs {self.replication_factor} "
                f"Kafka brokers, {brokers} are up (set WEARMON_KAFKA__REPLICATION_FACTOR)"
            )
        return self.replication_factor, self.min_insync_replicas

    @model_validator(mode="after")
    def _default_mechanism(self) -> KafkaSettings:
        # One default for both clients: librdkafka's own default (GSSAPI) is not built in
        # the confluent-kafka wheel, so an unset mechanism failed every SASL connection.
        if self.security_protocol.startswith("SASL") and self.sasl_mechanism is None:
            object.__setattr__(self, "sasl_mechanism", "PLAIN")
        return self

    def confluent_config(self) -> dict[str, Any]:
        """Client configuration for confluent-kafka (librdkafka names)."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password is not None:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        if self.ssl_cafile:
            conf["ssl.ca.location"] = str(self.ssl_cafile)
        return conf

    def faust_broker_url(self) -> str:
        return ";".join(f"kafka://{h.strip()}" for h in self.bootstrap_servers.split(","))


def redis_errors() -> tuple[type[Exception], ...]:
    """What a Redis client raises when Redis fails: redis-py's ``RedisError``, and, on a
    Redis Cluster, its ``RedisClusterException``, which is not one (no node reachable while
    the client asks for the slots again, ``SlotNotCoveredError`` for a slot whose primary is
    gone). Catch this tuple, not ``RedisError`` alone."""
    import redis

    return (redis.RedisError, redis.exceptions.RedisClusterException)


class RedisSettings(_Frozen):
    """The Redis server: address, password and TLS (docs/security.md).

    TLS is on for a ``rediss://`` URL or with ``tls``; a ``redis://`` URL with ``tls`` is read
    as ``rediss://``, so every client (sync, asyncio) makes the same verified TLS connection.
    """

    #: unset means the local stack's server (``ports.redis``). A password may be in the URL
    #: (``redis://user:pass@host``); it is redacted wherever the URL is shown.
    url: str = ""
    password: SecretStr | None = None
    #: The URL is one node of a Redis Cluster: every client is cluster-aware (redis-py's
    #: ``RedisCluster``, which finds the other primaries from it and follows the slots). Set
    #: by the local stack with ``stack.redis_shards`` > 1 (docs/deploy.md, "A Redis Cluster").
    cluster: bool = False
    tls: bool = False
    #: CA bundle that signed the server's certificate (the system CAs when unset).
    tls_ca_file: Path | None = None
    #: Client certificate and key, for a server that requires them (``tls-auth-clients``).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_key_password: SecretStr | None = None
    #: Check that the server's certificate names the host of the URL.
    tls_check_hostname: bool = True
    history_maxlen: int = Field(default=10_000, ge=1)
    history_ttl_s: int = Field(default=7 * 24 * 3600, ge=1)
    features_maxlen: int = Field(default=50_000, ge=1)
    #: raw windows kept per device (``win:raw:{device}``, 2.4 KB each) for retraining on
    #: ground truth: 1,800 = the last hour of a device
    raw_windows_maxlen: int = Field(default=1_800, ge=1)
    #: ``maxmemory`` of the local stack's Redis (policy noeviction: a full Redis refuses
    #: writes, the worker retries them, and no checkpoint is ever evicted; docs/stream.md).
    maxmemory: str = "1gb"

    @model_validator(mode="before")
    @classmethod
    def _tls_scheme(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        url = str(data.get("url") or "")
        if url.startswith("rediss://"):
            return {**data, "tls": True}
        if str(data.get("tls", "")).lower() in ("1", "true", "yes", "on"):
            if url.startswith("redis://"):
                return {**data, "url": "rediss://" + url.removeprefix("redis://")}
            if url:
                raise ValueError(f"tls needs a redis:// or rediss:// URL, not {redact(url)}")
        return data

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``redis.Redis.from_url(url, ...)`` (sync and asyncio)."""
        kw: dict[str, Any] = {}
        if self.password is not None:
            kw["password"] = self.password.get_secret_value()
        if self.tls:
            kw["ssl_cert_reqs"] = "required"
            kw["ssl_check_hostname"] = self.tls_check_hostname
            if self.tls_ca_file is not None:
                kw["ssl_ca_certs"] = str(self.tls_ca_file)
            if self.tls_cert_file is not None:
                kw["ssl_certfile"] = str(self.tls_cert_file)
            if self.tls_key_file is not None:
                kw["ssl_keyfile"] = str(self.tls_key_file)
            if self.tls_key_password is not None:
                kw["ssl_password"] = self.tls_key_password.get_secret_value()
        return kw

    def connect(self, **overrides: Any) -> Any:
        """A sync client of this Redis: ``redis.Redis``, or ``redis.RedisCluster`` with
        ``cluster``; ``overrides`` (timeouts) go to the client's connections. The one place a
        client is made. A single server's client connects at its first command; a cluster's
        asks for the slots at once, and a cluster it cannot reach raises
        ``redis.ConnectionError`` here (a ``RedisError``, as a single server's first command
        would), naming the URL without its password and why the nodes did not answer."""
        import redis

        if not self.cluster:
            return redis.Redis.from_url(self.url, **{**self.client_kwargs(), **overrides})
        try:
            return redis.RedisCluster.from_url(self.url, **{**self.client_kwargs(), **overrides})
        except redis.exceptions.RedisClusterException as exc:
            reason = str(exc).split("reachable node: ", 1)[-1]
            raise redis.ConnectionError(
                f"no node of the Redis Cluster at {self.display_url} answers: {reason}"
            ) from None

    def connect_async(self, **overrides: Any) -> Any:
        """The asyncio client, as ``connect``."""
        import redis.asyncio as aredis

        cls = aredis.RedisCluster if self.cluster else aredis.Redis
        return cls.from_url(self.url, **{**self.client_kwargs(), **overrides})

    @property
    def display_url(self) -> str:
        """The URL with any password masked: the only form to print or log."""
        return redact(self.url)

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, (redact(value) if name == "url" and isinstance(value, str) else value)


class StackPorts(_Frozen):
    """Loopback ports of the local single-machine stack (``wearmon stack``)."""

    kafka: int = 9092
    kafka_controller: int = 9093
    #: With ``stack.kafka_brokers`` > 1, node i (from 0) listens on ``kafka + i * kafka_step``,
    #: its controller on ``kafka_controller + i * kafka_step``.
    kafka_step: int = Field(default=10, ge=1)
    redis: int = 6379
    #: With ``stack.redis_shards`` > 1, Redis Cluster node i (from 0) listens on
    #: ``redis + i * redis_step``, its cluster bus 10000 above (Redis's rule).
    redis_step: int = Field(default=10, ge=1)
    prometheus: int = 9090

    def kafka_nodes(self, brokers: int) -> list[tuple[int, int]]:
        """(client port, controller port) of each of ``brokers`` Kafka nodes."""
        step = self.kafka_step
        return [(self.kafka + i * step, self.kafka_controller + i * step) for i in range(brokers)]

    def redis_nodes(self, shards: int) -> list[tuple[int, int]]:
        """(client port, cluster bus port) of each of ``shards`` Redis Cluster primaries."""
        ports = [self.redis + i * self.redis_step for i in range(shards)]
        return [(p, p + REDIS_BUS_OFFSET) for p in ports]


#: A Redis Cluster node's bus port is its client port plus this (Redis's default).
REDIS_BUS_OFFSET = 10_000


class StackSettings(_Frozen):
    """What ``wearmon stack up`` starts (docs/stack.md)."""

    #: Kafka nodes, each a KRaft broker and controller: 1, or a cluster on loopback
    #: (``wearmon stack up --cluster``: 3). The bootstrap servers are then every node.
    kafka_brokers: int = Field(default=1, ge=1, le=9)
    #: Redis primaries: 1, a single server; 3 or more, a Redis Cluster of that many primaries
    #: on loopback, no replicas (``wearmon stack up --cluster``: 3). ``redis.url`` is then the
    #: first node and ``redis.cluster`` true, unless set.
    redis_shards: int = Field(default=1, ge=1, le=9)

    @field_validator("redis_shards")
    @classmethod
    def _shards(cls, v: int) -> int:
        if v == 2:
            raise ValueError("a Redis Cluster needs at least 3 primaries: redis_shards 1 or 3+")
        return v


class MetricsSettings(_Frozen):
    #: Address the metrics endpoints listen on: loopback for the local stack (its Prometheus
    #: scrapes 127.0.0.1); "0.0.0.0" where another host or container scrapes them.
    host: str = "127.0.0.1"
    stream_port: int = 8001
    replay_port: int = 8002
    monitor_port: int = 8003


class SignalSettings(_Frozen):
    rate_hz: int = 50
    window: int = 200
    hop: int = 100
    max_gap_ms: int = 100
    lateness_ms: int = 2_000
    label_purity: float = Field(default=0.8, gt=0.0, le=1.0)
    #: streamed windows of a device start at a fixed per-device phase (a multiple of 20 ms
    #: derived from the device id) plus k * hop, not all on the epoch's 2 s grid: devices
    #: then complete their windows spread over the hop instead of in one burst (docs/stream.md).
    #: Window ids stay deterministic. The training path always uses phase 0.
    phase_by_device: bool = True


class StreamSettings(_Frozen):
    #: which devices' raw windows are kept in Redis for retraining (``win:raw:{device}``,
    #: read with ``lifecycle.stream_source = "redis"``): "labelled" (devices with ground
    #: truth stored), "all", or "off" (default: the retraining rebuilds the windows from the
    #: samples topic, which costs no Redis memory while its retention lasts)
    raw_windows: Literal["labelled", "all", "off"] = "off"
    #: 64 (was 256): inference is serial, so a big batch is also the wait of the windows
    #: behind it; measured at 375-500 devices, p99 end-to-end <= 0.5-1 s vs 1-3 s with 256
    batch_max: int = Field(default=64, ge=1)
    #: 100 ms: fuller batches (one compiled call costs about 25 ms + 1.2 ms per window for
    #: the thesis model, docs/stream.md) at a small latency cost
    batch_wait_ms: int = Field(default=100, ge=0)
    #: XLA-compile the serving call (trainer.serving): measured with the thesis model on one
    #: thread, 0.65-0.75 instead of 1.0-1.8 ms CPU per window; one compilation per bucket
    jit_compile: bool = True
    #: What runs the served model (trainer.serving, docs/inference.md): "tf" (the compiled
    #: tf.function), "onnx" (ONNX Runtime), "openvino", the reduced-precision "onnx-int8" and
    #: "openvino-bf16" (opt-in), or "auto": the fastest fp32 path measured that converts and
    #: agrees with Keras at load (ONNX Runtime), else "tf". Converted once, cached with the
    #: version; a backend that fails its check at load falls back to "tf" with a logged reason.
    inference_backend: Literal["auto", "tf", "onnx", "openvino", "onnx-int8", "openvino-bf16"] = (
        "auto"
    )
    #: Threads of an exported backend's runtime: 1 (measured: one core per worker process,
    #: scale with ``workers``); 0 = the runtime's default (all cores, spinning between ops).
    inference_threads: int = Field(default=1, ge=0)
    model_poll_s: float = Field(default=5.0, gt=0)
    workers: int = Field(default=1, ge=1)
    #: Faust application id = Kafka consumer group of ``wearmon process`` workers.
    app_id: str = "wearmon-stream"
    #: How often per-device windower state and offsets are checkpointed to Redis; offsets
    #: are committed to Kafka only up to the last checkpoint.
    checkpoint_s: float = Field(default=2.0, gt=0)
    #: TTL of a checkpoint hash, renewed by every checkpoint of its partition.
    checkpoint_ttl_s: int = Field(default=30 * 24 * 3600, ge=60)
    #: A device without a message for this long leaves the worker's memory (its state stays
    #: in the checkpoint and is read back when it sends again).
    idle_evict_s: float = Field(default=600.0, gt=0)
    #: The state of a device idle this long is deleted from the checkpoint.
    state_retention_s: float = Field(default=7 * 24 * 3600, gt=0)
    #: Socket timeout of the worker's Redis calls (a hung Redis fails a batch, which retries).
    redis_timeout_s: float = Field(default=10.0, gt=0)
    #: A failed batch is retried after retry_base_s, doubling up to retry_max_s.
    retry_base_s: float = Field(default=0.5, gt=0)
    retry_max_s: float = Field(default=30.0, gt=0)
    #: A batch failing with the same non-transient error this many times is isolated: split
    #: by device until the failing devices are found; their windows are dead-lettered.
    batch_attempts: int = Field(default=3, ge=1)
    #: Windows waiting for inference (no model loaded yet, or inference behind) beyond
    #: which the worker stops taking sample messages until the queue drains (back-pressure).
    max_pending_windows: int = Field(default=20_000, ge=1)
    #: Graceful shutdown gives the in-flight batch this long, then stops without it (its
    #: messages are not committed: the next owner processes them again).
    shutdown_timeout_s: float = Field(default=10.0, gt=0)


class LifecycleSettings(_Frozen):
    """Retraining and promotion (trainer/retrain.py, trainer/promotion.py, docs/training.md)."""

    #: The challenger may be at most this much worse than the champion on the held-out base
    #: windows (accuracy and macro-F1, absolute).
    margin: float = Field(default=0.01, ge=0.0)
    #: ... and must beat it on the held-out new labelled windows by at least this (accuracy).
    min_gain: float = Field(default=0.01, ge=0.0)
    #: Fewer held-out new labelled windows than this = no labelled new data: refused.
    min_new_windows: int = Field(default=20, ge=1)
    #: Share of the new labelled data held out for the gate: of the stream's devices (whole
    #: devices, when at least ``holdout_min_devices`` have new windows), else of each
    #: recording's (device's) last part in time.
    new_holdout_fraction: float = Field(default=0.3, gt=0.0, lt=1.0)
    #: Hold out whole stream devices from this many devices with new windows on (fewer:
    #: the last part in time of each device).
    holdout_min_devices: int = Field(default=3, ge=2)
    #: Labelled recordings dropped here join the training pool (default data_dir/incoming).
    incoming_dir: Path | None = None
    #: Base data set of the pool (a trainer.datasets source spec).
    base_data: str = "seglearn"
    #: Retraining starts from the champion's weights ("champion"), from scratch ("none"), or
    #: "auto": fine-tuning for a --quick retraining, from scratch for a full one (measured:
    #: docs/training.md, "Retraining").
    init_from: Literal["auto", "champion", "none"] = "auto"
    #: Recipe of a retraining (trainer.train.PRESETS); ``--quick`` uses a few epochs.
    preset: str = "default"
    quick_epochs: int = Field(default=3, ge=1)
    #: Where labelled stream windows come from (trainer/pool.py): "kafka" rebuilds them from
    #: the samples topic (bounded by its retention) with the worker's own windower, for the
    #: devices with ground truth in Redis; "redis" reads win:raw:{device}; "off".
    stream_source: Literal["kafka", "redis", "off"] = "kafka"
    #: How far back the samples topic is read, and at most how many messages.
    stream_lookback_s: float = Field(default=24 * 3600.0, gt=0)
    stream_max_messages: int = Field(default=2_000_000, ge=1)
    #: TensorFlow threads of a retraining process (intra- and inter-op); 0 = TensorFlow's
    #: default (all cores). Fewer leave cores to the stream workers beside it.
    threads: int = Field(default=0, ge=0)


class GrafanaSettings(_Frozen):
    """Where ``wearmon dashboards push`` uploads the dashboards (and annotations go)."""

    #: e.g. ``http://grafana:3000``; unset: push refuses with a clear error
    url: str = ""
    #: a Grafana service-account token (Bearer)
    token: SecretStr | None = None
    #: the folder (uid and title) the dashboards go to
    folder: str = "wearmon"
    timeout_s: float = Field(default=10.0, gt=0)
    #: the Prometheus ``wearmon dashboards render`` reads; unset: the local stack's
    prometheus_url: str = ""


class MonitorSettings(_Frozen):
    """The drift monitor, ``wearmon monitor`` (monitoring/, docs/drift.md). Grafana
    annotations go to ``grafana.url`` when it is set."""

    #: seconds between checks (a check also starts early once ``max_windows`` are waiting)
    interval_s: float = Field(default=30.0, gt=0)
    #: a check with fewer new live windows than this is skipped (counts for nothing)
    min_windows: int = Field(default=100, ge=1)
    #: at most this many new live windows (the newest) enter one check
    max_windows: int = Field(default=2_000, ge=1)
    #: the trigger: N of the last M counted checks drifted
    n_of_m: tuple[int, int] = (2, 3)
    #: after every retraining, whatever its result, no new trigger for this long
    cooldown_s: float = Field(default=3_600.0, ge=0)
    max_retrains_per_day: int = Field(default=3, ge=0)
    #: a retraining running longer is stopped and counted as failed
    retrain_timeout_s: float = Field(default=3 * 3_600.0, gt=0)
    #: DRIFT waits for this many labelled windows (ground truth the stream joined) since the
    #: drift's onset before it starts a retraining (0: at once) ...
    min_labelled: int = Field(default=600, ge=0)
    #: ... for at most this long; then it retrains anyway (refused without labels)
    label_wait_s: float = Field(default=1_800.0, ge=0)
    #: start ``wearmon model retrain`` on DRIFT (off: the policy still moves, nothing runs)
    retrain: bool = True
    #: extra arguments of ``wearmon model retrain`` (e.g. ["--quick"])
    retrain_args: tuple[str, ...] = ()
    #: CPU priority (nice increment) ``wearmon monitor`` gives itself at start: a check is
    #: a burst of a core every few seconds at high rates, and on a machine shared with the
    #: stream workers it waits for them instead of delaying their batches (0: unchanged)
    nice: int = Field(default=5, ge=0, le=19)
    #: CPU priority (nice increment over the monitor's own) of the retraining process: the
    #: stream comes first, then the monitor (capped at 19)
    retrain_nice: int = Field(default=10, ge=0, le=19)
    #: Evidently snapshots + HTML reports kept on disk (data_dir/monitor/reports)
    reports_keep: int = Field(default=20, ge=1)
    #: the stream workers' metrics pages (data quality); unset: metrics.host:stream_port
    stream_metrics_urls: tuple[str, ...] = ()


class Settings(BaseSettings):
    """All of wearmon's settings. Build once with ``Settings()`` and pass down."""

    model_config = SettingsConfigDict(
        env_prefix="WEARMON_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        frozen=True,
        extra="ignore",
    )

    data_dir: Path = Path(".data")
    #: Downloads shared by every data directory (the Kafka broker jars).
    cache_dir: Path = Field(default_factory=lambda: Path.home() / ".cache" / "wearmon")
    #: The repository's deploy/ folder (pom.xml for the broker, Prometheus files).
    deploy_dir: Path = Field(default_factory=lambda: Path(__file__).resolve().parents[1] / "deploy")
    mlflow_tracking_uri: str | None = None
    model_name: str = "wearmon-har"
    log_level: str = "INFO"
    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    ports: StackPorts = StackPorts()
    stack: StackSettings = StackSettings()
    metrics: MetricsSettings = MetricsSettings()
    signal: SignalSettings = SignalSettings()
    stream: StreamSettings = StreamSettings()
    lifecycle: LifecycleSettings = LifecycleSettings()
    grafana: GrafanaSettings = GrafanaSettings()
    monitor: MonitorSettings = MonitorSettings()

    @model_validator(mode="before")
    @classmethod
    def _local_addresses(cls, data: Any) -> Any:
        """Point Kafka and Redis at the local stack's ports unless addresses are set."""
        if not isinstance(data, dict):
            return data
        ports = data.get("ports") or {}
        if isinstance(ports, StackPorts):
            ports = ports.model_dump()
        stack = data.get("stack") or {}
        if isinstance(stack, BaseModel):
            stack = stack.model_dump()
        nodes = StackPorts(**ports).kafka_nodes(int(stack.get("kafka_brokers", 1)))
        bootstrap = ",".join(f"127.0.0.1:{client}" for client, _ in nodes)
        shards = int(stack.get("redis_shards", 1))
        redis_port = StackPorts(**ports).redis_nodes(1)[0][0]
        for key, field, value in (
            ("kafka", "bootstrap_servers", bootstrap),
            ("redis", "url", f"redis://127.0.0.1:{redis_port}/0"),
        ):
            sub = data.get(key) or {}
            if isinstance(sub, BaseModel):
                sub = sub.model_dump()
            if not sub.get(field):
                sub = {**sub, field: value}
                if key == "redis" and shards > 1 and "cluster" not in sub:
                    sub["cluster"] = True  # the local stack's Redis Cluster
                data[key] = sub
        return data

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            if name == "mlflow_tracking_uri" and isinstance(value, str):
                value = redact(value)
            yield name, value

    @property
    def tracking_uri(self) -> str:
        """MLflow tracking URI: the setting, or a SQLite store in the data directory."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.data_dir / 'mlflow' / 'mlflow.db').resolve()}"

    @property
    def artifact_dir(self) -> Path:
        return (self.data_dir / "mlflow" / "artifacts").resolve()
