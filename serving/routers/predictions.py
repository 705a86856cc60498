"""Stored and on-demand predictions, their history and explanations, and the ticker list.

The two hot paths (latest and on-demand) are one function each behind two entrances: the
route, which FastAPI validates and documents, and `HOT`, served by `serving.hot.HotPaths` with
the same pydantic models and the same answers, without FastAPI's per-request layers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import Response

from serving import schemas as s
from serving.contract import (
    ERRORS,
    JSON,
    ApiError,
    TickerPath,
    check_range,
    json_response,
    latest_query,
    on_demand_payload,
    ready_snapshot,
    tickers_of,
)
from serving.dependencies import KEYED, CallerDep, ServiceDep, SnapshotDep
from serving.explanations import stored_explanation
from serving.online import from_cache, from_feast
from serving.service import Service
from serving.settings import ApiKey
from serving.snapshot import PREDICTIONS, Snapshot, set_aside_item, with_stored_returns
from stock_assets.outputs import Outputs

router = APIRouter(tags=["predictions"], dependencies=KEYED, responses=ERRORS)


def latest_answer(service: Service, snap: Snapshot, query: s.LatestQuery) -> Response:
    """The latest body: a JSON head and the items' bytes serialised at load time."""
    by_ticker = snap.latest[query.role]
    if query.tickers is None:
        names, parts = list(by_ticker), list(by_ticker.values())
    else:
        names = tickers_of(query.tickers, service, snap)
        parts = [by_ticker[t] for t in names if t in by_ticker]
    versions = snap.latest_versions.get(query.role, ())
    for version in versions:
        service.metrics.model_request("stored", query.role, version)
    head = {
        "data_date": snap.data_date,
        "role": query.role,
        "predictions_table_version": snap.versions.get(PREDICTIONS),
        "model_versions": versions,
        "session": session_status(snap),
        "thin_sessions_after": snap.thin_after,
        "missing": [t for t in names if t not in by_ticker],
    }
    body = orjson.dumps(head)[:-1] + b',"items":[' + b",".join(parts) + b"]}"
    return Response(body, media_type=JSON)


@router.get("/v1/predictions/latest", response_model=s.LatestPredictions, summary="Latest")
async def latest(
    service: ServiceDep, snap: SnapshotDep, query: Annotated[s.LatestQuery, Query()]
) -> Response:
    """Each ticker's newest stored prediction up to the newest session with a full
    cross-section (``data_date``): the score with its interval and signal, the expected
    return over the horizon (a fraction, 0.01 = +1%) with its 80/90/95% intervals, the
    implied price and its intervals (currency of ``last_close``, the session's traded
    close), and the stock's ``volatility``. A ticker that did not trade that session answers
    with its own latest (its ``date``; ``set_aside`` says when a newer session of it was set
    aside, and why). Newer thin sessions are listed in ``thin_sessions_after``, not served
    as latest."""
    return latest_answer(service, snap, query)


async def score_now(
    service: Service, snap: Snapshot, key: ApiKey, payload: s.OnDemandRequest
) -> Response:
    """The on-demand answer, with the model this key is assigned to."""
    names = tickers_of(payload.tickers, service, snap, loc=("body", "tickers"))
    role = service.role_for(key, snap)
    model = snap.models[role]
    max_age = service.settings.feature_max_age
    top = payload.top if payload.explain else None
    if payload.source == "cache":
        if snap.online is None:
            raise ApiError(503, "not_ready", "the online feature cache is not loaded")
        items = from_cache(snap.online, model, names, max_age, top)
    else:
        items = await asyncio.to_thread(from_feast, service.feast, model, names, max_age, top)
    version = model.card.version
    items = with_stored_returns(snap, version, items)
    service.metrics.model_request("on_demand", role, version)
    dates = [i["feature_date"] for i in items if i["feature_date"] is not None]
    body = {
        "model": snap.model_ref(role),
        "assignment": {"challenger_share": service.rollout.challenger_share, "bucket": key.bucket},
        "source": payload.source,
        "data_date": max(dates) if dates else None,
        "items": items,
    }
    return json_response(body, headers={"x-served-model": f"{role}/{version}"})


@router.post("/v1/predictions/on-demand", response_model=s.OnDemandResponse, summary="On demand")
async def on_demand(
    service: ServiceDep,
    snap: SnapshotDep,
    key: CallerDep,
    payload: Annotated[s.OnDemandRequest, Body()],
) -> Response:
    """Score tickers now from their Feast online features, with the model this API key is
    assigned to (champion, or challenger for the configured share of keys)."""
    return await score_now(service, snap, key, payload)


async def hot_latest(request: Request) -> Response:
    service = request.app.state.service
    snap = ready_snapshot(service)
    return latest_answer(service, snap, latest_query(request.scope["query_string"]))


async def hot_on_demand(request: Request) -> Response:
    service = request.app.state.service
    snap = ready_snapshot(service)  # before the body, as the route's dependency
    payload = on_demand_payload(await request.body())
    return await score_now(service, snap, request.scope["state"]["api_key"], payload)


HOT = {
    ("GET", "/v1/predictions/latest"): hot_latest,
    ("POST", "/v1/predictions/on-demand"): hot_on_demand,
}


@router.get("/v1/tickers", response_model=s.Tickers)
async def tickers(snap: SnapshotDep) -> Response:
    return Response(snap.bodies["tickers"], media_type=JSON)


@router.get("/v1/predictions/{ticker}/history", response_model=s.History)
async def history(
    service: ServiceDep,
    snap: SnapshotDep,
    ticker: TickerPath,
    start: dt.date | None = None,
    end: dt.date | None = None,
    role: Literal["champion", "challenger", "all"] = "champion",
) -> Response:
    """One ticker's stored predictions over a date range (both ends included), with the
    expected return (a fraction over the horizon) and price (currency of ``last_close``)
    and their intervals, and the sessions the ticker was set aside (none predicted)."""
    check_range(start, end)
    name = tickers_of([ticker], service, snap, loc=("path", "ticker"))[0]
    read = snap.outputs.prediction_history
    frame = await asyncio.to_thread(read, name, start, end, None if role == "all" else role)
    thin = await asyncio.to_thread(snap.outputs.thin_sessions, start, end)
    thin = thin.join(frame.select("date").unique(), on="date")
    set_aside = await asyncio.to_thread(snap.outputs.set_aside, start, end, [name])
    body = {
        "ticker": name,
        "data_date": snap.data_date,
        "predictions_table_version": snap.versions.get(PREDICTIONS),
        "start": start,
        "end": end,
        "model_versions": sorted(frame["model_version"].unique().to_list()),
        "items": frame.drop("ticker", "instrument").to_dicts(),
        "thin_sessions": thin.to_dicts(),
        "set_aside_sessions": [
            set_aside_item(*r) for r in set_aside.select("date", "set_aside").rows()
        ],
    }
    return json_response(body)


@router.get("/v1/predictions/{ticker}/explanation", response_model=s.Explanation)
async def explanation(
    service: ServiceDep,
    snap: SnapshotDep,
    ticker: TickerPath,
    date: dt.date | None = None,
    role: s.Role = "champion",
    top: Annotated[int, Query(ge=1, le=50)] = 10,
) -> Response:
    """Why a stored prediction is what it is: the largest feature contributions (LightGBM's
    own, which with the bias add up to the score), computed from the features it was scored
    on by the model version that made it. ``date`` defaults to the ticker's latest."""
    name = tickers_of([ticker], service, snap, loc=("path", "ticker"))[0]
    body = await asyncio.to_thread(
        stored_explanation, snap, service.boosters, name, date, role, top
    )
    return json_response(body)


@functools.lru_cache(maxsize=8)
def _session_status(outputs: Outputs, day: dt.date | None, pins: tuple) -> dict:
    return outputs.session_status(day)


def session_status(snap: Snapshot) -> dict:
    """The newest session's thin flag, read once per snapshot (the hot path stays a lookup)."""
    pins = tuple(sorted((snap.outputs.pins or {}).items()))
    return _session_status(snap.outputs, snap.data_date, pins)
