"""The newest session's positions and the backtest behind them."""

from __future__ import annotations

import asyncio
import datetime as dt

import polars as pl
from fastapi import APIRouter
from fastapi.responses import Response

from serving import schemas as s
from serving.contract import ERRORS, JSON, check_range, json_response
from serving.dependencies import KEYED, SnapshotDep
from stock_assets.outputs import Outputs

router = APIRouter(tags=["signals"], dependencies=KEYED, responses=ERRORS)


@router.get("/v1/signals/latest", response_model=s.Signals)
async def signals(snap: SnapshotDep) -> Response:
    """The newest session's long and short positions with their rule."""
    return Response(snap.bodies["signals"], media_type=JSON)


@router.get("/v1/backtest", response_model=s.Backtest)
async def backtest(
    snap: SnapshotDep, start: dt.date | None = None, end: dt.date | None = None
) -> Response:
    """Daily IC, rank IC and the books after costs, with a summary over the range."""
    check_range(start, end)
    frame = snap.backtest
    if start:
        frame = frame.filter(pl.col("date") >= start)
    if end:
        frame = frame.filter(pl.col("date") <= end)
    versions = sorted({v for vs in frame["model_versions"] for v in vs.split(",") if v})
    thin = await asyncio.to_thread(snap.outputs.thin_sessions, start, end)
    body = {
        "data_date": snap.data_date,
        "backtest_table_version": snap.versions.get("gold/backtest"),
        "model_versions": versions,
        "summary": Outputs.backtest_summary(frame),
        "days": frame.drop("month").to_dicts(),
        "thin_sessions": thin.to_dicts(),
    }
    return json_response(body)
