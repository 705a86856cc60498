"""Shared loading for the deployment tests (test modules import helpers from here only).

Everything here is offline: files are parsed, Kubernetes objects are validated against the JSON
schemas kubernetes-validate ships, and Dagster objects are built without a cluster.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path

import kubernetes_validate
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOYMENT = REPO / "deployment"
MANIFESTS = DEPLOYMENT / "k8s"
VALUES = DEPLOYMENT / "dagster-values.yaml"
EXECUTOR = DEPLOYMENT / "k8s-job-executor.yaml"
NAMESPACE = "stock"
# One fixed Kubernetes version whose schemas kubernetes-validate 1.37 ships (strict: unknown
# fields are errors, as `kubectl apply --validate=strict` would make them).
KUBERNETES_VERSION = "1.30"
# Kinds of custom resources (operators' CRDs are not in Kubernetes' schemas): checked against
# crd_schemas.yaml beside this file instead.
CUSTOM_KINDS = {
    ("kafka.strimzi.io/v1beta2", "Kafka"),
    ("kafka.strimzi.io/v1beta2", "KafkaNodePool"),
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"),
    ("kafka.strimzi.io/v1beta2", "KafkaUser"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
# Not a cluster object: kustomize's build file.
TOOLING_KINDS = {("kustomize.config.k8s.io/v1beta1", "Kustomization")}


Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_yaml(text: str) -> Iterator[dict]:
    return (doc for doc in yaml.load_all(text, Loader=Loader) if doc is not None)


@functools.cache
def manifest_docs() -> tuple[tuple[str, int, dict], ...]:
    """(file name, index in file, document) of every YAML document under deployment/k8s.

    Parsed once per session: tests must not change the documents (copy them first).
    """
    return tuple(
        (path.name, index, doc)
        for path in sorted(MANIFESTS.glob("*.yaml"))
        for index, doc in enumerate(parse_yaml(path.read_text()))
    )


def cluster_objects() -> list[dict]:
    """The documents `kubectl apply -k deployment/k8s` would send (the Kustomization left out)."""
    return [
        doc
        for _, _, doc in manifest_docs()
        if (doc["apiVersion"], doc["kind"]) not in TOOLING_KINDS
    ]


def find(kind: str, name: str) -> dict:
    (match,) = [o for o in cluster_objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    return match


def validate_k8s(obj: dict) -> None:
    """Raise kubernetes_validate's ValidationError if ``obj`` breaks the strict schema."""
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def load_values() -> dict:
    """A fresh parse of the Helm values (callers may change it)."""
    return yaml.load(VALUES.read_text(), Loader=Loader)


def load_executor_config() -> dict:
    return yaml.load(EXECUTOR.read_text(), Loader=Loader)


@functools.cache
def env_names_read_by_code() -> frozenset[str]:
    """Every ``STOCK_*`` name quoted in the code of the three packages: the variables it reads."""
    names: set[str] = set()
    for package in ("stock_assets", "serving", "app"):
        for source in (REPO / package).rglob("*.py"):
            names.update(re.findall(r"[\"'](STOCK_[A-Z0-9_]+)[\"']", source.read_text()))
    return frozenset(names)


def containers_of(obj: dict) -> list[dict]:
    """The containers of a workload's pod template (Deployment, StatefulSet)."""
    return obj["spec"]["template"]["spec"]["containers"]


RELEASE = "dagster"  # `helm upgrade --install dagster ...` in docs/DEPLOYMENT.md


def render_instance(values: dict) -> dict:
    """dagster.yaml as the chart writes it for ``values`` (release `dagster` in `stock`).

    Maps our values to dagster.yaml the way the chart's templates do (configmap-instance.yaml
    and helpers/instance/*.tpl), key by key, for the sections we set; tests then hand the
    result to Dagster's own loader and schemas.
    """
    pg = values["postgresql"]
    postgres_db = {
        "username": pg["postgresqlUsername"],
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "hostname": pg["postgresqlHost"],
        "db_name": pg["postgresqlDatabase"],
        "port": pg["service"]["port"],
        "params": pg.get("postgresqlParams", {}),
    }
    if pg.get("postgresqlScheme"):
        postgres_db["scheme"] = pg["postgresqlScheme"]
    storage = {"postgres_db": postgres_db}
    k8s = values["runLauncher"]["config"]["k8sRunLauncher"]
    launcher = {
        "load_incluster_config": k8s["loadInclusterConfig"],
        "job_namespace": k8s.get("jobNamespace") or NAMESPACE,
        "image_pull_policy": k8s["imagePullPolicy"],
        "service_account_name": values.get("global", {}).get("serviceAccountName", RELEASE),
        "dagster_home": "/opt/dagster/dagster_home",  # the chart's global.dagsterHome default
        "instance_config_map": f"{RELEASE}-instance",
        "postgres_password_secret": values["global"]["postgresqlSecretName"],
    }
    renamed = {
        "envConfigMaps": "env_config_maps",
        "envSecrets": "env_secrets",
        "envVars": "env_vars",
        "volumeMounts": "volume_mounts",
        "volumes": "volumes",
        "labels": "labels",
        "resources": "resources",
        "schedulerName": "scheduler_name",
        "securityContext": "security_context",
    }
    for key, name in renamed.items():
        if k8s.get(key):
            launcher[name] = k8s[key]
    for key in ("envConfigMaps", "envSecrets"):  # the templates keep only the `name`s
        if key in k8s:
            launcher[renamed[key]] = [item["name"] for item in k8s[key] if "name" in item]
    if k8s.get("failPodOnRunFailure"):
        launcher["fail_pod_on_run_failure"] = True
    if k8s.get("runK8sConfig"):
        run = k8s["runK8sConfig"]
        parts = {
            "containerConfig": "container_config",
            "podSpecConfig": "pod_spec_config",
            "podTemplateSpecMetadata": "pod_template_spec_metadata",
            "jobSpecConfig": "job_spec_config",
            "jobMetadata": "job_metadata",
        }
        launcher["run_k8s_config"] = {parts[k]: v for k, v in run.items() if v}
    daemon = values["dagsterDaemon"]
    instance = {
        "schedule_storage": _postgres("schedule_storage", "PostgresScheduleStorage", storage),
        "run_storage": _postgres("run_storage", "PostgresRunStorage", storage),
        "event_log_storage": _postgres("event_log", "PostgresEventLogStorage", storage),
        "run_launcher": {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": launcher},
        "telemetry": {"enabled": values["telemetry"]["enabled"]},
    }
    coordinator = daemon["runCoordinator"]
    if daemon["enabled"] and coordinator["enabled"]:
        assert coordinator["type"] == "QueuedRunCoordinator"
        instance["run_coordinator"] = {
            "module": "dagster.core.run_coordinator",
            "class": "QueuedRunCoordinator",
        }
        queued = coordinator.get("config", {}).get("queuedRunCoordinator", {})
        config = {_snake(k): v for k, v in queued.items() if v is not None}
        if config:
            instance["run_coordinator"]["config"] = config
    monitoring = daemon["runMonitoring"]
    if daemon["enabled"] and monitoring["enabled"]:
        instance["run_monitoring"] = {_snake(k): v for k, v in monitoring.items()}
    retries = daemon["runRetries"]
    if daemon["enabled"] and retries["enabled"]:
        instance["run_retries"] = {_snake(k): v for k, v in retries.items()}
    for section in ("sensors", "schedules"):
        if daemon[section]["useThreads"]:
            instance[section] = {_snake(k): v for k, v in daemon[section].items()}
    concurrency = values.get("concurrency", {})
    if concurrency.get("enabled"):
        rendered = {}
        pools = {_snake(k): v for k, v in concurrency.get("pools", {}).items() if v is not None}
        if pools:
            rendered["pools"] = pools
        runs = {_snake(k): v for k, v in concurrency.get("runs", {}).items() if v is not None}
        if runs:
            rendered["runs"] = runs
        instance["concurrency"] = rendered
    return instance


def _postgres(module: str, cls: str, storage: dict) -> dict:
    return {"module": f"dagster_postgres.{module}", "class": cls, "config": storage}


def _snake(camel: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)
