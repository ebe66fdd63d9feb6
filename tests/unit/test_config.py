from __future__ import annotations

from pathlib import Path

import pytest

from cluster.config import DEFAULT_CONFIG_PATH, ConfigError, Mode, Secrets, load_config, parse_config


def test_shipped_config_is_valid() -> None:
    config = load_config(DEFAULT_CONFIG_PATH)
    assert config.mode is Mode.SIM
    assert {u.role.value for u in config.users} == {"admin", "trader", "quant", "viewer"}
    assert config.deployments and all(d.shards >= 1 for d in config.deployments)


def test_empty_file_gives_the_embedded_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    config = load_config(path)
    assert config.mode is Mode.SIM
    assert config.feed.max_subscriptions_per_connection == 1000


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"mode": "yolo"}, "mode: Input should be 'sim', 'sim-live', 'paper' or 'live'"),
        ({"router": {"virtual_nodes": 0}}, "router.virtual_nodes: Input should be greater than 0"),
        ({"router": {"virtul_nodes": 8}}, "router.virtul_nodes: unknown key"),
        ({"feed": {"max_connections": 4}}, "feed.max_connections: Input should be less than or equal to 3"),
        ({"angel_api_key": "abc"}, "angel_api_key: unknown key"),
        (
            {"serve": {"autoscaling": {"min_replicas": 3, "max_replicas": 2}}},
            "serve.autoscaling: Value error, max_replicas must be >= min_replicas",
        ),
        (
            {"deployments": [{"name": "x", "strategy": "mod:Cls", "universe": {}}]},
            "deployments.0.universe: Value error, give either 'instruments' or 'query'",
        ),
        (
            {"deployments": [{"name": "Bad Name", "strategy": "mod:Cls", "universe": {"query": "q"}}]},
            "deployments.0.name: String should match pattern",
        ),
        (
            {"deployments": [{"name": "a", "strategy": "not-a-path", "universe": {"query": "q"}}]},
            "deployments.0.strategy: String should match pattern",
        ),
        (
            {
                "deployments": [
                    {"name": "a", "strategy": "m:C", "universe": {"query": "q"}},
                    {"name": "a", "strategy": "m:C", "universe": {"query": "q"}},
                ]
            },
            "repeated: a",
        ),
    ],
)
def test_invalid_config_names_the_key_and_reason(data: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data, "shardline.yaml")
    assert expected in str(err.value)
    assert str(err.value).startswith("shardline.yaml: ")


def test_live_mode_refuses_default_passwords() -> None:
    shipped = load_config(DEFAULT_CONFIG_PATH)
    data = shipped.model_dump(mode="json")
    data["mode"] = "live"
    with pytest.raises(ConfigError, match="live mode refuses users with a default password: admin"):
        parse_config(data)
    for user in data["users"]:
        user["default_password"] = False
    assert parse_config(data).mode is Mode.LIVE


@pytest.mark.parametrize(
    ("text", "expected"),
    [("mode: [unclosed", "not valid YAML"), ("- a\n- b\n", "the top level must be a mapping")],
)
def test_unreadable_yaml_is_refused(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected):
        load_config(path)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")


def test_secrets_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    for name in ("ANGEL_API_KEY", "ANGEL_CLIENT_CODE", "ANGEL_PIN", "ANGEL_TOTP_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ANGEL_API_KEY", "key-123")
    secrets = Secrets()
    assert secrets.angel_api_key is not None
    assert secrets.angel_api_key.get_secret_value() == "key-123"
    assert "key-123" not in repr(secrets)
    with pytest.raises(ConfigError, match="ANGEL_CLIENT_CODE, ANGEL_PIN, ANGEL_TOTP_SECRET"):
        secrets.require_broker_credentials()
