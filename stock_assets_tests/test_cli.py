"""The console script as an operator uses it: replay real bars, then ingest without the daemon."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from stock_assets.bronze.market_bars import MARKET_BARS
from stock_assets.lake import Lake

CLI = str(Path(sys.executable).with_name("stock-assets"))


def run_cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def cli_env(kafka_bootstrap, fresh_topic, tmp_path) -> dict:
    return {
        **os.environ,
        "STOCK_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "STOCK_MARKET_TOPIC": fresh_topic(3),
        "STOCK_STATE_DIR": str(tmp_path / "state"),
        "STOCK_LAKE_ROOT": str(tmp_path / "lake"),
    }


def test_replay_then_ingest_until_caught_up(cli_env):
    replayed = run_cli(
        "replay", "--dataset", "us_megacaps_2000", "--start", "2008-10-01", "--end", "2008-10-10",
        "--tickers", "AAPL,IBM", "--days-per-second", "20", env=cli_env,
    )  # fmt: skip
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 16 bars of us_megacaps_2000 (2008-10-01..2008-10-10, 8 trading days)" in (
        replayed.stdout
    )
    assert "failed: 0" in replayed.stdout

    ingested = run_cli("ingest", "--until-caught-up", env=cli_env)
    assert ingested.returncode == 0, ingested.stderr
    assert "stored 16, quarantined 0" in ingested.stdout
    bronze = Lake(cli_env["STOCK_LAKE_ROOT"]).read(MARKET_BARS.bronze)
    assert bronze.height == 16
    assert bronze.group_by("ticker").len().sort("ticker").rows() == [("AAPL", 8), ("IBM", 8)]
    assert bronze["source"].unique().to_list() == ["us_megacaps_2000"]
    assert bronze.filter(pl.col("date") < pl.date(2008, 10, 1)).is_empty()

    again = run_cli("ingest", "--until-caught-up", env=cli_env)
    assert "bronze already holds every offset" in again.stdout


def test_replay_rejects_unknown_tickers_with_a_clear_message(cli_env):
    result = run_cli("replay", "--dataset", "sp500_2009", "--tickers", "AAPL,NOPE", env=cli_env)
    assert result.returncode != 0
    assert result.stderr.strip() == (
        "stock-assets replay: tickers not in sp500_2009 for that range: ['NOPE']"
    )


def test_commands_without_a_broker_say_how_to_get_one(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "STOCK_KAFKA_BOOTSTRAP"}
    env["STOCK_STATE_DIR"] = str(tmp_path)
    result = run_cli("ingest", env=env)
    assert result.returncode != 0
    assert "set STOCK_KAFKA_BOOTSTRAP" in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_broker_command_stops_its_broker_on_signal_even_if_sigint_was_ignored(tmp_path, sig):
    env = {**os.environ, "STOCK_STATE_DIR": str(tmp_path)}
    env.pop("STOCK_KAFKA_BOOTSTRAP", None)
    process = subprocess.Popen(
        [CLI, "broker"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # as `cmd &` in sh
    )
    try:
        assert "Kafka-protocol broker on" in process.stdout.readline()
        info = json.loads((tmp_path / "broker" / "broker.json").read_text())
        os.kill(info["pid"], 0)  # the broker is alive
        process.send_signal(sig)
        assert process.wait(timeout=15) == 0
        with pytest.raises(ProcessLookupError):
            os.kill(info["pid"], 0)
        assert not (tmp_path / "broker" / "broker.json").exists()
    finally:
        process.kill()


def test_cli_clients_carry_the_clusters_tls_and_sasl_settings(monkeypatch):
    """The CLI builds its clients outside a run: it must still read STOCK_KAFKA_* security."""
    from stock_assets.cli import _kafka

    monkeypatch.setenv("STOCK_KAFKA_BOOTSTRAP", "kafka-0.example:9093,kafka-1.example:9093")
    monkeypatch.setenv("STOCK_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("STOCK_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("STOCK_KAFKA_SASL_USERNAME", "ingest")
    monkeypatch.setenv("STOCK_KAFKA_SASL_PASSWORD", "from-a-secret")
    kwargs = _kafka().client_kwargs()
    assert kwargs["bootstrap_servers"] == ["kafka-0.example:9093", "kafka-1.example:9093"]
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == (
        "ingest",
        "from-a-secret",
    )
