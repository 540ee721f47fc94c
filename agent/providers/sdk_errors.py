"""Translate the official SDKs' exceptions into the project's ProviderError family.

Both SDKs raise an ``APIStatusError`` with a ``status_code`` for HTTP errors and
``APIConnectionError`` (``APITimeoutError`` is a subclass) for transport
failures, so one function serves both.
"""

from __future__ import annotations

from typing import Any

from cluster.errors import (
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderTimeout,
    ProviderUnreachable,
)

RETRYABLE_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))


def translate_sdk_error(
    exc: Exception, *, provider: str, sdk: Any, key_env: str, base_url: str | None = None
) -> ProviderError:
    """Return the ProviderError that says what went wrong and what to do.

    Args:
        exc: the exception the SDK raised.
        provider: "openai" or "anthropic", named in the message.
        sdk: the SDK module (``openai`` or ``anthropic``) whose classes to match.
        key_env: the environment variable that holds this provider's api key.
        base_url: the endpoint called (``None``: the SDK's default), named when
            no connection could be made.
    """
    if isinstance(exc, sdk.APIStatusError):
        status = int(exc.status_code)
        detail = _short(exc)
        if status in (401, 403):
            return ProviderAuthError(
                f"{provider} rejected the credentials (HTTP {status}: {detail}). "
                f"Check the api key ({key_env}) and that it may use this model.",
                provider=provider,
            )
        if status in RETRYABLE_STATUS:
            return ProviderError(
                f"{provider} HTTP {status}: {detail}", provider=provider, retryable=True
            )
        return ProviderBadRequest(
            f"{provider} rejected the request (HTTP {status}: {detail}). "
            "Check the model name, base_url and request parameters.",
            provider=provider,
        )
    if isinstance(exc, sdk.APITimeoutError):
        return ProviderTimeout(
            f"{provider} timed out ({_endpoint(base_url)}): {_short(exc)}",
            provider=provider,
            retryable=True,
        )
    if isinstance(exc, sdk.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        reason = f"{type(cause).__name__}: {_short(cause)}" if cause is not None else _short(exc)
        return ProviderUnreachable(
            f"{provider}: cannot connect to {_endpoint(base_url)} ({reason}). Check "
            "the base_url of the endpoint the workers declare (setting endpoints) and that the "
            "server is up",
            provider=provider,
            retryable=True,
        )
    return ProviderError(f"{provider} call failed: {exc!r}", provider=provider, retryable=False)


def _endpoint(base_url: str | None) -> str:
    return base_url if base_url else "the provider's default endpoint"


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 300 else text[:300] + "..."
