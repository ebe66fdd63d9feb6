"""Broker answers to typed errors: every envelope shape, the SDK's exceptions, login reasons."""

from __future__ import annotations

import pickle
from pathlib import Path

import pyotp
import pytest

from actors.angel.auth import AngelCredentials
from actors.angel.errors import (
    AngelError,
    BrokerRejectedError,
    BrokerResponseError,
    LoginError,
    LoginFailure,
    OrderNotFoundError,
    RateLimitedError,
    RefreshTokenError,
    TokenError,
    TransientBrokerError,
    error_from_envelope,
    login_failure_for,
)
from actors.angel.factories import AngelEndpoints, connect
from actors.angel.sdk import SmartApiGateway, sdk_exceptions
from cluster.errors import ShardlineError


@pytest.mark.parametrize(
    ("answer", "kind", "code"),
    [
        (
            {"status": False, "message": "Invalid Token", "errorcode": "AG8001", "data": None},
            TokenError,
            "AG8001",
        ),
        (
            {"success": False, "message": "Invalid Token", "errorCode": "AG8001", "data": ""},
            TokenError,
            "AG8001",
        ),
        ({"status": False, "message": "Token Expired", "errorcode": "AG8002"}, TokenError, "AG8002"),
        ({"status": False, "message": "AMX Session Expired", "errorcode": "AB1010"}, TokenError, "AB1010"),
        (
            {"status": False, "message": "Invalid Refresh Token", "errorcode": "AB8050"},
            RefreshTokenError,
            "AB8050",
        ),
        (
            {"status": False, "message": "Refresh Token Expired", "errorcode": "AB8051"},
            RefreshTokenError,
            "AB8051",
        ),
        (
            {"status": False, "message": "Something Went Wrong", "errorcode": "AB1004"},
            TransientBrokerError,
            "AB1004",
        ),
        (
            {"status": False, "message": "Order not found", "errorcode": "AB1013"},
            OrderNotFoundError,
            "AB1013",
        ),
        (
            {"status": False, "message": "Symbol Not Found", "errorcode": "AB1009"},
            BrokerRejectedError,
            "AB1009",
        ),
        (
            {"status": False, "message": "Invalid API Key", "errorcode": "AG8004"},
            BrokerRejectedError,
            "AG8004",
        ),
        ({"status": False, "message": "", "errorcode": "AB9999"}, BrokerRejectedError, "AB9999"),
        (
            {"status": False, "message": "Access denied because of exceeding access rate"},
            RateLimitedError,
            "",
        ),
        ("Access denied because of exceeding access rate", RateLimitedError, ""),
        (b"Access denied because of exceeding access rate", RateLimitedError, ""),
        ("<html>Bad Gateway</html>", BrokerResponseError, ""),
        (None, BrokerResponseError, ""),
    ],
)
def test_envelopes_become_typed_errors(answer: object, kind: type[AngelError], code: str) -> None:
    err = error_from_envelope("placeOrder", answer)
    assert type(err) is kind
    assert err.code == code
    assert isinstance(err, ShardlineError)
    assert str(err).startswith("Angel One placeOrder failed: ")


def test_error_keeps_the_brokers_words() -> None:
    err = error_from_envelope(
        "cancelOrder 42", {"status": False, "message": "Order not found", "errorcode": "AB1013"}
    )
    assert str(err) == "Angel One cancelOrder 42 failed: AB1013: Order not found"
    assert err.broker_message == "Order not found"


@pytest.mark.parametrize(
    ("code", "message", "reason"),
    [
        ("AB1050", "Invalid totp", LoginFailure.BAD_TOTP),
        ("AB1007", "Invalid client code or PIN", LoginFailure.WRONG_PIN),
        ("AB1007", "YOUR USER ID OR PASSWORD IS INVALID", LoginFailure.WRONG_PIN),
        ("AB1000", "Invalid Email Or Password", LoginFailure.WRONG_PIN),
        ("AG8004", "Invalid API Key", LoginFailure.INVALID_API_KEY),
        ("AB1006", "Client is block for trading", LoginFailure.UNKNOWN),
    ],
)
def test_login_failure_reasons(code: str, message: str, reason: LoginFailure) -> None:
    assert login_failure_for(code, message) is reason


def test_login_error_message_says_why() -> None:
    err = LoginError(LoginFailure.WRONG_PIN, "AB1007", "Invalid client code or PIN", " (check ANGEL_PIN)")
    assert str(err) == (
        "Angel One login failed (wrong client code or PIN): "
        "AB1007 Invalid client code or PIN (check ANGEL_PIN)"
    )


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> SmartApiGateway:
    return SmartApiGateway("key", "http://127.0.0.1:9", tmp_path_factory.mktemp("sdk"))


@pytest.mark.parametrize(
    ("exception", "kind"),
    [
        (
            "DataException",
            RateLimitedError,
        ),
        ("TokenException", TokenError),
        ("NetworkException", TransientBrokerError),
        ("OrderException", BrokerRejectedError),
    ],
)
def test_sdk_exceptions_become_typed_errors(
    gateway: SmartApiGateway, exception: str, kind: type[AngelError]
) -> None:
    message = (
        "Couldn't parse the JSON response received from the server: "
        "b'Access denied because of exceeding access rate'"
        if exception == "DataException"
        else "refused"
    )
    err = gateway._from_sdk_exception("quote", getattr(sdk_exceptions(), exception)(message))
    assert type(err) is kind
    if kind is RateLimitedError:
        assert err.broker_message == "Access denied because of exceeding access rate"


def test_sdk_keeps_its_logs_out_of_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    SmartApiGateway("key", "http://127.0.0.1:9", tmp_path / "data" / "sdk-logs")
    assert not (tmp_path / "logs").exists()
    assert (tmp_path / "data" / "sdk-logs").is_dir()


async def test_unreachable_broker_is_a_transient_error(gateway: SmartApiGateway) -> None:
    with pytest.raises(TransientBrokerError, match="ConnectionError") as err:
        await gateway.call("getOrderBook", "orderBook")
    assert err.value.code == "NETWORK"


async def test_an_unreachable_broker_is_not_called_a_refused_login(tmp_path: Path) -> None:
    creds = AngelCredentials(client_code="A1", api_key="k", pin="1", totp_secret=pyotp.random_base32())
    conn = connect(
        creds, AngelEndpoints("http://127.0.0.1:9", "ws://127.0.0.1:9", "ws://127.0.0.1:9"), tmp_path
    )
    try:
        with pytest.raises(TransientBrokerError, match="NETWORK"):
            await conn.auth.ensure_session()
    finally:
        await conn.close()


@pytest.mark.parametrize(
    "error",
    [
        BrokerRejectedError("getCandleData", "AB1009", "Symbol not found"),
        TokenError("placeOrder", "AG8001", "Invalid Token"),
        RateLimitedError("ltpData", "", "Access denied because of exceeding access rate"),
        LoginError(LoginFailure.BAD_TOTP, "AB1050", "Invalid totp", " (check the clock)"),
    ],
)
def test_errors_cross_a_process_boundary_typed_and_whole(error: AngelError) -> None:
    # Ray pickles an actor's exception for its caller; one that cannot be rebuilt arrives untyped.
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error)
    assert (str(again), again.code, again.broker_message) == (str(error), error.code, error.broker_message)
