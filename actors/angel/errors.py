"""Broker errors as typed exceptions, each carrying the broker's own code and message.

Angel answers `{"status": false, "message": ..., "errorcode": ..., "data": null}`; some gateways
answer `{"success": false, "message": ..., "errorCode": ...}` instead, and a rate-limit hit can
arrive as plain text. `error_from_envelope` reads all three shapes.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from actors.angel.common import (
    BAD_CREDENTIAL_CODES,
    BAD_TOTP_CODES,
    INVALID_API_KEY_CODES,
    ORDER_NOT_FOUND_CODES,
    RATE_LIMIT_MESSAGE,
    REFRESH_ERROR_CODES,
    TOKEN_ERROR_CODES,
    TRANSIENT_CODES,
)
from cluster.errors import ShardlineError


class AngelError(ShardlineError):
    """The broker refused a call; `code` and `broker_message` are the broker's own words."""

    def __init__(self, operation: str, code: str, broker_message: str) -> None:
        self.operation = operation
        self.code = code
        self.broker_message = broker_message
        detail = f"{code}: {broker_message}" if code else broker_message
        super().__init__(f"Angel One {operation} failed: {detail}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its own fields: an actor's error reaches its caller typed, with its words.
        return type(self), (self.operation, self.code, self.broker_message)


class TokenError(AngelError):
    """The access token is invalid or expired: renew the session and retry once."""


class RefreshTokenError(AngelError):
    """The refresh token is invalid or expired: only a fresh login helps."""


class RateLimitedError(AngelError):
    """The broker says the caller exceeded its access rate: back off, then retry."""


class TransientBrokerError(AngelError):
    """A failure worth retrying after a pause (broker "something went wrong", network trouble)."""


class OrderNotFoundError(AngelError):
    """The order id is unknown to the broker."""


class BrokerRejectedError(AngelError):
    """The broker rejected the request as invalid (bad parameter, symbol, product, variety...)."""


class LoginFailure(StrEnum):
    WRONG_PIN = "wrong client code or PIN"
    BAD_TOTP = "TOTP refused"
    CLOCK_SKEW = "TOTP refused and the local clock is off"
    INVALID_API_KEY = "API key refused"
    UNKNOWN = "login refused"


class LoginError(AngelError):
    """A failed login, with the reason a person can act on (never the secrets themselves)."""

    def __init__(self, reason: LoginFailure, code: str, broker_message: str, hint: str = "") -> None:
        self.reason = reason
        self.hint = hint
        super().__init__("login", code, broker_message)
        self.args = (f"Angel One login failed ({reason.value}): {code or '-'} {broker_message}{hint}",)

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.reason, self.code, self.broker_message, self.hint)


class BrokerResponseError(AngelError):
    """The broker answered something that is not the documented envelope."""


def _field(envelope: dict[str, Any], *names: str) -> Any:
    for name in names:
        if name in envelope:
            return envelope[name]
    return None


def envelope_ok(envelope: dict[str, Any]) -> bool:
    """True when the broker's envelope reports success (`status` or `success` true)."""
    return _field(envelope, "status", "success") is True


def error_from_envelope(operation: str, envelope: Any) -> AngelError:
    """The typed exception for a failed broker answer (envelope dict, plain text or anything else)."""
    if not isinstance(envelope, dict):
        text = envelope.decode("utf-8", "replace") if isinstance(envelope, bytes) else str(envelope)
        if RATE_LIMIT_MESSAGE in text.lower():
            return RateLimitedError(operation, "", text.strip())
        return BrokerResponseError(operation, "", f"unexpected answer: {text[:200]!r}")
    code = str(_field(envelope, "errorcode", "errorCode") or "")
    message = str(_field(envelope, "message") or "")
    return error_from_code(operation, code, message)


def error_from_code(operation: str, code: str, message: str) -> AngelError:
    """The typed exception for one broker error code and message."""
    if RATE_LIMIT_MESSAGE in message.lower():
        return RateLimitedError(operation, code, message)
    if code in TOKEN_ERROR_CODES:
        return TokenError(operation, code, message)
    if code in REFRESH_ERROR_CODES:
        return RefreshTokenError(operation, code, message)
    if code in TRANSIENT_CODES:
        return TransientBrokerError(operation, code, message)
    if code in ORDER_NOT_FOUND_CODES:
        return OrderNotFoundError(operation, code, message)
    if code in INVALID_API_KEY_CODES:
        return BrokerRejectedError(operation, code, message)
    return BrokerRejectedError(operation, code, message or "refused without a message")


def login_failure_for(code: str, message: str) -> LoginFailure:
    """Why a login was refused, from the broker's code and message."""
    text = message.lower()
    if code in BAD_TOTP_CODES or "totp" in text:
        return LoginFailure.BAD_TOTP
    if code in INVALID_API_KEY_CODES or "api key" in text:
        return LoginFailure.INVALID_API_KEY
    if code in BAD_CREDENTIAL_CODES or "password" in text or "pin" in text:
        return LoginFailure.WRONG_PIN
    return LoginFailure.UNKNOWN
