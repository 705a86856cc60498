"""The API and the Streamlit app as processes of the local stack (`make run`).

Both read what the pipeline stored (the lake, the MLflow registry, the Feast online store) and
reload on their own when new outputs land, so they start once, next to Dagster. Locally the API
gets one generated key: its secret stays in the state folder (mode 0600) and only its SHA-256
digest reaches the API's configuration, as in production.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from serving.settings import digest, new_secret
from stock_assets import config

LOCAL_KEY_ID = "local"


def local_api_key(state: Path) -> str:
    """The local key's secret, made on first use and kept across restarts."""
    path = state / "api_key"
    if not path.exists():
        path.write_text(new_secret() + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


def api_env(env: Mapping[str, str], secret: str, port: int) -> dict[str, str]:
    """The stack's environment plus the API's own settings (an operator's STOCK_API_KEYS wins)."""
    keys = env.get("STOCK_API_KEYS") or f"{LOCAL_KEY_ID}:{digest(secret)}"
    return {
        **env,
        "STOCK_API_KEYS": keys,
        "STOCK_API_HOST": "127.0.0.1",
        "STOCK_API_PORT": str(port),
    }


def log_file(state: Path, name: str):
    """An append-mode log under ``<state>/logs``: servers write there, the terminal keeps the
    progress lines and addresses (the daemon alone logs a sensor tick every few seconds)."""
    path = log_path(state, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("ab")


def log_path(state: Path, name: str) -> Path:
    return state / "logs" / f"{name}.log"


@contextlib.contextmanager
def output_to_log(state: Path, name: str) -> Iterator[Callable[[str], None]]:
    """Everything this process writes to stdout and stderr (Dagster's console events of the runs
    it executes in process, MLflow's notices, warnings) goes to ``<state>/logs/<name>.log``
    meanwhile, at the descriptor level; yields ``say(line)``, which still reaches the terminal."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(saved[0]), "w", buffering=1)
    try:
        with log_file(state, name) as log, open(log.fileno(), "w", closefd=False) as text:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            # and Python's own streams, should they not be the descriptors (a test's capture)
            with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
                yield lambda line: print(line, file=terminal, flush=True)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for descriptor in saved:
            os.close(descriptor)
        terminal.close()


def start_logged(command: list[str], env: Mapping[str, str], state: Path, name: str):
    """``command`` in its own process group, its output in ``<state>/logs/<name>.log``."""
    with log_file(state, name) as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            command,
            cwd=config.REPO_ROOT,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def start_api(env: Mapping[str, str], state: Path) -> subprocess.Popen:
    """``python -m serving`` with `api_env`'s settings."""
    return start_logged([sys.executable, "-m", "serving"], env, state, "api")


def start_app(env: Mapping[str, str], port: int, ui_port: int, state: Path) -> subprocess.Popen:
    app_env = {**env, "STOCK_DAGSTER_UI_URL": f"http://127.0.0.1:{ui_port}"}
    app_env.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")
    return start_logged(
        [sys.executable, "-m", "streamlit", "run", "app/streamlit_app.py",
         "--server.port", str(port), "--server.address", "127.0.0.1",
         "--server.headless", "true"],
        app_env, state, "app",
    )  # fmt: skip


def wait_until_answering(
    url: str, process: subprocess.Popen, timeout_s: float = 120, ready: bool = False
) -> bool:
    """True once ``url`` answers below 500 (200 when ``ready``: a readiness probe answers 503
    until it is); False if the process died or time ran out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status < 500
        except urllib.error.HTTPError as error:
            if error.code < 500 and not ready:
                return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


def ports() -> tuple[int, int]:
    """``STOCK_API_PORT`` / ``STOCK_APP_PORT`` (8000 / 8501)."""
    return int(os.environ.get("STOCK_API_PORT", 8000)), int(os.environ.get("STOCK_APP_PORT", 8501))


def start_delivery(env: Mapping[str, str], state: Path, ui_port: int, wait: bool = True):
    """Start the API and the app: (api, app, (api_port, app_port)). ``wait`` waits until both
    answer; `make run` starts them next to Dagster and waits once its models are trained."""
    api_port, app_port = ports()
    api = start_api(api_env(env, local_api_key(state), api_port), state)
    app = start_app(env, app_port, ui_port, state)
    if wait:
        wait_for_delivery(api, app, (api_port, app_port), state)
    return api, app, (api_port, app_port)


def wait_for_delivery(
    api, app, delivery_ports: tuple[int, int], state: Path, expect_ready: bool = False
) -> None:
    """Wait until the API and the app answer and, with ``expect_ready`` (a champion and
    predictions are stored), until the API's first snapshot holds them; prints each."""
    api_port, app_port = delivery_ports
    probes = [
        ("API", f"http://127.0.0.1:{api_port}/health/live", api),
        ("app", f"http://127.0.0.1:{app_port}/_stcore/health", app),
    ]
    if expect_ready:
        probes.append(("API", f"http://127.0.0.1:{api_port}/health/ready", api))
    for name, url, process in probes:
        if wait_until_answering(url, process, ready=url.endswith("/ready")):
            print(f"{name} answers on {url}", flush=True)
        else:
            print(
                f"{name} did not answer on {url}; see {log_path(state, name.lower())}", flush=True
            )
