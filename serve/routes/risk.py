from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from serve.dependencies import Admin, Reader, Service
from serve.schemas import KillSwitchRequest

router = APIRouter(prefix="/risk", tags=["risk"])


@router.get("")
async def risk_state(service: Service, user: Reader) -> dict[str, Any]:
    return await service.risk_state()


@router.post("/kill-switch")
async def kill_switch(body: KillSwitchRequest, service: Service, user: Admin) -> dict[str, Any]:
    return await service.kill_switch(user, body.book, body.engaged)
