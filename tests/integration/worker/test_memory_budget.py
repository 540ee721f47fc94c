"""A worker process with a memory budget keeps its RSS near it by soft-releasing agents.

The budget is set a little above the worker's own idle RSS (measured on a
worker without a budget first, on this machine, after one turn). Sessions with long
messages then fill the cache: without a budget the transcripts would take
the process about 0.4 MiB per session past it (120 sessions: ~50 MiB more);
with it, the RSS stays within 10% of the budget, the agents that went were
soft-released (a shed session's next turn continues its history, and its
persisted tool state is still there), and the health record shows the
budget, the RSS and the agents shed.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from cluster.health_record import HealthRecord
from cluster.keys import Keyspace
from tests.conftest import RedisServer
from tests.support.fleet import Fleet, coordinator, fleet, user_texts

pytestmark = pytest.mark.integration

SESSIONS = 120
MESSAGE_BYTES = 200_000
HEADROOM_MIB = 24
SLACK = 1.10


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _idle_rss(workers: Fleet) -> int:
    """The RSS of a worker that has served one short turn, once it holds still.

    The turn loads what a first turn loads (the model client, the tools); the
    reading is taken when three in a row, 0.2 s apart, agree within 1%. A
    fixed 1 s pause after start once read 51 MiB on a loaded CI machine where
    a settled worker holds 63 MiB, and every worker then ran 8 MiB over the
    budget built on it.
    """
    proc = workers.start("probe")
    with coordinator(workers.settings()) as coord:
        assert coord.submit("warm", "hello").worker_id == "probe"
    readings = [_rss(proc.pid)]
    deadline = time.monotonic() + 20
    while len(readings) < 3 or max(readings[-3:]) > min(readings[-3:]) * 1.01:
        assert time.monotonic() < deadline, f"the probe's RSS never settled: {readings[-5:]}"
        time.sleep(0.2)
        readings.append(_rss(proc.pid))
    assert workers.terminate("probe") == 0
    return max(readings[-3:])


def _health(client: redis.Redis, namespace: str, worker_id: str) -> HealthRecord:
    raw = client.hget(Keyspace(namespace).worker_health(worker_id), "record")
    assert raw is not None
    record = HealthRecord.from_json(raw)
    assert record is not None
    return record


def test_rss_stays_near_the_budget_and_shed_agents_resume_intact(
    redis_server: RedisServer, redis_client: redis.Redis, namespace: str, tmp_path: Path
) -> None:
    with fleet(redis_server.url, namespace, tmp_path) as workers:
        budget = _idle_rss(workers) + HEADROOM_MIB * 1024**2
        proc = workers.start("m0", env={"AGENT_CLUSTER_AGENT_CACHE_MEMORY": str(budget)})
        peak = 0
        with coordinator(workers.settings()) as coord:
            first = coord.submit("s0", '!tool todo {"action": "add", "text": "keep me"}')
            assert first.raw["turn"] == 1
            for i in range(SESSIONS):
                reply = coord.submit(f"s{i}", f"{i} " + "x" * MESSAGE_BYTES, timeout=60)
                assert reply.worker_id == "m0"
                peak = max(peak, _rss(proc.pid))
            done = time.time()
            deadline = time.monotonic() + 10
            while (health := _health(redis_client, namespace, "m0")).written_at < done + 0.3:
                assert time.monotonic() < deadline, "no health record after the last turn"
                time.sleep(0.05)  # a heartbeat (0.5 s) after a memory check (0.25 s)
            assert health.memory_budget_bytes == budget
            assert 0 < health.memory_rss_bytes <= budget * SLACK
            assert health.cache_memory_evictions > 0
            assert health.cache_size < SESSIONS  # agents went, not because of the cap (128)

            # s0 was the least recently used: shed long ago, softly.
            again = coord.submit("s0", "still there?")
            assert again.raw["turn"] == 3 and not again.cache_hit
        assert peak <= budget * SLACK, (
            f"peak RSS {peak / 1024**2:.1f} MiB over the budget {budget / 1024**2:.1f} MiB "
            f"+ {SLACK - 1:.0%}"
        )
        texts = user_texts(redis_client, namespace, "s0")
        assert len(texts) == 3 and texts[-1] == "still there?"
        todo = redis_client.hget(Keyspace(namespace).tool_state("s0"), "todo")
        assert todo is not None and b"keep me" in todo  # soft release: tool state untouched
