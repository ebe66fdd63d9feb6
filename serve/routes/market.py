from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from serve.dependencies import Reader, Service, State
from serve.schemas import (
    CandleInterval,
    CandleResponse,
    DepthResponse,
    InstrumentKey,
    InstrumentResponse,
    OptionChainResponse,
    QuoteResponse,
)

router = APIRouter(tags=["market data"])

LAST_EPOCH_S = 4_102_444_800  # 2100-01-01: later times are typos, and overflow date arithmetic

KeyPath = Annotated[str, Path(pattern=r"^[A-Z]{2,6}:[0-9A-Za-z_-]{1,25}$", examples=["NSE:3045"])]


@router.get("/instruments/search", response_model=list[InstrumentResponse])
def search_instruments(
    service: Service,
    user: Reader,
    q: Annotated[str, Query(min_length=1, max_length=64, description="symbol or name prefix")],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    exchange: Annotated[str | None, Query(pattern=r"^[A-Z]{2,6}$")] = None,
) -> Any:
    return service.search_instruments(q, limit, exchange)


@router.get("/instruments/streaming", response_model=list[InstrumentResponse])
def streaming_instruments(
    service: Service, state: State, user: Reader, limit: Annotated[int, Query(ge=1, le=500)] = 20
) -> Any:
    """Instruments with a live quote right now: a sensible first watchlist."""
    return service.streaming_instruments(state.broadcaster.quoted_instruments(), limit)


@router.get("/instruments/{key}", response_model=InstrumentResponse)
def get_instrument(key: KeyPath, service: Service, user: Reader) -> Any:
    return service.instrument(key)


@router.get("/instruments/{underlying}/option-chain", response_model=OptionChainResponse)
def option_chain(
    underlying: Annotated[str, Path(pattern=r"^[A-Z0-9&_-]{1,32}$", examples=["NIFTY"])],
    service: Service,
    user: Reader,
    expiry: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}-\d{2}$")] = None,
) -> Any:
    return service.option_chain(underlying, expiry)


@router.get("/instruments/{key}/candles", response_model=list[CandleResponse])
async def candles(
    key: KeyPath,
    service: Service,
    user: Reader,
    interval: CandleInterval = "1m",
    start: Annotated[
        int | None, Query(alias="from", ge=0, le=LAST_EPOCH_S, description="epoch seconds")
    ] = None,
    end: Annotated[
        int | None, Query(alias="to", ge=0, le=LAST_EPOCH_S, description="epoch seconds; default now")
    ] = None,
) -> Any:
    end_s = end if end is not None else int(time.time())
    start_s = start if start is not None else end_s - 86_400
    return await service.candles(key, interval, start_s, end_s)


@router.get("/quotes", response_model=list[QuoteResponse])
async def quotes(
    service: Service,
    user: Reader,
    instruments: Annotated[list[InstrumentKey], Query(min_length=1, max_length=50)],
) -> Any:
    return await service.quotes(instruments)


@router.get("/quotes/{key}/depth", response_model=DepthResponse)
async def depth(key: KeyPath, service: Service, user: Reader) -> Any:
    return await service.depth(key)
