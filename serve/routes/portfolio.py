from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status

from serve.dependencies import OrderTrader, Reader, Service
from serve.schemas import (
    BracketModifyRequest,
    BracketRequest,
    FlattenRequest,
    GttCreateRequest,
    GttModifyRequest,
    SquareOffRequest,
)

router = APIRouter(tags=["portfolio"])

BookQuery = Annotated[str | None, Query(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")]
RuleId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]


@router.get("/trades")
async def trades(service: Service, user: Reader, book: BookQuery = None) -> list[dict[str, Any]]:
    return await service.trades(book)


@router.get("/positions")
async def positions(service: Service, user: Reader, book: BookQuery = None) -> list[dict[str, Any]]:
    return await service.positions(book)


@router.post("/positions/square-off")
async def square_off(body: SquareOffRequest, service: Service, user: OrderTrader) -> Any:
    return await service.square_off(user, body.book, body.instrument)


@router.post("/positions/flatten")
async def flatten(body: FlattenRequest, service: Service, user: OrderTrader) -> Any:
    return await service.flatten(user, body.book)


@router.get("/portfolio/summary")
async def summary(service: Service, user: Reader) -> dict[str, Any]:
    return await service.portfolio_summary()


@router.get("/gtt", tags=["gtt"])
async def gtt_list(service: Service, user: Reader, book: BookQuery = None) -> list[dict[str, Any]]:
    return await service.gtt_list(book)


@router.post("/gtt", tags=["gtt"], status_code=status.HTTP_201_CREATED)
async def gtt_create(body: GttCreateRequest, service: Service, user: OrderTrader) -> dict[str, Any]:
    return await service.gtt_create(user, body)


@router.patch("/gtt/{gtt_id}", tags=["gtt"])
async def gtt_modify(
    gtt_id: RuleId, body: GttModifyRequest, service: Service, user: OrderTrader
) -> dict[str, Any]:
    return await service.gtt_modify(user, gtt_id, body)


@router.delete("/gtt/{gtt_id}", tags=["gtt"])
async def gtt_cancel(gtt_id: RuleId, service: Service, user: OrderTrader) -> Any:
    return await service.gtt_cancel(user, gtt_id)


@router.get("/brackets", tags=["brackets"])
async def bracket_list(service: Service, user: Reader, book: BookQuery = None) -> list[dict[str, Any]]:
    return await service.bracket_list(book)


@router.post("/brackets", tags=["brackets"], status_code=status.HTTP_201_CREATED)
async def bracket_place(body: BracketRequest, service: Service, user: OrderTrader) -> dict[str, Any]:
    return await service.bracket_place(user, body)


@router.patch("/brackets/{bracket_id}", tags=["brackets"])
async def bracket_modify(
    bracket_id: RuleId, body: BracketModifyRequest, service: Service, user: OrderTrader
) -> dict[str, Any]:
    return await service.bracket_modify(user, bracket_id, body)


@router.delete("/brackets/{bracket_id}", tags=["brackets"])
async def bracket_cancel(bracket_id: RuleId, service: Service, user: OrderTrader) -> Any:
    return await service.bracket_cancel(user, bracket_id)
