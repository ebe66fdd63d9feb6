"""The terminal as a trader drives it, in headless Chromium, against the whole system (`system`).

Sign in, search an instrument, watch its price move, place a limit order and cancel it from the
book, place a market order and see the position with its P&L, place a bracket, and have a GTT
trigger. Screenshots of each step go to test-artifacts/e2e/. The page must log no console error
(CSP violations and failed requests included).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "e2e"
CHROMIUM = "/usr/bin/chromium"
RESULTS = "[...document.querySelectorAll('#search-results li')]"
TICKET_ERROR = "document.querySelector('#ticket-error')"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def terminal_url(system: dict[str, Any], wait_until: Callable[..., Any]) -> str:
    url = system["serve_url"]

    def ready() -> bool:
        try:
            return bool(httpx.get(f"{url}/ready", timeout=5).json().get("ready"))
        except (httpx.HTTPError, ValueError):
            return False

    wait_until(ready, timeout_s=120, what="the terminal to be ready")
    return str(url)


@pytest.fixture(scope="module")
def streaming(terminal_url: str, wait_until: Callable[..., Any]) -> dict[str, Any]:
    """An NSE equity with live quotes, to trade in the browser."""
    token = httpx.post(
        f"{terminal_url}/api/v1/auth/login", json={"username": "trader", "password": "trader-local"}
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}

    def some() -> list[dict[str, Any]]:
        found = httpx.get(f"{terminal_url}/api/v1/instruments/streaming?limit=40", headers=headers).json()
        return [i for i in found if i["exchange"] == "NSE" and i["lot_size"] == 1]

    return dict(wait_until(some, timeout_s=90, what="live quotes for NSE equities")[0])


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Terminal:
    """One signed-in page, with the console watched and screenshots numbered."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        self.shots = 0
        page.on(
            "console",
            lambda m: (
                self.errors.append(f"{m.text} ({m.location.get('url', '')})") if m.type == "error" else None
            ),
        )
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.shots += 1
        self.page.screenshot(path=str(ARTIFACTS / f"{self.shots:02d}-{name}.png"))

    def wait(self, script: str, arg: Any = None, timeout_s: float = 30) -> Any:
        return self.page.wait_for_function(script, arg=arg, timeout=timeout_s * 1000)

    def toast(self, pattern: str, timeout_s: float = 30) -> str:
        """Wait for a toast whose text matches `pattern`; return its text."""
        try:
            handle = self.wait(
                """(pattern) => [...window.__seenToasts, ...[...document.querySelectorAll('#toasts .toast')]
                     .map((t) => t.textContent)].find((t) => new RegExp(pattern).test(t))""",
                pattern,
                timeout_s,
            )
        except Exception:
            self.shot("no-such-toast")
            seen = self.page.evaluate("() => window.__seenToasts")
            raise AssertionError(f"no toast matching {pattern!r}; toasts seen: {seen}") from None
        return str(handle.json_value())

    def ltp(self, key: str) -> str:
        return str(self.page.text_content(f'#watchlist li[data-key="{key}"] .ltp'))


def sign_in(browser: Any, url: str, user: str, password: str) -> Terminal:
    page = browser.new_page(viewport={"width": 1600, "height": 900})
    terminal = Terminal(page)
    page.goto(url)
    page.fill("#login-form input[name=username]", user)
    page.fill("#login-form input[name=password]", password)
    page.keyboard.press("Enter")
    terminal.wait("() => window.__shardlineReady === true", timeout_s=60)
    # Toasts fade after a few seconds: remember every one the page shows.
    page.evaluate(
        """() => { window.__seenToasts = [];
             new MutationObserver((changes) => { for (const c of changes) for (const n of c.addedNodes)
               window.__seenToasts.push(n.textContent); })
             .observe(document.getElementById('toasts'), { childList: true }); }"""
    )
    return terminal


def tick_round(value: Decimal, tick: Decimal, up: bool) -> Decimal:
    steps = (value / tick).to_integral_value(rounding=ROUND_UP if up else ROUND_DOWN)
    return (steps * tick).quantize(Decimal("0.01"))


@pytest.mark.timeout(900)  # the whole system starts first, and the GTT waits for the market to move
def test_a_trading_session_in_the_browser(browser: Any, terminal_url: str, streaming: dict[str, Any]) -> None:
    key, symbol = streaming["key"], streaming["symbol"]
    tick = Decimal(streaming["tick_size"])
    t = sign_in(browser, terminal_url, "trader", "trader-local")
    page = t.page
    t.wait("() => document.querySelector('#connection').dataset.state === 'live'")
    t.shot("signed-in")

    # Search with the keyboard and add the instrument to the watchlist.
    page.keyboard.press("/")
    page.keyboard.type(symbol.split("-")[0])
    t.wait(f"(symbol) => {RESULTS}.some((li) => li.textContent.includes(symbol))", symbol)
    t.shot("search")
    index = page.evaluate(f"(symbol) => {RESULTS}.findIndex((li) => li.textContent.includes(symbol))", symbol)
    for _ in range(index):
        page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    row = f'#watchlist li[data-key="{key}"]'
    page.wait_for_selector(f'{row}[aria-selected="true"]')

    # Prices move.
    t.wait("(sel) => /\\d/.test(document.querySelector(sel).textContent)", f"{row} .ltp", timeout_s=60)
    first = t.ltp(key)
    t.wait("([sel, first]) => document.querySelector(sel).textContent !== first", [f"{row} .ltp", first], 90)
    t.wait("() => document.querySelector('#chart canvas') !== null")
    t.wait("() => /\\d/.test(document.querySelector('#depth tbody td').textContent)", timeout_s=30)
    t.shot("prices-moving")

    ltp = Decimal(t.ltp(key).replace(",", ""))

    # A limit order well below the market rests as OPEN; cancel it from the orders book.
    limit = tick_round(ltp * Decimal("0.95"), tick, up=False)
    page.keyboard.press("b")
    page.wait_for_selector("#ticket[open]")
    page.select_option("#ticket select[name=order_type]", "LIMIT")
    page.fill("#ticket input[name=price]", str(limit))
    page.focus("#ticket input[name=lots]")
    page.keyboard.press("Enter")
    page.wait_for_selector("#ticket-confirm:not([hidden])")
    assert f"LIMIT @ {limit}" in str(page.text_content("#ticket-confirm"))
    t.shot("limit-review")
    page.keyboard.press("Enter")
    placed = t.toast(r"Placed t\w+ — (OPEN|PENDING)")
    order_id = re.search(r"Placed (t\w+)", placed).group(1)  # type: ignore[union-attr]
    page.keyboard.press("2")
    order_row = f'#orders tbody tr[data-id="{order_id}"]'
    page.wait_for_selector(f"{order_row} .status.OPEN")
    assert "BUY" in str(page.text_content(order_row)) and str(limit) in str(page.text_content(order_row))
    t.shot("limit-in-book")
    page.click(f'{order_row} button[data-action="cancel"]')
    page.wait_for_selector(f"{order_row} .status.CANCELLED")
    t.shot("limit-cancelled")

    # A market order fills: the position shows with its live P&L.
    page.keyboard.press("b")
    page.wait_for_selector("#ticket[open]")
    page.select_option("#ticket select[name=order_type]", "MARKET")
    page.focus("#ticket input[name=lots]")
    page.keyboard.press("Enter")
    page.wait_for_selector("#ticket-confirm:not([hidden])")
    page.keyboard.press("Enter")
    t.toast(r"Filled BUY .* 1 @ ", timeout_s=60)
    page.keyboard.press("1")
    position = t.wait(
        """(symbol) => [...document.querySelectorAll('#positions tbody tr')]
             .find((tr) => tr.textContent.includes(symbol) && tr.querySelector('[data-pnl]'))""",
        symbol,
        60,
    )
    pnl = position.as_element().query_selector("[data-pnl]").get_attribute("data-pnl")
    assert re.fullmatch(r"-?\d+\.\d\d", pnl)
    t.wait("() => /P&L/.test(document.querySelector('#pnl-total').textContent)")
    t.shot("position")

    # A bracket: LIMIT entry at the market with a stop below and a target above.
    ltp = Decimal(t.ltp(key).replace(",", ""))
    entry = tick_round(ltp, tick, up=True)
    stop = tick_round(entry * Decimal("0.97"), tick, up=False)
    target = tick_round(entry * Decimal("1.03"), tick, up=True)
    page.keyboard.press("b")
    page.wait_for_selector("#ticket[open]")
    page.click('#ticket-tabs button[data-kind="bracket"]')
    page.select_option("#ticket select[name=order_type]", "LIMIT")
    page.fill("#ticket input[name=price]", str(entry))
    page.fill("#ticket input[name=stop_loss]", str(stop))
    page.fill("#ticket input[name=target]", str(target))
    page.focus("#ticket input[name=lots]")
    page.keyboard.press("Enter")
    page.wait_for_selector("#ticket-confirm:not([hidden])")
    page.keyboard.press("Enter")
    bracket = t.toast(r"Bracket BRK-\d+ placed")
    bracket_id = re.search(r"(BRK-\d+)", bracket).group(1)  # type: ignore[union-attr]
    page.keyboard.press("5")
    page.wait_for_selector(f'#brackets tbody tr:has-text("{bracket_id}")')
    t.shot("bracket")

    # A GTT one tick above the market triggers on the next rise and places its limit order.
    ltp = Decimal(t.ltp(key).replace(",", ""))
    trigger = tick_round(ltp + tick, tick, up=True)
    price = tick_round(trigger * Decimal("1.01"), tick, up=True)
    page.keyboard.press("g")
    page.wait_for_selector("#ticket[open]")
    page.check('#ticket input[name=side][value="BUY"]')
    page.select_option("#ticket select[name=product]", "DELIVERY")
    for _attempt in range(3):
        page.fill("#ticket input[name=trigger_price]", str(trigger))
        page.fill("#ticket input[name=price]", str(price))
        page.focus("#ticket input[name=lots]")
        page.keyboard.press("Enter")
        page.wait_for_selector("#ticket-confirm:not([hidden])")
        page.keyboard.press("Enter")
        t.wait(f"() => !document.querySelector('#ticket').open || {TICKET_ERROR}.textContent")
        if not page.is_visible("#ticket[open]"):
            break
        # The venue refuses a trigger equal to its last price (it would fire at once): one tick higher.
        assert "equals the last price" in str(page.text_content("#ticket-error"))
        # The browser logs the refused request; that refusal is the one this step expects.
        t.errors = [e for e in t.errors if not ("status of 422" in e and "/api/v1/gtt" in e)]
        trigger += tick
        price = tick_round(trigger * Decimal("1.01"), tick, up=True)
    created = t.toast(r"GTT GTT-\d+ created")
    gtt_id = re.search(r"(GTT-\d+)", created).group(1)  # type: ignore[union-attr]
    page.keyboard.press("4")
    page.wait_for_selector(f'#gtt tbody tr:has-text("{gtt_id}")')
    t.wait(
        """(id) => [...document.querySelectorAll('#gtt tbody tr')]
             .some((tr) => tr.textContent.includes(id) && tr.textContent.includes('TRIGGERED'))""",
        gtt_id,
        120,
    )
    t.shot("gtt-triggered")

    assert not t.errors, t.errors


def test_a_viewer_cannot_open_a_ticket(browser: Any, terminal_url: str) -> None:
    t = sign_in(browser, terminal_url, "viewer", "viewer-local")
    t.page.keyboard.press("b")
    t.toast(r"Your role \(viewer\) cannot place orders")
    assert not t.page.is_visible("#ticket[open]")
    t.shot("viewer-refused")
    assert not t.errors, t.errors
