"""Issue 21.1 and 21.6 on worker processes and real Redis, against the provider simulator.

A long session in a small context window is compressed instead of refused; a
session moved (kill -9 or drain) right after a compression continues on the
same compressed prefix, so the provider's cache keeps hitting; a push of
``model.max_tokens`` rebuilds agents that reuse the stored frozen prompt.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import redis

from agent.compression import (
    SUMMARY_REQUEST_MARK,
    CompressionSettings,
    effective_history,
    is_summary,
    plan_compression,
)
from agent.simulator import Fault, ProviderSimulator
from cluster.keys import Keyspace
from cluster.session_store import RedisSessionStore
from cluster.versions import RedisVersionStore
from coordinator.ingress import Reply
from tests.conftest import sim_config, sim_endpoints_env
from tests.support.fleet import Fleet, coordinator

pytestmark = pytest.mark.integration

WINDOW = 4000  # simulator tokens; the frozen prompt (system + tool schemas) takes ~1600
STEP = 128  # the simulator's OpenAI cache granularity
TEXT = "we compare tram lines, tile museums and bakeries in Lisbon for three days " * 7


SETTINGS = CompressionSettings(
    context_length=WINDOW, threshold=0.75, target_ratio=0.5, protect_last_n=1
)


def compressing_config(**model: Any) -> dict[str, Any]:
    config = sim_config(context_length=WINDOW, **model)
    config["compression"] = {
        "enabled": True,
        "threshold": SETTINGS.threshold,
        "target_ratio": SETTINGS.target_ratio,
        "protect_last_n": SETTINGS.protect_last_n,
    }
    return config


def compresses_next(store: RedisSessionStore, session: str, text: str) -> bool:
    """Whether the session's next turn with ``text`` starts with a compression (the policy)."""
    stored = store.load(session)
    assert stored.frozen_prompt is not None
    plan = plan_compression(
        SETTINGS,
        system=stored.frozen_prompt.system_prompt,
        tools=stored.frozen_prompt.tool_schemas,
        history=effective_history(stored.history),
        message={"role": "user", "content": text},
    )
    return plan is not None


def publish(client: redis.Redis, namespace: str, config: dict[str, Any]) -> None:
    RedisVersionStore(client, Keyspace(namespace), max_config_bytes=1 << 20).publish_config(config)


def prompt_tokens(reply: Reply) -> int:
    usage = reply.raw["usage"]
    return int(usage["input_tokens"] + usage["cache_read_tokens"] + usage["cache_write_tokens"])


def last_request(sim: ProviderSimulator) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(sim.recorded_requests()[-1].body)
    return body


def test_a_long_session_in_a_small_window_is_compressed_and_never_refused(
    workers: Fleet, redis_client: redis.Redis, namespace: str
) -> None:
    with ProviderSimulator(context_window=WINDOW) as sim:
        workers.env.update(sim_endpoints_env(sim))
        publish(redis_client, namespace, compressing_config())
        workers.start("w1")
        with coordinator(workers.settings()) as coord:
            replies = [coord.submit("long", f"turn {i}: {TEXT}", timeout=30) for i in range(24)]
        refused = sim.stats()["total"]["errors"]
    assert all(r.text.startswith(f"echo: turn {i}:") for i, r in enumerate(replies))
    assert refused == 0, "no request passed the simulated context window"
    compressed = [i for i, r in enumerate(replies) if r.raw["compressed"]]
    assert len(compressed) >= 2, f"compressed at turns {compressed}"
    stored = RedisSessionStore(redis_client, Keyspace(namespace)).load("long").history
    users = [m["content"] for m in stored if m["role"] == "user" and not is_summary(m)]
    assert users == [f"turn {i}: {TEXT}" for i in range(24)], "the full history stays readable"
    assert sum(len(str(m["content"])) for m in stored) // 4 > WINDOW, "it would not fit whole"
    assert sum(is_summary(m) for m in stored) == len(compressed)


@pytest.mark.parametrize("move", ["kill -9", "drain"])
def test_a_session_moved_after_a_compression_hits_the_cache_on_its_first_turn_elsewhere(
    move: str, workers: Fleet, redis_client: redis.Redis, namespace: str
) -> None:
    with ProviderSimulator(context_window=WINDOW) as sim:
        workers.env.update(sim_endpoints_env(sim))
        publish(redis_client, namespace, compressing_config())
        workers.start("w1")
        workers.start("w2")
        with coordinator(workers.settings()) as coord:
            replies: list[Reply] = []
            while not (replies and replies[-1].raw["compressed"]):
                assert len(replies) < 30, "never compressed"
                replies.append(coord.submit("moving", f"turn {len(replies)}: {TEXT}", timeout=30))
            compressed = replies[-1]
            before = last_request(sim)["messages"]
            owner = compressed.worker_id
            if move == "kill -9":
                workers.kill(owner)
            else:
                assert workers.terminate(owner) == 0
            moved = coord.submit("moving", "and after the move?", timeout=60)
        after = last_request(sim)["messages"]
    survivor = {"w1", "w2"} - {owner}
    assert moved.worker_id in survivor and not moved.cache_hit, "built on the other worker"
    assert moved.raw["compressed"] == 0
    # Byte-identical prefix: the previous call's messages, then its reply, then the new one.
    assert after[: len(before)] == before
    assert after[len(before)]["content"] == compressed.text
    assert after[len(before) + 1]["content"] == "and after the move?"
    # So the provider reads the whole previous prompt (summary included) from its cache.
    stored = RedisSessionStore(redis_client, Keyspace(namespace)).load("moving").history
    view = effective_history(stored)
    assert is_summary(view[0])
    compressed_call = view[-3]  # the compressed turn's reply: the prompt size it was sent with
    assert compressed_call["content"] == compressed.text
    assert moved.raw["usage"]["cache_read_tokens"] >= compressed_call["prompt_tokens"] - STEP


def test_a_worker_killed_during_the_summary_call_leaves_the_turn_to_a_survivor_which_compresses(
    workers: Fleet, redis_client: redis.Redis, namespace: str
) -> None:
    store = RedisSessionStore(redis_client, Keyspace(namespace))
    with ProviderSimulator(context_window=WINDOW) as sim:
        workers.env.update(sim_endpoints_env(sim))
        publish(redis_client, namespace, compressing_config())
        workers.start("w1")
        workers.start("w2")
        with coordinator(workers.settings()) as coord:
            texts = [f"turn {i}: {TEXT}" for i in range(30)]
            owner = coord.submit("crash", texts[0], timeout=30).worker_id
            sent = 1
            while not compresses_next(store, "crash", texts[sent]):
                assert coord.submit("crash", texts[sent], timeout=30).raw["compressed"] == 0
                sent += 1
            sim.inject_faults(Fault.slow(60.0))  # the summary call hangs on the owner
            handle = coord.submit_async("crash", texts[sent])
            deadline = time.monotonic() + 30
            while not any(SUMMARY_REQUEST_MARK.encode() in r.body for r in sim.recorded_requests()):
                assert time.monotonic() < deadline, "the summary call was never made"
                time.sleep(0.01)
            workers.kill(owner)
            reply = handle.result(timeout=60)
            after = coord.submit("crash", "after the crash", timeout=30)
    assert reply.worker_id != owner and reply.raw["compressed"] > 0
    stored = store.load("crash").history
    assert sum(is_summary(m) for m in stored) == 1, "one compression, committed once"
    users = [m["content"] for m in stored if m["role"] == "user" and not is_summary(m)]
    assert users == [*texts[: sent + 1], "after the crash"], "each message once, in order"
    assert after.raw["usage"]["cache_read_tokens"] > 0 and after.raw["compressed"] == 0


def test_a_max_tokens_push_rebuilds_agents_on_their_stored_prompt_and_keeps_the_cache(
    workers: Fleet, redis_client: redis.Redis, namespace: str
) -> None:
    note = '!tool memory {"action": "add", "text": "the family prefers trams to taxis"}'
    with ProviderSimulator() as sim:
        workers.env.update(sim_endpoints_env(sim))
        publish(redis_client, namespace, sim_config(max_tokens=1024))
        workers.start("w1")
        with coordinator(workers.settings()) as coord:
            coord.submit("pushed", note, timeout=30)  # the note is in tool state, not the prompt
            warm = coord.submit("pushed", "hello", timeout=30)
            system = last_request(sim)["messages"][0]["content"]
            publish(redis_client, namespace, sim_config(max_tokens=2048))
            after_push = coord.submit("pushed", "after the push", timeout=30)
            request = last_request(sim)
            publish(
                redis_client,
                namespace,
                {
                    **sim_config(max_tokens=2048),
                    "agent": {"ephemeral_system_prompt": "Answer in Portuguese."},
                },
            )
            rewritten = coord.submit("pushed", "after the prompt push", timeout=30)
            new_system = last_request(sim)["messages"][0]["content"]
    assert not after_push.cache_hit, "the push rebuilt the agent"
    assert request["max_completion_tokens"] == 2048
    assert request["messages"][0]["content"] == system, "the stored frozen prompt, unchanged"
    assert "trams" not in system
    assert after_push.raw["usage"]["cache_read_tokens"] >= prompt_tokens(warm) - STEP
    # A push of what builds the prompt writes a new one (with the memory note by now).
    assert not rewritten.cache_hit
    assert new_system != system and "trams" in new_system and "Portuguese" in new_system
