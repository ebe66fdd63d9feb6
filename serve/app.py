"""The terminal as a Ray Serve application: `build_app(config)` for tests, `run(config)` for the supervisor.

Each replica loads the catalog, finds the actors by name, follows the hub once for all of its
clients, and serves the FastAPI app from `serve.api`. Replicas autoscale on ongoing requests, and
an open WebSocket counts as one, so connections spread the load.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from ray import serve
from ray.serve import Application

from cluster.config import Secrets, ShardlineConfig, parse_config
from serve.api import create_api
from serve.hub import connect_feed, get_or_create_hub_actor
from serve.marketdata import get_or_create_marketdata_actor
from serve.service import ActorDirectory, CatalogLookup, TerminalService

logger = logging.getLogger(__name__)

APP_NAME = "terminal"
# Long-lived WebSockets each hold a request slot for their whole life; Serve's default of 5 would
# cap a replica at five open terminals.
MAX_ONGOING_REQUESTS = 1000


@serve.deployment(
    name="terminal", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=MAX_ONGOING_REQUESTS
)
@serve.ingress()
class TerminalIngress:
    """One terminal replica; the ASGI app is built after construction, on the replica."""

    def __init__(
        self, config_data: dict[str, Any], jwt_secret: str, redis_url: str | None, heartbeat_s: float = 10.0
    ) -> None:
        self._config = parse_config(config_data, "terminal deployment")
        self._jwt_secret = jwt_secret
        self._redis_url = redis_url
        self._heartbeat_s = heartbeat_s
        try:
            catalog: CatalogLookup | None = CatalogLookup.load(self._config)
        except Exception:  # the replica still serves login, health and account routes
            logger.exception("instrument catalog failed to load; instrument routes will answer 503")
            catalog = None
        self._service = TerminalService(self._config, catalog, ActorDirectory())
        # Order details go to the hub actor, which merges them into its order state (and relays
        # them to Redis when that carries the fan-out).
        hub = get_or_create_hub_actor(redis_url)

        async def publish(updates: list[Any]) -> None:
            await hub.publish.remote(updates)

        self._service.publish = publish

    def __serve_build_asgi_app__(self) -> Any:
        replica = serve.get_replica_context().replica_id.unique_id
        return create_api(
            self._config,
            self._service,
            self._jwt_secret,
            connect_feed(self._redis_url),
            heartbeat_s=self._heartbeat_s,
            replica=replica,
        )


def build_app(config: ShardlineConfig, env: Secrets | None = None, heartbeat_s: float = 10.0) -> Application:
    """The terminal application, bound to `config`; the JWT secret is fixed here, once for all replicas."""
    env = env or Secrets()
    jwt_secret = env.shardline_jwt_secret.get_secret_value() if env.shardline_jwt_secret else None
    if not jwt_secret:
        jwt_secret = secrets.token_urlsafe(48)
        logger.warning("SHARDLINE_JWT_SECRET is not set: a random one is used and sessions end on restart")
    scaling = config.serve.autoscaling
    deployment = TerminalIngress.options(  # type: ignore[attr-defined]
        autoscaling_config={
            "min_replicas": scaling.min_replicas,
            "max_replicas": scaling.max_replicas,
            "target_ongoing_requests": scaling.target_ongoing_requests,
        },
    )
    return deployment.bind(config.model_dump(mode="json"), jwt_secret, env.redis_url, heartbeat_s)


def app_builder(args: dict[str, Any]) -> Application:
    """The application builder Serve's config files name (`import_path: serve.app:app_builder`).

    `args` may give `config`, the path of the YAML file (default: `SHARDLINE_CONFIG` or the
    project's `config/shardline.yaml`); secrets come from the environment as always.
    """
    from cluster.config import load_config

    return build_app(load_config(args.get("config")))


def run(
    config: ShardlineConfig, env: Secrets | None = None, blocking: bool = False, heartbeat_s: float = 10.0
) -> str:
    """Start Serve's HTTP proxy and deploy the terminal (Ray must be up); return the terminal's URL.

    When Serve already runs in this cluster its proxy keeps the address it has (Serve ignores new
    HTTP options), so the URL returned is the one it actually listens on.
    """
    env = env or Secrets()
    get_or_create_hub_actor(env.redis_url)
    get_or_create_marketdata_actor(config)
    serve.start(http_options={"host": config.serve.host, "port": config.serve.port})
    serve.run(build_app(config, env, heartbeat_s), name=APP_NAME, route_prefix="/", blocking=blocking)
    host, port = serving_address(config)
    if (host, port) != (config.serve.host, config.serve.port):
        logger.warning("Serve was already listening on %s:%d; the terminal is there", host, port)
    logger.info("terminal at http://%s:%d", host, port)
    return f"http://{host}:{port}"


def serving_address(config: ShardlineConfig) -> tuple[str, int]:
    """Where Serve's proxy listens (the configured address if Serve cannot say)."""
    try:
        from ray.serve.context import _get_global_client

        client = _get_global_client()
        if client is not None:
            return str(client.http_config.host), int(client.http_config.port)
    except Exception:  # an internal of Serve's: fall back to what was asked for
        pass
    return config.serve.host, config.serve.port


def shutdown() -> None:
    serve.delete(APP_NAME)
