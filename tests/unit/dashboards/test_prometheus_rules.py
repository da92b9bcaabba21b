"""The Prometheus files: alert rules pass `promtool check rules` and their unit tests
(`promtool test rules`), both configs pass `promtool check config`, and the rules use only
metrics that exist."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from monitoring.dashboards.queries import metric_names
from tests.unit.dashboards.test_dashboards import known_metrics
from wearmon.settings import Settings
from wearmon.stack import LocalStack

ROOT = Path(__file__).resolve().parents[3]
PROM = ROOT / "deploy" / "prometheus"
RULES = sorted((PROM / "rules").glob("*.yml"))
TESTS = sorted((PROM / "tests").glob("*.yml"))


@pytest.fixture(scope="module")
def promtool() -> str:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.skip("promtool not installed (apt-get install -y prometheus)")
    return exe


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False, timeout=120)


def test_rules_check(promtool: str) -> None:
    assert RULES
    proc = _run(promtool, "check", "rules", *map(str, RULES))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_rules_unit_tests(promtool: str) -> None:
    assert TESTS
    proc = _run(promtool, "test", "rules", *map(str, TESTS))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout + proc.stderr


def test_every_alert_has_a_unit_test() -> None:
    alerts = {
        r["alert"]
        for f in RULES
        for g in yaml.safe_load(f.read_text())["groups"]
        for r in g["rules"]
        if "alert" in r
    }
    tested = {
        a["alertname"]
        for f in TESTS
        for t in yaml.safe_load(f.read_text())["tests"]
        for a in t.get("alert_rule_test", [])
        if a.get("exp_alerts")
    }
    assert alerts - tested == set(), "alerts never seen firing in a promtool test"


def test_rules_use_only_existing_metrics_and_no_device_labels() -> None:
    known = known_metrics()
    for f in RULES:
        text = f.read_text()
        assert "device" not in re.sub(r"#.*", "", text).replace("devices", "")
        for g in yaml.safe_load(text)["groups"]:
            for r in g["rules"]:
                names = metric_names(r["expr"])
                assert names and names <= known, (r.get("alert"), names - known)


def test_compose_config_valid(promtool: str) -> None:
    proc = _run(promtool, "check", "config", str(PROM / "prometheus.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 rule files found" in proc.stdout + proc.stderr


def test_local_stack_loads_the_same_rules(promtool: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    text = LocalStack(settings).prometheus_config()
    for rule in RULES:
        assert str(rule) in text
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(text)
    proc = _run(promtool, "check", "config", str(cfg))
    assert proc.returncode == 0, proc.stdout + proc.stderr
