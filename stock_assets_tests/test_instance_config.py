"""dagster.yaml, the instance `make run` uses: what the pipeline's safety relies on is set."""

import shutil
from pathlib import Path

import dagster as dg
import yaml

from stock_assets.bronze.kafka_assets import ingest_pool
from stock_assets.bronze.market_bars import MARKET_BARS, market_bars
from stock_assets.bronze.news_articles import NEWS_ARTICLES, news_articles
from stock_assets.sensors import BAR_CHAIN_TAG

REPO = Path(__file__).resolve().parent.parent


def test_each_stream_ingests_in_its_own_pool_limited_to_one(tmp_path, monkeypatch):
    assert market_bars.op.pool == ingest_pool(MARKET_BARS) == "kafka_ingest_market_bars"
    assert news_articles.op.pool == ingest_pool(NEWS_ARTICLES) == "kafka_ingest_news_articles"
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with dg.DagsterInstance.get() as instance:  # validates the file against Dagster's schema
        concurrency = instance.get_concurrency_config()
    assert concurrency.pool_config.default_pool_limit == 1
    assert concurrency.run_queue_config.max_concurrent_runs == 4
    # the bar chain's range runs go one at a time, in order
    limits = concurrency.run_queue_config.tag_concurrency_limits
    assert {"key": BAR_CHAIN_TAG, "limit": 1} in limits


def test_first_visit_lands_on_the_graph_not_the_community_dialog():
    settings = yaml.safe_load((REPO / "dagster.yaml").read_text())
    assert settings["nux"] == {"enabled": False}
    assert settings["telemetry"] == {"enabled": False}


def test_a_restarted_stack_fails_the_runs_its_predecessor_left_started(tmp_path, monkeypatch):
    """A killed stack leaves its bar-chain run STARTED: it held the one-at-a-time slot forever."""
    from stock_assets.local_stack import fail_orphaned_runs

    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with dg.DagsterInstance.get() as instance:

        @dg.op
        def step() -> None: ...

        @dg.job
        def build_from_new_bars() -> None:
            step()

        started, waiting = (
            instance.create_run_for_job(
                build_from_new_bars, tags={BAR_CHAIN_TAG: "market"}, status=status
            )
            for status in (dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.NOT_STARTED)
        )
        pools = instance.event_log_storage
        pools.set_concurrency_slots("feast_store", 1)
        claim = pools.claim_concurrency_slot("feast_store", started.run_id, "feast_step")
        assert claim.is_claimed  # the killed step's claim on the pool's one slot
        assert fail_orphaned_runs(instance) == [started.run_id]
        assert pools.get_concurrency_info("feast_store").claimed_slots == []
        assert instance.get_run_by_id(started.run_id).status == dg.DagsterRunStatus.FAILURE
        assert instance.get_run_by_id(waiting.run_id).status == dg.DagsterRunStatus.NOT_STARTED
        assert fail_orphaned_runs(instance) == []
