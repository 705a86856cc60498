"""deployment/dagster-values.yaml: only keys the dagster/dagster chart has, and the instance
config the chart renders from them (conftest.render_instance) valid for Dagster 1.13 and
faithful to the local dagster.yaml.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from dagster._config import validate_config
from dagster._core.instance.config import dagster_instance_config
from dagster_k8s import K8sRunLauncher
from dagster_postgres import PostgresRunStorage

from stock_assets.sensors import BAR_CHAIN_TAG
from stock_assets_tests.deployment.conftest import REPO, load_values, render_instance

CHART_KEYS = yaml.safe_load(Path(__file__).with_name("dagster_chart_keys.yaml").read_text())


def unknown_keys(values: object, spec: object, path: str = "") -> list[str]:
    """Paths in ``values`` that ``spec`` (dagster_chart_keys.yaml's format) does not allow."""
    if spec == "any":
        return []
    if isinstance(spec, list):
        assert isinstance(values, list), f"{path} must be a list"
        return [bad for i, item in enumerate(values) for bad in unknown_keys(item, spec[0], path)]
    assert isinstance(values, dict), f"{path} must be a mapping"
    found = []
    for key, value in values.items():
        here = f"{path}.{key}" if path else key
        found += unknown_keys(value, spec[key], here) if key in spec else [here]
    return found


def test_values_use_only_keys_of_the_chart():
    assert unknown_keys(load_values(), CHART_KEYS) == []
    values = load_values()  # and a misspelt key is caught
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    launcher["runK8sConfigs"] = launcher.pop("runK8sConfig")
    assert unknown_keys(values, CHART_KEYS) == ["runLauncher.config.k8sRunLauncher.runK8sConfigs"]


def test_postgres_is_external_and_its_password_comes_from_a_secret():
    values = load_values()
    assert values["postgresql"]["enabled"] is False
    assert "postgresqlPassword" not in values["postgresql"]
    assert values["generatePostgresqlPasswordSecret"] is False  # the Secret is ours, by name
    assert values["global"]["postgresqlSecretName"]
    # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; only psycopg2 is locked
    assert values["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"


def test_rendered_instance_passes_dagsters_own_loader(tmp_path):
    rendered = render_instance(load_values())
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(rendered))
    loaded, _ = dagster_instance_config(str(tmp_path))  # raises on any schema violation
    assert loaded["run_launcher"]["class"] == "K8sRunLauncher"
    launcher = validate_config(K8sRunLauncher.config_type(), rendered["run_launcher"]["config"])
    assert launcher.success, launcher.errors
    storage = validate_config(PostgresRunStorage.config_type(), rendered["run_storage"]["config"])
    assert storage.success, storage.errors


def test_production_limits_mirror_the_local_dagster_yaml():
    local = yaml.safe_load((REPO / "dagster.yaml").read_text())
    prod = render_instance(load_values())
    # the bar chain's range runs one at a time, in order (sensors.BAR_CHAIN_TAG)
    assert {"key": BAR_CHAIN_TAG, "limit": 1} in local["concurrency"]["runs"][
        "tag_concurrency_limits"
    ]
    assert (
        prod["concurrency"]["runs"]["tag_concurrency_limits"]
        == local["concurrency"]["runs"]["tag_concurrency_limits"]
    )
    # every pool (kafka_ingest_<stream>, feast_store, model_training) one op at a time
    assert prod["concurrency"]["pools"] == local["concurrency"]["pools"] == {"default_limit": 1}
    assert (
        prod["concurrency"]["runs"]["max_concurrent_runs"]
        >= local["concurrency"]["runs"]["max_concurrent_runs"]
    )
    retries = local["run_retries"]["max_retries"]
    assert prod["run_retries"] == {"enabled": True, "max_retries": retries}
    assert prod["run_coordinator"]["class"] == local["run_coordinator"]["class"]
    for section in ("sensors", "schedules"):
        assert prod[section] == local[section]
    # run monitoring on: a run whose pod never started or died is failed, then retried
    assert prod["run_monitoring"]["enabled"] is True
    assert prod["run_monitoring"]["start_timeout_seconds"] > 0


def test_code_server_and_run_pods_share_env_volumes_and_secrets():
    values = load_values()
    (server,) = values["dagster-user-deployments"]["deployments"]
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert server["includeConfigInLaunchedRuns"] == {"enabled": False}  # launcher config only
    assert launcher["runK8sConfig"]["containerConfig"]["env"] == server["env"]
    assert launcher["volumes"] == server["volumes"]
    assert launcher["volumeMounts"] == server["volumeMounts"]
    assert launcher["envSecrets"] == server["envSecrets"]
    assert server["dagsterApiGrpcArgs"] == ["-m", "stock_assets.definitions"]


def test_helm_and_the_plain_production_instance_agree():
    """deployment/instance/dagster.yaml (installs without the chart) sets the same limits."""
    plain = yaml.safe_load((REPO / "deployment" / "instance" / "dagster.yaml").read_text())
    prod = render_instance(load_values())
    assert plain["concurrency"] == prod["concurrency"]
    assert plain["run_retries"] == prod["run_retries"]
    assert plain["run_coordinator"]["class"] == prod["run_coordinator"]["class"]
    assert plain["run_monitoring"]["enabled"] == prod["run_monitoring"]["enabled"]
    for section in ("sensors", "schedules", "telemetry"):
        assert plain[section] == prod[section]
    # both reach PostgreSQL through psycopg2, the locked driver
    assert (
        plain["storage"]["postgres"]["postgres_db"]["scheme"]
        == (prod["run_storage"]["config"]["postgres_db"]["scheme"])
    )
