"""Backfills ``make run`` launches through the Dagster webserver's GraphQL API, as the UI's
"Materialize all" does, so they run in the daemon and show in the UI like any backfill."""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.request

from stock_assets.partitions import month_key

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


def history_selection(assets: list, until: dt.date | None) -> list[dict]:
    """``(key, partitions_def)`` pairs as a backfill's partitions by asset: each monthly asset
    from its first month to ``until``'s (every month when None, or when it starts later), each
    unpartitioned one whole. Context is read as of a session, so every month before the data
    may matter and none after it does."""
    selection = []
    for key, partitions_def in assets:
        entry: dict = {"assetKey": {"path": list(key.path)}}
        if partitions_def is not None:
            keys = partitions_def.get_partition_keys()
            last = keys[-1]
            if until is not None and keys[0] <= month_key(until):
                last = min(last, month_key(until))
            entry["partitions"] = {"range": {"start": keys[0], "end": last}}
        selection.append(entry)
    return selection


def backfill_history(ui_port: int, selection: list[dict], title: str) -> str | None:
    """Launch ``selection`` (`history_selection`) as one Dagster backfill, as the UI would."""
    params = {"partitionsByAssets": selection, "title": title}
    launched = _graphql(ui_port, BACKFILL_MUTATION, {"params": params})["launchPartitionBackfill"]
    if launched["__typename"] != "LaunchBackfillSuccess":
        print(f"  backfill not launched: {launched}", flush=True)
        return None
    backfill_id = launched["backfillId"]
    print(f"  backfill {backfill_id}: {title}", flush=True)
    return backfill_id


def wait_for_backfill(ui_port: int, backfill_id: str) -> None:
    deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
    status = "REQUESTED"
    while status == "REQUESTED" and time.monotonic() < deadline:
        time.sleep(5)
        status = _graphql(ui_port, BACKFILL_STATUS_QUERY, {"id": backfill_id})[
            "partitionBackfillOrError"
        ]["status"]
        print(f"  backfill {backfill_id}: {status}", flush=True)
