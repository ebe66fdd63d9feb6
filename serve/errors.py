"""Domain errors of the terminal service; `serve.api` maps each to one HTTP status, once."""

from __future__ import annotations

from cluster.errors import ShardlineError


class TerminalError(ShardlineError):
    """Base of the errors the service raises; ``status`` is the HTTP status it maps to."""

    status = 500
    code = "error"


class NotFound(TerminalError):
    status = 404
    code = "not_found"


class InvalidRequest(TerminalError):
    """Well-formed input the domain refuses (off-tick price, quantity not a lot multiple)."""

    status = 422
    code = "invalid_request"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Conflict(TerminalError):
    """The request no longer applies to the current state (cancel a filled order)."""

    status = 409
    code = "conflict"


class ServiceUnavailable(TerminalError):
    """A backing actor is not running or did not answer in time."""

    status = 503
    code = "unavailable"


class UpstreamFailed(TerminalError):
    """A backing actor raised something the terminal has no better name for."""

    status = 502
    code = "upstream_failed"
