"""The Kubernetes Jobs dagster-k8s would create from our configuration, built without a cluster.

Run worker: a Dagster instance is built from the dagster.yaml the chart renders from our values
(conftest.render_instance), with SQLite storage instead of PostgreSQL and a kubeconfig file
instead of the in-cluster account; its K8sRunLauncher then launches a run, and the Job body it
sends to the Kubernetes API is captured. Step: the container context k8s_job_executor builds
for a step (same library calls, in its order: run launcher, step_k8s_config, per_step_k8s_config)
from deployment/k8s-job-executor.yaml. Both are validated against the Kubernetes 1.30 Job schema.
"""

from __future__ import annotations

import dagster as dg
import kubernetes
import pytest
import yaml
from dagster import DagsterInstance, DagsterInvalidConfigError
from dagster._config import validate_config
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.launcher import LaunchRunContext
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
from dagster._core.test_utils import create_run_for_test
from dagster_k8s import k8s_job_executor
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import UserDefinedDagsterK8sConfig, construct_dagster_k8s_job

from stock_assets.definitions import defs
from stock_assets.sensors import IN_PROCESS
from stock_assets_tests.deployment.conftest import (
    NAMESPACE,
    load_executor_config,
    load_values,
    render_instance,
    validate_k8s,
)

JOB = "model_refit_job"
KUBECONFIG = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "offline", "cluster": {"server": "https://127.0.0.1:1"}}],
    "users": [{"name": "offline", "user": {"token": "offline"}}],
    "contexts": [{"name": "offline", "context": {"cluster": "offline", "user": "offline"}}],
    "current-context": "offline",
}


def image() -> str:
    (server,) = load_values()["dagster-user-deployments"]["deployments"]
    return f"{server['image']['repository']}:{server['image']['tag']}"


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    home = tmp_path_factory.mktemp("dagster_home")
    (home / "kubeconfig").write_text(yaml.safe_dump(KUBECONFIG))
    rendered = render_instance(load_values())
    for storage in ("run_storage", "event_log_storage", "schedule_storage"):
        del rendered[storage]
    rendered["storage"] = {"sqlite": {"base_dir": str(home)}}
    launcher = rendered["run_launcher"]["config"]
    launcher.update(load_incluster_config=False, kubeconfig_file=str(home / "kubeconfig"))
    (home / "dagster.yaml").write_text(yaml.safe_dump(rendered))
    with DagsterInstance.from_config(str(home)) as instance:
        yield instance


@pytest.fixture(scope="module")
def run(instance):
    origin = RepositoryPythonOrigin(
        executable_path="/opt/stock-assets/.venv/bin/python",
        code_pointer=ModuleCodePointer("stock_assets.definitions", "defs", None),
        container_image=image(),  # what the code server reports (DAGSTER_CURRENT_IMAGE)
        entry_point=["dagster"],
    )
    return create_run_for_test(instance, job_name=JOB, job_code_origin=JobPythonOrigin(JOB, origin))


@pytest.fixture(scope="module")
def run_worker_job(instance, run) -> dict:
    sent = []

    def create_namespaced_job(self, namespace, body, **kwargs):
        sent.append((namespace, body))
        return body

    patch = pytest.MonkeyPatch()
    patch.setattr(kubernetes.client.BatchV1Api, "create_namespaced_job", create_namespaced_job)
    try:
        instance.run_launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
    finally:
        patch.undo()
    ((namespace, body),) = sent
    assert namespace == NAMESPACE
    return kubernetes.client.ApiClient().sanitize_for_serialization(body)


def step_job(instance, run, op_name: str) -> dict:
    """The Job k8s_job_executor would create for ``op_name``'s step (K8sStepHandler's merges)."""
    checked = validate_config(k8s_job_executor.config_schema.config_type, load_executor_config())
    assert checked.success, checked.errors
    config = checked.value
    launcher = instance.run_launcher
    context = (
        K8sContainerContext.create_for_run(run, launcher, include_run_tags=False)
        .merge(
            K8sContainerContext(
                run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(config["step_k8s_config"])
            )
        )
        .merge(
            K8sContainerContext(
                run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(
                    config["per_step_k8s_config"].get(op_name, {})
                )
            )
        )
    )
    job = construct_dagster_k8s_job(
        job_config=context.get_k8s_job_config(image(), launcher),
        args=["dagster", "api", "execute_step"],
        job_name=f"dagster-step-{op_name.replace('_', '-')}"[:63],
        component="step_worker",
        user_defined_k8s_config=context.run_k8s_config,
        labels={"dagster/job": JOB, "dagster/op": op_name, "dagster/run-id": run.run_id},
        env_vars=[{"name": "DAGSTER_RUN_STEP_KEY", "value": op_name}],
    )
    return kubernetes.client.ApiClient().sanitize_for_serialization(job)


def container(job: dict) -> dict:
    (only,) = job["spec"]["template"]["spec"]["containers"]
    return only


def test_run_worker_job_is_a_valid_kubernetes_job(run_worker_job):
    validate_k8s(run_worker_job)
    spec = run_worker_job["spec"]
    assert spec["backoffLimit"] == 0 and spec["ttlSecondsAfterFinished"] == 86400
    main = container(run_worker_job)
    assert main["image"] == image()
    assert main["resources"]["requests"] == {"cpu": "1", "memory": "2Gi"}


def test_run_worker_gets_the_code_servers_env_secrets_and_volumes(run_worker_job):
    values = load_values()
    (server,) = values["dagster-user-deployments"]["deployments"]
    main = container(run_worker_job)
    env = {e["name"]: e for e in main["env"]}
    for expected in server["env"]:
        assert env[expected["name"]] == expected
    # the instance's PostgreSQL password, from the Secret the values name
    assert (
        env["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"]
        == (values["global"]["postgresqlSecretName"])
    )
    assert {"secretRef": {"name": "stock-lake-s3"}} in main["envFrom"]
    mounts = {m["name"]: m["mountPath"] for m in main["volumeMounts"]}
    assert mounts["kafka-ca"] == "/etc/stock/kafka-ca"
    assert env["STOCK_KAFKA_SSL_CAFILE"]["value"].startswith(mounts["kafka-ca"] + "/")
    assert mounts["feast-repo"] == env["STOCK_FEAST_REPO"]["value"]
    volumes = {v["name"] for v in run_worker_job["spec"]["template"]["spec"]["volumes"]}
    assert {"kafka-ca", "feast-repo"} <= volumes


def test_executor_steps_are_real_ops_and_models_outweigh_ingestion(instance, run):
    config = load_executor_config()
    graph = defs.resolve_asset_graph()
    ops = {}
    for key in graph.get_all_asset_keys():
        node = defs.get_assets_def(key)
        ops.setdefault(node.node_def.name, set()).add(graph.get(key).group_name)
    assert set(config["per_step_k8s_config"]) <= set(ops)  # a typo would silently apply nothing
    models = {op for op, groups in ops.items() if "models" in groups}
    assert models <= set(config["per_step_k8s_config"])  # every model step sized explicitly

    def requests(op_name: str) -> dict:
        return container(step_job(instance, run, op_name))["resources"]["requests"]

    ingest = requests("market_bars")  # bronze/market_bars: the default step size
    assert ingest == config["step_k8s_config"]["container_config"]["resources"]["requests"]
    for op in models:
        heavier = requests(op)
        assert _cpu(heavier["cpu"]) > _cpu(ingest["cpu"]), op
        assert _gib(heavier["memory"]) > _gib(ingest["memory"]), op


def test_training_step_job_is_valid_and_sized_for_lightgbm(instance, run):
    job = step_job(instance, run, "models__challenger")
    validate_k8s(job)
    main = container(job)
    assert main["resources"]["requests"] == {"cpu": "2", "memory": "4Gi"}
    assert main["resources"]["limits"] == {"memory": "8Gi"}
    # the step inherits the run launcher's env, secrets and volumes
    names = {e["name"] for e in main["env"]}
    assert {"STOCK_LAKE_ROOT", "STOCK_MLFLOW_TRACKING_URI", "STOCK_KAFKA_SASL_PASSWORD"} <= names
    assert job["spec"]["ttlSecondsAfterFinished"] == 3600


def _cpu(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def _gib(quantity: str) -> float:
    units = {"Mi": 1 / 1024, "Gi": 1.0}
    return float(quantity[:-2]) * units[quantity[-2:]]


def probe_job(executor: dg.ExecutorDefinition) -> dg.JobDefinition:
    @dg.op
    def noop() -> None:
        return None

    @dg.job(executor_def=executor)
    def probe():
        noop()

    return probe


def test_the_executor_file_configures_k8s_job_executor_as_the_proposed_change_does():
    """docs/DEPLOYMENT.md's change: `k8s_job_executor.configured(<file>)`. Dagster checks the
    file only when a run's config is resolved, so a bad file would fail every run: check now."""
    good = probe_job(k8s_job_executor.configured(load_executor_config()))
    assert "k8s" in dg.validate_run_config(good, {})["execution"]
    bad = probe_job(k8s_job_executor.configured({**load_executor_config(), "per_step_conf": {}}))
    with pytest.raises(DagsterInvalidConfigError):  # a misspelt key is refused, not ignored
        dg.validate_run_config(bad, {})


def test_sensor_runs_ask_for_in_process_which_only_the_default_executor_honours():
    """Why the change also pins the ingest and bar-chain jobs' executor: their sensors send
    `execution: in_process` (no process start per step on short ranges); the configured k8s
    executor ignores it and would start a pod per step of every streaming run."""
    default = dg.validate_run_config(probe_job(dg.multi_or_in_process_executor), IN_PROCESS)
    assert "in_process" in str(default["execution"])
    per_step = probe_job(k8s_job_executor.configured(load_executor_config()))
    assert list(dg.validate_run_config(per_step, IN_PROCESS)["execution"]) == ["k8s"]
