from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status

from serve.dependencies import OrderTrader, Reader, Service, Trader
from serve.schemas import MarginRequest, MarginResponse, ModifyOrderRequest, OrderResponse, PlaceOrderRequest

router = APIRouter(prefix="/orders", tags=["orders"])

OrderId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
BookQuery = Annotated[str | None, Query(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")]


@router.post("", response_model=OrderResponse, status_code=status.HTTP_201_CREATED)
async def place_order(body: PlaceOrderRequest, service: Service, user: OrderTrader) -> Any:
    return await service.place_order(user, body)


@router.get("", response_model=list[OrderResponse])
async def list_orders(service: Service, user: Reader, book: BookQuery = None) -> Any:
    return await service.orders(book)


@router.post("/margin", response_model=MarginResponse)
async def margin(body: MarginRequest, service: Service, user: Trader) -> Any:
    return await service.margin(body)


@router.get("/{client_order_id}", response_model=OrderResponse)
async def get_order(client_order_id: OrderId, service: Service, user: Reader) -> Any:
    return await service.order(client_order_id)


@router.patch("/{client_order_id}", response_model=OrderResponse)
async def modify_order(
    client_order_id: OrderId, body: ModifyOrderRequest, service: Service, user: OrderTrader
) -> Any:
    return await service.modify_order(user, client_order_id, body)


@router.delete("/{client_order_id}", response_model=OrderResponse)
async def cancel_order(client_order_id: OrderId, service: Service, user: OrderTrader) -> Any:
    return await service.cancel_order(user, client_order_id)
