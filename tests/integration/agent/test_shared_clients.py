"""Agents share one SDK client per endpoint and key; one agent's release or interrupt spares others.

Real HTTP through the official SDKs against the provider simulator.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from agent import AIAgent
from agent.providers.clients import SharedClients
from agent.simulator import ProviderSimulator
from agent.tools import ToolEnvironment

pytestmark = pytest.mark.integration


def agent(
    sim: ProviderSimulator,
    tool_env: ToolEnvironment,
    session: str,
    provider: str = "openai",
    **kw: Any,
) -> AIAgent:
    return AIAgent(
        model="sim-gpt" if provider == "openai" else "sim-claude",
        api_key=kw.pop("api_key", "sk-test-shared-0123456789"),
        base_url=sim.openai_base_url if provider == "openai" else sim.anthropic_base_url,
        provider=provider,
        session_id=session,
        tool_env=tool_env,
        skip_context_files=True,
        **kw,
    )


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_agents_of_one_endpoint_and_key_share_one_client(
    sim: ProviderSimulator, tool_env: ToolEnvironment, provider: str
) -> None:
    first = agent(sim, tool_env, "a", provider)
    second = agent(sim, tool_env, "b", provider)
    other_key = agent(sim, tool_env, "c", provider, api_key="sk-test-another-key-987654")
    assert first.client is second.client
    assert other_key.client is not first.client


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_one_agents_release_does_not_close_the_shared_client(
    sim: ProviderSimulator, tool_env: ToolEnvironment, provider: str
) -> None:
    first = agent(sim, tool_env, "a", provider)
    second = agent(sim, tool_env, "b", provider)
    first.run_conversation("hello")
    first.release_clients()
    assert first.client is None
    assert second.client is not None
    assert "still here" in second.run_conversation("still here").text
    # The released agent takes the client again for its next turn.
    assert "back again" in first.run_conversation("back again").text
    assert first.client is second.client


def test_an_interrupt_cuts_only_its_own_call_on_the_shared_client(
    sim: ProviderSimulator, tool_env: ToolEnvironment
) -> None:
    sim.set_latency(ttft=1.0, tokens_per_second=None)
    stuck = agent(sim, tool_env, "stuck")
    neighbour = agent(sim, tool_env, "neighbour")
    assert stuck.client is neighbour.client
    results: dict[str, Any] = {}
    calling = threading.Event()

    def run(which: AIAgent, name: str) -> None:
        calling.set()
        results[name] = which.run_conversation(f"message of {name}")

    threads = [
        threading.Thread(target=run, args=(stuck, "stuck")),
        threading.Thread(target=run, args=(neighbour, "neighbour")),
    ]
    for thread in threads:
        thread.start()
    calling.wait()
    while len(sim.recorded_requests()) < 2:  # both calls are on the wire
        threading.Event().wait(0.01)
    stuck.interrupt("user pressed stop")
    threads[0].join(timeout=0.8)  # before the simulator's first token
    assert not threads[0].is_alive(), "the interrupted call still waits for the model"
    assert results["stuck"].interrupted
    threads[1].join()
    assert not results["neighbour"].interrupted
    assert "message of neighbour" in results["neighbour"].text


def test_clients_nobody_holds_are_closed_past_the_idle_cap() -> None:
    clients = SharedClients(idle_cap=1)
    closed: list[str] = []
    made: list[str] = []

    class Client:
        def __init__(self, name: str) -> None:
            self.name = name
            made.append(name)

        def close(self) -> None:
            closed.append(self.name)

    from agent.providers.clients import ClientKey

    refs = [
        clients.acquire(
            ClientKey.of("openai", f"http://h{i}", "sk", 5.0), lambda _http, i=i: Client(f"c{i}")
        )
        for i in range(3)
    ]
    again = clients.acquire(
        ClientKey.of("openai", "http://h0", "sk", 5.0), lambda _http: Client("new")
    )
    assert again.client is refs[0].client  # held: shared, not rebuilt
    for ref in refs:
        ref.release()
    ref_twice = refs[1]
    ref_twice.release()  # idempotent
    # h0 is still held by `again`; h1 then h2 became idle; the cap keeps the newest one.
    assert closed == ["c1"]
    assert len(made) - len(closed) == 2, "two clients stay open"


def test_an_endpoint_gets_one_more_client_per_so_many_agents() -> None:
    from agent.providers.clients import ClientKey

    clients = SharedClients(agents_per_client=2)
    built: list[int] = []
    closed: list[int] = []

    class Client:
        def close(self) -> None:
            closed.append(1)

    def build(_http: object) -> Client:
        built.append(1)
        return Client()

    key = ClientKey.of("openai", "http://h", "sk", 5.0)
    refs = [clients.acquire(key, build) for _ in range(5)]
    assert len(built) == 3 and not closed, "three clients open"
    assert len({id(ref.client) for ref in refs}) == 3
    refs[0].release()
    refs[1].release()  # the first client is free again: the next agent takes it
    assert clients.acquire(key, build).client is refs[0].client
    assert len(built) == 3
