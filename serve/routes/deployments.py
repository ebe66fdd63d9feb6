from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from serve.dependencies import Quant, Reader, Service
from serve.schemas import ScaleRequest, SwapRequest

router = APIRouter(prefix="/deployments", tags=["deployments"])

Name = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")]


@router.get("")
async def list_deployments(service: Service, user: Reader) -> list[dict[str, Any]]:
    return await service.deployments()


@router.post("/{name}/start")
async def start(name: Name, service: Service, user: Quant) -> Any:
    return await service.deployment_start(user, name)


@router.post("/{name}/stop")
async def stop(name: Name, service: Service, user: Quant) -> Any:
    return await service.deployment_stop(user, name)


@router.post("/{name}/scale")
async def scale(name: Name, body: ScaleRequest, service: Service, user: Quant) -> Any:
    return await service.deployment_scale(user, name, body.shards)


@router.post("/{name}/swap")
async def swap(name: Name, body: SwapRequest, service: Service, user: Quant) -> Any:
    return await service.deployment_swap(user, name, body.strategy, body.config)


@router.get("/{name}/logs")
async def logs(
    name: Name, service: Service, user: Reader, lines: Annotated[int, Query(ge=1, le=5000)] = 200
) -> list[str]:
    return await service.deployment_logs(name, lines)
