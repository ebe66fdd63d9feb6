"""FastAPI dependencies: the service, the signed-in user and what their role lets them do."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request, WebSocket
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from serve.security import AuthError, Permission, TokenIssuer, User, UserDirectory
from serve.service import TerminalService

if TYPE_CHECKING:
    from cluster.config import ShardlineConfig
    from serve.ratelimit import UserRateLimiter
    from serve.websocket import Broadcaster


@dataclass
class TerminalState:
    """Everything a replica's routes share, kept on ``app.state.terminal``."""

    config: ShardlineConfig
    service: TerminalService
    users: UserDirectory
    tokens: TokenIssuer
    order_limiter: UserRateLimiter
    login_limiter: UserRateLimiter  # per username: slows password guessing
    broadcaster: Broadcaster


def get_state(request: Request) -> TerminalState:
    state: TerminalState = request.app.state.terminal
    return state


def get_ws_state(websocket: WebSocket) -> TerminalState:
    state: TerminalState = websocket.app.state.terminal
    return state


State = Annotated[TerminalState, Depends(get_state)]


def get_service(state: State) -> TerminalService:
    return state.service


Service = Annotated[TerminalService, Depends(get_service)]

_bearer = HTTPBearer(auto_error=False, description="the access token from /api/v1/auth/login")


def get_current_user(
    state: State, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> User:
    if credentials is None:
        raise AuthError("sign in first: no bearer token")
    return state.tokens.verify_access(credentials.credentials, time.time()).user


CurrentUser = Annotated[User, Depends(get_current_user)]


def require(permission: Permission) -> Callable[[User], User]:
    def check(user: CurrentUser) -> User:
        user.require(permission)
        return user

    check.__name__ = f"require_{permission.value}"
    return check


Reader = Annotated[User, Depends(require(Permission.READ))]
Trader = Annotated[User, Depends(require(Permission.TRADE))]
Quant = Annotated[User, Depends(require(Permission.DEPLOY))]
Admin = Annotated[User, Depends(require(Permission.ADMIN))]


def rate_limited_trader(state: State, user: Trader) -> User:
    state.order_limiter.check(user.username, time.monotonic())
    return user


OrderTrader = Annotated[User, Depends(rate_limited_trader)]
