"""Errors raised by the Layercode client, one class per thing a caller reacts to differently."""

from __future__ import annotations


class LayercodeError(Exception):
    """Base class of every error this library raises."""

    @property
    def needs_new_credentials(self) -> bool:
        """Only new credentials fix it: retrying with the same key cannot succeed."""
        return False


class LayercodeConnectionError(LayercodeError):
    """The server could not be reached, or the connection broke."""


class LayercodeTimeoutError(LayercodeConnectionError):
    """A network wait ran past its bound."""


class InvalidResponseError(LayercodeError):
    """The server answered with something that is not the protocol (bad JSON, missing field)."""


class AuthorizeError(LayercodeError):
    """The authorize endpoint refused the request; `status` is its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"Authorize failed with HTTP {status}: {message}")
        self.status = status
        self.message = message


class BadRequestError(AuthorizeError):
    """400: bad key, unknown agent or bad conversation id."""


class InvalidApiKeyError(AuthorizeError):
    """401: the API key (or the user's own backend) rejected the credentials."""

    @property
    def needs_new_credentials(self) -> bool:
        return True


class InsufficientBalanceError(AuthorizeError):
    """402: the Layercode account has no balance left."""


class AgentNotFoundError(AuthorizeError):
    """404: no agent with that id."""


class ConcurrencyLimitError(AuthorizeError):
    """429: too many sessions at once."""


class ServerError(AuthorizeError):
    """5xx: the authorize endpoint failed."""


_BY_STATUS: dict[int, type[AuthorizeError]] = {
    400: BadRequestError,
    401: InvalidApiKeyError,
    402: InsufficientBalanceError,
    404: AgentNotFoundError,
    429: ConcurrencyLimitError,
}


def authorize_error(status: int, message: str) -> AuthorizeError:
    """Build the typed error for an authorize failure."""
    if status >= 500:
        return ServerError(status, message)
    return _BY_STATUS.get(status, AuthorizeError)(status, message)


TRANSIENT_ERRORS: tuple[type[LayercodeError], ...] = (
    LayercodeConnectionError,
    ServerError,
    ConcurrencyLimitError,
)
"""Failures that may pass by themselves: retry later. Anything else needs the user."""


class SessionClosedError(LayercodeError):
    """The session is not connected, so the message could not be sent."""
