"""decide_and_promote on real registered versions (local MLflow): a worse challenger refused,
no new labels refused, a better one promoted with the alias moved, every decision recorded;
the CLI paths that set the champion go through it."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.unit.trainer import ab_models as ab
from trainer import promotion, registry
from wearmon.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture
def versions(settings: Settings, tmp_path: Path) -> dict[str, str]:
    vs = {k: ab.register(settings, tmp_path / "models", k) for k in ab.KINDS}
    promotion.set_champion(settings, vs["const_a"], reason="test setup", decision="initial")
    return vs


def test_worse_challenger_is_refused_and_recorded(
    settings: Settings, versions: dict[str, str]
) -> None:
    d = promotion.decide_and_promote(
        settings,
        versions["const_b"],
        base_holdout=ab.base_holdout(),
        new_holdout=ab.new_holdout(),
        trigger_id="t-worse",
    )
    assert not d.promoted and d.decision == "refused"
    assert d.reason.startswith("worse on the base data"), d.reason
    assert registry.alias_version(settings, "champion") == versions["const_a"]
    assert d.metrics["base"]["challenger"]["accuracy"] == 0.0
    assert d.metrics["new"]["challenger"]["accuracy"] == 1.0
    rec = promotion.read_decisions(settings, versions["const_b"])[0]
    assert rec["run_id"] == d.record_run_id and rec["decision"] == "refused"
    assert rec["trigger_id"] == "t-worse" and rec["champion_before"] == versions["const_a"]
    assert rec["params"]["base.hash"] == "base30" and rec["params"]["new.n"] == "30"


def test_no_new_labels_is_refused_whatever_the_base_data_says(
    settings: Settings, versions: dict[str, str]
) -> None:
    d = promotion.decide_and_promote(
        settings,
        versions["smart"],
        base_holdout=ab.base_holdout(),
        new_holdout=None,
        trigger_id="t-nolabels",
    )
    assert not d.promoted and d.reason.startswith("no labelled new data")
    assert registry.alias_version(settings, "champion") == versions["const_a"]
    assert promotion.read_decisions(settings, versions["smart"])[0]["params"]["new.source"] == (
        "none"
    )


def test_a_challenger_with_other_classes_is_refused_however_it_scores(
    settings: Settings, versions: dict[str, str], tmp_path: Path
) -> None:
    """A retraining from another label set (an imported study model retrained on a data set
    with other activities) scores well on its own labels and the champion 0: never promoted
    by the gate."""
    other = ab.register(settings, tmp_path / "other", "smart", classes=("a", "z"))
    d = promotion.decide_and_promote(
        settings,
        other,
        base_holdout=ab.base_holdout(),
        new_holdout=ab.new_holdout(label="z"),
        trigger_id="t-classes",
    )
    assert not d.promoted and d.decision == "refused"
    assert d.reason.startswith("the challenger's classes differ from the champion's"), d.reason
    assert "only the champion: b; only the challenger: z" in d.reason
    assert d.metrics["new"]["challenger"]["accuracy"] == 1.0  # by the numbers it would win
    assert d.metrics["new"]["champion"]["accuracy"] == 0.0
    assert registry.alias_version(settings, "champion") == versions["const_a"]
    assert promotion.read_decisions(settings, other)[0]["decision"] == "refused"


def test_class_change_ignores_the_order() -> None:
    assert promotion.class_change(["b", "a"], ("a", "b")) is None
    assert promotion.class_change(["a"], ["a", "b"]) == (
        "the challenger's classes differ from the champion's (only the champion: b; only the "
        "challenger: -); a new label set is an operator's decision (wearmon model alias "
        "champion VERSION)"
    )


def test_better_challenger_is_promoted_alias_moved_and_lineage_recorded(
    settings: Settings, versions: dict[str, str]
) -> None:
    from mlflow.tracking import MlflowClient

    registry.set_alias(settings, "challenger", versions["smart"])
    d = promotion.decide_and_promote(
        settings,
        versions["smart"],
        base_holdout=ab.base_holdout(),
        new_holdout=ab.new_holdout(),
        trigger_id="t-better",
        lineage={"pool.incoming": ["x.csv sha256=abc"]},
    )
    assert d.promoted and d.decision == "promoted", d.reason
    assert d.reason.startswith("better on the new data (30 windows): accuracy 1.0000 vs")
    assert registry.alias_version(settings, "champion") == versions["smart"]
    assert registry.alias_version(settings, "previous") == versions["const_a"]
    assert registry.alias_version(settings, "challenger") is None
    assert d.change is not None and d.change.previous == versions["const_a"]
    # no Redis in unit tests: not published, and the record says so
    assert d.change.published is False
    rec = promotion.read_decisions(settings, versions["smart"])[0]
    assert rec["decision"] == "promoted" and rec["params"]["published"] == "false"
    assert rec["params"]["pool.incoming"] == '["x.csv sha256=abc"]'
    assert rec["params"]["has_reference_profile"] == "false"  # an imported model
    c = MlflowClient(settings.tracking_uri, settings.tracking_uri)
    mv = c.get_model_version(settings.model_name, versions["smart"])
    assert mv.tags["promotion_run"] == d.record_run_id and mv.tags["trigger_id"] == "t-better"
    assert c.get_run(mv.run_id).data.tags["promotion_decision"] == "promoted"
    again = promotion.decide_and_promote(
        settings,
        versions["smart"],
        base_holdout=ab.base_holdout(),
        new_holdout=ab.new_holdout(),
        trigger_id="t-again",
    )
    assert not again.promoted and "already the champion" in again.reason


def test_dry_run_decides_and_records_but_moves_nothing(
    settings: Settings, versions: dict[str, str]
) -> None:
    d = promotion.decide_and_promote(
        settings,
        versions["smart"],
        base_holdout=ab.base_holdout(),
        new_holdout=ab.new_holdout(),
        trigger_id="t-dry",
        dry_run=True,
    )
    assert d.decision == "dry_run" and not d.promoted and d.change is None
    assert registry.alias_version(settings, "champion") == versions["const_a"]


def test_cli_alias_champion_is_a_recorded_override(
    settings: Settings, versions: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from wearmon.cli.main import app

    monkeypatch.setenv("WEARMON_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("WEARMON_PORTS__REDIS", "1")  # nothing listens: not published
    r = CliRunner().invoke(app, ["model", "alias", "champion", versions["const_b"]])
    assert r.exit_code == 0, r.output
    assert f"champion -> {settings.model_name} version {versions['const_b']}" in r.output
    assert "not published" in r.output
    assert registry.alias_version(settings, "champion") == versions["const_b"]
    assert registry.alias_version(settings, "previous") == versions["const_a"]
    rec = promotion.read_decisions(settings, versions["const_b"])[0]
    assert rec["decision"] == "override" and "operator override" in rec["reason"]
    r = CliRunner().invoke(app, ["model", "alias", "challenger", versions["smart"]])
    assert r.exit_code == 0 and registry.alias_version(settings, "challenger") == versions["smart"]


def test_cli_promote_without_new_labels_exits_2(
    settings: Settings, versions: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from wearmon.cli.main import app

    monkeypatch.setenv("WEARMON_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("WEARMON_PORTS__REDIS", "1")
    r = CliRunner().invoke(
        app, ["model", "promote", versions["smart"], "--subjects", "1", "--trigger-id", "cli-1"]
    )
    assert r.exit_code == 2, r.output
    assert "refused: no labelled new data" in r.output
    assert registry.alias_version(settings, "champion") == versions["const_a"]
    assert promotion.read_decisions(settings, versions["smart"])[0]["trigger_id"] == "cli-1"
