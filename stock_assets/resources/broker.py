"""Supervisor for the embedded noida-db Kafka-protocol broker (dev and tests).

No real Kafka can be installed on these machines, so local runs and the test suite start a
pinned noida-db with only its Kafka service (docs/ARCHITECTURE.md, "Kafka here and in production").
Production code only sees a bootstrap string, so it runs unchanged against a real cluster.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import noida_db
from kafka import KafkaAdminClient
from kafka.errors import TopicAlreadyExistsError

# Harmless loader warning printed by the binary on Debian 12; never a failure signal.
_GLIBC_NOISE = "GLIBC_2.39"


PR_SET_PDEATHSIG = 1  # linux/prctl.h


class BrokerStartError(RuntimeError):
    """The broker exited or did not answer Kafka metadata requests in time."""


def noida_binary() -> Path:
    """The real server binary: SIGTERM to the `noida-db` console script orphans it."""
    path = Path(noida_db.__file__).with_name("noida-db")
    if not path.is_file():
        raise FileNotFoundError(f"noida-db binary not found at {path}")
    if not os.access(path, os.X_OK):  # the console script chmods it too
        path.chmod(0o755)
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def bounded_client_kwargs(timeout_s: float) -> dict:
    """kafka-python 3.0 settings so that a dead broker fails a call in about `timeout_s`.

    `api_version` is deliberately left unset: the version probe in the constructor is what
    fails fast (bootstrap_timeout_ms). With it set, the constructor succeeds against a dead
    broker, poll() then returns {} silently and consumer.topics() blocks forever.
    Valid for KafkaAdminClient, KafkaConsumer and KafkaProducer (add max_block_ms there).
    """
    ms = max(1000, int(timeout_s * 1000))  # consumers need request_timeout > fetch_max_wait 500
    return {
        "bootstrap_timeout_ms": ms,  # constructor: version probe + first metadata
        "request_timeout_ms": ms,  # each request, and end_offsets()/beginning_offsets()
        "reconnect_backoff_ms": 50,
        "reconnect_backoff_max_ms": 1000,  # default 30 s: slow to notice a restarted broker
        "metadata_max_age_ms": 30_000,  # default 5 min: slow to see new partitions
    }


def ensure_topic(
    bootstrap: str,
    topic: str,
    partitions: int,
    replication: int = 1,
    timeout_s: float = 10.0,
    security: dict | None = None,
) -> int:
    """Create `topic` if missing (idempotent); return its partition count once it has leaders.

    ``security``: TLS/SASL client arguments (`KafkaResource.security_kwargs`)."""
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap, **bounded_client_kwargs(timeout_s), **(security or {})
    )
    try:
        if topic not in admin.list_topics():
            spec = {topic: {"num_partitions": partitions, "replication_factor": replication}}
            with contextlib.suppress(TopicAlreadyExistsError):  # a concurrent creator won
                admin.create_topics(spec, timeout_ms=int(timeout_s * 1000))
        admin.wait_for_topics([topic], timeout_ms=int(timeout_s * 1000))
        (described,) = admin.describe_topics([topic])
        return len(described["partitions"])
    finally:
        admin.close()


def _die_with_parent() -> None:
    """In the child before exec: have Linux SIGKILL the broker if its parent dies.

    atexit covers a normal exit; this covers a parent killed outright (SIGKILL, a CI timeout),
    which would otherwise leave an orphaned broker holding its port. Linux ties this to the
    starting *thread*: start brokers from a thread that lives as long as they should.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def stop_process_group(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM a child's process group, SIGKILL whatever is left after ``grace_s``, reap it.

    For children started with ``start_new_session=True``; servers here may ignore SIGTERM.
    """
    _signal_group(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while _exit_code(proc) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    # The leader is alive or an unreaped zombie, so its pgid cannot be reused yet.
    _signal_group(proc.pid, signal.SIGKILL)
    proc.wait()


class EmbeddedBroker:
    """One noida-db process (Kafka service only) in its own process group."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        host: str = "127.0.0.1",
        ready_timeout_s: float = 30,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.ready_timeout_s = ready_timeout_s
        self.log_path = self.data_dir / "broker.log"
        self.proc: subprocess.Popen | None = None
        self._log_offset = 0

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def is_running(self) -> bool:
        return self.proc is not None and _exit_code(self.proc) is None

    def start(self) -> EmbeddedBroker:
        """Launch and block until a Kafka metadata request succeeds."""
        if self.proc is not None:
            raise BrokerStartError(f"broker on {self.bootstrap} already started")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not _port_free(self.host, self.port):  # else we would talk to someone else's server
            raise BrokerStartError(f"port {self.bootstrap} is already in use")
        cmd = [str(noida_binary()), "start", "--only", "kafka", "--host", self.host]
        cmd += ["--kafka-port", str(self.port), "--data-dir", str(self.data_dir)]
        with open(self.log_path, "ab") as log:
            self._log_offset = log.tell()
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_parent,
            )  # fmt: skip
        atexit.register(self.stop)
        try:
            self._wait_ready()
        except BaseException:
            self.stop(grace_s=1)
            raise
        return self

    def _wait_ready(self) -> None:
        """Ready = our process alive, the port accepts, and a Kafka metadata call answers."""
        deadline = time.monotonic() + self.ready_timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            time.sleep(0.05)  # a failed launch (busy port, bad flag) exits within ~20 ms
            if not self.is_running():
                break
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    pass
                admin = KafkaAdminClient(
                    bootstrap_servers=self.bootstrap, **bounded_client_kwargs(1)
                )
                try:
                    admin.list_topics()
                finally:
                    admin.close()
            except Exception as exc:  # not listening yet
                last_error = exc
                continue
            if self.is_running():  # else whoever answered was not our broker
                return
        why = f"not ready after {self.ready_timeout_s}s (last error: {last_error!r})"
        if (code := _exit_code(self.proc)) is not None:
            why = f"exited with {code} before it was ready"
        raise BrokerStartError(f"noida-db on {self.bootstrap} {why}; log:\n{self.log_tail()}")

    def log_tail(self, max_bytes: int = 4000) -> str:
        """This run's log output, minus the GLIBC loader noise."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(max(self._log_offset, log.seek(0, os.SEEK_END) - max_bytes))
                text = log.read().decode(errors="replace")
        except OSError as exc:
            return f"<no log: {exc}>"
        return "\n".join(ln for ln in text.splitlines() if _GLIBC_NOISE not in ln)

    def stop(self, grace_s: float = 5) -> None:
        """SIGTERM the group (noida-db flushes to disk), then SIGKILL whatever remains."""
        proc, self.proc = self.proc, None
        atexit.unregister(self.stop)
        if proc is not None:
            stop_process_group(proc, grace_s)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR as servers set it: TIME_WAIT leftovers do not make the port busy.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _exit_code(proc: subprocess.Popen) -> int | None:
    """Exit status (or signal) once exited, without reaping: the pgid stays ours to kill."""
    if proc.returncode is not None:
        return proc.returncode
    try:
        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:  # reaped elsewhere
        return -1
    return None if info is None else info.si_status


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)
