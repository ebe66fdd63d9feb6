"""The one object behind every route: all calls to the actors and the catalog go through here.

Routes stay two lines (parse, call the service); the service turns API input (rupees, lots of
checks) into the actors' contracts (paise, `OrderRequest`) and their answers back into API shapes.
When an actor's API shifts, this file is the only one that changes.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import msgspec

from actors.orders import OrderRequest, OrderType, Product, Side
from cluster.config import ShardlineConfig
from cluster.errors import ShardlineError
from serve.candles import Candle
from serve.channels import CANDLE_INTERVALS
from serve.errors import Conflict, InvalidRequest, NotFound, ServiceUnavailable, TerminalError, UpstreamFailed
from serve.present import present
from serve.prices import PriceError, minor_to_rupees, rupees_to_minor

if TYPE_CHECKING:
    from serve import schemas
    from serve.security import User

logger = logging.getLogger(__name__)

NAMESPACE = "shardline"
EXECUTION = "execution"
PORTFOLIO = "portfolio"
ROUTER = "router"
DEPLOYMENTS = "deployments"
MARKETDATA = "marketdata"
FEED = "feed-0"  # new terminal subscriptions go to the first feed connection
# Request fields the terminal remembers for its orders (the execution actor reports state only).
ORDER_DETAIL_FIELDS = (
    "side",
    "quantity",
    "order_type",
    "product",
    "validity",
    "price",
    "trigger_price",
    "tag",
)

MANUAL_BOOK = "manual"
# Starting, scaling and swapping a deployment waits for Nautilus nodes to start.
LONG_CALL_S = 300.0
SEARCH_LIMIT_MAX = 100
MAX_CANDLES = 5000  # per candle request


class ActorDirectory:
    """Named actors in the ``shardline`` namespace, looked up lazily and forgotten when they die.

    Errors come back as the terminal's own: a missing or dead actor is `ServiceUnavailable`, a
    `KeyError` raised inside an actor is `NotFound`, a `ValueError` is `InvalidRequest`.
    """

    def __init__(self, namespace: str = NAMESPACE, timeout_s: float = 10.0) -> None:
        self._namespace = namespace
        self._timeout_s = timeout_s
        self._handles: dict[str, Any] = {}

    def _lookup(self, name: str) -> Any:
        import ray

        if not ray.is_initialized():  # a terminal outside a Ray cluster (tests, tools): nothing to find
            raise ServiceUnavailable(f"the {name} actor is not reachable: not connected to Ray")
        try:
            return ray.get_actor(name, namespace=self._namespace)
        except ValueError:
            raise ServiceUnavailable(f"the {name} actor is not running") from None

    async def handle(self, name: str) -> Any:
        handle = self._handles.get(name)
        if handle is None:
            # get_actor is a blocking round trip to the GCS: keep it off the event loop.
            handle = self._handles[name] = await asyncio.to_thread(self._lookup, name)
        return handle

    async def call(
        self, name: str, method: str, *args: Any, timeout_s: float | None = None, **kwargs: Any
    ) -> Any:
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayTaskError

        timeout_s = timeout_s or self._timeout_s
        handle = await self.handle(name)
        try:
            remote = getattr(handle, method)
        except AttributeError:
            raise ServiceUnavailable(f"the {name} actor has no {method}()") from None
        try:
            return await asyncio.wait_for(remote.remote(*args, **kwargs), timeout_s)
        except TimeoutError:
            raise ServiceUnavailable(
                f"the {name} actor did not answer {method}() in {timeout_s:g}s"
            ) from None
        except (ActorDiedError, ActorUnavailableError, RayActorError):
            self._handles.pop(name, None)
            raise ServiceUnavailable(f"the {name} actor is not available; try again") from None
        except RayTaskError as err:
            raise translate_actor_error(name, method, err.cause if err.cause is not None else err) from None

    async def alive(self, name: str) -> bool:
        try:
            await self.handle(name)
        except ServiceUnavailable:
            return False
        return True


def translate_actor_error(actor: str, method: str, cause: BaseException) -> TerminalError:
    """An exception raised inside an actor, as the terminal error a client can act on."""
    if isinstance(cause, TerminalError):
        return cause
    message = str(cause.args[0]) if isinstance(cause, KeyError) and cause.args else str(cause)
    if isinstance(cause, KeyError | LookupError) or type(cause).__name__ == "UnknownId":
        return NotFound(message or f"{actor}: not found")
    if isinstance(cause, ShardlineError):  # the actor refused the request and said why
        return InvalidRequest(message)
    if isinstance(cause, PermissionError):
        return Conflict(message)
    if isinstance(cause, ConnectionError | TimeoutError):
        return ServiceUnavailable(f"{actor}: {message}")
    if isinstance(cause, ValueError):
        return InvalidRequest(message)
    logger.warning("%s.%s() failed: %r", actor, method, cause)
    return UpstreamFailed(f"{actor}.{method}() failed: {message or type(cause).__name__}")


@dataclass(frozen=True)
class InstrumentView:
    """What the service needs of a catalog instrument (the catalog's own type is richer)."""

    key: str
    iid: int
    symbol: str
    name: str
    exchange: str
    token: str
    instrument_type: str
    lot_size: int
    tick_size: int  # minor units
    price_scale: int
    expiry: str | None = None
    strike: int | None = None
    option_type: str | None = None


def instrument_view(instrument: Any) -> InstrumentView:
    expiry = getattr(instrument, "expiry", None)
    return InstrumentView(
        key=instrument.key,
        iid=int(instrument.iid),
        symbol=instrument.symbol,
        name=instrument.name,
        exchange=instrument.exchange,
        token=instrument.token,
        instrument_type=instrument.instrument_type,
        lot_size=int(instrument.lot_size),
        tick_size=int(instrument.tick_size),
        price_scale=int(instrument.price_scale),
        expiry=expiry.isoformat() if expiry is not None else None,
        strike=instrument.strike,
        option_type=instrument.option_type,
    )


def instrument_body(view: InstrumentView) -> dict[str, Any]:
    def rupees(minor: int) -> str:
        return minor_to_rupees(minor, view.price_scale)

    return {
        "key": view.key,
        "symbol": view.symbol,
        "name": view.name,
        "exchange": view.exchange,
        "token": view.token,
        "instrument_type": view.instrument_type,
        "lot_size": view.lot_size,
        "tick_size": rupees(view.tick_size),
        "expiry": view.expiry,
        "strike": rupees(view.strike) if view.strike is not None else None,
        "option_type": view.option_type,
    }


class CatalogLookup:
    """The instrument catalog as the terminal uses it; loaded once per replica."""

    def __init__(self, catalog: Any) -> None:
        self._catalog = catalog
        self._by_iid: dict[int, InstrumentView] = {}

    @classmethod
    def load(cls, config: ShardlineConfig) -> CatalogLookup:
        from catalog.sources import load_default_catalog

        return cls(load_default_catalog(config))

    def get(self, key: str) -> InstrumentView:
        try:
            instrument = self._catalog.get(key)
        except (KeyError, ValueError):
            instrument = None
        if instrument is None:
            raise NotFound(f"no instrument {key!r} in today's catalog")
        return instrument_view(instrument)

    def by_iid(self, iid: int) -> InstrumentView | None:
        view = self._by_iid.get(iid)
        if view is None:
            try:
                instrument = self._catalog.by_iid(iid)
            except (KeyError, IndexError, ValueError):
                return None
            if instrument is None:
                return None
            view = self._by_iid[iid] = instrument_view(instrument)
        return view

    def search(self, query: str, limit: int, exchange: str | None = None) -> list[InstrumentView]:
        found = self._catalog.search(query, limit=limit if exchange is None else limit * 4)
        views = [instrument_view(i) for i in found]
        if exchange:
            views = [v for v in views if v.exchange == exchange]
        return views[:limit]

    def option_chain(self, underlying: str, expiry: str | None) -> dict[str, Any]:
        """Strikes with their call and put for one expiry (the nearest when none is given)."""
        try:
            expiries = self._catalog.expiries(underlying)
        except ShardlineError as err:
            raise NotFound(str(err)) from None
        if not expiries:
            raise NotFound(f"no options on {underlying!r}")
        if expiry is None:
            day = expiries[0]
        else:
            try:
                day = date.fromisoformat(expiry)
            except ValueError:
                raise InvalidRequest(f"expiry: {expiry!r} is not a date (YYYY-MM-DD)", "expiry") from None
            if day not in expiries:
                listed = ", ".join(e.isoformat() for e in expiries)
                raise NotFound(f"no {underlying.upper()} options expiring {expiry}; listed: {listed}")
        chain = self._catalog.option_chain(underlying, day)
        rows = []
        for row in chain.rows:
            call = instrument_view(row.call) if row.call is not None else None
            put = instrument_view(row.put) if row.put is not None else None
            either = call or put
            scale = either.price_scale if either is not None else 100
            rows.append(
                {
                    "strike": minor_to_rupees(row.strike, scale),
                    "call": instrument_body(call) if call else None,
                    "put": instrument_body(put) if put else None,
                }
            )
        return {
            "underlying": chain.underlying,
            "expiry": chain.expiry.isoformat(),
            "expiries": [e.isoformat() for e in expiries],
            "rows": rows,
        }


def to_minor(amount: Decimal | None, view: InstrumentView, field: str, *, tick: bool = True) -> int:
    """Rupees to the instrument's minor unit, refusing off-tick prices; None is 0."""
    if amount is None:
        return 0
    try:
        minor = rupees_to_minor(amount, view.price_scale)
    except PriceError as err:
        raise InvalidRequest(f"{field}: {err}", field) from None
    if tick and view.tick_size > 0 and minor % view.tick_size:
        step = minor_to_rupees(view.tick_size, view.price_scale)
        raise InvalidRequest(f"{field}: {amount} is not a multiple of the tick size {step}", field)
    return minor


def check_lots(quantity: int, view: InstrumentView, field: str = "quantity") -> None:
    if view.lot_size > 1 and quantity % view.lot_size:
        raise InvalidRequest(
            f"{field}: {quantity} is not a multiple of the lot size {view.lot_size} of {view.symbol}", field
        )


_KINDS = {"EQ": "EQUITY", "AMXIDX": "INDEX"}


def margin_estimate(
    config: ShardlineConfig, view: InstrumentView, side: Side, quantity: int, product: Product, price: int
) -> int:
    """Margin in paise for an order, by the paper venue's own policy (`actors.portfolio.margin`)."""
    from actors.portfolio.instruments import InstrumentKind, InstrumentSpec, OptionRight
    from actors.portfolio.margin import MarginPolicy

    kind_name = _KINDS.get(view.instrument_type) or ("OPTION" if view.option_type else "FUTURE")
    try:
        spec = InstrumentSpec(
            key=view.key,
            symbol=view.symbol,
            kind=InstrumentKind(kind_name),
            lot_size=view.lot_size,
            tick_size=view.tick_size,
            expiry=date.fromisoformat(view.expiry) if view.expiry else None,
            strike=view.strike or 0,
            right=OptionRight(view.option_type) if view.option_type else None,
        )
    except ValueError as err:
        raise InvalidRequest(f"instrument: {err}", "instrument") from None
    problem = spec.product_error(product)
    if problem:
        raise InvalidRequest(f"product: {problem}", "product")
    policy = MarginPolicy.from_fractions(
        config.portfolio.intraday_margin_fraction, config.portfolio.fno_margin_fraction
    )
    return policy.requirement(spec, product, quantity if side is Side.BUY else -quantity, price)


async def _publish_nowhere(updates: list[tuple[str, str, dict[str, Any]]]) -> None:
    """The publisher of a service with no hub (tests, tools)."""


def new_client_order_id() -> str:
    # Short enough for Angel's 20-character order tag, unique without coordination.
    return "t" + uuid.uuid4().hex[:19]


def _order_to_vet(
    body: schemas.GttCreateRequest | schemas.BracketRequest,
    instrument: str,
    order_type: OrderType,
    price: int,
) -> OrderRequest:
    """The order a GTT rule or bracket will place later, as pre-trade risk judges it now."""
    return OrderRequest(
        client_order_id=new_client_order_id(),
        book=body.book,
        instrument=instrument,
        side=body.side,
        quantity=body.quantity,
        order_type=order_type,
        product=body.product,
        price=price,
    )


class TerminalService:
    """Everything the terminal can do, as coroutines returning API-shaped (rupee) data.

    Parameters
    ----------
    config
        The validated configuration.
    catalog
        Instrument lookups; None while the catalog cannot be loaded (instrument routes then 503).
    actors
        Where the named actors are found.
    clock
        Wall time in seconds, passed in for tests.
    """

    def __init__(
        self,
        config: ShardlineConfig,
        catalog: CatalogLookup | None,
        actors: ActorDirectory,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._catalog = catalog
        self.actors = actors
        self._clock = clock
        # client_order_id -> request fields (paise), from this replica's orders and the hub's.
        self.order_details: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.publish: Callable[[list[tuple[str, str, dict[str, Any]]]], Awaitable[Any]] = _publish_nowhere

    # Instruments and market data ------------------------------------------------------------------

    @property
    def catalog(self) -> CatalogLookup:
        if self._catalog is None:
            raise ServiceUnavailable("the instrument catalog is not loaded")
        return self._catalog

    def instrument(self, key: str) -> dict[str, Any]:
        return instrument_body(self.catalog.get(key))

    def search_instruments(self, query: str, limit: int, exchange: str | None = None) -> list[dict[str, Any]]:
        limit = max(1, min(limit, SEARCH_LIMIT_MAX))
        return [instrument_body(v) for v in self.catalog.search(query, limit, exchange)]

    def option_chain(self, underlying: str, expiry: str | None) -> dict[str, Any]:
        return self.catalog.option_chain(underlying, expiry)

    def streaming_instruments(self, keys: Iterable[str], limit: int) -> list[dict[str, Any]]:
        """Instruments with live quotes, cash before derivatives, then by symbol."""
        views = []
        for key in keys:
            try:
                views.append(self.catalog.get(key))
            except NotFound:
                continue
        views.sort(key=lambda v: (v.expiry is not None, v.exchange != "NSE", v.symbol))
        return [instrument_body(v) for v in views[:limit]]

    def price_scale(self, key: str) -> int:
        try:
            return self.catalog.get(key).price_scale
        except (NotFound, ServiceUnavailable):
            return 100

    async def quotes(self, keys: Iterable[str]) -> list[dict[str, Any]]:
        views = [self.catalog.get(key) for key in keys]
        rows = await self.actors.call(ROUTER, "latest_quotes", [v.iid for v in views])
        by_iid = {v.iid: v for v in views}
        return [quote_body(by_iid[int(row["iid"])], row) for row in rows if int(row["iid"]) in by_iid]

    async def depth(self, key: str) -> dict[str, Any]:
        view = self.catalog.get(key)
        found = await self.depth_many([key])
        if key not in found:
            raise NotFound(f"the broker has no quote for {key}")
        return depth_body(view, found[key])

    async def depth_many(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """FULL quotes with five levels a side (paise), by instrument."""
        result: dict[str, dict[str, Any]] = await self.actors.call(MARKETDATA, "quotes", keys)
        return result

    async def closes(self, keys: list[str]) -> dict[str, int]:
        """Previous closes (paise), for day change."""
        result: dict[str, int] = await self.actors.call(MARKETDATA, "closes", keys)
        return result

    async def candles(self, key: str, interval: str, start_s: int, end_s: int) -> list[dict[str, Any]]:
        view = self.catalog.get(key)
        if interval not in CANDLE_INTERVALS:
            raise InvalidRequest(f"interval: one of {', '.join(CANDLE_INTERVALS)}", "interval")
        if end_s <= start_s:
            raise InvalidRequest("to: must be after from", "to")
        bars = (end_s - start_s) // CANDLE_INTERVALS[interval]
        if bars > MAX_CANDLES:
            # What a chart shows at once; a longer range would be hundreds of rate-limited broker calls.
            raise InvalidRequest(
                f"from: the range holds {bars} {interval} candles, at most {MAX_CANDLES} per request; "
                "ask for a shorter range or a longer interval",
                "from",
            )
        rows = await self.actors.call(MARKETDATA, "candles", key, interval, start_s, end_s)
        return [candle_body(Candle(**row), view.price_scale) for row in rows]

    async def follow(self, owner: str, keys: list[str]) -> None:
        """Ask the feed to stream `keys` for `owner` (a terminal replica), so any watched instrument ticks."""
        await self.actors.call(FEED, "subscribe", owner, keys)

    async def unfollow(self, owner: str, keys: list[str]) -> None:
        await self.actors.call(FEED, "unsubscribe", owner, keys)

    # Orders -----------------------------------------------------------------------------------------

    def order_request(self, user: User, body: schemas.PlaceOrderRequest) -> OrderRequest:
        view = self.catalog.get(body.instrument)
        check_lots(body.quantity, view)
        return OrderRequest(
            client_order_id=body.client_order_id or new_client_order_id(),
            book=body.book,
            instrument=view.key,
            side=body.side,
            quantity=body.quantity,
            order_type=body.order_type,
            product=body.product,
            validity=body.validity,
            price=to_minor(body.price, view, "price"),
            trigger_price=to_minor(body.trigger_price, view, "trigger_price"),
            tag=body.tag or f"ui-{user.username}"[:20],
        )

    async def place_order(self, user: User, body: schemas.PlaceOrderRequest) -> dict[str, Any]:
        request = self.order_request(user, body)
        details = {f: getattr(request, f) for f in ORDER_DETAIL_FIELDS} | {"placed_by": user.username}
        details = msgspec.to_builtins(details)
        self.remember_order(request.client_order_id, details)
        # Every replica learns what this order is through the hub, before the execution actor's
        # first update for it arrives there (orders entries merge in the hub).
        identity = {
            "client_order_id": request.client_order_id,
            "book": request.book,
            "instrument": request.instrument,
        }
        await self.publish([("orders", request.client_order_id, identity | details)])
        try:
            update = await self.actors.call(EXECUTION, "submit", request)
        except InvalidRequest as err:  # refused: it never reached a venue
            await self.publish(
                [("orders", request.client_order_id, {"status": "REJECTED", "reason": str(err)})]
            )
            raise
        except TerminalError as err:  # the outcome is not known here; the execution actor will tell
            await self.publish([("orders", request.client_order_id, {"reason": f"submit: {err}"})])
            raise
        return self._order_body(update)

    def remember_order(self, client_order_id: str, details: dict[str, Any]) -> None:
        known = self.order_details.pop(client_order_id, {})
        wanted = {k: v for k, v in details.items() if k in ORDER_DETAIL_FIELDS or k == "placed_by"}
        self.order_details[client_order_id] = known | wanted
        while len(self.order_details) > 100_000:
            self.order_details.popitem(last=False)

    async def modify_order(
        self, user: User, client_order_id: str, body: schemas.ModifyOrderRequest
    ) -> dict[str, Any]:
        current = await self.order(client_order_id)
        view = self.catalog.get(current["instrument"])
        if body.quantity is not None:
            check_lots(body.quantity, view)
        update = await self.actors.call(
            EXECUTION,
            "modify",
            client_order_id,
            quantity=body.quantity,
            price=to_minor(body.price, view, "price") if body.price is not None else None,
            trigger_price=(
                to_minor(body.trigger_price, view, "trigger_price")
                if body.trigger_price is not None
                else None
            ),
        )
        return self._order_body(update)

    async def cancel_order(self, user: User, client_order_id: str) -> dict[str, Any]:
        update = await self.actors.call(EXECUTION, "cancel", client_order_id)
        if update is None:
            raise NotFound(f"no order {client_order_id!r}")
        return self._order_body(update)

    async def orders(self, book: str | None = None) -> list[dict[str, Any]]:
        rows = await self.actors.call(EXECUTION, "orders", book)
        return [self._order_body(row) for row in rows]

    async def order(self, client_order_id: str) -> dict[str, Any]:
        row = await self.actors.call(EXECUTION, "order", client_order_id)
        if row is None:
            raise NotFound(f"no order {client_order_id!r}")
        return self._order_body(row)

    def _order_body(self, update: Any) -> dict[str, Any]:
        if update is None:
            raise UpstreamFailed("the execution actor returned no order state")
        data = msgspec.to_builtins(update) if isinstance(update, msgspec.Struct) else dict(update)
        fill = data.pop("fill", None)
        if fill:
            data["last_fill"] = {k: fill[k] for k in ("trade_id", "quantity", "price", "ts_ns") if k in fill}
        data = self.order_details.get(data["client_order_id"], {}) | data
        return present(data, self.price_scale(data["instrument"]))

    async def margin(self, body: schemas.MarginRequest) -> dict[str, Any]:
        """What the order would block, by the paper venue's margin policy (an estimate in live mode)."""
        view = self.catalog.get(body.instrument)
        check_lots(body.quantity, view)
        price = to_minor(body.price, view, "price") if body.price is not None else 0
        if not price:
            quotes = await self.actors.call(ROUTER, "latest_quotes", [view.iid])
            price = int(quotes[0]["ltp"]) if len(quotes) else 0
            if not price:
                raise InvalidRequest("price: no last price yet; give a price", "price")
        margin = margin_estimate(self.config, view, body.side, body.quantity, body.product, price)
        available = None
        try:
            summary = await self.actors.call(PORTFOLIO, "summary")
            available = getattr(summary, "margin_available", None)
        except TerminalError:
            pass  # the estimate stands without the account's side of it
        answer = present(
            {
                "instrument": view.key,
                "quantity": body.quantity,
                "price": price,
                "value": price * body.quantity,
                "margin": margin,
                "margin_available": available,
            },
            view.price_scale,
        )
        answer["available"] = answer.pop("margin_available")
        return dict(answer)

    # Portfolio ------------------------------------------------------------------------------------

    async def trades(self, book: str | None = None) -> list[dict[str, Any]]:
        return present(await self.actors.call(PORTFOLIO, "trades", book))

    async def positions(self, book: str | None = None) -> list[dict[str, Any]]:
        return present(await self.actors.call(PORTFOLIO, "positions", book))

    async def portfolio_summary(self) -> dict[str, Any]:
        return present(await self.actors.call(PORTFOLIO, "summary"))

    async def square_off(self, user: User, book: str, instrument: str) -> Any:
        self.catalog.get(instrument)
        return present(await self.actors.call(PORTFOLIO, "square_off", book, instrument))

    async def flatten(self, user: User, book: str) -> Any:
        return present(await self.actors.call(PORTFOLIO, "flatten", book))

    # GTT and brackets ------------------------------------------------------------------------------

    async def gtt_list(self, book: str | None = None) -> list[dict[str, Any]]:
        return present(await self.actors.call(PORTFOLIO, "gtt_list", book))

    async def gtt_create(self, user: User, body: schemas.GttCreateRequest) -> dict[str, Any]:
        view = self.catalog.get(body.instrument)
        check_lots(body.quantity, view)
        legs = [(to_minor(body.trigger_price, view, "trigger_price"), to_minor(body.price, view, "price"))]
        if body.other_leg is not None:
            legs.append(
                (
                    to_minor(body.other_leg.trigger_price, view, "other_leg.trigger_price"),
                    to_minor(body.other_leg.price, view, "other_leg.price"),
                )
            )
        # The leg's order is placed later, by the portfolio: vetted now as the LIMIT it will be.
        await self._vet("GTT", _order_to_vet(body, view.key, OrderType.LIMIT, legs[0][1]), deferred=True)
        result = await self.actors.call(
            PORTFOLIO, "gtt_create", body.book, view.key, body.side, body.quantity, body.product, legs
        )
        return present(result, view.price_scale)

    async def gtt_modify(self, user: User, gtt_id: str, body: schemas.GttModifyRequest) -> dict[str, Any]:
        rule = await self._find(await self.gtt_list(None), "gtt_id", gtt_id, "GTT rule")
        view = self.catalog.get(rule["instrument"])
        if body.quantity is not None:
            check_lots(body.quantity, view)
        legs = None
        if body.trigger_price is not None or body.price is not None or body.other_leg is not None:
            if body.trigger_price is None or body.price is None:
                raise InvalidRequest(
                    "trigger_price: give both trigger_price and price to move a leg", "trigger_price"
                )
            legs = [
                (to_minor(body.trigger_price, view, "trigger_price"), to_minor(body.price, view, "price"))
            ]
            if body.other_leg is not None:
                legs.append(
                    (
                        to_minor(body.other_leg.trigger_price, view, "other_leg.trigger_price"),
                        to_minor(body.other_leg.price, view, "other_leg.price"),
                    )
                )
        result = await self.actors.call(PORTFOLIO, "gtt_modify", gtt_id, quantity=body.quantity, legs=legs)
        return present(result, view.price_scale)

    async def gtt_cancel(self, user: User, gtt_id: str) -> Any:
        return present(await self.actors.call(PORTFOLIO, "gtt_cancel", gtt_id))

    async def bracket_list(self, book: str | None = None) -> list[dict[str, Any]]:
        return present(await self.actors.call(PORTFOLIO, "bracket_list", book))

    async def bracket_place(self, user: User, body: schemas.BracketRequest) -> dict[str, Any]:
        view = self.catalog.get(body.instrument)
        check_lots(body.quantity, view)
        entry = _order_to_vet(body, view.key, body.entry_type, to_minor(body.price, view, "price"))
        await self._vet("bracket", entry)
        result = await self.actors.call(
            PORTFOLIO,
            "bracket_place",
            book=body.book,
            instrument=view.key,
            side=body.side,
            quantity=body.quantity,
            product=body.product,
            entry_type=body.entry_type,
            entry_price=entry.price,
            stop_loss=to_minor(body.stop_loss, view, "stop_loss"),
            target=to_minor(body.target, view, "target"),
            trailing_stop=to_minor(body.trailing_stop, view, "trailing_stop"),
        )
        return present(result, view.price_scale)

    async def bracket_modify(
        self, user: User, bracket_id: str, body: schemas.BracketModifyRequest
    ) -> dict[str, Any]:
        bracket = await self._find(await self.bracket_list(None), "bracket_id", bracket_id, "bracket")
        view = self.catalog.get(bracket["instrument"])
        result = await self.actors.call(
            PORTFOLIO,
            "bracket_modify",
            bracket_id,
            stop_loss=to_minor(body.stop_loss, view, "stop_loss") if body.stop_loss is not None else None,
            target=to_minor(body.target, view, "target") if body.target is not None else None,
            trailing_stop=(
                to_minor(body.trailing_stop, view, "trailing_stop")
                if body.trailing_stop is not None
                else None
            ),
        )
        return present(result, view.price_scale)

    async def bracket_cancel(self, user: User, bracket_id: str) -> Any:
        return present(await self.actors.call(PORTFOLIO, "bracket_cancel", bracket_id))

    async def _vet(self, what: str, order: OrderRequest, *, deferred: bool = False) -> None:
        """Refuse a rule or bracket before it is made if pre-trade risk refuses its order now.

        The portfolio places those orders itself, past the execution actor's checks: an engaged
        kill switch or a limit must stop them here.
        """
        try:
            await self.actors.call(EXECUTION, "vet", order, deferred=deferred)
        except InvalidRequest as err:
            raise InvalidRequest(f"{what} refused: {err}") from None

    @staticmethod
    async def _find(rows: list[dict[str, Any]], field: str, ident: str, what: str) -> dict[str, Any]:
        for row in rows:
            if row.get(field) == ident:
                return row
        raise NotFound(f"no {what} {ident!r}")

    # Deployments --------------------------------------------------------------------------------

    async def deployments(self) -> list[dict[str, Any]]:
        return present(await self.actors.call(DEPLOYMENTS, "deployments"))

    async def deployment_start(self, user: User, name: str) -> Any:
        logger.info("deployment %s: start by %s", name, user.username)
        return present(await self.actors.call(DEPLOYMENTS, "start_deployment", name, timeout_s=LONG_CALL_S))

    async def deployment_stop(self, user: User, name: str) -> Any:
        logger.info("deployment %s: stop by %s", name, user.username)
        return present(await self.actors.call(DEPLOYMENTS, "stop_deployment", name, timeout_s=LONG_CALL_S))

    async def deployment_scale(self, user: User, name: str, shards: int) -> Any:
        logger.info("deployment %s: scale to %d by %s", name, shards, user.username)
        return present(
            await self.actors.call(DEPLOYMENTS, "scale_deployment", name, shards, timeout_s=LONG_CALL_S)
        )

    async def deployment_swap(self, user: User, name: str, strategy: str, config: dict[str, Any]) -> Any:
        logger.info("deployment %s: swap to %s by %s", name, strategy, user.username)
        return present(
            await self.actors.call(
                DEPLOYMENTS, "swap_deployment", name, strategy, config, timeout_s=LONG_CALL_S
            )
        )

    async def deployment_logs(self, name: str, lines: int) -> list[str]:
        return list(await self.actors.call(DEPLOYMENTS, "deployment_logs", name, lines))

    # Risk -----------------------------------------------------------------------------------------

    async def risk_state(self) -> dict[str, Any]:
        """The execution actor's risk state, with the configured limits beside it."""
        state = present(await self.actors.call(EXECUTION, "risk_state"))
        limits = {"global": self.config.risk.model_dump(mode="json")}
        for deployment in self.config.deployments:
            if deployment.risk is not None:
                limits[deployment.name] = deployment.risk.model_dump(mode="json")
        return {**state, "limits": limits}

    async def kill_switch(self, user: User, book: str | None, engaged: bool) -> dict[str, Any]:
        logger.warning(
            "kill switch %s for %s by %s", "ENGAGED" if engaged else "released", book or "all books", user
        )
        await self.actors.call(EXECUTION, "kill_switch", book, engaged)
        return await self.risk_state()

    # Health ---------------------------------------------------------------------------------------

    async def readiness(self) -> dict[str, Any]:
        names = (EXECUTION, PORTFOLIO, ROUTER)
        alive = await asyncio.gather(*(self.actors.alive(n) for n in names))
        checks = {name: ok for name, ok in zip(names, alive, strict=True)}
        checks["catalog"] = self._catalog is not None
        return {"ready": all(checks.values()), "checks": checks}

    async def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in (EXECUTION, ROUTER):
            try:
                out[name] = present(await self.actors.call(name, "stats"))
            except TerminalError as err:
                out[name] = {"error": str(err)}
        return out


def quote_body(view: InstrumentView, row: Any) -> dict[str, Any]:
    """A quote in API shape from a router quote row (QUOTE_DTYPE record or mapping, paise)."""
    names = row.dtype.names if hasattr(row, "dtype") else tuple(row)
    data = {name: int(row[name]) for name in names if name != "iid"}
    if "ts_exchange_ns" in data:
        data["ts_ns"] = data.pop("ts_exchange_ns")
    data = present(data, view.price_scale)
    data["instrument"] = view.key
    return data


def depth_body(view: InstrumentView, depth: Any) -> dict[str, Any]:
    data = present(depth, view.price_scale)
    data["instrument"] = view.key
    return data


def candle_body(candle: Candle, scale: int) -> dict[str, Any]:
    return present(candle.as_dict(), scale)
