"""The models behind the predictions: champion and challenger, and a prediction's audit chain."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import orjson
from fastapi import APIRouter
from fastapi.responses import Response

from serving import schemas as s
from serving.contract import ERRORS, ApiError, TickerPath, chain_json, json_response, tickers_of
from serving.dependencies import KEYED, ServiceDep, SnapshotDep
from serving.routers.admin import rollout_body
from stock_assets.models.audit import VersionGone, prediction_chain

log = logging.getLogger("serving")
router = APIRouter(tags=["models"], dependencies=KEYED, responses=ERRORS)


@router.get("/v1/models", response_model=s.Models)
async def models(service: ServiceDep, snap: SnapshotDep) -> Response:
    """Champion and challenger versions, their realised quality, and the rollout share."""
    body = orjson.loads(snap.bodies["models"])
    body["rollout"] = rollout_body(service)
    return json_response(body)


@router.get("/v1/audit/{ticker}/{day}", response_model=s.AuditOut)
async def audit(
    service: ServiceDep,
    snap: SnapshotDep,
    ticker: TickerPath,
    day: dt.date,
    role: s.Role = "champion",
) -> Response:
    """The chain behind a stored prediction: model, features, bars, Kafka offsets."""
    name = tickers_of([ticker], service, snap, loc=("path", "ticker"))[0]
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
        log.warning("audit of %s on %s: a table of the chain is missing", name, day, exc_info=True)
        message = f"the chain of {name} on {day} is not complete in the lake"
        raise ApiError(404, "not_found", message) from None
    return json_response(chain_json(chain))
