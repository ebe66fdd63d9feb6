"""Good-till-triggered rules: a single trigger, or an OCO pair (stop-loss and target) on a holding.

A rule watches the last traded price. Each leg fires when the price reaches its trigger from the
side it was on when the rule was made (a trigger above the price fires on a rise to it, one below
on a fall), and then places a LIMIT order at the leg's price. An OCO rule's two legs straddle the
price; when one fires the rule is done, so the other can never fire: the cancellation is the same
state change as the trigger. Rules live up to a year.

Angel One keeps GTT rules on its servers; here the paper venue keeps them, in its journal.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import msgspec

from actors.orders import Product, Side
from actors.portfolio.instruments import InstrumentSpec
from actors.portfolio.money import format_rupees

NS_PER_DAY = 86_400 * 10**9
MAX_VALIDITY_NS = 365 * NS_PER_DAY


class GttStatus(StrEnum):
    ACTIVE = "ACTIVE"
    TRIGGERED = "TRIGGERED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"


class LegRole(StrEnum):
    TRIGGER = "TRIGGER"  # the one leg of a single rule
    STOP_LOSS = "STOP_LOSS"
    TARGET = "TARGET"


class GttLeg(msgspec.Struct, frozen=True, kw_only=True):
    role: LegRole
    trigger_price: int  # paise
    price: int  # paise: the LIMIT order placed on trigger
    fires_above: bool  # fires when the price rises to the trigger (else when it falls to it)

    def reached(self, ltp: int) -> bool:
        return ltp >= self.trigger_price if self.fires_above else ltp <= self.trigger_price


class GttRule(msgspec.Struct, frozen=True, kw_only=True):
    """What a rule is; its status lives in `GttState`."""

    gtt_id: str
    book: str
    instrument: str
    side: Side
    quantity: int
    product: Product
    legs: tuple[GttLeg, ...]
    reference_price: int  # the last price when the rule was made or last modified
    created_ts_ns: int
    expires_ts_ns: int

    @property
    def is_oco(self) -> bool:
        return len(self.legs) == 2


@dataclass(slots=True)
class GttState:
    rule: GttRule
    status: GttStatus = GttStatus.ACTIVE
    triggered_leg: LegRole | None = None
    order_id: str | None = None
    reason: str = ""
    updated_ts_ns: int = 0

    @property
    def is_active(self) -> bool:
        return self.status is GttStatus.ACTIVE


class GttError(ValueError):
    """A rule that cannot be made or changed; the message says what to fix."""


def build_legs(
    spec: InstrumentSpec,
    side: Side,
    ltp: int,
    legs: list[tuple[int, int]],
) -> tuple[GttLeg, ...]:
    """Validate (trigger, price) pairs against the last price and give each its role and direction.

    One pair is a single rule. Two are an OCO pair that must straddle the last price: for a SELL
    (closing a long holding) the lower trigger is the stop-loss and the higher the target; for a
    BUY (covering a short) the other way round.
    """
    if not 1 <= len(legs) <= 2:
        raise GttError(f"a GTT has one leg (single) or two (OCO), got {len(legs)}")
    for trigger, price in legs:
        for what, value in (("trigger price", trigger), ("price", price)):
            if value <= 0:
                raise GttError(f"{what} must be above zero, got {format_rupees(value)}")
            if value % spec.tick_size:
                raise GttError(
                    f"{what} {format_rupees(value)} is not a multiple of the tick size "
                    f"{format_rupees(spec.tick_size)} for {spec.symbol}"
                )
        if trigger == ltp:
            raise GttError(
                f"trigger price {format_rupees(trigger)} equals the last price of {spec.symbol}: it would "
                "fire at once; place an order instead"
            )
    if len(legs) == 1:
        trigger, price = legs[0]
        return (GttLeg(role=LegRole.TRIGGER, trigger_price=trigger, price=price, fires_above=trigger > ltp),)
    (low, low_price), (high, high_price) = sorted(legs)
    if not low < ltp < high:
        raise GttError(
            f"an OCO's triggers must straddle the last price {format_rupees(ltp)} of {spec.symbol}; "
            f"got {format_rupees(low)} and {format_rupees(high)}"
        )
    below = GttLeg(role=LegRole.STOP_LOSS, trigger_price=low, price=low_price, fires_above=False)
    above = GttLeg(role=LegRole.TARGET, trigger_price=high, price=high_price, fires_above=True)
    if side is Side.BUY:  # covering a short: the stop is above, the target below
        below = msgspec.structs.replace(below, role=LegRole.TARGET)
        above = msgspec.structs.replace(above, role=LegRole.STOP_LOSS)
        return (above, below)
    return (below, above)


def check_quantity(spec: InstrumentSpec, quantity: int) -> None:
    if quantity <= 0:
        raise GttError(f"quantity must be positive, got {quantity}")
    if quantity % spec.lot_size:
        raise GttError(
            f"quantity {quantity} is not a multiple of the lot size {spec.lot_size} for {spec.symbol}"
        )


def check_expiry(created_ts_ns: int, expires_ts_ns: int) -> None:
    if expires_ts_ns <= created_ts_ns:
        raise GttError("the expiry must be in the future")
    if expires_ts_ns - created_ts_ns > MAX_VALIDITY_NS:
        raise GttError("a GTT is valid for at most one year (365 days)")


def fired_leg(state: GttState, ltp: int) -> GttLeg | None:
    """The leg `ltp` fires, if the rule is active; OCO legs straddle the price, so at most one can."""
    if not state.is_active:
        return None
    for leg in state.rule.legs:
        if leg.reached(ltp):
            return leg
    return None
