"""Model providers: OpenAI chat completions, Anthropic messages, and offline."""

from __future__ import annotations

import os
from collections.abc import Mapping

from agent.providers.base import (
    DEFAULT_MAX_TOKENS,
    KEY_ENV,
    ModelRequest,
    ModelResponse,
    Provider,
    RetryPolicy,
    call_with_retries,
)
from cluster.errors import ConfigError

PROVIDERS = ("openai", "anthropic", "offline")
DEFAULT_API_MODE = {
    "openai": "chat_completions",
    "anthropic": "anthropic_messages",
    "offline": "offline",
}


def make_provider(
    *,
    provider: str,
    api_key: str | None,
    base_url: str | None,
    api_mode: str | None = None,
    timeout: float = 120.0,
    environ: Mapping[str, str] | None = None,
) -> Provider:
    """Build the provider named ``provider`` (no network call is made).

    Raises:
        ConfigError: unknown provider or api mode, or a missing api key.
    """
    if provider not in PROVIDERS:
        raise ConfigError(f"provider must be one of {', '.join(PROVIDERS)}, got {provider!r}")
    mode = api_mode or DEFAULT_API_MODE[provider]
    if mode != DEFAULT_API_MODE[provider]:
        raise ConfigError(
            f"api_mode {mode!r} does not fit provider {provider!r}; use "
            f"{DEFAULT_API_MODE[provider]!r}"
        )
    if provider == "offline":
        from agent.providers.offline import OfflineProvider

        return OfflineProvider()
    env = os.environ if environ is None else environ
    key = api_key or env.get(KEY_ENV[provider])
    if not key:
        raise ConfigError(
            f"provider {provider!r} needs an api key: pass api_key or set {KEY_ENV[provider]} "
            "in the worker's environment"
        )
    if provider == "openai":
        from agent.providers.openai_chat import OpenAIChatProvider

        return OpenAIChatProvider(api_key=key, base_url=base_url, timeout=timeout)
    from agent.providers.anthropic_messages import AnthropicMessagesProvider

    return AnthropicMessagesProvider(api_key=key, base_url=base_url, timeout=timeout)


__all__ = [
    "DEFAULT_API_MODE",
    "DEFAULT_MAX_TOKENS",
    "KEY_ENV",
    "PROVIDERS",
    "ModelRequest",
    "ModelResponse",
    "Provider",
    "RetryPolicy",
    "call_with_retries",
    "make_provider",
]
