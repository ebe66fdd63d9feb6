from __future__ import annotations

import time

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from serve.dependencies import CurrentUser, State
from serve.schemas import LoginRequest, RefreshRequest, TokenResponse, UserResponse
from serve.security import TokenPair, User

router = APIRouter(prefix="/auth", tags=["auth"])


def token_response(pair: TokenPair, user: User) -> TokenResponse:
    return TokenResponse(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        expires_at=pair.access_expires_at,
        refresh_expires_at=pair.refresh_expires_at,
        user=user_response(user),
    )


def user_response(user: User) -> UserResponse:
    return UserResponse(
        username=user.username, role=user.role, permissions=sorted(p.value for p in user.permissions)
    )


@router.post("/login", response_model=TokenResponse)
async def login(body: LoginRequest, state: State) -> TokenResponse:
    state.login_limiter.check(body.username, time.monotonic())
    # argon2 is deliberately slow (tens of ms): keep it off the event loop.
    user = await run_in_threadpool(state.users.authenticate, body.username, body.password)
    return token_response(state.tokens.issue(user, time.time()), user)


@router.post("/refresh", response_model=TokenResponse)
def refresh(body: RefreshRequest, state: State) -> TokenResponse:
    pair = state.tokens.refresh(body.refresh_token, time.time())
    return token_response(pair, state.tokens.verify_access(pair.access_token, time.time()).user)


@router.get("/me", response_model=UserResponse)
def me(user: CurrentUser) -> UserResponse:
    return user_response(user)
