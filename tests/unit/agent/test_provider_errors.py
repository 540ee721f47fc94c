"""A provider that cannot be reached is named with its URL, and rate limiting is not blamed."""

from __future__ import annotations

import socket

import pytest

from agent.providers import make_provider
from agent.providers.base import ModelRequest, RetryPolicy, call_with_retries
from cluster.errors import ProviderUnreachable


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(("provider", "suffix"), [("openai", "/v1"), ("anthropic", "")])
def test_a_connection_failure_names_the_url_and_not_rate_limits(provider: str, suffix: str) -> None:
    url = f"http://127.0.0.1:{_closed_port()}{suffix}"
    client = make_provider(provider=provider, api_key="test-key", base_url=url, timeout=5)
    request = ModelRequest(
        model="m", system="s", tools=[], messages=[{"role": "user", "content": "hi"}], session_id="s"
    )
    with pytest.raises(ProviderUnreachable) as err:
        call_with_retries(
            lambda: client.complete(request),
            policy=RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0),
            provider=provider,
            sleep=lambda _s: None,
        )
    message = str(err.value)
    assert f"cannot connect to {url}" in message
    assert "base_url" in message and "gave up after 2 attempts" in message
    assert "rate limit" not in message
