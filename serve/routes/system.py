from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from serve.dependencies import Admin, Reader, Service, State

# Probes and scraping live at the root, outside /api/v1, and need no token.
probes = APIRouter(tags=["system"])
router = APIRouter(tags=["system"])


@probes.get("/health")
def health() -> dict[str, str]:
    """The replica is up and serving."""
    return {"status": "ok"}


@probes.get("/ready")
async def ready(service: Service, state: State) -> JSONResponse:
    """The replica can do its job: the actors answer, the catalog is loaded, the hub feed is live."""
    report = await service.readiness()
    report["checks"]["hub"] = state.broadcaster.hub_ready.is_set()
    report["ready"] = all(report["checks"].values())
    return JSONResponse(report, status_code=200 if report["ready"] else 503)


@probes.get("/metrics", include_in_schema=False)
def metrics(request: Request, state: State) -> Response:
    return Response(request.app.state.metrics.render(state.broadcaster), media_type=CONTENT_TYPE_LATEST)


@router.get("/stats")
async def stats(service: Service, state: State, user: Reader) -> dict[str, Any]:
    """Counters of this replica's WebSocket fan-out and of the actors behind it."""
    return {"terminal": state.broadcaster.describe(), **(await service.stats())}


@router.get("/users")
def users(state: State, user: Admin) -> list[dict[str, str]]:
    return state.users.describe()
