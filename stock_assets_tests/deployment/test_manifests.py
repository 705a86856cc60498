"""deployment/k8s: every object valid for Kubernetes 1.30, wired to the others, secrets by name.

Built-in kinds are validated with kubernetes-validate's strict 1.30 schemas. Custom resources
(Strimzi, Prometheus Operator) are validated against the minimal schemas in crd_schemas.yaml,
which list exactly the fields we use: their CRDs are not available offline.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from stock_assets import config
from stock_assets.bronze.ingest import CONSUMER_GROUP
from stock_assets_tests.deployment.conftest import (
    CUSTOM_KINDS,
    MANIFESTS,
    NAMESPACE,
    TOOLING_KINDS,
    Loader,
    cluster_objects,
    containers_of,
    find,
    manifest_docs,
    validate_k8s,
)

BUILT_IN = [
    pytest.param(doc, id=f"{name}#{index}:{doc['kind']}/{doc['metadata']['name']}")
    for name, index, doc in manifest_docs()
    if (doc["apiVersion"], doc["kind"]) not in CUSTOM_KINDS | TOOLING_KINDS
]
CUSTOM = [
    pytest.param(doc, id=f"{name}#{index}:{doc['kind']}/{doc['metadata']['name']}")
    for name, index, doc in manifest_docs()
    if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS
]
WORKLOADS = ("Deployment", "StatefulSet")


@pytest.mark.parametrize("obj", BUILT_IN)
def test_object_is_valid_for_kubernetes_1_30(obj):
    validate_k8s(obj)


@functools.cache
def crd_schemas() -> dict:
    return yaml.load(Path(__file__).with_name("crd_schemas.yaml").read_text(), Loader=Loader)


@pytest.mark.parametrize("obj", CUSTOM)
def test_custom_resource_has_the_structure_its_operator_expects(obj):
    schemas = crd_schemas()
    schema = {"$defs": schemas["$defs"], **schemas[obj["kind"]]}
    jsonschema.Draft202012Validator(schema).validate(obj)


def test_the_manifests_hold_every_kind_the_platform_needs():
    kinds = {(o["kind"], o["metadata"]["name"]) for o in cluster_objects()}
    for needed in [
        ("Deployment", "stock-api"),
        ("Deployment", "stock-api-canary"),
        ("Service", "stock-api"),
        ("HorizontalPodAutoscaler", "stock-api"),
        ("PodDisruptionBudget", "stock-api"),
        ("Deployment", "stock-app"),
        ("Deployment", "mlflow"),
        ("StatefulSet", "stock-redis"),
        ("Kafka", "market"),
        ("KafkaUser", "stock-assets"),
        ("ServiceMonitor", "stock-api"),
        ("PrometheusRule", "stock-platform"),
        ("ConfigMap", "stock-platform-dashboard"),
    ]:
        assert needed in kinds


def test_every_object_lives_in_the_namespace_and_is_applied_by_kustomize():
    for obj in cluster_objects():
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]["name"]
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    files = {p.name for p in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)


def _pod_labels() -> dict[str, dict]:
    return {
        o["metadata"]["name"]: o["spec"]["template"]["metadata"]["labels"]
        for o in cluster_objects()
        if o["kind"] in WORKLOADS
    }


def test_every_service_selects_pods_and_targets_one_of_their_named_ports():
    workloads = [o for o in cluster_objects() if o["kind"] in WORKLOADS]
    for service in (o for o in cluster_objects() if o["kind"] == "Service"):
        selector = service["spec"]["selector"]
        selected = [
            w
            for w in workloads
            if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert selected, f"Service {service['metadata']['name']} selects no pod"
        for port in service["spec"]["ports"]:
            for workload in selected:
                names = {p["name"] for c in containers_of(workload) for p in c.get("ports", [])}
                assert port["targetPort"] in names, (service["metadata"]["name"], port)


def test_workload_selectors_match_their_own_pod_labels():
    for obj in cluster_objects():
        if obj["kind"] in WORKLOADS:
            selector = obj["spec"]["selector"]["matchLabels"]
            assert selector.items() <= obj["spec"]["template"]["metadata"]["labels"].items()


def test_api_listens_on_8000_with_the_health_paths_of_serving():
    (api,) = containers_of(find("Deployment", "stock-api"))
    metrics = {"name": "metrics", "containerPort": 9100}  # internal: /metrics only there
    assert api["ports"] == [{"name": "http", "containerPort": 8000}, metrics]
    env = {e["name"]: e.get("value") for e in api["env"]}
    assert env["STOCK_API_METRICS_PORT"] == "9100"
    (endpoint,) = find("ServiceMonitor", "stock-api")["spec"]["endpoints"]
    assert endpoint["port"] == "metrics"
    assert api["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert api["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert api["startupProbe"]["httpGet"]["path"] == "/health/live"


def test_canary_is_the_stable_pod_spec_with_its_own_label_and_image():
    stable, canary = find("Deployment", "stock-api"), find("Deployment", "stock-api-canary")
    assert canary["spec"]["template"]["metadata"]["labels"]["track"] == "canary"
    assert stable["spec"]["template"]["metadata"]["labels"]["track"] == "stable"
    assert canary["spec"]["replicas"] == 0  # idle until a release scales it up

    def without_image(deployment: dict) -> dict:
        spec = json.loads(json.dumps(deployment["spec"]["template"]["spec"]))
        for container in spec["containers"]:
            container.pop("image")
        return spec

    assert without_image(canary) == without_image(stable)
    # the shared Service reaches both tracks; the canary Service only the canary
    assert find("Service", "stock-api")["spec"]["selector"] == {
        "app.kubernetes.io/name": "stock-api"
    }
    assert find("Service", "stock-api-canary")["spec"]["selector"]["track"] == "canary"


def test_autoscaler_owns_the_stable_replicas_and_the_budget_keeps_pods_up():
    stable = find("Deployment", "stock-api")
    hpa = find("HorizontalPodAutoscaler", "stock-api")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "stock-api",
    }
    assert "replicas" not in stable["spec"]  # else every apply resets what the HPA chose
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    pdb = find("PodDisruptionBudget", "stock-api")
    labels = stable["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"]


def test_volumes_mounted_are_declared_and_the_feast_claim_exists():
    kind = "PersistentVolumeClaim"
    claims = {o["metadata"]["name"] for o in cluster_objects() if o["kind"] == kind}
    for obj in (o for o in cluster_objects() if o["kind"] in WORKLOADS):
        pod = obj["spec"]["template"]["spec"]
        declared = {v["name"] for v in pod.get("volumes", [])}
        declared |= {t["metadata"]["name"] for t in obj["spec"].get("volumeClaimTemplates", [])}
        for container in pod["containers"]:
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in declared, (obj["metadata"]["name"], mount)
        for volume in pod.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
    feast = find("PersistentVolumeClaim", "stock-feast-repo")
    assert feast["spec"]["accessModes"] == ["ReadWriteMany"]  # step pods write, the API reads


def test_topics_user_and_listener_match_what_the_code_connects_to():
    topics = {o["spec"]["topicName"] for o in cluster_objects() if o["kind"] == "KafkaTopic"}
    assert topics == {config.MARKET_BARS_TOPIC_DEFAULT, config.NEWS_TOPIC_DEFAULT}
    kafka = find("Kafka", "market")
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    assert listener["tls"] and listener["authentication"]["type"] == "scram-sha-512"
    assert kafka["spec"]["kafka"]["config"]["auto.create.topics.enable"] is False
    user = find("KafkaUser", "stock-assets")
    acls = user["spec"]["authorization"]["acls"]
    for topic in topics:
        (acl,) = [a for a in acls if a["resource"] == {"type": "topic", "name": topic,
                                                         "patternType": "literal"}]  # fmt: skip
        assert set(acl["operations"]) == {"Describe", "Read"}  # the platform never writes
    (group,) = [a for a in acls if a["resource"]["type"] == "group"]
    assert CONSUMER_GROUP.startswith(group["resource"]["name"])
    assert group["resource"]["patternType"] == "prefix"


def test_no_secret_objects_and_no_literal_credentials():
    assert not [o for o in cluster_objects() if o["kind"] == "Secret"]
    sensitive = re.compile(r"(PASSWORD|SECRET|TOKEN|ACCESS_KEY|AUTH|STORE_URI)")
    for obj in (o for o in cluster_objects() if o["kind"] in WORKLOADS):
        for container in containers_of(obj):
            for env in container.get("env", []):
                if sensitive.search(env["name"]):
                    assert "secretKeyRef" in env.get("valueFrom", {}), env["name"]
                value = str(env.get("value", ""))
                assert "password=" not in value or "password=$(" in value, env["name"]


def test_env_references_are_defined_before_use():
    """The kubelet expands $(VAR) only from variables listed earlier in the same container."""
    for obj in (o for o in cluster_objects() if o["kind"] in WORKLOADS):
        for container in containers_of(obj):
            seen: set[str] = set()
            for env in container.get("env", []):
                for name in re.findall(r"\$\(([A-Z0-9_]+)\)", str(env.get("value", ""))):
                    assert name in seen, (obj["metadata"]["name"], env["name"], name)
                seen.add(env["name"])
            for arg in container.get("args", []):
                for name in re.findall(r"\$\(([A-Z0-9_]+)\)", arg):
                    assert name in seen, (obj["metadata"]["name"], arg)


def test_feast_connection_string_points_at_the_redis_service():
    service = find("Service", "stock-redis")
    port = service["spec"]["ports"][0]["port"]
    for name in ("stock-api", "stock-app"):
        (container,) = containers_of(find("Deployment", name))
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["STOCK_FEAST_ONLINE_STORE"] == "redis"
        assert env["STOCK_FEAST_REDIS"].startswith(f"{service['metadata']['name']}:{port},")


def test_the_strict_schema_catches_a_misspelt_field():
    """The validation above is not vacuous: an unknown field fails it."""
    deployment = json.loads(json.dumps(find("Deployment", "stock-api")))
    (container,) = containers_of(deployment)
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_k8s(deployment)
