"""Backfills ``make run`` launches through the Dagster webserver's GraphQL API, as the UI's
"Materialize all" does, so they run in the daemon and show in the UI like any backfill."""

from __future__ import annotations

import json
import time
import urllib.request

import polars as pl

from stock_assets import tables
from stock_assets.resources.lake import LakeResource

CATCH_UP_TIMEOUT_S = 3600


BACKFILL_MUTATION = """
mutation Backfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on UnauthorizedError { message }
    ... on PartitionSetNotFoundError { message }
  }
}"""
BACKFILL_STATUS_QUERY = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } }
}"""


def _graphql(ui_port: int, query: str, variables: dict) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{ui_port}/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["data"]


def wait_for_webserver(ui_port: int, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/server_info", timeout=5):
                return
        except OSError:
            time.sleep(2)
    raise TimeoutError(f"Dagster webserver on port {ui_port} did not answer in {timeout_s}s")


def backfill_history(ui_port: int, asset_keys: list, title: str) -> str | None:
    """Launch the history of ``asset_keys`` as a Dagster backfill (the UI's "Materialize all")."""
    params = {
        "assetSelection": [{"path": list(key.path)} for key in asset_keys],
        "allPartitions": True,
        "title": title,
    }
    launched = _graphql(ui_port, BACKFILL_MUTATION, {"params": params})["launchPartitionBackfill"]
    if launched["__typename"] != "LaunchBackfillSuccess":
        print(f"  backfill not launched: {launched}", flush=True)
        return None
    backfill_id = launched["backfillId"]
    print(f"  backfill {backfill_id}: {title}", flush=True)
    return backfill_id


def recompute_features_without_context(ui_port: int, lake: LakeResource):
    """Features a chain run computed before the alternative data landed have no universe
    (``in_universe`` null): recompute their sessions as one single-run backfill; returns the
    backfill id and the sessions' range (None when there is nothing to recompute)."""
    if not lake.exists(tables.GOLD_DAILY_FEATURES):
        return None
    missing = (
        lake.scan(tables.GOLD_DAILY_FEATURES)
        .filter(pl.col("in_universe").is_null())
        .select(pl.col("date").min().alias("first"), pl.col("date").max().alias("last"))
        .collect()
    )
    first, last = missing.row(0)
    if first is None:
        return None
    params = {
        "partitionsByAssets": [
            {
                "assetKey": {"path": tables.GOLD_DAILY_FEATURES.key_path},
                "partitions": {"range": {"start": str(first), "end": str(last)}},
            }
        ],
        "title": "make run: features again, now with their context",
    }
    launched = _graphql(ui_port, BACKFILL_MUTATION, {"params": params})["launchPartitionBackfill"]
    if launched["__typename"] != "LaunchBackfillSuccess":
        print(f"  backfill not launched: {launched}", flush=True)
        return None
    print(f"  backfill {launched['backfillId']}: features {first}..{last} with context", flush=True)
    return launched["backfillId"], first, last


def wait_for_backfill(ui_port: int, backfill_id: str) -> None:
    deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
    status = "REQUESTED"
    while status == "REQUESTED" and time.monotonic() < deadline:
        time.sleep(5)
        status = _graphql(ui_port, BACKFILL_STATUS_QUERY, {"id": backfill_id})[
            "partitionBackfillOrError"
        ]["status"]
        print(f"  backfill {backfill_id}: {status}", flush=True)
