"""Deployment specs, universes, records and status, without Ray: the manager's plain parts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nautilus_trader.common.component import LiveClock
from nautilus_trader.common.generators import ClientOrderIdGenerator
from nautilus_trader.model.identifiers import StrategyId, TraderId

from actors.journal.file_journal import FileJournal
from actors.orders import OrderStatus, OrderUpdate
from actors.shard.loading import build_strategy
from actors.shard.shard import ShardSpec
from actors.shard.universe import ShardInstrument
from catalog.sources import load_default_catalog
from cluster.config import parse_config
from cluster.deployments import (
    DeploymentError,
    DeploymentRecord,
    DeploymentRegistry,
    UnknownDeployment,
    derive_state,
    load_deployment_spec,
    order_trader_tag,
    parse_deployment_spec,
    parse_shard_actor_name,
    resolve_universe,
    shard_actor_name,
    summarize,
    trader_tag,
)

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "config" / "deployments").glob("*.yaml"))
VALID = {
    "name": "ema-test",
    "strategy": "actors.shard.strategies.ema_cross:EMACross",
    "config": {"fast_period": 5, "slow_period": 20},
    "universe": {"query": "NSE equities", "limit": 6},
}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Any:
    config = parse_config(
        {"data_dir": str(tmp_path_factory.mktemp("data")), "catalog": {"synth_count": 2000}}
    )
    return load_default_catalog(config)


def spec(**changes: Any) -> dict[str, Any]:
    data = {**VALID, **changes}
    return {k: v for k, v in data.items() if v is not None}


# ----------------------------------------------------------------------------------- specs


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (spec(name="Bad Name"), "name: String should match pattern"),
        (spec(strategy="no_colon"), "strategy: String should match pattern"),
        (spec(universe={}), "universe: Value error, give either 'instruments' or 'query'"),
        (spec(universe=None), "universe: Field required"),
        (spec(shards=0), "shards: Input should be greater than 0"),
        (spec(shards=65), "shards: Input should be less than or equal to 64"),
        (spec(flow="drop"), "flow: Input should be 'block' or 'conflate'"),
        (spec(mode="backtest"), "mode: Input should be 'sim', 'sim-live', 'paper' or 'live'"),
        (spec(risk={"max_order_qty": -1}), "risk.max_order_qty: Input should be greater than 0"),
        (spec(replicas=2), "replicas: unknown key"),
        ([1, 2], "a deployment spec is a mapping"),
    ],
)
def test_a_bad_spec_is_refused_naming_the_key(data: Any, message: str) -> None:
    with pytest.raises(DeploymentError) as err:
        parse_deployment_spec(data, "my.yaml")
    assert str(err.value).startswith("my.yaml")
    assert message in str(err.value)


def test_a_good_spec_keeps_its_values() -> None:
    parsed = parse_deployment_spec(spec(shards=3, flow="conflate", mode="paper", warm_spares=True))
    assert (parsed.shards, parsed.flow.value, parsed.mode and parsed.mode.value) == (3, "conflate", "paper")
    assert parsed.warm_spares and parsed.config == {"fast_period": 5, "slow_period": 20}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "cannot read"),
        ("name: [unclosed", "not valid YAML"),
        ("- a\n- b\n", "a deployment spec is a mapping"),
        ("name: x\nstrategy: a:B\n", "universe: Field required"),
    ],
)
def test_a_spec_file_that_cannot_be_used_says_why(tmp_path: Path, text: str | None, message: str) -> None:
    path = tmp_path / "my.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(DeploymentError) as err:
        load_deployment_spec(path)
    assert str(path) in str(err.value) and message in str(err.value)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_the_example_specs_load_build_and_resolve(path: Path, catalog: Any) -> None:
    parsed = load_deployment_spec(path)
    build_strategy(parsed.strategy, parsed.config)  # imports, and the config validates
    assert len(resolve_universe(parsed, catalog)) >= parsed.shards


def test_examples_exist() -> None:
    assert len(EXAMPLES) >= 3


# ----------------------------------------------------------------------------------- universes


def test_a_universe_joins_the_list_and_the_query_without_repeats(catalog: Any) -> None:
    query = [i.key for i in catalog.select("NSE equities", 4)]
    parsed = parse_deployment_spec(
        spec(universe={"instruments": ["NSE:SBIN-EQ", query[0]], "query": "NSE equities", "limit": 4})
    )
    keys = [i.key for i in resolve_universe(parsed, catalog)]
    assert keys == [catalog.resolve("NSE:SBIN-EQ").key, *query]


@pytest.mark.parametrize(
    ("universe", "message"),
    [
        ({"instruments": ["NSE:NOSUCHTHING"]}, "no token or symbol"),
        ({"instruments": ["XYZ:1"]}, "unknown exchange XYZ"),
        ({"query": "the moon"}, "ema-test"),
    ],
)
def test_a_universe_that_does_not_resolve_names_the_deployment(
    catalog: Any, universe: dict[str, Any], message: str
) -> None:
    with pytest.raises(DeploymentError) as err:
        resolve_universe(parse_deployment_spec(spec(universe=universe)), catalog)
    assert "deployment 'ema-test'" in str(err.value) and message in str(err.value)


def test_option_universes_centre_on_the_live_price(catalog: Any) -> None:
    parsed = parse_deployment_spec(spec(universe={"query": "NIFTY weekly options ±2 strikes"}))
    at_base = resolve_universe(parsed, catalog)
    spot = catalog.spot("NIFTY")
    strikes = sorted({int(i.strike or 0) for i in at_base})
    higher = resolve_universe(parsed, catalog, {spot.key: strikes[-1] + 10 * (strikes[1] - strikes[0])})
    assert {int(i.strike or 0) for i in higher} != set(strikes)
    assert max(int(i.strike or 0) for i in higher) > max(strikes)


# ----------------------------------------------------------------------------------- names and tags


@given(
    name=st.from_regex(r"[a-z0-9][a-z0-9-]{0,39}", fullmatch=True),
    generation=st.integers(0, 10_000),
    index=st.integers(0, 63),
)
def test_shard_names_and_tags_match_the_shard_spec_and_parse_back(
    name: str, generation: int, index: int
) -> None:
    instrument = ShardInstrument.equity(1, "S1-EQ", "1001")
    shard = ShardSpec(
        deployment=name,
        strategy="a:B",
        config={},
        instruments=(instrument,),
        index=index,
        count=64,
        generation=generation,
    )
    assert shard_actor_name(name, generation, index) == shard.name
    assert trader_tag(generation, index) == shard.trader_tag
    assert parse_shard_actor_name(shard.name) == (name, generation, index)


@pytest.mark.parametrize("name", ["router", "shard-", "shard-x", "shard-x.y-1", "shard-x-y", "feed-0"])
def test_other_actor_names_are_not_shards(name: str) -> None:
    assert parse_shard_actor_name(name) is None


@pytest.mark.parametrize(("generation", "index"), [(0, 0), (0, 7), (1, 0), (12, 3)])
def test_a_client_order_id_tells_which_shard_generation_made_it(generation: int, index: int) -> None:
    tag = trader_tag(generation, index)
    generator = ClientOrderIdGenerator(TraderId(f"EMA-TEST-{tag}"), StrategyId("EMACross-000"), LiveClock())
    assert order_trader_tag(generator.generate().value) == tag
    assert order_trader_tag("manual-123") is None


# ----------------------------------------------------------------------------------- records


def record(**changes: Any) -> DeploymentRecord:
    fields: dict[str, Any] = {
        "name": "ema-test",
        "spec": parse_deployment_spec(VALID).model_dump(mode="json", exclude_none=True),
        "instruments": ["NSE:1", "NSE:2"],
        "shards": 2,
        "state": "running",
    }
    fields.update(changes)
    return DeploymentRecord(**fields)


def test_the_registry_journals_each_change_and_rebuilds_from_it(tmp_path: Path) -> None:
    path = tmp_path / "journal" / "deployments.jsonl"
    registry = DeploymentRegistry(FileJournal(path))
    first = record()
    registry.put(first)
    first.generation = 3
    first.state = "stopped"
    registry.put(first)
    registry.put(record(name="other", runtime_env={"working_dir": "gcs://_ray_pkg_1.zip"}))
    registry.close()

    rebuilt = DeploymentRegistry(FileJournal(path))
    assert [r.name for r in rebuilt] == ["ema-test", "other"]
    assert (rebuilt.get("ema-test").generation, rebuilt.get("ema-test").state) == (3, "stopped")
    assert rebuilt.get("other").runtime_env == {"working_dir": "gcs://_ray_pkg_1.zip"}
    with pytest.raises(
        UnknownDeployment, match=r"no deployment named 'nope' \(deployments: ema-test, other\)"
    ):
        rebuilt.get("nope")
    rebuilt.close()


def test_a_stored_record_is_not_changed_by_later_edits_of_the_caller() -> None:
    registry = DeploymentRegistry()
    mine = record()
    registry.put(mine)
    mine.state = "failed"
    assert registry.get("ema-test").state == "running"


def test_history_keeps_the_recent_notes() -> None:
    r = record()
    for k in range(30):
        r.note(1_764_115_200_000_000_000 + k * 10**9, f"event {k}")
    assert len(r.history) == 20 and r.history[-1].endswith("event 29")
    assert r.history[0].startswith("2025-11-26T00:00:10Z")


# ----------------------------------------------------------------------------------- status

RUNNING = {"state": "running", "error": None}


@pytest.mark.parametrize(
    ("state", "shards", "expected", "error_part"),
    [
        ("running", {"a": RUNNING, "b": RUNNING}, "running", ""),
        (
            "running",
            {"a": RUNNING, "b": {"state": "failed", "error": "boom on tick"}},
            "failed",
            "b failed: boom",
        ),
        ("running", {"a": RUNNING, "b": None}, "failed", "b is not answering"),
        ("running", {"a": RUNNING, "b": {"state": "starting"}}, "starting", ""),
        ("running", {"a": {"state": "stopped"}}, "failed", "a is stopped"),
        ("starting", {"a": None}, "starting", ""),
        ("stopped", {}, "stopped", ""),
        ("failed", {}, "failed", "did not start"),
    ],
)
def test_a_deployment_is_as_healthy_as_its_worst_shard(
    state: str, shards: dict[str, Any], expected: str, error_part: str
) -> None:
    got, error = derive_state(record(state=state, error="did not start" if state == "failed" else ""), shards)
    assert got == expected
    assert error_part in error if error_part else error == ""


def update(coid: str, status: OrderStatus) -> OrderUpdate:
    return OrderUpdate(
        client_order_id=coid, venue_order_id=None, book="ema-test", instrument="NSE:1", status=status
    )


def test_a_summary_counts_ticks_orders_and_carries_the_book_pnl() -> None:
    shards: dict[str, dict[str, Any] | None] = {
        "shard-ema-test-0": {
            **RUNNING,
            "ticks_handled": 10,
            "orders_sent": 2,
            "positions": {"S1-EQ.NSE": "5"},
        },
        "shard-ema-test-1": {**RUNNING, "ticks_handled": 32, "orders_sent": 1},
    }
    route = {
        "ticks_in": 42,
        "ticks_out": 42,
        "buffered": 0,
        "shards": [{"index": 0, "instruments": 1}, {"index": 1, "instruments": 1}],
    }
    orders = [update("a", OrderStatus.FILLED), update("b", OrderStatus.FILLED), update("c", OrderStatus.OPEN)]
    risk = {
        "realized_pnl": "12.50",
        "unrealized_pnl": "-2.00",
        "charges": "1.10",
        "pnl": "9.40",
        "positions": {},
    }
    doc = summarize(record(), shards, route, orders, risk)
    assert (doc["state"], doc["ticks_handled"]) == ("running", 42)
    assert doc["orders"] == {"total": 3, "FILLED": 2, "OPEN": 1}
    assert doc["pnl"] == {
        "realized_pnl": "12.50",
        "unrealized_pnl": "-2.00",
        "charges": "1.10",
        "pnl": "9.40",
    }
    assert [s["instruments_routed"] for s in doc["shard_detail"]] == [1, 1]
    assert doc["router"]["ticks_in"] == 42
