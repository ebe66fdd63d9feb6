"""Indian transaction charges per fill: brokerage, STT/CTT, exchange charges, SEBI fee, stamp duty, GST.

Rates are percent of turnover (quantity × price); for options, of premium turnover. The statutory
schedule below is the one in force from 1 April 2026 (STT on futures 0.05% and options 0.15% from
that date; exchange transaction charges as revised on 1 October 2024):

=================  =====================  ==========================  ===============  ===============
segment            STT / CTT              exchange transaction        stamp duty       applies to
=================  =====================  ==========================  ===============  ===============
equity delivery    0.1% buy and sell      NSE 0.00297%, BSE 0.00375%  0.015% buy       DELIVERY, MARGIN
equity intraday    0.025% sell            NSE 0.00297%, BSE 0.00375%  0.003% buy       INTRADAY
futures            0.05% sell             NFO 0.00173%, BFO 0         0.002% buy       any product
options            0.15% sell (premium)   NFO 0.03503%, BFO 0.0325%   0.003% buy       any product
commodity futures  0.01% sell (CTT)       MCX 0.0021%, NCDEX 0.0058%  0.002% buy       any product
commodity options  0.05% sell (CTT)       MCX 0.0418%                 0.003% buy       any product
=================  =====================  ==========================  ===============  ===============

Every segment also pays the SEBI turnover fee (₹10 per crore, 0.0001%) on both sides and GST at 18%
on brokerage + exchange transaction charges + SEBI fee. A long option exercised at expiry pays STT
of 0.15% on its intrinsic (settlement) value instead of the sell-side rate.

Brokerage depends on the broker plan:

- ``discount``: equity delivery free; everything else ₹20 or 0.03% of the order's turnover, whichever
  is lower, per executed order. An order filled in parts pays the cap once: each fill is charged the
  order's cumulative brokerage minus what its earlier fills already paid.
- ``zero``: no brokerage; statutory charges still apply.

Each component is rounded to the paisa per fill, half up. Contract notes round STT to the rupee per
scrip and add NSE's IPFT levy and depository charges on delivery sells; those are not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

import msgspec

from actors.orders import Product, Side
from actors.portfolio.instruments import InstrumentKind, InstrumentSpec
from actors.portfolio.money import round_paise


def pct(value: str) -> Decimal:
    """A rate written as percent, as exchange circulars write it ("0.00297" means 0.00297%)."""
    return Decimal(value) / 100


class ChargeSegment(StrEnum):
    EQUITY_DELIVERY = "equity_delivery"
    EQUITY_INTRADAY = "equity_intraday"
    FUTURES = "futures"
    OPTIONS = "options"
    COMMODITY_FUTURES = "commodity_futures"
    COMMODITY_OPTIONS = "commodity_options"


def charge_segment(spec: InstrumentSpec, product: Product) -> ChargeSegment:
    """Which rate table a fill of `spec` under `product` pays."""
    if spec.kind is InstrumentKind.EQUITY:
        return ChargeSegment.EQUITY_INTRADAY if product is Product.INTRADAY else ChargeSegment.EQUITY_DELIVERY
    if spec.kind is InstrumentKind.FUTURE:
        return ChargeSegment.COMMODITY_FUTURES if spec.is_commodity else ChargeSegment.FUTURES
    if spec.kind is InstrumentKind.OPTION:
        return ChargeSegment.COMMODITY_OPTIONS if spec.is_commodity else ChargeSegment.OPTIONS
    raise ValueError(f"{spec.symbol} is an index and has no charges")


@dataclass(frozen=True)
class SegmentRates:
    stt_buy: Decimal
    stt_sell: Decimal
    stamp_buy: Decimal
    exchange: dict[str, Decimal]  # by exchange code


@dataclass(frozen=True)
class ChargeSchedule:
    """The statutory rates; a new budget or circular is a new instance, not an edit elsewhere."""

    segments: dict[ChargeSegment, SegmentRates]
    sebi_fee: Decimal = Decimal("0.000001")  # 0.0001%, ₹10 per crore
    gst: Decimal = Decimal("0.18")
    stt_exercise: Decimal = Decimal("0.0015")  # 0.15%: long options exercised at expiry, on intrinsic value


STATUTORY_2026 = ChargeSchedule(
    segments={
        ChargeSegment.EQUITY_DELIVERY: SegmentRates(
            stt_buy=pct("0.1"),
            stt_sell=pct("0.1"),
            stamp_buy=pct("0.015"),
            exchange={"NSE": pct("0.00297"), "BSE": pct("0.00375")},
        ),
        ChargeSegment.EQUITY_INTRADAY: SegmentRates(
            stt_buy=Decimal(0),
            stt_sell=pct("0.025"),
            stamp_buy=pct("0.003"),
            exchange={"NSE": pct("0.00297"), "BSE": pct("0.00375")},
        ),
        ChargeSegment.FUTURES: SegmentRates(
            stt_buy=Decimal(0),
            stt_sell=pct("0.05"),
            stamp_buy=pct("0.002"),
            exchange={"NFO": pct("0.00173"), "BFO": Decimal(0)},
        ),
        ChargeSegment.OPTIONS: SegmentRates(
            stt_buy=Decimal(0),
            stt_sell=pct("0.15"),
            stamp_buy=pct("0.003"),
            exchange={"NFO": pct("0.03503"), "BFO": pct("0.0325")},
        ),
        ChargeSegment.COMMODITY_FUTURES: SegmentRates(
            stt_buy=Decimal(0),
            stt_sell=pct("0.01"),
            stamp_buy=pct("0.002"),
            exchange={"MCX": pct("0.0021"), "NCDEX": pct("0.0058")},
        ),
        ChargeSegment.COMMODITY_OPTIONS: SegmentRates(
            stt_buy=Decimal(0),
            stt_sell=pct("0.05"),
            stamp_buy=pct("0.003"),
            exchange={"MCX": pct("0.0418")},
        ),
    }
)


@dataclass(frozen=True)
class BrokeragePlan:
    """Brokerage per executed order: `rate` of its turnover, capped at `cap` paise."""

    name: str
    rate: Decimal
    cap: int
    free_segments: frozenset[ChargeSegment] = field(default_factory=frozenset)

    def order_brokerage(self, segment: ChargeSegment, order_turnover: int) -> int:
        """Brokerage for an order that has traded `order_turnover` paise so far."""
        if segment in self.free_segments or order_turnover <= 0:
            return 0
        return min(self.cap, round_paise(self.rate * order_turnover))


DISCOUNT_PLAN = BrokeragePlan(
    name="discount",
    rate=pct("0.03"),
    cap=2000,  # ₹20
    free_segments=frozenset({ChargeSegment.EQUITY_DELIVERY}),
)
ZERO_PLAN = BrokeragePlan(name="zero", rate=Decimal(0), cap=0)
BROKER_PLANS = {plan.name: plan for plan in (DISCOUNT_PLAN, ZERO_PLAN)}


class Charges(msgspec.Struct, frozen=True, kw_only=True):
    """Charges in whole paise; add two to total them."""

    brokerage: int = 0
    stt: int = 0
    exchange: int = 0
    sebi: int = 0
    stamp: int = 0
    gst: int = 0

    @property
    def total(self) -> int:
        return self.brokerage + self.stt + self.exchange + self.sebi + self.stamp + self.gst

    def __add__(self, other: Charges) -> Charges:
        return Charges(
            brokerage=self.brokerage + other.brokerage,
            stt=self.stt + other.stt,
            exchange=self.exchange + other.exchange,
            sebi=self.sebi + other.sebi,
            stamp=self.stamp + other.stamp,
            gst=self.gst + other.gst,
        )


NO_CHARGES = Charges()


class ChargeModel:
    """Charges for fills under one broker plan and one statutory schedule."""

    def __init__(self, plan: BrokeragePlan, schedule: ChargeSchedule = STATUTORY_2026) -> None:
        self.plan = plan
        self.schedule = schedule

    @classmethod
    def for_plan(cls, name: str) -> ChargeModel:
        try:
            return cls(BROKER_PLANS[name])
        except KeyError:
            raise ValueError(
                f"unknown broker plan {name!r}; known: {', '.join(sorted(BROKER_PLANS))}"
            ) from None

    def for_fill(
        self,
        spec: InstrumentSpec,
        product: Product,
        side: Side,
        quantity: int,
        price: int,
        order_turnover_before: int = 0,
    ) -> Charges:
        """Charges on one fill of `quantity` at `price` paise.

        Parameters
        ----------
        order_turnover_before
            Turnover (paise) of the same order's earlier fills, so a brokerage cap is paid once
            per order however many parts it fills in.
        """
        segment = charge_segment(spec, product)
        rates = self.schedule.segments[segment]
        try:
            exchange_rate = rates.exchange[spec.exchange]
        except KeyError:
            raise ValueError(f"no {segment.value} exchange charges for {spec.exchange}") from None
        turnover = quantity * price
        brokerage = self.plan.order_brokerage(
            segment, order_turnover_before + turnover
        ) - self.plan.order_brokerage(segment, order_turnover_before)
        buy = side is Side.BUY
        stt = round_paise((rates.stt_buy if buy else rates.stt_sell) * turnover)
        exchange = round_paise(exchange_rate * turnover)
        sebi = round_paise(self.schedule.sebi_fee * turnover)
        stamp = round_paise(rates.stamp_buy * turnover) if buy else 0
        gst = round_paise(self.schedule.gst * (brokerage + exchange + sebi))
        return Charges(brokerage=brokerage, stt=stt, exchange=exchange, sebi=sebi, stamp=stamp, gst=gst)

    def for_exercise(self, spec: InstrumentSpec, quantity: int, settlement_price: int) -> Charges:
        """STT on a long option exercised at expiry: a share of its intrinsic value."""
        # Commodity options settle with their own CTT rules, not modelled here.
        if spec.kind is not InstrumentKind.OPTION or spec.is_commodity or settlement_price <= 0:
            return NO_CHARGES
        return Charges(stt=round_paise(self.schedule.stt_exercise * quantity * settlement_price))
