"""The FastAPI application: `create_app(settings)` (``python -m serving`` runs it under uvicorn).

Endpoints are async and answer from the current `Snapshot`; the latest predictions are bytes
serialised at load time, so the hot path does no pydantic or JSON work per item. Declared
response models document the contract (OpenAPI at /docs); errors are ``{"error", "message"}``.
Never imports Dagster and never recomputes the pipeline: it reads what the assets stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import os
from typing import Annotated, Literal

import orjson
import polars as pl
from fastapi import Body, FastAPI, Query, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serving import schemas as s
from serving.contract import (
    ERRORS,
    JSON,
    LATEST_PARAMETERS,
    ApiError,
    JsonCors,
    TickerPath,
    chain_json,
    check_range,
    install_handlers,
    json_response,
    latest_query,
    on_demand_payload,
    openapi_with_keys,
    ready_snapshot,
    tickers_of,
)
from serving.explanations import stored_explanation
from serving.gate import Gate
from serving.lane import StockApi
from serving.metrics import serve_metrics
from serving.online import from_cache, from_feast
from serving.service import Service
from serving.settings import Settings
from serving.snapshot import PREDICTIONS, set_aside_item, with_stored_returns
from stock_assets.models.audit import VersionGone, prediction_chain
from stock_assets.outputs import Outputs

log = logging.getLogger("serving")


def create_app(settings: Settings | None = None, outputs: Outputs | None = None) -> StockApi:
    """The app; the snapshot loads in the background (liveness answers at once, readiness once
    a champion and predictions are loaded)."""
    settings = settings or Settings.from_env()
    service = Service(settings, outputs)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        service.start()
        port = settings.metrics_port
        internal = port and serve_metrics(service.metrics.registry, settings.host, port)
        task = asyncio.create_task(service.poll_forever())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if internal:
                internal.shutdown()

    app = StockApi(
        title="Stock predictions API",
        version="1.0.0",
        description="Latest and historical predictions with conformal intervals and signals, "
        "on-demand scoring from the Feast online store, backtest and model lineage. "
        "Send `X-API-Key` on every /v1 call.",
        lifespan=lifespan,
        telemetry={"tracing": False, "metrics": False, "logs": False},  # Prometheus instead
    )
    app.state.service = service
    app.add_middleware(Gate, service=service)
    cors = {
        "allow_origins": list(settings.cors_origins),
        "allow_methods": ["GET", "POST", "PUT"],
        "allow_headers": ["X-API-Key", "Content-Type"],
        "expose_headers": ["X-Data-Date", "X-Model-Version", "X-Served-Model", "Retry-After"],
        "max_age": 600,
    }
    if settings.cors_origins:  # outermost: preflights are answered before the key check
        app.add_middleware(JsonCors, **cors)

    def wrap(lane):
        """The app's middleware, in the same order, around a fast lane."""
        gated = Gate(lane, service=service)
        return JsonCors(gated, **cors) if settings.cors_origins else gated

    install_handlers(app)
    _routes(app, service, wrap)
    app.openapi = lambda: openapi_with_keys(app)
    return app


def _routes(app: StockApi, service: Service, wrap) -> None:  # noqa: C901 - one closure per route
    async def latest(request: Request) -> Response:
        """Each ticker's newest stored prediction up to the newest session with a full
        cross-section (``data_date``): the score with its interval and signal, the expected
        return over the horizon (a fraction, 0.01 = +1%) with its 80/90/95% intervals, the
        implied price and its intervals (currency of ``last_close``, the session's traded
        close), and the stock's ``volatility``. A ticker that did not trade that session answers
        with its own latest (its ``date``; ``set_aside`` says when a newer session of it was set
        aside, and why). Newer thin sessions are listed in ``thin_sessions_after``, not served
        as latest."""
        snap = ready_snapshot(service)
        tickers, role = latest_query(request.scope["query_string"])
        by_ticker = snap.latest[role]
        if tickers is None:
            names, parts = list(by_ticker), list(by_ticker.values())
        else:
            names = tickers_of(tickers, service, snap)
            parts = [by_ticker[t] for t in names if t in by_ticker]
        missing = [t for t in names if t not in by_ticker]
        versions = snap.latest_versions.get(role, ())
        for version in versions:
            service.metrics.model_request("stored", role, version)
        head = {
            "data_date": snap.data_date,
            "role": role,
            "predictions_table_version": snap.versions.get(PREDICTIONS),
            "model_versions": versions,
            "session": session_status(snap),
            "thin_sessions_after": snap.thin_after,
            "missing": missing,
        }
        body = orjson.dumps(head)[:-1] + b',"items":[' + b",".join(parts) + b"]}"
        return Response(body, media_type=JSON)

    # The hot paths (latest here, on-demand below) are served by fast lanes (serving.lane);
    # the FastAPI routes of the same paths run the same code and document them in OpenAPI.
    if service.settings.fast_lanes:
        app.add_lane("GET", "/v1/predictions/latest", latest, wrap)
    app.get(
        "/v1/predictions/latest",
        response_model=s.LatestPredictions,
        responses=ERRORS,
        tags=["predictions"],
        openapi_extra={"parameters": LATEST_PARAMETERS},
        summary="Latest predictions",
        description=latest.__doc__,
    )(latest)

    async def score_now(request: Request, payload: s.OnDemandRequest) -> Response:
        """Score tickers now from their Feast online features, with the model this API key is
        assigned to (champion, or challenger for the configured share of keys)."""
        snap = ready_snapshot(service)
        names = tickers_of(payload.tickers, service, snap)
        key = request.scope["state"]["api_key"]
        role = service.role_for(key, snap)
        model = snap.models[role]
        max_age = service.settings.feature_max_age
        top = payload.top if payload.explain else None
        if payload.source == "cache":
            if snap.online is None:
                raise ApiError(503, "not_ready", "the online feature cache is not loaded")
            items = from_cache(snap.online, model, names, max_age, top)
        else:
            read = from_feast
            items = await asyncio.to_thread(read, service.feast, model, names, max_age, top)
        version = model.card.version
        items = with_stored_returns(snap, version, items)
        service.metrics.model_request("on_demand", role, version)
        dates = [i["feature_date"] for i in items if i["feature_date"] is not None]
        share = service.rollout.challenger_share
        body = {
            "model": snap.model_ref(role),
            "assignment": {"challenger_share": share, "bucket": key.bucket},
            "source": payload.source,
            "data_date": max(dates) if dates else None,
            "items": items,
        }
        return json_response(body, headers={"x-served-model": f"{role}/{version}"})

    async def on_demand_lane(request: Request) -> Response:
        """The same, parsing the body with pydantic directly (same 422s as FastAPI's)."""
        return await score_now(request, on_demand_payload(await request.body()))

    if service.settings.fast_lanes:
        app.add_lane("POST", "/v1/predictions/on-demand", on_demand_lane, wrap)

    @app.post(
        "/v1/predictions/on-demand",
        response_model=s.OnDemandResponse,
        responses=ERRORS,
        tags=["predictions"],
        summary="On demand",
        description=score_now.__doc__,
    )
    async def on_demand(request: Request, payload: Annotated[s.OnDemandRequest, Body()]):
        return await score_now(request, payload)

    @app.get("/health/live", response_model=s.Live, tags=["health"])
    async def live():
        return json_response(
            {"status": "live", "pid": os.getpid(), "started_at": service.started_at}
        )

    @app.get("/health/ready", response_model=s.Ready, tags=["health"], responses={503: {}})
    async def ready(request: Request):
        """Ready or not, for anyone (a probe); with a valid key, what is loaded and why not."""
        snap = service.snapshot
        reasons = []
        if snap.loaded_at is None:
            reasons.append("no snapshot loaded yet")
        elif snap.models.get("champion") is None:
            reasons.append("no champion alias in the model registry")
        elif snap.data_date is None:
            reasons.append("no stored predictions")
        status = 200 if not reasons else 503
        key = request.scope.get("state", {}).get("api_key")
        if key is None:
            return json_response({"ready": not reasons}, status)
        age = (dt.datetime.now(dt.UTC) - snap.loaded_at).total_seconds() if snap.loaded_at else None
        error = service.last_error
        if error and not key.admin:  # exception texts can quote store URIs and credentials
            error = "the last refresh failed: the service log and admin keys have the detail"
        body = {
            "ready": not reasons,
            "reasons": reasons,
            "data_date": snap.data_date,
            "loaded_at": snap.loaded_at,
            "snapshot_age_seconds": age,
            "table_versions": dict(snap.versions),
            "champion": snap.model_ref("champion"),
            "challenger": snap.model_ref("challenger"),
            "online_cache": snap.online.describe() if snap.online else None,
            "last_error": error,
        }
        return json_response(body, status)

    if not service.settings.metrics_port:  # else served on that port only

        @app.get("/metrics", tags=["health"], response_class=Response)
        async def metrics():
            registry = service.metrics.registry
            return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/tickers", response_model=s.Tickers, responses=ERRORS, tags=["predictions"])
    async def tickers():
        return Response(ready_snapshot(service).bodies["tickers"], media_type=JSON)

    @app.get(
        "/v1/predictions/{ticker}/history",
        response_model=s.History,
        responses=ERRORS,
        tags=["predictions"],
    )
    async def history(
        ticker: TickerPath,
        start: dt.date | None = None,
        end: dt.date | None = None,
        role: Literal["champion", "challenger", "all"] = "champion",
    ):
        """One ticker's stored predictions over a date range (both ends included), with the
        expected return (a fraction over the horizon) and price (currency of ``last_close``)
        and their intervals, and the sessions the ticker was set aside (none predicted)."""
        snap = ready_snapshot(service)
        check_range(start, end)
        name = tickers_of([ticker], service, snap)[0]
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

    @app.get(
        "/v1/predictions/{ticker}/explanation",
        response_model=s.Explanation,
        responses=ERRORS,
        tags=["predictions"],
    )
    async def explanation(
        ticker: TickerPath,
        date: dt.date | None = None,
        role: s.Role = "champion",
        top: Annotated[int, Query(ge=1, le=50)] = 10,
    ):
        """Why a stored prediction is what it is: the largest feature contributions (LightGBM's
        own, which with the bias add up to the score), computed from the features it was scored
        on by the model version that made it. ``date`` defaults to the ticker's latest."""
        snap = ready_snapshot(service)
        name = tickers_of([ticker], service, snap)[0]
        body = await asyncio.to_thread(
            stored_explanation, snap, service.boosters, name, date, role, top
        )
        return json_response(body)

    @app.get("/v1/signals/latest", response_model=s.Signals, responses=ERRORS, tags=["signals"])
    async def signals():
        """The newest session's long and short positions with their rule."""
        return Response(ready_snapshot(service).bodies["signals"], media_type=JSON)

    @app.get("/v1/backtest", response_model=s.Backtest, responses=ERRORS, tags=["signals"])
    async def backtest(start: dt.date | None = None, end: dt.date | None = None):
        """Daily IC, rank IC and the books after costs, with a summary over the range."""
        snap = ready_snapshot(service)
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

    @app.get("/v1/models", response_model=s.Models, responses=ERRORS, tags=["models"])
    async def models():
        """Champion and challenger versions, their realised quality, and the rollout share."""
        snap = ready_snapshot(service)
        body = orjson.loads(snap.bodies["models"])
        body["rollout"] = _rollout(service)
        return json_response(body)

    @app.get(
        "/v1/audit/{ticker}/{day}", response_model=s.AuditOut, responses=ERRORS, tags=["models"]
    )
    async def audit(ticker: TickerPath, day: dt.date, role: s.Role = "champion"):
        """The chain behind a stored prediction: model, features, bars, Kafka offsets."""
        snap = ready_snapshot(service)
        name = tickers_of([ticker], service, snap)[0]
        outputs = snap.outputs
        try:
            chain = await asyncio.to_thread(
                prediction_chain, outputs.lake, outputs.registry, name, day, role
            )
        except VersionGone:  # names the table, version and cleanup: logged, not returned
            log.warning("audit of %s on %s: a recorded version is gone", name, day, exc_info=True)
            message = f"the recorded inputs of {name} on {day} can no longer be read from the lake"
            raise ApiError(404, "not_found", message) from None
        except LookupError:
            message = f"no stored {role} prediction for {name} on {day}"
            raise ApiError(404, "not_found", message) from None
        except FileNotFoundError:  # its text names lake paths: logged, not returned
            log.warning(
                "audit of %s on %s: a table of the chain is missing", name, day, exc_info=True
            )
            message = f"the chain of {name} on {day} is not complete in the lake"
            raise ApiError(404, "not_found", message) from None
        return json_response(chain_json(chain))

    admin = {**ERRORS, 403: {"model": s.Error, "description": "not an admin key"}}

    @app.get("/v1/admin/rollout", response_model=s.Rollout, responses=admin, tags=["admin"])
    async def get_rollout(request: Request):
        _admin(request)
        return json_response(_rollout(service))

    @app.put("/v1/admin/rollout", response_model=s.Rollout, responses=admin, tags=["admin"])
    async def put_rollout(request: Request, update: Annotated[s.RolloutUpdate, Body()]):
        """Move the challenger's share of API keys (0..100) without a restart."""
        _admin(request)
        service.set_share(update.challenger_share, "admin")
        return json_response(_rollout(service))


@functools.lru_cache(maxsize=8)
def _session_status(outputs: Outputs, day: dt.date | None, pins: tuple) -> dict:
    return outputs.session_status(day)


def session_status(snap) -> dict:
    """The newest session's thin flag, read once per snapshot (the hot path stays a lookup)."""
    pins = tuple(sorted((snap.outputs.pins or {}).items()))
    return _session_status(snap.outputs, snap.data_date, pins)


def _admin(request: Request) -> None:
    if not request.scope["state"]["api_key"].admin:
        raise ApiError(403, "forbidden", "this endpoint needs an admin API key")


def _rollout(service: Service) -> dict:
    r = service.rollout
    return {"challenger_share": r.challenger_share, "source": r.source, "updated_at": r.updated_at}
