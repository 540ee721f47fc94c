"""Giving up on a model call says why: unreachable, timing out (total deadline), or failing."""

from __future__ import annotations

import random
import socket
from collections.abc import Callable

import pytest

from agent.providers import make_provider
from agent.providers.base import ModelRequest, RetryPolicy, call_with_retries
from cluster.errors import ProviderTimeout, ProviderUnavailable, ProviderUnreachable
from cluster.settings import ClusterSettings
from tests.fakes import FakeClock


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(("provider", "suffix"), [("openai", "/v1"), ("anthropic", "")])
def test_a_connection_failure_names_the_url_and_not_rate_limits(provider: str, suffix: str) -> None:
    url = f"http://127.0.0.1:{_closed_port()}{suffix}"
    client = make_provider(provider=provider, api_key="test-key", base_url=url, timeout=5)
    request = ModelRequest(
        model="m",
        system="s",
        tools=[],
        messages=[{"role": "user", "content": "hi"}],
        session_id="s",
    )
    with pytest.raises(ProviderUnreachable) as err:
        call_with_retries(
            lambda _timeout: client.complete(request),
            policy=RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0),
            provider=provider,
            sleep=lambda _s: None,
        )
    message = str(err.value)
    assert f"cannot connect to {url}" in message
    assert "base_url" in message and "gave up after 2 attempts" in message
    assert "rate limit" not in message


CLIENT_TIMEOUT = 120.0


def _timing_out(clock: FakeClock, offered: list[float | None]) -> Callable[[float | None], str]:
    """A provider that never answers: each try waits out its timeout (the client's, or less)."""

    def call(timeout: float | None) -> str:
        offered.append(timeout)
        clock.advance(CLIENT_TIMEOUT if timeout is None else min(timeout, CLIENT_TIMEOUT))
        raise ProviderTimeout(
            "openai timed out (http://sim/v1): Request timed out.",
            provider="openai",
            retryable=True,
        )

    return call


def test_a_provider_that_times_out_is_reported_as_timing_out_within_the_total_deadline() -> None:
    clock, offered = FakeClock(), []
    began = clock()
    with pytest.raises(ProviderUnavailable) as err:
        call_with_retries(
            _timing_out(clock, offered),
            policy=RetryPolicy(attempts=4, base_delay=0.5, deadline=300.0),
            provider="openai",
            sleep=clock.advance,
            rng=random.Random(1),
            clock=clock,
        )
    message = str(err.value)
    assert clock() - began <= 300.0, "the caller waited no longer than the deadline"
    assert len(offered) == 3 and offered[0] == 300.0 and offered[2] is not None
    assert offered[2] < CLIENT_TIMEOUT, "the last try only got what was left of the deadline"
    assert "gave up after 3 attempts in 300.0 s" in message
    assert "model_call_deadline 300 s" in message and "timed out after" in message
    assert "rate limiting" not in message and ".." not in message


def test_without_a_deadline_the_attempts_bound_the_call_and_the_timeout_is_named() -> None:
    clock, offered = FakeClock(), []
    with pytest.raises(ProviderUnavailable) as err:
        call_with_retries(
            _timing_out(clock, offered),
            policy=RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0, deadline=None),
            provider="openai",
            sleep=clock.advance,
            clock=clock,
        )
    assert offered == [None, None]
    assert "gave up after 2 attempts in 240.0 s: the last try timed out after 120.0 s" in str(
        err.value
    )


def test_the_default_policy_bounds_a_model_call_by_the_default_deadline() -> None:
    assert RetryPolicy().deadline == ClusterSettings().model_call_deadline <= 300.0
