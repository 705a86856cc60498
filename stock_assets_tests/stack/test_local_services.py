"""`make run`'s API and app: started on the built state, answering, the local key enforced."""

from __future__ import annotations

import os
import stat
import sys
import time

import dagster as dg
import httpx

from stock_assets import local_services as services
from stock_assets.resources.broker import free_port, stop_process_group


def test_make_run_serves_the_api_with_its_local_key_and_the_app(delivered, tmp_path, monkeypatch):
    api_port, app_port = free_port(), free_port()
    monkeypatch.setenv("STOCK_API_PORT", str(api_port))
    monkeypatch.setenv("STOCK_APP_PORT", str(app_port))
    monkeypatch.delenv("STOCK_API_KEYS", raising=False)
    env = {**os.environ, **delivered.env}
    api, app, ports = services.start_delivery(env, tmp_path, ui_port=free_port())
    try:
        assert ports == (api_port, app_port)
        secret = (tmp_path / "api_key").read_text().strip()
        assert stat.S_IMODE((tmp_path / "api_key").stat().st_mode) == 0o600
        assert services.local_api_key(tmp_path) == secret  # kept across restarts
        base = f"http://127.0.0.1:{api_port}"
        deadline = time.monotonic() + 180  # live at once; ready once the first snapshot loads
        while httpx.get(f"{base}/health/ready", timeout=10).status_code != 200:
            assert time.monotonic() < deadline and api.poll() is None
            time.sleep(0.5)
        assert httpx.get(f"{base}/v1/tickers", timeout=10).status_code == 401
        tickers = httpx.get(f"{base}/v1/tickers", headers={"X-API-Key": secret}, timeout=10)
        assert tickers.status_code == 200
        assert "AAPL" in tickers.text
        page = httpx.get(f"http://127.0.0.1:{app_port}/_stcore/health", timeout=10)
        assert page.status_code == 200 and page.text == "ok"
        logs = tmp_path / "logs"  # their output, out of the terminal's progress lines
        assert (logs / "api.log").stat().st_size > 0 and (logs / "app.log").exists()
    finally:
        for process in (api, app):
            stop_process_group(process, grace_s=5)
    assert api.poll() is not None and app.poll() is not None


def test_runs_in_the_stack_process_log_to_a_file_and_progress_reaches_the_terminal(tmp_path, capfd):
    @dg.asset
    def noisy() -> None:
        print("a line from the asset")

    with services.output_to_log(tmp_path, "runs") as say:
        say("progress: refitting")
        assert dg.materialize([noisy], instance=dg.DagsterInstance.ephemeral()).success
        os.write(2, b"written below Python\n")
        print("a library's warning", file=sys.stderr)
    print("after")
    out, err = capfd.readouterr()
    assert out == "progress: refitting\nafter\n" and err == ""
    log = (tmp_path / "logs" / "runs.log").read_text()
    for line in ("a line from the asset", "RUN_SUCCESS", "written below Python", "warning"):
        assert line in log
