"""A real API process for the serving tests: ``python -m serving`` on a free loopback port,
reading the built `delivered` state, stopped by PID at the end.

One server for the package's read-only tests (`api`), shared by its modules; the reload tests
start their own on a copy of the state, because they change the registry and the tables.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from serving.settings import digest
from stock_assets.config import REPO_ROOT
from stock_assets.resources.broker import free_port, stop_process_group

# secrets the test keys are configured with (only their digests reach the server)
READER, ADMIN, LIMITED, FUZZER = "sk_test_reader", "sk_test_admin", "sk_test_limited", "sk_fuzz"
AB_KEYS = {f"ab-{i:02d}": f"sk_test_ab_{i:02d}" for i in range(40)}
ORIGIN = "https://analyst.example.com"


def key_settings() -> dict[str, str]:
    """Keys as the server reads them: ``id:sha256[:rate[:burst]]``."""
    keys = [
        f"reader:{digest(READER)}:1000:1000",
        f"limited:{digest(LIMITED)}:0.5:2",
        f"fuzzer:{digest(FUZZER)}:100000:100000",
        *(f"{key_id}:{digest(secret)}:1000:1000" for key_id, secret in AB_KEYS.items()),
    ]
    return {
        "STOCK_API_KEYS": ",".join(keys),
        "STOCK_API_ADMIN_KEYS": f"admin:{digest(ADMIN)}:1000:1000",
        "STOCK_API_CORS_ORIGINS": ORIGIN,
    }


@dataclass
class ApiServer:
    url: str
    proc: subprocess.Popen
    log: Path

    def client(self, secret: str | None = READER) -> httpx.Client:
        headers = {"X-API-Key": secret} if secret else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def wait_ready(self, timeout_s: float = 240) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the API exited:\n{self.log.read_text()[-3000:]}")
            try:
                answer = httpx.get(f"{self.url}/health/ready", timeout=5)
                if answer.status_code == 200:
                    return answer.json()
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the API was not ready:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.5)


def start_server(env: dict[str, str], log: Path) -> ApiServer:
    port = free_port()
    full = {**os.environ, **env, "STOCK_API_HOST": "127.0.0.1", "STOCK_API_PORT": str(port)}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "serving"],
            cwd=REPO_ROOT,
            env=full,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return ApiServer(f"http://127.0.0.1:{port}", proc, log)


def running(env: dict[str, str], log: Path) -> Iterator[ApiServer]:
    server = start_server(env, log)
    try:
        server.wait_ready()
        yield server
    finally:
        stop_process_group(server.proc, grace_s=10)


@pytest.fixture(scope="package")
def api(delivered, tmp_path_factory) -> Iterator[ApiServer]:
    """The API on the delivered state (read-only), shared by the package's modules."""
    log = tmp_path_factory.mktemp("api") / "api.log"
    yield from running({**delivered.env, **key_settings(), "STOCK_API_POLL_SECONDS": "2"}, log)


def copy_state(delivered, root: Path) -> dict[str, str]:
    """A private copy of the delivered lake, registry and Feast repo, and its environment."""
    shutil.copytree(delivered.root, root)
    env = dict(delivered.env)
    env["STOCK_LAKE_ROOT"] = str(root / "lake")
    env["STOCK_MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"
    env["STOCK_FEAST_REPO"] = str(root / "feast")
    return env
