"""The FastAPI application: `create_app(settings)` (``python -m serving`` runs it under uvicorn).

Endpoints are async and answer from the current `Snapshot`; the latest predictions are bytes
serialised at load time, so the hot path does no pydantic or JSON work per item. Declared
response models document the contract (OpenAPI at /docs); errors are ``{"error", "message"}``
(422s add ``detail``). Never imports Dagster and never recomputes the pipeline: it reads what
the assets stored.
"""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import FastAPI
from starlette.middleware import Middleware

from serving.contract import HANDLERS, JsonCors
from serving.gate import Gate
from serving.hot import HotPaths
from serving.metrics import serve_metrics
from serving.routers import admin, health, models, predictions, signals
from serving.service import Service
from serving.settings import Settings
from stock_assets.outputs import Outputs

DESCRIPTION = (
    "Latest and historical predictions with conformal intervals and signals, on-demand scoring "
    "from the Feast online store, backtest and model lineage. Send `X-API-Key` on every /v1 call."
)


def create_app(settings: Settings | None = None, outputs: Outputs | None = None) -> FastAPI:
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

    app = FastAPI(
        title="Stock predictions API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        exception_handlers=HANDLERS,
        middleware=middleware(settings, service),
        telemetry={"tracing": False, "metrics": False, "logs": False},  # Prometheus instead
    )
    app.state.service = service
    for router in (predictions.router, signals.router, models.router, admin.router):
        app.include_router(router)
    app.include_router(health.router)
    if not settings.metrics_port:  # else served on that port only
        app.include_router(health.metrics_router)
    return app


def middleware(settings: Settings, service: Service) -> list[Middleware]:
    """The app's middleware, outermost first: CORS (a preflight is answered before the key
    check), the gate, then the hot paths (answered with the app's own exception handlers)."""
    layers = []
    if settings.cors_origins:
        cors = {
            "allow_origins": list(settings.cors_origins),
            "allow_methods": ["GET", "POST", "PUT"],
            "allow_headers": ["X-API-Key", "Content-Type"],
            "expose_headers": ["X-Data-Date", "X-Model-Version", "X-Served-Model", "Retry-After"],
            "max_age": 600,
        }
        layers.append(Middleware(JsonCors, **cors))
    layers.append(Middleware(Gate, service=service))
    if settings.hot_paths:
        hot = {"router": predictions.router, "paths": predictions.HOT, "handlers": HANDLERS}
        layers.append(Middleware(HotPaths, **hot))
    return layers
