"""`wearmon stack up | down | status | fetch`: the local single-machine stack."""

from __future__ import annotations

import time

import typer
from rich.console import Console
from rich.table import Table

from wearmon.cli.common import settings_of
from wearmon.settings import Settings
from wearmon.stack import LocalStack, fetch_kafka, kafka_version

#: Kafka nodes and Redis primaries of ``stack up --cluster``
CLUSTER_BROKERS = 3
CLUSTER_SHARDS = 3

app = typer.Typer(
    help="The local single-machine stack: Kafka (KRaft), Redis, Prometheus, on loopback.",
    no_args_is_help=True,
)
console = Console()


@app.command()
def fetch(ctx: typer.Context) -> None:
    """Resolve the Kafka broker jars from Maven Central into the cache (once)."""
    settings = settings_of(ctx)
    libs = fetch_kafka(settings, quiet=False)
    console.print(f"Kafka {kafka_version(libs)} jars in {libs}")


def with_brokers(settings: Settings, brokers: int) -> Settings:
    """``settings`` with ``stack.kafka_brokers`` = ``brokers``."""
    stack = settings.stack.model_copy(update={"kafka_brokers": brokers})
    return settings.model_copy(update={"stack": stack})


def with_shards(settings: Settings, shards: int) -> Settings:
    """``settings`` with ``stack.redis_shards`` = ``shards`` (and cluster-aware clients of
    the local stack's Redis, as the setting itself gives)."""
    stack = settings.stack.model_copy(update={"redis_shards": shards})
    redis = settings.redis
    if redis.url == f"redis://127.0.0.1:{settings.ports.redis}/0" and shards > 1:
        redis = redis.model_copy(update={"cluster": True})
    return settings.model_copy(update={"stack": stack, "redis": redis})


@app.command()
def up(
    ctx: typer.Context,
    timeout: float = typer.Option(90.0, help="Seconds to wait for every service to be ready."),
    cluster: bool = typer.Option(
        False,
        "--cluster",
        help=f"Kafka as a {CLUSTER_BROKERS}-node KRaft cluster and Redis as a Redis Cluster "
        f"of {CLUSTER_SHARDS} primaries (as WEARMON_STACK__KAFKA_BROKERS={CLUSTER_BROKERS} and "
        f"WEARMON_STACK__REDIS_SHARDS={CLUSTER_SHARDS} do; larger settings are kept).",
    ),
) -> None:
    """Start Kafka, Redis and Prometheus (those not already running) and wait until ready."""
    settings = settings_of(ctx)
    if cluster and settings.stack.kafka_brokers == 1:
        settings = with_brokers(settings, CLUSTER_BROKERS)
    if cluster and settings.stack.redis_shards == 1:
        settings = with_shards(settings, CLUSTER_SHARDS)
    stack = LocalStack(settings)
    t0 = time.monotonic()
    timings = stack.up(timeout=timeout)
    for name, secs in timings.items():
        what = "already running" if secs == 0 else f"ready in {secs:.1f} s"
        console.print(f"{name:<11} {stack.address(name):<24} {what}")
    console.print(f"stack ready in {time.monotonic() - t0:.1f} s (data in {stack.root})")
    brokers = settings.stack.kafka_brokers
    if brokers > 1:
        console.print(f"Kafka bootstrap servers: {stack.bootstrap()}")
        if settings_of(ctx).stack.kafka_brokers != brokers:
            console.print(
                f"set WEARMON_STACK__KAFKA_BROKERS={brokers} for the other commands: they "
                "then bootstrap from every node, not the first alone"
            )
    shards = settings.stack.redis_shards
    if shards > 1:
        console.print(f"Redis Cluster primaries: {stack.address('redis')}")
        if settings_of(ctx).stack.redis_shards != shards:
            console.print(
                f"set WEARMON_STACK__REDIS_SHARDS={shards} for the other commands: their "
                "Redis clients are then cluster-aware"
            )


@app.command()
def down(ctx: typer.Context) -> None:
    """Stop exactly the processes that `stack up` started."""
    stack = LocalStack(settings_of(ctx))
    stopped = stack.down()
    console.print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@app.command()
def status(ctx: typer.Context) -> None:
    """Health and address of each service; exits 1 if any is not ready."""
    stack = LocalStack(settings_of(ctx))
    table = Table("service", "address", "pid", "state", "log")
    healthy = True
    for st in stack.status():
        state = "ready" if st.ready else ("starting/unhealthy" if st.running else "down")
        healthy &= st.ready
        colour = "green" if st.ready else "red"
        table.add_row(st.name, st.address, str(st.pid or "-"), f"[{colour}]{state}", st.log)
    console.print(table)
    if not healthy:
        raise typer.Exit(1)
