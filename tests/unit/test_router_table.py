from __future__ import annotations

from actors.router.actor import RoutingTable


def test_replay_folds_the_journal_into_the_table_a_restart_needs() -> None:
    records = [
        {"op": "add", "name": "ema", "universe": [[1, "NSE:1"], [2, "NSE:2"]], "shards": 3,
         "policy": "block", "active": True},
        {"op": "add", "name": "old", "universe": [[1, "NSE:1"]], "shards": 1, "policy": "conflate",
         "active": True},
        {"op": "shard", "name": "ema", "index": 0, "actor": "shard-ema-0"},
        {"op": "shard", "name": "ema", "index": 2, "actor": "shard-ema-2"},
        {"op": "shard", "name": "ema", "index": 0, "actor": "shard-ema-0-g2"},  # a newer generation
        {"op": "resize", "name": "ema", "shards": 2},  # shard 2 is gone
        {"op": "listener", "name": "execution", "method": "on_quotes"},
        {"op": "active", "name": "old", "active": False},
        {"op": "remove", "name": "old"},
        {"op": "shard", "name": "nope", "index": 0, "actor": "x"},  # unknown deployment: ignored
    ]  # fmt: skip
    table = RoutingTable.replay(records)
    assert list(table.deployments) == ["ema"]
    assert table.deployments["ema"]["shards"] == 2
    assert table.shards == {"ema": {0: "shard-ema-0-g2"}}
    assert table.listeners == {"execution": "on_quotes"}


def test_empty_journal_means_nothing_to_restore() -> None:
    table = RoutingTable.replay([])
    assert not table.deployments and not table.listeners
