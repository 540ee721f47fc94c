"""Translate the official SDKs' exceptions into the project's ProviderError family.

Both SDKs raise an ``APIStatusError`` with a ``status_code`` for HTTP errors and
``APIConnectionError`` (``APITimeoutError`` is a subclass) for transport
failures, so one function serves both.
"""

from __future__ import annotations

from typing import Any

from cluster.errors import ProviderAuthError, ProviderBadRequest, ProviderError

RETRYABLE_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))


def translate_sdk_error(exc: Exception, *, provider: str, sdk: Any, key_env: str) -> ProviderError:
    """Return the ProviderError that says what went wrong and what to do.

    Args:
        exc: the exception the SDK raised.
        provider: "openai" or "anthropic", named in the message.
        sdk: the SDK module (``openai`` or ``anthropic``) whose classes to match.
        key_env: the environment variable that holds this provider's api key.
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
    if isinstance(exc, sdk.APIConnectionError):
        kind = "timed out" if isinstance(exc, sdk.APITimeoutError) else "connection failed"
        return ProviderError(f"{provider} {kind}: {_short(exc)}", provider=provider, retryable=True)
    return ProviderError(f"{provider} call failed: {exc!r}", provider=provider, retryable=False)


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) <= 300 else text[:300] + "..."
