"""The three images: built from the lock without the dev group (the API and the app also without
the pipeline group, so without Dagster), copying only paths that exist, starting entry points
that exist, on the ports the manifests expect.

No Docker engine here, so the Dockerfiles are parsed. The API's and the app's entry points
(serving/__main__.py, app/streamlit_app.py) are checked for on purpose: an image whose command
names a missing file would build and then crash-loop.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass

import pytest

from stock_assets_tests.deployment.conftest import (
    DEPLOYMENT,
    REPO,
    containers_of,
    find,
    load_values,
)

UV_VERSION = "0.13.9"  # Makefile's bootstrap pin


@dataclass(frozen=True)
class Image:
    dockerfile: str
    entry_file: str  # what CMD runs, relative to the repository
    port: int


IMAGES = {
    "code location": Image("Dockerfile", "stock_assets/definitions.py", 3030),
    "api": Image("api.Dockerfile", "serving/__main__.py", 8000),
    "app": Image("app.Dockerfile", "app/streamlit_app.py", 8501),
}


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines, current = [], ""
    for raw in (DEPLOYMENT / dockerfile).read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        current += " " + line.rstrip("\\").strip()
        if not line.endswith("\\"):
            lines.append(current.strip())
            current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def copies(dockerfile: str) -> list[list[str]]:
    """Sources of each COPY from the build context (not from another stage)."""
    found = []
    for op, args in instructions(dockerfile):
        if op == "COPY" and "--from=" not in args:
            words = [w for w in shlex.split(args) if not w.startswith("--")]
            found.append(words[:-1])
    return found


@pytest.mark.parametrize("name", IMAGES)
def test_every_copy_source_exists_in_the_repository(name):
    sources = [s for group in copies(IMAGES[name].dockerfile) for s in group]
    assert sources
    for source in sources:
        assert (REPO / source).exists(), f"{IMAGES[name].dockerfile}: COPY {source}"


@pytest.mark.parametrize("name", IMAGES)
def test_dependencies_come_from_the_lock_without_the_dev_group(name):
    steps = instructions(IMAGES[name].dockerfile)
    runs = [args for op, args in steps if op == "RUN"]
    syncs = [r for r in runs if "uv sync" in r]
    assert len(syncs) == 2  # dependencies alone (a cached layer), then the project
    groups = ["pipeline"] if name == "code location" else []  # the API and app: no orchestrator
    for sync in syncs:
        words = sync.split()
        assert "--frozen" in words and "--no-default-groups" in words, sync
        assert [words[i + 1] for i, w in enumerate(words) if w == "--group"] == groups, sync
        assert not {"--dev", "--all-groups", "--upgrade", "--all-extras"} & set(words), sync
    installs = [r for r in runs if "pip install" in r]
    assert installs == [f"pip install --no-cache-dir uv=={UV_VERSION}"]  # nothing unlocked
    makefile = (REPO / "Makefile").read_text()
    assert f"uv=={UV_VERSION}" in makefile
    # the project is installed from the lock too: every package the wheel lists is copied first
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    copied = {s for group in copies(IMAGES[name].dockerfile) for s in group}
    assert {"pyproject.toml", "uv.lock", "README.md", *packages} <= copied


@pytest.mark.parametrize("name", IMAGES)
def test_command_starts_an_entry_point_that_exists(name):
    image = IMAGES[name]
    cmd = [args for op, args in instructions(image.dockerfile) if op == "CMD"][-1]
    words = re.findall(r'"([^"]*)"', cmd)
    if name == "code location":
        assert words[:5] == ["dagster", "api", "grpc", "-m", "stock_assets.definitions"]
        (server,) = load_values()["dagster-user-deployments"]["deployments"]
        assert server["dagsterApiGrpcArgs"] == words[3:5]
    elif name == "api":
        assert words == ["python", "-m", "serving"]
    else:
        assert words[:3] == ["streamlit", "run", "app/streamlit_app.py"]
        assert words[words.index("--server.address") + 1] == "0.0.0.0"
    assert (REPO / image.entry_file).is_file(), f"{image.entry_file} does not exist (yet?)"


@pytest.mark.parametrize("name", IMAGES)
def test_image_exposes_the_port_its_manifest_uses_and_runs_unprivileged(name):
    steps = instructions(IMAGES[name].dockerfile)
    assert [args for op, args in steps if op == "EXPOSE"] == [str(IMAGES[name].port)]
    assert [args for op, args in steps if op == "USER"] == ["10001"]
    runtime = steps[max(i for i, (op, _) in enumerate(steps) if op == "FROM") :]
    assert any(op == "RUN" and "libgomp1" in args for op, args in runtime)  # LightGBM's OpenMP
    ignore = (DEPLOYMENT / f"{IMAGES[name].dockerfile}.dockerignore").read_text().split()
    assert {".venv", ".state", ".git"} <= set(ignore)  # keep the build context small
    manifest = {"api": ("Deployment", "stock-api"), "app": ("Deployment", "stock-app")}
    if name in manifest:
        (main,) = containers_of(find(*manifest[name]))
        assert main["ports"][0]["containerPort"] == IMAGES[name].port
    else:
        (server,) = load_values()["dagster-user-deployments"]["deployments"]
        assert server["port"] == IMAGES[name].port


def test_code_image_ships_the_executor_config_where_the_values_point():
    copied = [c for c in copies("Dockerfile") if c == ["deployment/k8s-job-executor.yaml"]]
    assert copied
    (server,) = load_values()["dagster-user-deployments"]["deployments"]
    env = {e["name"]: e.get("value") for e in server["env"]}
    assert env["STOCK_K8S_EXECUTOR_CONFIG"] == "/opt/stock-assets/deployment/k8s-job-executor.yaml"
    assert "WORKDIR /opt/stock-assets" in {
        f"{op} {args}" for op, args in instructions("Dockerfile")
    }


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_closure(groups: tuple[str, ...] = ()) -> set[str]:
    """Every package `uv sync --frozen --no-default-groups [--group G]` installs, walked through
    uv.lock's graph (markers ignored: a superset, so an absence is certain)."""
    lock = {_norm(p["name"]): p for p in tomllib.loads((REPO / "uv.lock").read_text())["package"]}
    root = lock["stock-assets"]
    todo = [(d["name"], tuple(d.get("extra", ()))) for d in root.get("dependencies", [])]
    for group in groups:
        todo += [(d["name"], tuple(d.get("extra", ()))) for d in root["dev-dependencies"][group]]
    seen: set[tuple[str, str]] = set()
    while todo:
        name, extras = todo.pop()
        package = lock[_norm(name)]
        for extra in ("", *extras):
            if (package["name"], extra) in seen:
                continue
            seen.add((package["name"], extra))
            deps = package.get("optional-dependencies", {}).get(extra, []) if extra else None
            for dep in package.get("dependencies", []) if deps is None else deps:
                todo.append((dep["name"], tuple(dep.get("extra", ()))))
    return {_norm(n) for n, _ in seen}


def test_the_api_and_app_dependency_set_has_no_orchestrator():
    served, pipeline = lock_closure(), lock_closure(("pipeline",))
    assert not {n for n in served if n.startswith("dagster")}, "Dagster in the API/app images"
    assert not {"kafka-python", "noida-db", "pandera"} & served
    assert {"dagster", "dagster-k8s", "dagster-webserver", "kafka-python"} <= pipeline
    # imported directly by serving/ and app/, so declared, pinned at the locked versions
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = dict(
        re.match(r"([A-Za-z0-9_.-]+)(?:\[.*\])?==(.+)", d).groups() for d in project["dependencies"]
    )
    lock = {
        _norm(p["name"]): p["version"]
        for p in tomllib.loads((REPO / "uv.lock").read_text())["package"]
    }
    for name in ("fastapi", "uvicorn", "prometheus-client", "altair", "streamlit", "mlflow"):
        assert pins[name] == lock[name], name
    for name, version in pins.items():
        assert lock[_norm(name)] == version, f"{name}=={version} is not the locked version"


# Run in a process where only the images' distributions can be imported: a module of any other
# installed distribution raises ModuleNotFoundError, as it would in the image, so an optional
# import (pandas' bottleneck, jsonschema's format checkers) is skipped as there, and a required
# one fails the test.
IMAGE_PROCESS = """
import importlib.abc, importlib.metadata as md, json, sys
allowed = set(json.loads(sys.argv[1]))
owners = md.packages_distributions()
norm = lambda n: n.replace("_", "-").replace(".", "-").lower()
class OnlyTheImage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        dists = {norm(d) for d in owners.get(top, ())}
        if dists and not dists & allowed and top not in ("serving", "app", "stock_assets"):
            raise ModuleNotFoundError(f"No module named {name!r} (not in the image)", name=name)
        return None
sys.meta_path.insert(0, OnlyTheImage())
import serving.api, serving.__main__, serving.keys, app.readers, app.charts
import streamlit, mlflow.lightgbm, feast, stock_assets.models.audit
import stock_assets.feast.feature_store, stock_assets.models.explain
serving.api.create_app()
print(sorted(m for m in sys.modules if m.split(".")[0].startswith("dagster")))
"""


def test_what_serving_and_the_app_import_is_in_their_dependency_set():
    """The API's and the app's imports (with the lazy ones of loading a booster and reading
    Feast) succeed with only the images' distributions importable, and reach no Dagster."""
    allowed = sorted(lock_closure() | {"setuptools"})  # setuptools: the venv's own .pth hook
    done = subprocess.run(
        [sys.executable, "-c", IMAGE_PROCESS, json.dumps(allowed)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
