"""Real Prometheus parts for the monitoring tests: the rule file taken from the PrometheusRule
manifest (one source for Kubernetes and for promtool), and Prometheus and Alertmanager processes
on free loopback ports with their own data directories, stopped by PID."""

from __future__ import annotations

import copy
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from stock_assets.local_services import wait_until_answering
from stock_assets.resources.broker import free_port, stop_process_group
from stock_assets_tests.deployment.conftest import REPO, find

RULES_TEST = REPO / "deployment" / "prometheus" / "rules-test.yaml"


def require(command: str) -> str:
    """The Debian binary (installed by `make system-packages`), or a clear failure."""
    path = shutil.which(command)
    if path is None:
        pytest.fail(f"{command} is missing: run `make system-packages`")
    return path


def rule_groups() -> dict:
    """The spec of the PrometheusRule `stock-platform`: a Prometheus rule file as it stands,
    a copy (the manifests are parsed once and shared; a test that edits its rules must not
    edit another test's)."""
    return copy.deepcopy(find("PrometheusRule", "stock-platform")["spec"])


def write_rules(directory: Path, groups: dict | None = None) -> Path:
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump(groups or rule_groups(), sort_keys=False))
    return path


def promtool(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [require("promtool"), *map(str, args)], cwd=cwd, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 30) -> None:
    """Until ``url`` answers 200 (`wait_until_answering`); otherwise fail with the log's tail."""
    if not wait_until_answering(url, proc, timeout_s, ready=True):
        state = "exited" if proc.poll() is not None else "not ready"
        raise RuntimeError(f"{url} {state}:\n{log.read_text()[-3000:]}")


@contextmanager
def server(argv: list[str], ready_path: str, port: int, log: Path) -> Iterator[str]:
    """Run one server in its own process group until the block ends; yields its base URL."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + ready_path, proc, log)
        yield url
    finally:
        stop_process_group(proc, grace_s=5)


@contextmanager
def alertmanager(directory: Path, webhook_url: str) -> Iterator[str]:
    """Alertmanager sending every alert at once to ``webhook_url`` (its webhook format)."""
    config = {
        "route": {
            "receiver": "webhook", "group_by": ["alertname"], "group_wait": "0s",
            "group_interval": "1s", "repeat_interval": "1h",
        },
        "receivers": [
            {"name": "webhook", "webhook_configs": [{"url": webhook_url, "send_resolved": False}]}
        ],
    }  # fmt: skip
    (directory / "alertmanager.yml").write_text(yaml.safe_dump(config))
    port, cluster = free_port(), free_port()
    argv = [
        require("prometheus-alertmanager"),
        f"--config.file={directory / 'alertmanager.yml'}",
        f"--storage.path={directory / 'alertmanager-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--cluster.listen-address=127.0.0.1:{cluster}",  # no gossip peers; a free port
    ]
    with server(argv, "/-/ready", port, directory / "alertmanager.log") as url:
        yield url


@contextmanager
def prometheus(
    directory: Path, targets: dict[str, str], rules: Path, alertmanager_url: str
) -> Iterator[str]:
    """Prometheus scraping each ``job -> host:port`` every second and evaluating ``rules``."""
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": [str(rules)],
        "alerting": {
            "alertmanagers": [
                {"static_configs": [{"targets": [alertmanager_url.removeprefix("http://")]}]}
            ]
        },
        "scrape_configs": [
            {
                "job_name": job,
                "static_configs": [{"targets": [target], "labels": {"track": "stable"}}],
            }
            for job, target in targets.items()
        ],
    }
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    argv = [
        require("prometheus"),
        f"--config.file={directory / 'prometheus.yml'}",
        f"--storage.tsdb.path={directory / 'prometheus-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with server(argv, "/-/ready", port, directory / "prometheus.log") as url:
        yield url
