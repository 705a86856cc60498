"""The rollout share, read and moved by admin keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends
from fastapi.responses import Response

from serving import schemas as s
from serving.contract import ERRORS, json_response
from serving.dependencies import ServiceDep, admin
from serving.service import Service

FORBIDDEN = {403: {"model": s.Error, "description": "not an admin key"}}
router = APIRouter(tags=["admin"], dependencies=[Depends(admin)], responses={**ERRORS, **FORBIDDEN})


def rollout_body(service: Service) -> dict:
    r = service.rollout
    return {"challenger_share": r.challenger_share, "source": r.source, "updated_at": r.updated_at}


@router.get("/v1/admin/rollout", response_model=s.Rollout)
async def get_rollout(service: ServiceDep) -> Response:
    return json_response(rollout_body(service))


@router.put("/v1/admin/rollout", response_model=s.Rollout)
async def put_rollout(service: ServiceDep, update: Annotated[s.RolloutUpdate, Body()]) -> Response:
    """Move the challenger's share of API keys (0..100) without a restart."""
    service.set_share(update.challenger_share, "admin")
    return json_response(rollout_body(service))
