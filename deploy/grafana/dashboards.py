"""Builds the Grafana dashboards in deploy/grafana/dashboards/ from the panel lists below.

Run ``python deploy/grafana/dashboards.py`` after editing; a unit test checks the JSON files are
what this writes, and that every metric a panel queries is declared in ``cluster/metrics.py``
(or by the terminal's Prometheus metrics).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "shardline-prometheus"}
RATE = "$__rate_interval"


@dataclass(frozen=True)
class Panel:
    title: str
    exprs: tuple[tuple[str, str], ...]  # (PromQL, legend)
    unit: str = "short"
    kind: str = "timeseries"  # or "stat"
    description: str = ""
    width: int = 12
    stacked: bool = False
    thresholds: tuple[tuple[float, str], ...] = ()  # (from value, colour) above the green base


def panel(title: str, *exprs: tuple[str, str], **options: Any) -> Panel:
    return Panel(title, tuple(exprs), **options)


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: list[Panel | str] = field(default_factory=list)  # a str starts a titled row
    deployment_variable: bool = False


def _panel_json(p: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    steps = [{"color": "green", "value": None}] + [{"color": c, "value": v} for v, c in p.thresholds]
    defaults: dict[str, Any] = {"unit": p.unit, "thresholds": {"mode": "absolute", "steps": steps}}
    if p.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10,
            "showPoints": "never",
            "stacking": {"mode": "normal" if p.stacked else "none", "group": "A"},
        }
        options: dict[str, Any] = {
            "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    else:
        defaults["color"] = {"mode": "thresholds"}
        options = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "none",
            "textMode": "value_and_name",
        }
    return {
        "id": panel_id,
        "type": p.kind,
        "title": p.title,
        "description": p.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": p.width, "x": x, "y": y},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(p.exprs)
        ],
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
    }


def build(d: Dashboard) -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    x = y = 0
    for item in d.panels:
        panel_id = len(panels) + 1
        if isinstance(item, str):
            y += 8 if x else 0
            x = 0
            panels.append(
                {"id": panel_id, "type": "row", "title": item, "collapsed": False, "panels": [],
                 "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}}
            )  # fmt: skip
            y += 1
            continue
        if x + item.width > 24:
            x, y = 0, y + 8
        panels.append(_panel_json(item, panel_id, x, y))
        x += item.width
    variables: list[dict[str, Any]] = []
    if d.deployment_variable:
        variables.append(
            {
                "name": "deployment",
                "label": "deployment",
                "type": "query",
                "datasource": DATASOURCE,
                "query": {
                    "query": "label_values(ray_shardline_shard_running, deployment)",
                    "refId": "deployment",
                },
                "definition": "label_values(ray_shardline_shard_running, deployment)",
                "includeAll": True,
                "multi": True,
                "allValue": ".*",
                "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                "refresh": 2,
                "sort": 1,
            }
        )
    return {
        "uid": d.uid,
        "title": d.title,
        "description": d.description,
        "tags": ["shardline"],
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": variables},
        "annotations": {"list": []},
        "links": [{"type": "dashboards", "tags": ["shardline"], "asDropdown": True, "title": "shardline"}],
        "panels": panels,
    }


DEP = 'deployment=~"$deployment"'


def _sel(selector: str) -> str:
    return f"{{{selector}}}" if selector else ""


def rate(metric: str, by: str, selector: str = "") -> str:
    """Per-second rate of a total, summed by the labels in `by`."""
    return f"sum by ({by}) (rate({metric}{_sel(selector)}[{RATE}]))"


def increase(metric: str, by: str, window: str, selector: str = "") -> str:
    return f"sum by ({by}) (increase({metric}{_sel(selector)}[{window}]))"


def quantile(q: float, histogram: str, by: str, selector: str = "") -> str:
    """A quantile of a Ray histogram (its `_bucket` series), by the labels in `by`."""
    return f"histogram_quantile({q}, sum by (le, {by}) (rate({histogram}_bucket{_sel(selector)}[{RATE}])))"


REJECTED = 'status=~"refused|rejected"'
ADVERSE = 'direction="adverse"'

SYSTEM = Dashboard(
    "shardline-system",
    "shardline · system",
    "Actors, restarts, nodes, journal and the terminal.",
    [
        "actors",
        panel(
            "Actor health (1 = answering the supervisor)",
            ("min by (actor) (ray_shardline_actor_healthy)", "{{actor}}"),
            kind="stat",
            width=24,
            thresholds=((1, "green"),),
        ),
        panel(
            "Actor restarts (last hour)",
            (increase("ray_shardline_actor_restarts_total", "actor", "1h"), "{{actor}}"),
            thresholds=((3, "red"),),
        ),
        panel("Scrape targets up", ("up", "{{job}} {{instance}}"), thresholds=((1, "green"),)),
        "nodes",
        panel("Node CPU", ("ray_node_cpu_utilization", "{{instance}}"), unit="percent"),
        panel(
            "Node memory used", ("ray_node_mem_used / ray_node_mem_total", "{{instance}}"), unit="percentunit"
        ),
        "journal",
        panel(
            "Journal writes /s",
            (rate("ray_shardline_journal_appends_total", "actor"), "{{actor}}"),
            unit="ops",
        ),
        panel(
            "Journal write failures (5 min)",
            (increase("ray_shardline_journal_write_failures_total", "actor", "5m"), "{{actor}}"),
            thresholds=((1, "red"),),
        ),
        "terminal",
        panel(
            "REST latency p95 by route",
            (quantile(0.95, "shardline_http_request_seconds", "route"), "{{route}}"),
            unit="s",
        ),
        panel(
            "REST requests /s by status",
            (rate("shardline_http_request_seconds_count", "status"), "{{status}}"),
            unit="reqps",
        ),
        panel("WebSocket sessions", ("sum(shardline_ws_sessions)", "sessions"), width=8),
        panel(
            "WebSocket updates conflated for slow clients",
            ("sum(shardline_ws_conflated)", "conflated"),
            width=8,
        ),
        panel(
            "Refused logins /min",
            (f"sum(rate(shardline_login_failures_total[{RATE}])) * 60", "refused"),
            width=8,
        ),
    ],
)

MARKET_DATA = Dashboard(
    "shardline-market-data",
    "shardline · market data",
    "Feed, router and shards: every tick counted in, out, conflated or dropped.",
    [
        "flow",
        panel(
            "Ticks in /s by actor", (rate("ray_shardline_ticks_in_total", "actor"), "{{actor}}"), unit="ops"
        ),
        panel(
            "Ticks out /s by actor", (rate("ray_shardline_ticks_out_total", "actor"), "{{actor}}"), unit="ops"
        ),
        panel(
            "Conflated /s",
            (rate("ray_shardline_ticks_conflated_total", "actor, deployment"), "{{actor}} {{deployment}}"),
            unit="ops",
        ),
        panel(
            "Dropped (5 min)",
            (
                increase("ray_shardline_ticks_dropped_total", "actor, deployment", "5m"),
                "{{actor}} {{deployment}}",
            ),
            thresholds=((1, "red"),),
        ),
        "feed",
        panel(
            "Open connections",
            ("sum by (actor) (ray_shardline_feed_connections)", "{{actor}}"),
            kind="stat",
            width=6,
            thresholds=((1, "green"),),
        ),
        panel(
            "Subscriptions",
            ("sum by (actor) (ray_shardline_feed_subscriptions)", "{{actor}}"),
            kind="stat",
            width=6,
        ),
        panel(
            "Reconnects and stalls (1 h)",
            (increase("ray_shardline_feed_reconnects_total", "actor", "1h"), "reconnects {{actor}}"),
            (increase("ray_shardline_feed_stalls_total", "actor", "1h"), "stalls {{actor}}"),
            width=6,
        ),
        panel(
            "Missing by sequence / duplicates (5 min)",
            (increase("ray_shardline_feed_sequence_gaps_total", "actor", "5m"), "missing {{actor}}"),
            (increase("ray_shardline_feed_duplicates_total", "actor", "5m"), "duplicates {{actor}}"),
            width=6,
        ),
        panel(
            "Time the feed waits on the router",
            (rate("ray_shardline_feed_push_wait_seconds_total", "actor"), "{{actor}}"),
            unit="percentunit",
            description="Share of wall time in back-pressure: near 1, the router or a shard holds it back.",
        ),
        panel(
            "Ticks no deployment trades /s",
            (f"sum(rate(ray_shardline_router_unrouted_total[{RATE}]))", "unrouted"),
            unit="ops",
        ),
        "shards",
        panel(
            "Router buffer depth per shard",
            (
                f"max by (deployment, shard) (ray_shardline_router_buffer_depth{{{DEP}}})",
                "{{deployment}}/{{shard}}",
            ),
            thresholds=((32768, "orange"),),
        ),
        panel(
            "In flight per shard",
            (
                f"max by (deployment, shard) (ray_shardline_router_in_flight{{{DEP}}})",
                "{{deployment}}/{{shard}}",
            ),
        ),
        panel(
            "Shard up at the router",
            (
                f"min by (deployment, shard) (ray_shardline_router_shard_up{{{DEP}}})",
                "{{deployment}}/{{shard}}",
            ),
            kind="stat",
            thresholds=((1, "green"),),
        ),
        panel(
            "Receive to strategy, p99 over each shard's recent ticks",
            (
                f'max by (deployment, shard) (ray_shardline_shard_lag_seconds{{{DEP},quantile="0.99"}})',
                "{{deployment}}/{{shard}}",
            ),
            unit="s",
            thresholds=((0.02, "orange"),),
        ),
    ],
    deployment_variable=True,
)

ORDERS = Dashboard(
    "shardline-orders",
    "shardline · orders & latency",
    "The execution actor: order outcomes, rejections, broker limits and latencies.",
    [
        "orders",
        panel(
            "Orders /min by status", (rate("ray_shardline_orders_total", "status") + " * 60", "{{status}}")
        ),
        panel("Open orders", ("sum(ray_shardline_orders_open)", "open"), kind="stat", width=6),
        panel(
            "Rejected share (5 min)",
            (
                f"sum(increase(ray_shardline_orders_total{{{REJECTED}}}[5m]))"
                ' / clamp_min(sum(increase(ray_shardline_orders_total{status="submitted"}[5m])), 1)',
                "rejected",
            ),
            kind="stat",
            width=6,
            unit="percentunit",
            thresholds=((0.2, "orange"),),
        ),
        panel(
            "Rejections by source and reason (1 h)",
            (increase("ray_shardline_order_rejects_total", "source, reason", "1h"), "{{source}}: {{reason}}"),
        ),
        panel(
            "Pre-trade risk refusals by check (1 h)",
            (increase("ray_shardline_risk_rejections_total", "check", "1h"), "{{check}}"),
        ),
        panel(
            "Retries, duplicates and odd venue reports (1 h)",
            (increase("ray_shardline_execution_anomalies_total", "kind", "1h"), "{{kind}}"),
        ),
        panel(
            "Kill switches tripped by a limit (today)",
            ("max(increase(ray_shardline_kill_switch_trips_total[1d]))", "trips"),
            kind="stat",
            thresholds=((1, "red"),),
        ),
        "latency",
        panel(
            "Submit to acknowledgement",
            (quantile(0.5, "ray_shardline_order_ack_seconds", "venue"), "p50 {{venue}}"),
            (quantile(0.95, "ray_shardline_order_ack_seconds", "venue"), "p95 {{venue}}"),
            (quantile(0.99, "ray_shardline_order_ack_seconds", "venue"), "p99 {{venue}}"),
            unit="s",
            thresholds=((0.01, "orange"),),
        ),
        panel(
            "Acknowledgement to fill",
            (quantile(0.5, "ray_shardline_order_fill_seconds", "venue"), "p50 {{venue}}"),
            (quantile(0.95, "ray_shardline_order_fill_seconds", "venue"), "p95 {{venue}}"),
            unit="s",
        ),
        panel(
            "Tick to strategy (per batch, slowest tick)",
            (quantile(0.99, "ray_shardline_tick_to_strategy_seconds", "deployment"), "p99 {{deployment}}"),
            (quantile(0.5, "ray_shardline_tick_to_strategy_seconds", "deployment"), "p50 {{deployment}}"),
            unit="s",
            thresholds=((0.02, "orange"),),
        ),
        panel(
            "Receive to strategy over recent ticks",
            ('max by (deployment) (ray_shardline_shard_lag_seconds{quantile="0.99"})', "p99 {{deployment}}"),
            ('max by (deployment) (ray_shardline_shard_lag_seconds{quantile="max"})', "max {{deployment}}"),
            unit="s",
        ),
        "broker limits",
        panel(
            "Calls /s by endpoint group",
            (rate("ray_shardline_rate_limit_granted_total", "group"), "{{group}}"),
            unit="ops",
            width=8,
        ),
        panel(
            "Calls that waited for budget /min",
            (rate("ray_shardline_rate_limit_waits_total", "group") + " * 60", "{{group}}"),
            width=8,
        ),
        panel(
            "'Exceeding access rate' answers (1 h)",
            (increase("ray_shardline_rate_limit_backoffs_total", "group", "1h"), "{{group}}"),
            width=8,
            thresholds=((1, "red"),),
        ),
    ],
)

STRATEGIES = Dashboard(
    "shardline-strategies",
    "shardline · strategies & P&L",
    "P&L per book, kill switches, positions and each shard's orders.",
    [
        "P&L",
        panel(
            "P&L, all books",
            ("max(ray_shardline_pnl_total_rupees)", "total"),
            kind="stat",
            width=6,
            unit="currencyINR",
        ),
        panel(
            "Kill switches",
            ("max by (book) (ray_shardline_kill_switch_engaged)", "{{book}}"),
            kind="stat",
            width=6,
            thresholds=((1, "red"),),
        ),
        panel(
            "Open positions per book",
            ("max by (book) (ray_shardline_open_positions)", "{{book}}"),
            kind="stat",
            width=12,
        ),
        panel(
            "P&L per book",
            ('max by (book) (ray_shardline_pnl_rupees{component="total"})', "{{book}}"),
            unit="currencyINR",
            width=24,
        ),
        panel(
            "Realized, unrealized and charges",
            (
                'max by (book, component) (ray_shardline_pnl_rupees{component!="total"})',
                "{{book}} {{component}}",
            ),
            unit="currencyINR",
            width=24,
        ),
        "shards",
        panel(
            "Strategy orders /min",
            (
                rate("ray_shardline_strategy_orders_total", "deployment, outcome", DEP) + " * 60",
                "{{deployment}} {{outcome}}",
            ),
        ),
        panel(
            "Fills /min",
            (rate("ray_shardline_strategy_fills_total", "deployment", DEP) + " * 60", "{{deployment}}"),
        ),
        panel(
            "Shard running",
            (
                f"min by (deployment, shard) (ray_shardline_shard_running{{{DEP}}})",
                "{{deployment}}/{{shard}}",
            ),
            kind="stat",
            thresholds=((1, "green"),),
        ),
        panel(
            "Ticks handled /s per shard",
            (rate("ray_shardline_ticks_out_total", "actor", f'actor=~"shard-.*",{DEP}'), "{{actor}}"),
            unit="ops",
        ),
        panel(
            "Rows a shard could not use (1 h)",
            (
                increase("ray_shardline_shard_bad_rows_total", "deployment, reason", "1h", DEP),
                "{{deployment}} {{reason}}",
            ),
            width=24,
        ),
    ],
    deployment_variable=True,
)

SLIPPAGE = Dashboard(
    "shardline-slippage",
    "shardline · slippage",
    "Fills against the price expected for them (positive = adverse).",
    [
        panel(
            "Adverse slippage, basis points",
            (quantile(0.5, "ray_shardline_fill_slippage_bps", "book", ADVERSE), "p50 {{book}}"),
            (quantile(0.95, "ray_shardline_fill_slippage_bps", "book", ADVERSE), "p95 {{book}}"),
            width=24,
        ),
        panel(
            "Slippage cost today, rupees",
            (
                increase("ray_shardline_slippage_rupees_total", "book, direction", "1d"),
                "{{book}} {{direction}}",
            ),
            unit="currencyINR",
        ),
        panel(
            "Net slippage cost today, rupees",
            (
                increase("ray_shardline_slippage_rupees_total", "book", "1d", ADVERSE)
                + " - "
                + increase("ray_shardline_slippage_rupees_total", "book", "1d", 'direction="favourable"'),
                "{{book}}",
            ),
            unit="currencyINR",
        ),
        panel(
            "Share of fills with adverse slippage (1 h)",
            (
                increase("ray_shardline_fill_slippage_bps_count", "book", "1h", ADVERSE)
                + " / "
                + increase("ray_shardline_fill_slippage_bps_count", "book", "1h"),
                "{{book}}",
            ),
            unit="percentunit",
        ),
        panel(
            "Mean adverse slippage (1 h), basis points",
            (
                increase("ray_shardline_fill_slippage_bps_sum", "book", "1h", ADVERSE)
                + " / "
                + increase("ray_shardline_fill_slippage_bps_count", "book", "1h", ADVERSE),
                "{{book}}",
            ),
        ),
    ],
)

DASHBOARDS = (SYSTEM, MARKET_DATA, ORDERS, STRATEGIES, SLIPPAGE)


def rendered() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {
        f"{d.uid.removeprefix('shardline-')}.json": json.dumps(build(d), indent=2, ensure_ascii=False) + "\n"
        for d in DASHBOARDS
    }


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, text in rendered().items():
        (OUT / name).write_text(text)


if __name__ == "__main__":
    main()
