"""A prediction whose recorded inputs were vacuumed: the API says so without naming the lake."""

from __future__ import annotations

from deltalake import DeltaTable, write_deltalake

from stock_assets import tables
from stock_assets.lake import Lake
from stock_assets_tests.serving.conftest import copy_state, key_settings, running


def test_the_audit_of_a_vacuumed_chain_answers_a_fixed_404(delivered, tmp_path):
    env = copy_state(delivered, tmp_path / "state")
    lake = Lake(env["STOCK_LAKE_ROOT"])
    day = lake.read(tables.GOLD_PREDICTIONS)["date"].max().isoformat()
    silver = lake.uri(tables.DAILY_BARS)  # rewritten whole, then the recorded files vacuumed
    write_deltalake(silver, lake.read(tables.DAILY_BARS).to_arrow(), mode="overwrite")
    DeltaTable(silver).vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    env |= key_settings() | {"STOCK_API_POLL_SECONDS": "60"}
    for server in running(env, tmp_path / "api.log"):
        with server.client() as client:
            answer = client.get(f"/v1/audit/AAPL/{day}")
    assert answer.status_code == 404, answer.text
    message = answer.json()["message"]
    assert message == f"the recorded inputs of AAPL on {day} can no longer be read from the lake"
    assert env["STOCK_LAKE_ROOT"] not in answer.text
