"""Names that must agree across files: environment variables with the code that reads them, and
the series alerts and the Grafana dashboard query with the metrics serving/ defines."""

from __future__ import annotations

import json
import re

from stock_assets_tests.deployment.conftest import (
    REPO,
    cluster_objects,
    containers_of,
    env_names_read_by_code,
    find,
    load_values,
)

# Set in the manifests but not read by stock_assets: each is read by the program named.
INFRASTRUCTURE_ENV = {
    "AWS_REGION": "delta-rs (object_store) and boto3, with the Secret's AWS_* keys",
    "REDIS_PASSWORD": "redis-server's --requirepass, and $(REDIS_PASSWORD) in STOCK_FEAST_REDIS",
    "REDISCLI_AUTH": "redis-cli in the readiness probe",
    "MLFLOW_BACKEND_STORE_URI": "`mlflow server` (its --backend-store-uri)",
    "MLFLOW_DEFAULT_ARTIFACT_ROOT": "`mlflow server` (its --default-artifact-root)",
    "MLFLOW_SERVER_ALLOWED_HOSTS": "`mlflow server`'s host-header check",
    "HOME": "Streamlit's and MLflow's per-user files, on the writable /tmp",
    "STREAMLIT_SERVER_HEADLESS": "Streamlit (server.headless)",
    "PYTHONDONTWRITEBYTECODE": "Python: the root filesystem is read-only",
}
# The API's series the alerts rely on (docs/DEPLOYMENT.md, "Metrics"); they must be defined in
# serving/ (see api_series), so a rename there fails here instead of silencing an alert.
API_METRICS = {
    "stock_api_request_duration_seconds_bucket",
    "stock_api_requests_total",
    "stock_api_data_date_seconds",
}
# Series of kube-state-metrics and the kubelet's cAdvisor, present in kube-prometheus-stack.
CLUSTER_METRICS = {
    "kube_pod_labels",
    "kube_pod_status_ready",
    "kube_horizontalpodautoscaler_status_desired_replicas",
    "container_cpu_usage_seconds_total",
    "container_memory_working_set_bytes",
}


def env_lists() -> dict[str, list[dict]]:
    lists = {}
    for obj in cluster_objects():
        if obj["kind"] in ("Deployment", "StatefulSet"):
            for container in containers_of(obj):
                lists[f"{obj['metadata']['name']}/{container['name']}"] = container.get("env", [])
    values = load_values()
    (server,) = values["dagster-user-deployments"]["deployments"]
    lists["helm code server"] = server["env"]
    run = values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]["containerConfig"]
    lists["helm run pods"] = run["env"]
    return lists


def test_every_variable_set_is_one_a_program_reads():
    read = env_names_read_by_code()
    for where, env in env_lists().items():
        for item in env:
            name = item["name"]
            if name.startswith("STOCK_"):
                assert name in read, f"{where}: nothing reads {name}"
            else:
                assert name in INFRASTRUCTURE_ENV, f"{where}: {name} is not accounted for"


def test_dagster_pods_get_every_setting_production_needs():
    """The settings without which a Dagster pod would silently fall back to local defaults."""
    required = {
        "STOCK_LAKE_ROOT",
        "STOCK_KAFKA_BOOTSTRAP",
        "STOCK_KAFKA_SECURITY_PROTOCOL",
        "STOCK_KAFKA_SASL_MECHANISM",
        "STOCK_KAFKA_SASL_USERNAME",
        "STOCK_KAFKA_SASL_PASSWORD",
        "STOCK_KAFKA_SSL_CAFILE",
        "STOCK_FEAST_REPO",
        "STOCK_FEAST_ONLINE_STORE",
        "STOCK_FEAST_REDIS",
        "STOCK_MLFLOW_TRACKING_URI",
        "STOCK_MLFLOW_ARTIFACTS",
    }
    assert required <= env_names_read_by_code()
    for where in ("helm code server", "helm run pods"):
        assert required <= {item["name"] for item in env_lists()[where]}, where


def api_series() -> set[str]:
    """Series the prometheus_client metrics defined under serving/ expose on /metrics."""
    suffixes = {
        "Counter": ("_total",),
        "Gauge": ("",),
        "Histogram": ("_bucket", "_sum", "_count"),
        "Summary": ("", "_sum", "_count"),
    }
    definition = re.compile(r"\b(Counter|Gauge|Histogram|Summary)\(\s*\"([a-zA-Z_:][\w:]*)\"")
    series = set()
    for source in (REPO / "serving").rglob("*.py"):
        for kind, name in definition.findall(source.read_text()):
            series |= {name.removesuffix("_total") + suffix for suffix in suffixes[kind]}
    return series


def test_the_series_alerts_rely_on_are_defined_by_the_api():
    assert api_series() >= API_METRICS


def metrics_in(expr: str) -> set[str]:
    """Series a PromQL expression selects: names before `{`, and recording rules (with `:`)."""
    selected = set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", expr))
    without_labels = re.sub(r"\{[^}]*\}", "", expr)
    selected |= {t for t in re.findall(r"[a-zA-Z_][a-zA-Z0-9_]*:[a-zA-Z0-9_:]+", without_labels)}
    return selected


def test_alerts_cover_latency_errors_and_freshness_on_known_series():
    rules = [
        r for g in find("PrometheusRule", "stock-platform")["spec"]["groups"] for r in g["rules"]
    ]
    recorded = {r["record"] for r in rules if "record" in r}
    alerts = {r["alert"]: r for r in rules if "alert" in r}
    assert {"StockApiP99LatencyHigh", "StockApi5xxRateHigh", "StockDataStale"} <= set(alerts)
    for rule in rules:
        unknown = metrics_in(rule["expr"]) - api_series() - recorded
        assert not unknown, (rule.get("alert") or rule.get("record"), unknown)
    assert "0.99" in next(r["expr"] for r in rules if r.get("record", "").endswith("p99_5m"))
    assert 'status=~"5.."' in " ".join(r["expr"] for r in rules)


def test_dashboard_is_valid_json_over_known_series():
    config_map = find("ConfigMap", "stock-platform-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["stock-platform.json"])
    rules = find("PrometheusRule", "stock-platform")["spec"]["groups"]
    recorded = {r["record"] for g in rules for r in g["rules"] if "record" in r}
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    used = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            series = metrics_in(target["expr"])
            assert series <= api_series() | CLUSTER_METRICS | recorded, (panel["title"], series)
            used |= series
    assert used >= API_METRICS  # every API metric is on the dashboard


def test_prometheus_scrapes_the_api_metrics_endpoint_per_track():
    monitor = find("ServiceMonitor", "stock-api")
    service = find("Service", "stock-api")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert "track" in monitor["spec"]["podTargetLabels"]  # alerts and panels split by track
    deployment = (REPO / "docs" / "DEPLOYMENT.md").read_text()
    for metric in API_METRICS:
        assert metric.removesuffix("_bucket") in deployment  # the API's contract names them
