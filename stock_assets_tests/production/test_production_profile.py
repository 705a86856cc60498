"""The production profile end to end on real servers, configured only by environment variables.

The variables a deployment sets (docs/PRODUCTION.md) point the code at PostgreSQL (the Dagster
instance, from deployment/instance/dagster.yaml, and MLflow's backend store), S3 (the Delta lake
and MLflow's artifacts), Redis (Feast's online store) and Kafka. The code location's own jobs,
sensors and schedule then run with the resources `build_resources()` makes from them: real bars
on Kafka -> bronze, silver and gold on S3 -> Feast rows in Redis -> the January 2010 refit in
MLflow -> the next sessions' bars predicted by the same chain run -> served by the API.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import redis
from kafka import KafkaConsumer, KafkaProducer

from stock_assets import config, tables
from stock_assets.bronze.market_bars import MARKET_BARS
from stock_assets.bronze.replay import replay
from stock_assets.feast import feature_store as fs
from stock_assets.gold.predictions import predictions
from stock_assets.lake import Lake
from stock_assets.models.registry import CHAMPION, ModelRegistry
from stock_assets.partitions import PARTITION_RANGE_START_TAG, range_tags
from stock_assets.resources.broker import ensure_topic
from stock_assets.resources.kafka import KafkaResource
from stock_assets.resources.lake import LakeResource
from stock_assets_tests.conftest import bars_between

# the module fixture runs the whole chain inside the first test's limit: about 2.5 minutes on a
# busy 2-core machine, so the suite's 300 s would leave too little margin
pytestmark = pytest.mark.timeout(600)

REPO = Path(__file__).resolve().parents[2]
BUCKET = "stock-prod"
REDIS_DB = 7  # other tests share the server on db 0
# 39 sessions of history (the set lacks 2009-10-29..11-04, so it starts after that gap), the
# January refit trained on them, then January's first week, scored as it arrives
HISTORY = (dt.date(2009, 11, 5), dt.date(2009, 12, 31))
REFIT_MONTH = "2010-01-01"
LIVE = (dt.date(2010, 1, 4), dt.date(2010, 1, 8))
# a short history needs a short fold; the gate floor is off: mechanics here, the gate is
# tested in test_models_pipeline.py
TRAINING = {
    "min_train_sessions": 20,
    "validation_sessions": 8,
    "gate_sessions": 8,
    "min_validation_rank_ic": -1.0,
}


@dataclass
class Outcome:
    instance: dg.DagsterInstance
    runs: dict[str, dg.ExecuteInProcessResult]  # step name -> its run
    tickers: list[str]
    published: int  # bars put on the topic
    live_sessions: int
    state_dir: Path
    feast_repo: Path


def production_env(postgres, s3, redis_address: str, bootstrap: str, topic: str, tmp: Path):
    """Every variable the profile reads; nothing else configures the run."""
    return {
        "DAGSTER_HOME": str(tmp / "dagster_home"),
        "DAGSTER_PG_HOST": postgres.host,
        "DAGSTER_PG_PORT": str(postgres.port),
        "DAGSTER_PG_USERNAME": postgres.user,
        "DAGSTER_PG_PASSWORD": postgres.password,
        "DAGSTER_PG_DB": "dagster",
        "STOCK_STATE_DIR": str(tmp / "state"),  # must stay empty: nothing falls back to disk
        "STOCK_KAFKA_BOOTSTRAP": bootstrap,
        "STOCK_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",  # the embedded broker speaks no TLS
        "STOCK_MARKET_TOPIC": topic,
        "STOCK_LAKE_ROOT": f"s3://{BUCKET}/lake",
        "AWS_ENDPOINT_URL": s3.endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": s3.access_key,
        "AWS_SECRET_ACCESS_KEY": s3.secret_key,
        "AWS_REGION": s3.region,
        "AWS_DEFAULT_REGION": s3.region,
        "STOCK_FEAST_REPO": str(tmp / "feast"),
        "STOCK_FEAST_ONLINE_STORE": "redis",
        "STOCK_FEAST_REDIS": f"{redis_address},db={REDIS_DB}",
        "STOCK_MLFLOW_TRACKING_URI": postgres.url("mlflow"),
        "STOCK_MLFLOW_ARTIFACTS": f"s3://{BUCKET}/mlflow",
        # about 50 names, fewer of them index members: ranked, not thin
        "STOCK_SIGNALS_MIN_NAMES": "20",
        "STOCK_SIGNALS_MIN_UNIVERSE_SHARE": "0",
    }


def production_definitions() -> dg.Definitions:
    """The code location's Definitions with the resources `build_resources()` makes from this
    environment, as `stock_assets.definitions` builds them when a deployment imports it."""
    from stock_assets.definitions import build_resources, defs

    return dg.Definitions(
        assets=defs.assets,
        asset_checks=defs.asset_checks,
        jobs=defs.jobs,
        schedules=defs.schedules,
        sensors=defs.sensors,
        resources=build_resources(),
    )


class Deployment:
    """Ticks sensors and schedules and launches their runs in process on the real instance."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance) -> None:
        self.defs, self.instance = defs, instance
        self.cursors: dict[str, str | None] = {}
        self.runs: dict[str, dg.ExecuteInProcessResult] = {}

    def tick(self, sensor_name: str):
        context = dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursors.get(sensor_name),
            resources=self.defs.resources,
        )
        result = self.defs.resolve_sensor_def(sensor_name)(context)
        self.cursors[sensor_name] = context.cursor
        return result

    def launch(self, step: str, job_name: str, request: dg.RunRequest, run_config=None):
        job = self.defs.resolve_job_def(job_name)
        result = job.execute_in_process(
            run_config=run_config if run_config is not None else request.run_config,
            instance=self.instance,
            partition_key=request.partition_key,
            tags=request.tags,
        )
        assert result.success, step
        self.runs[step] = result
        return result

    def ingest_and_build(self, step: str) -> None:
        """What the daemon does for new offsets: the Kafka sensor's ingest run, then the silver
        sensor's bar-chain run for the sessions it stored."""
        request = self.tick("market_bars_kafka_sensor")
        assert isinstance(request, dg.RunRequest), request
        self.launch(f"{step}: ingest", "ingest_market_bars", request)
        caught_up = self.tick("market_bars_kafka_sensor")
        assert isinstance(caught_up, dg.SkipReason), caught_up
        ranges = self.tick("daily_bars_sensor")
        assert isinstance(ranges, list) and ranges, ranges
        for chain in ranges:  # in order, one at a time, as the instance's tag limit runs them
            self.launch(
                f"{step}: bar chain {chain.tags[PARTITION_RANGE_START_TAG]}",
                "build_from_new_bars",
                chain,
            )


def pick_tickers(bars: pl.DataFrame) -> list[str]:
    """About 50 names with a bar on every session of the window (signals need 2 x 20)."""
    sessions = bars["date"].n_unique()
    complete = bars.group_by("ticker").len().filter(pl.col("len") == sessions)
    return complete["ticker"].sort().to_list()[::8]


@pytest.fixture(scope="module")
def production(postgres_server, s3_server, redis_server, kafka_bootstrap, sp500, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("production")
    topic = f"market.bars.production-{tmp.name}"
    env = production_env(postgres_server, s3_server, redis_server, kafka_bootstrap, topic, tmp)
    (tmp / "dagster_home").mkdir()
    shutil.copy(REPO / "deployment" / "instance" / "dagster.yaml", tmp / "dagster_home")
    s3_server.client().create_bucket(Bucket=BUCKET)
    ensure_topic(kafka_bootstrap, topic, 6)  # the cluster admin's job in production
    window = bars_between(sp500, HISTORY[0], LIVE[1])
    tickers = pick_tickers(window)
    history = bars_between(window, *HISTORY, tickers)
    live = bars_between(window, *LIVE, tickers)

    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        patch.delenv("MLFLOW_S3_ENDPOINT_URL", raising=False)  # AWS_ENDPOINT_URL must do
        instance = dg.DagsterInstance.get()  # $DAGSTER_HOME/dagster.yaml: PostgreSQL storage
        try:
            deploy = Deployment(production_definitions(), instance)
            # the point-in-time universe the features flag and the models train on
            deploy.launch("membership", "index_membership_job", dg.RunRequest())
            months = range_tags("2009-11-01", REFIT_MONTH)
            deploy.launch("universe", "universe_job", dg.RunRequest(tags=months))

            # a market-data producer publishes history; the daemon's sensors take it from there
            kafka = KafkaResource.from_env().process_config_and_initialize()
            assert replay(kafka, topic, history, "sp500_2009").failed == 0
            deploy.ingest_and_build("history")

            # the monthly schedule's tick before the month's first open: refit and promote
            schedule = deploy.defs.resolve_schedule_def("model_refit_monthly")
            month = dt.date.fromisoformat(REFIT_MONTH)
            when = dt.datetime(month.year, month.month, 1, 11, tzinfo=dt.UTC)  # 06:00 in New York
            refit = schedule(
                dg.build_schedule_context(instance=instance, scheduled_execution_time=when)
            )
            assert refit.partition_key == REFIT_MONTH
            training = {"ops": {"models__challenger": {"config": TRAINING}}}
            deploy.launch("refit", "model_refit_job", refit, run_config=training)

            # the month's first sessions arrive and are scored by the chain run that builds them
            assert replay(kafka, topic, live, "sp500_2009").failed == 0
            deploy.ingest_and_build("live")
            yield Outcome(
                instance,
                deploy.runs,
                tickers,
                history.height + live.height,
                live["date"].n_unique(),
                tmp / "state",
                tmp / "feast",
            )
        finally:
            instance.dispose()


def test_the_dagster_instance_keeps_runs_and_materializations_in_postgresql(
    production, postgres_server
):
    instance = production.instance
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
    concurrency = instance.get_concurrency_config()
    assert concurrency.pool_config.default_pool_limit == 1
    assert {"key": "stock/bar_chain", "limit": 1} in (
        concurrency.run_queue_config.tag_concurrency_limits
    )

    # read straight from the server, not through Dagster
    stored = postgres_server.query("dagster", "SELECT run_id, pipeline_name, status FROM runs")
    launched = {r.run_id: r.job_def.name for r in production.runs.values()}
    assert {run_id: job for run_id, job, _ in stored} == launched
    assert {status for *_, status in stored} == {"SUCCESS"}
    (materializations,) = postgres_server.query(
        "dagster",
        "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'"
        " AND asset_key = %s",
        (predictions.key.to_string(),),
    )
    sessions = production.live_sessions
    assert materializations == (sessions,)
    # scored by the chain run that built the live sessions, with the model the refit promoted
    latest = instance.get_latest_materialization_event(predictions.key)
    assert latest.run_id == production.runs[f"live: bar chain {LIVE[0]}"].run_id
    # a fresh instance from the same file (another pod, a restart) sees the same history
    with dg.DagsterInstance.get() as again:
        assert {r.run_id for r in again.get_runs()} == set(launched)
        assert len(again.get_materialized_partitions(predictions.key)) == sessions


def test_every_published_bar_lands_once_in_the_lake_on_s3_and_nothing_on_local_disk(
    production, s3_server
):
    lake = LakeResource.from_env()
    assert lake.root == f"s3://{BUCKET}/lake"
    bronze = lake.read(MARKET_BARS.bronze)
    assert bronze.height == production.published
    assert bronze.select("kafka_partition", "kafka_offset").is_duplicated().sum() == 0
    assert lake.read(tables.DAILY_BARS).height == production.published
    keys = s3_server.keys(BUCKET, "lake/")
    for table in (MARKET_BARS.bronze, tables.ADJUSTED_DAILY_BARS, tables.GOLD_PREDICTIONS):
        assert any(k.startswith(f"lake/{table.path}/_delta_log/") for k in keys), table.path
    state = production.state_dir
    assert not state.exists() or not any(state.iterdir()), list(state.rglob("*"))[:10]


def test_feast_serves_the_newest_session_from_redis(production, redis_server):
    settings = fs.FeatureStoreSettings.from_env()
    assert settings.online == "redis"
    store = fs.open_store(settings)
    lake = LakeResource.from_env()
    newest = lake.read_dates(tables.GOLD_DAILY_FEATURES, LIVE[1], LIVE[1]).sort("ticker")
    assert sorted(newest["ticker"]) == production.tickers
    online = fs.online_features(
        store, newest["ticker"].to_list(), dt.timedelta(days=1), now=fs.event_time(LIVE[1])
    )
    assert online["status"].unique().to_list() == ["fresh"]
    assert online["rsi_14"].to_list() == newest["rsi_14"].fill_nan(None).to_list()
    host, port = redis_server.split(":")
    assert redis.Redis(host=host, port=int(port), db=REDIS_DB).dbsize() >= len(production.tickers)
    assert not (production.feast_repo / "online.db").exists()  # no SQLite fallback


def test_mlflow_keeps_its_registry_in_postgresql_and_the_model_on_s3(
    production, postgres_server, s3_server
):
    registry = ModelRegistry.from_env()
    version = registry.version_for(CHAMPION)
    assert version == "1"
    aliases = postgres_server.query(
        "mlflow", "SELECT name, alias, version FROM registered_model_aliases"
    )
    assert (registry.model_name, CHAMPION, 1) in aliases
    (location,) = postgres_server.query(
        "mlflow",
        "SELECT artifact_location FROM experiments WHERE name = %s",
        (registry.experiment,),
    )
    assert location[0].startswith(f"s3://{BUCKET}/mlflow")
    model = registry.client().get_model_version(registry.model_name, version)
    assert model.tags["refit_month"] == REFIT_MONTH[:7] and model.tags["gate"] == "passed"
    keys = s3_server.keys(BUCKET, "mlflow/")
    assert any(k.endswith("/MLmodel") for k in keys), keys[:20]
    assert any(k.endswith("features.json") for k in keys)


def test_the_live_sessions_are_scored_by_the_registered_champion(production):
    # the plain reader the API opens (`Outputs.from_env`): the root alone, the rest from AWS_*
    lake = Lake(config.lake_root())
    stored = lake.read_dates(tables.GOLD_PREDICTIONS, *LIVE)
    champion = stored.filter(pl.col("role") == "champion")
    assert champion["model_version"].unique().to_list() == ["1"]
    assert champion["date"].min() == LIVE[0] and champion["date"].max() == LIVE[1]
    features = lake.read_dates(tables.GOLD_DAILY_FEATURES, *LIVE)
    assert champion.height == features.height == len(production.tickers) * production.live_sessions
    members = features.filter(pl.col("in_universe"))
    assert champion["in_universe"].sum() == members.height > 0
    # the stored score is the registered booster's (loaded from S3) on the same feature row
    booster = ModelRegistry.from_env().load_booster("1")
    row = members.sort("ticker", "date").head(1)
    expected = booster.predict(row.select(booster.feature_name()).cast(pl.Float64).to_numpy())[0]
    stored_row = champion.join(row.select("instrument", "date"), on=["instrument", "date"])
    assert stored_row["prediction"].item() == pytest.approx(expected, rel=1e-12)
    signals = lake.read_dates(tables.GOLD_SIGNALS, *LIVE)
    assert signals["date"].n_unique() == champion["date"].n_unique()


def test_the_api_serves_the_live_predictions_from_the_same_stores(production, monkeypatch):
    """The last hop: the API, configured by the same environment plus its key, answers with
    the newest session's stored predictions (Delta on S3, model from MLflow on PostgreSQL)."""
    from fastapi.testclient import TestClient

    from serving.api import create_app
    from serving.settings import digest, new_secret

    secret = new_secret()
    monkeypatch.setenv("STOCK_API_KEYS", f"production-test:{digest(secret)}")
    stored = Lake(config.lake_root()).read_dates(tables.GOLD_PREDICTIONS, LIVE[1], LIVE[1])
    stored = stored.filter(pl.col("role") == "champion")
    with TestClient(create_app()) as client:
        deadline = time.monotonic() + 90
        while (ready := client.get("/health/ready")).status_code != 200:
            assert time.monotonic() < deadline, ready.text
            time.sleep(0.5)
        answer = client.get("/v1/predictions/latest", headers={"X-API-Key": secret})
        refused = client.get("/v1/predictions/latest", headers={"X-API-Key": "sk_wrong"})
    assert refused.status_code == 401
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["data_date"] == LIVE[1].isoformat()
    assert body["model_versions"] == ["1"]
    served = {item["ticker"]: item["prediction"] for item in body["items"]}
    assert served == dict(zip(stored["ticker"], stored["prediction"], strict=True))
    assert sorted(served) == production.tickers


def test_kafka_tls_and_sasl_settings_reach_the_client(monkeypatch):
    """The embedded broker speaks no TLS/SASL, so the settings are checked up to the client:
    every option the resource hands kafka-python is one its producer and consumer accept."""
    settings = {
        "STOCK_KAFKA_BOOTSTRAP": "kafka-0.example:9093,kafka-1.example:9093",
        "STOCK_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "STOCK_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "STOCK_KAFKA_SASL_USERNAME": "stock-assets",
        "STOCK_KAFKA_SASL_PASSWORD": "s3cret",
        "STOCK_KAFKA_SSL_CAFILE": "/etc/kafka/ca.crt",
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    kwargs = KafkaResource.from_env().process_config_and_initialize().client_kwargs()
    assert kwargs["bootstrap_servers"] == ["kafka-0.example:9093", "kafka-1.example:9093"]
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == (
        "stock-assets",
        "s3cret",
    )
    assert kwargs["ssl_cafile"] == "/etc/kafka/ca.crt"
    for client in (KafkaProducer, KafkaConsumer):
        assert set(kwargs) <= set(client.DEFAULT_CONFIG), set(kwargs) - set(client.DEFAULT_CONFIG)
