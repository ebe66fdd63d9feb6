"""The one configuration file (`config/shardline.yaml`) and the environment, validated at start.

Every section is a frozen pydantic model that forbids unknown keys, so a typo fails loudly
with the dotted key that is wrong. Secrets never come from YAML: only from the environment
or `.env` (see `.env.example`).
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_PATH = ROOT / "config" / "shardline.yaml"

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Port = Annotated[int, Field(ge=0, le=65535)]  # 0 = pick a free port


class ConfigError(Exception):
    """A configuration file or environment that cannot be used; the message names the key."""


class Mode(StrEnum):
    SIM = "sim"  # local simulator feed, paper fills
    SIM_LIVE = "sim-live"  # local simulator feed, orders through the broker path to the simulator
    PAPER = "paper"  # Angel One feed, paper fills
    LIVE = "live"  # Angel One feed and orders


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CatalogConfig(Section):
    source: Literal["synth", "angel", "file"] = "synth"
    url: str = "https://margincalculator.angelbroking.com/OpenAPI_File/files/OpenAPIScripMaster.json"
    path: str | None = None  # for source: file
    synth_count: PositiveInt = 20_000
    synth_seed: int = 7
    # A refresh whose row count falls below this fraction of the last good copy is refused.
    min_row_ratio: Annotated[float, Field(gt=0, le=1)] = 0.8
    download_timeout_s: PositiveFloat = 60.0


class SimConfig(Section):
    host: str = "127.0.0.1"
    rest_port: Port = 0
    stream_port: Port = 0
    order_port: Port = 0
    tick_rate: Annotated[int, Field(ge=1, le=1_000_000)] = 2_000
    instruments: PositiveInt = 200
    seed: int = 7
    session_hours: bool = False
    partial_fills: bool = False
    session_ttl_s: PositiveFloat = 28 * 3600
    enforce_rate_limits: bool = True
    replay_path: str | None = None
    # The simulator's own demo login (not secrets: they open only the local simulator).
    api_key: str = "sim-api-key"
    client_code: str = "SIM001"
    pin: str = "1234"
    totp_secret: str = (
        "SHARDLINESIMULATORDEMOTOTPSECRET"  # base32; any authenticator app or pyotp makes the codes
    )


class FeedConfig(Section):
    max_subscriptions_per_connection: Annotated[int, Field(gt=0, le=1000)] = 1000
    max_connections: Annotated[int, Field(gt=0, le=3)] = 3
    flush_interval_ms: PositiveFloat = 1.0
    flush_max_ticks: PositiveInt = 4096
    heartbeat_s: PositiveFloat = 10.0
    stall_timeout_s: PositiveFloat = 5.0
    reconnect_initial_s: PositiveFloat = 0.2
    reconnect_max_s: PositiveFloat = 10.0
    mode: Literal["ltp", "quote", "snap_quote"] = "snap_quote"
    # How frames come off the socket: "raw" splits each read into packets with numpy (least CPU
    # per tick, see docs/benchmarks.md); "aiohttp" and "websockets" take one message per await.
    receive_path: Literal["raw", "aiohttp", "websockets"] = "raw"


class RouterConfig(Section):
    virtual_nodes: Annotated[int, Field(gt=0, le=4096)] = 128
    buffer_ticks: PositiveInt = 65_536
    ui_snapshot_hz: Annotated[float, Field(gt=0, le=100)] = 10.0


class RiskConfig(Section):
    max_order_qty: PositiveInt = 100_000
    max_order_value_rupees: PositiveFloat = 5_000_000.0
    price_band_pct: Annotated[float, Field(gt=0, le=100)] = 10.0
    max_position_qty: PositiveInt = 500_000
    daily_loss_limit_rupees: PositiveFloat = 500_000.0
    global_daily_loss_limit_rupees: PositiveFloat = 2_000_000.0
    # Fall from the day's best P&L that engages a book's kill switch (none: daily loss only).
    max_drawdown_rupees: PositiveFloat | None = None
    allow_short_delivery: bool = False


class PortfolioConfig(Section):
    starting_cash_rupees: PositiveFloat = 10_000_000.0
    intraday_margin_fraction: Annotated[float, Field(gt=0, le=1)] = 0.2
    fno_margin_fraction: Annotated[float, Field(gt=0, le=1)] = 0.12
    slippage_ticks: Annotated[int, Field(ge=0)] = 1
    square_off_time_ist: str = "15:20"
    broker_plan: Literal["discount", "zero"] = "discount"


class FlowPolicy(StrEnum):
    BLOCK = "block"
    CONFLATE = "conflate"


class UniverseConfig(Section):
    """Which instruments a deployment trades: explicit keys, or a catalog query."""

    instruments: list[str] = Field(default_factory=list)  # "EXCH:token" or "EXCH:SYMBOL"
    query: str | None = None  # e.g. "NSE equities top 50", "NIFTY weekly options ±10 strikes"
    limit: PositiveInt | None = None

    @model_validator(mode="after")
    def _one_source(self) -> UniverseConfig:
        if not self.instruments and not self.query:
            raise ValueError("give either 'instruments' or 'query'")
        return self


class DeploymentConfig(Section):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")]
    strategy: Annotated[str, Field(pattern=r"^[\w.]+:\w+$")]  # "module.path:ClassName"
    config: dict[str, Any] = Field(default_factory=dict)
    universe: UniverseConfig
    shards: Annotated[int, Field(gt=0, le=64)] = 1
    flow: FlowPolicy = FlowPolicy.BLOCK
    risk: RiskConfig | None = None  # the deployment's own book limits; global ones apply too
    # The cluster mode the spec is meant for (None: any); a cluster in another mode refuses it.
    mode: Mode | None = None
    # Keep one idle, pre-started process per shard for the next hot swap: a swap to code already
    # on the cluster then skips process start and imports (about 280 MB of memory per spare).
    warm_spares: bool = False
    enabled: bool = True


class AutoscalingConfig(Section):
    min_replicas: Annotated[int, Field(ge=1)] = 1
    max_replicas: Annotated[int, Field(ge=1)] = 2
    target_ongoing_requests: PositiveFloat = 32.0

    @model_validator(mode="after")
    def _ordered(self) -> AutoscalingConfig:
        if self.max_replicas < self.min_replicas:
            raise ValueError("max_replicas must be >= min_replicas")
        return self


class ServeConfig(Section):
    host: str = "127.0.0.1"
    port: Port = 8000
    autoscaling: AutoscalingConfig = AutoscalingConfig()
    cors_origins: list[str] = Field(
        default_factory=lambda: ["http://127.0.0.1:8000", "http://localhost:8000"]
    )
    access_token_ttl_s: PositiveInt = 900
    refresh_token_ttl_s: PositiveInt = 7 * 24 * 3600
    order_rate_per_user_per_s: PositiveFloat = 50.0
    ws_max_rate_hz: Annotated[float, Field(gt=0, le=100)] = 20.0


class Role(StrEnum):
    VIEWER = "viewer"
    TRADER = "trader"
    QUANT = "quant"
    ADMIN = "admin"


class UserConfig(Section):
    username: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    role: Role
    password_hash: Annotated[str, Field(pattern=r"^\$argon2")]
    default_password: bool = False  # refused in live mode


class ExecutionConfig(Section):
    # Custom Ray resource carried only by the node with the broker-registered static IP.
    pin_resource: str = "broker_ip"
    idempotency_window: PositiveInt = 100_000


class ShardlineConfig(Section):
    mode: Mode = Mode.SIM
    data_dir: str = "data"
    catalog: CatalogConfig = CatalogConfig()
    sim: SimConfig = SimConfig()
    feed: FeedConfig = FeedConfig()
    router: RouterConfig = RouterConfig()
    execution: ExecutionConfig = ExecutionConfig()
    risk: RiskConfig = RiskConfig()
    portfolio: PortfolioConfig = PortfolioConfig()
    deployments: list[DeploymentConfig] = Field(default_factory=list)
    serve: ServeConfig = ServeConfig()
    users: list[UserConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> ShardlineConfig:
        names = [d.name for d in self.deployments]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"deployment names must be unique; repeated: {', '.join(dupes)}")
        users = [u.username for u in self.users]
        if len(set(users)) != len(users):
            raise ValueError("usernames must be unique")
        if self.mode is Mode.LIVE:
            weak = [u.username for u in self.users if u.default_password]
            if weak:
                raise ValueError(
                    f"live mode refuses users with a default password: {', '.join(weak)}; "
                    "set a new password hash with `shardline users passwd`"
                )
        return self

    @property
    def data_path(self) -> Path:
        path = Path(self.data_dir)
        return path if path.is_absolute() else ROOT / path


class Secrets(BaseSettings):
    """Secrets and environment-only settings, from the environment or `.env`."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    angel_api_key: SecretStr | None = None
    angel_client_code: str | None = None
    angel_pin: SecretStr | None = None
    angel_totp_secret: SecretStr | None = None
    # Key that encrypts the broker session cache at rest (Fernet, urlsafe base64 of 32 bytes).
    shardline_session_key: SecretStr | None = None
    shardline_jwt_secret: SecretStr | None = None
    redis_url: str | None = None

    def require_broker_credentials(self) -> None:
        missing = [
            name.upper()
            for name in ("angel_api_key", "angel_client_code", "angel_pin", "angel_totp_secret")
            if getattr(self, name) is None
        ]
        if missing:
            raise ConfigError(f"broker credentials missing from the environment: {', '.join(missing)}")


def format_validation_error(source: str, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        reason = e["msg"]
        if e["type"] == "extra_forbidden":
            reason = "unknown key"
        lines.append(f"{source}: {key}: {reason}")
    return "\n".join(lines)


def parse_config(data: dict[str, Any] | None, source: str = "config") -> ShardlineConfig:
    try:
        return ShardlineConfig.model_validate(data or {})
    except ValidationError as err:
        raise ConfigError(format_validation_error(source, err)) from None


def load_config(path: str | os.PathLike[str] | None = None) -> ShardlineConfig:
    """Read and validate the YAML config; `SHARDLINE_CONFIG` overrides the default path."""
    path = Path(path or os.environ.get("SHARDLINE_CONFIG") or DEFAULT_CONFIG_PATH)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return parse_config(data, str(path))
