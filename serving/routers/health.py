"""Liveness, readiness and metrics: public (the gate lets them through without a key)."""

from __future__ import annotations

import datetime as dt
import os

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serving import schemas as s
from serving.contract import json_response
from serving.dependencies import OptionalCallerDep, ServiceDep

router = APIRouter(tags=["health"])
metrics_router = APIRouter(tags=["health"])  # left out when metrics have their own port


@router.get("/health/live", response_model=s.Live)
async def live(service: ServiceDep) -> Response:
    return json_response({"status": "live", "pid": os.getpid(), "started_at": service.started_at})


@router.get("/health/ready", response_model=s.Ready, responses={503: {}})
async def ready(service: ServiceDep, key: OptionalCallerDep) -> Response:
    """Ready or not, for anyone (a probe); with a valid ``X-API-Key``, what is loaded and why
    not (an admin key also gets the last refresh error's text)."""
    snap = service.snapshot
    reasons = []
    if snap.loaded_at is None:
        reasons.append("no snapshot loaded yet")
    elif snap.models.get("champion") is None:
        reasons.append("no champion alias in the model registry")
    elif snap.data_date is None:
        reasons.append("no stored predictions")
    status = 200 if not reasons else 503
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


@metrics_router.get("/metrics", response_class=Response)
async def metrics(service: ServiceDep) -> Response:
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)
