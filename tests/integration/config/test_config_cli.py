"""`agent-cluster config|registry|mcp` against real Redis and real worker processes.

Each test starts its own worker processes (tests/support/fleet.py)
and drives the command line as an operator would; agent builds are counted by
the replies' ``cache_hit`` (False: the worker built a new agent for the turn).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cluster.keys import Keyspace
from cluster.versions import RedisVersionStore
from coordinator.ingress import Coordinator
from tests.conftest import RedisServer
from tests.support.fleet import Fleet, coordinator, fleet

pytestmark = pytest.mark.integration

WORKERS = ("w1", "w2", "w3")
SESSIONS = [f"chat-{i}" for i in range(12)]
MCP_SERVER = Path(__file__).parents[1] / "agent" / "tools" / "mcp_server.py"


@pytest.fixture
def workers(redis_server: RedisServer, namespace: str, tmp_path: Path) -> Iterator[Fleet]:
    with fleet(redis_server.url, namespace, tmp_path) as made:
        for worker in WORKERS:
            made.start(worker, concurrency=4, wait=False)
        for worker in WORKERS:
            made.wait_live(worker)
        yield made


def cli(workers: Fleet, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "coordinator.cli",
            *args,
            "--redis-url",
            workers.redis_url,
            "--namespace",
            workers.namespace,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=workers.env,
    )


def push(
    workers: Fleet, tmp_path: Path, text: str, name: str = "cluster.yaml"
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / name
    path.write_text(text)
    return cli(workers, "config", "push", str(path))


def turn_round(coord: Coordinator, text: str = "hello") -> dict[str, tuple[bool, str]]:
    """One turn of every session: session -> (cache hit, worker)."""
    handles = {s: coord.submit_async(s, text) for s in SESSIONS}
    return {s: (h.result(30).cache_hit, h.result(30).worker_id) for s, h in handles.items()}


def builds(replies: dict[str, tuple[bool, str]]) -> int:
    return sum(1 for hit, _ in replies.values() if not hit)


BASE = "agent:\n  max_iterations: 5\nmodel:\n  max_tokens: 800\n"


def test_pushes_bust_exactly_what_they_change_and_bad_pushes_change_nothing(
    workers: Fleet, redis_client: redis.Redis, tmp_path: Path
) -> None:
    store = RedisVersionStore(redis_client, Keyspace(workers.namespace))
    first = push(workers, tmp_path, BASE)
    assert first.returncode == 0, first.stderr
    assert "config version 1 published" in first.stdout
    with coordinator(workers.settings()) as coord:
        warm = turn_round(coord)
        assert {worker for _, worker in warm.values()} == set(WORKERS), "sessions spread"
        assert builds(turn_round(coord)) == 0, "second turn reuses every agent"

        # A non-busting edit (the tool-loop bound is set per turn) rebuilds none.
        assert push(workers, tmp_path, BASE.replace("5", "6")).returncode == 0
        assert builds(turn_round(coord)) == 0

        # A busting edit: every worker's next turn of every session builds a new agent.
        busting = BASE.replace("5", "6").replace("800", "900")
        assert push(workers, tmp_path, busting).returncode == 0
        replies = turn_round(coord)
        assert builds(replies) == len(SESSIONS)
        assert {worker for _, worker in replies.values()} == set(WORKERS)
        assert builds(turn_round(coord)) == 0

        # Invalid and secret-holding pushes: one line, exit 2, nothing stored or announced.
        before = (store.versions(), store.history(), store.current_config())
        invalid = push(workers, tmp_path, BASE.replace("800", "many"), "bad.yaml")
        assert invalid.returncode == 2
        assert invalid.stderr.strip() == (
            "error: model.max_tokens must be a whole number >= 1 or null, got 'many' (bad.yaml "
            "line 4)"
        )
        secret = push(
            workers,
            tmp_path,
            "model:\n  default: m\n  api_key: sk-proj-abcdefghijklmnopqrstuvwxyz\n",
        )
        assert secret.returncode == 2 and "model.api_key is named like a secret" in secret.stderr
        assert "sk-proj" not in secret.stderr
        assert "Traceback" not in invalid.stderr + secret.stderr
        assert (store.versions(), store.history(), store.current_config()) == before
        assert builds(turn_round(coord)) == 0

        # Rollback to version 1: its document comes back as version 4, and it busts.
        rollback = cli(workers, "config", "rollback", "1")
        assert rollback.returncode == 0, rollback.stderr
        assert store.current_config() == (4, store.config_at(1))
        assert builds(turn_round(coord)) == len(SESSIONS)

        # A registry bump rebuilds every agent too.
        bump = cli(workers, "registry", "bump", "--reason", "test")
        assert bump.returncode == 0 and "registry generation 1" in bump.stdout
        assert builds(turn_round(coord)) == len(SESSIONS)

    history = cli(workers, "config", "history")
    assert history.returncode == 0
    rows = [
        line for line in history.stdout.splitlines() if line.startswith("| ") and line[2].isdigit()
    ]
    assert [row.split("|")[1].strip() for row in rows] == ["4 (current)", "3", "2", "1"]
    assert "rollback to 1" in rows[0]
    diff = cli(workers, "config", "diff", "2", "3")
    assert diff.stdout.strip() == "~ model.max_tokens: 800 -> 900"
    show = cli(workers, "config", "show", "--version", "2", "--json")
    assert json.loads(show.stdout) == {"agent": {"max_iterations": 6}, "model": {"max_tokens": 800}}


def test_without_the_announcement_the_turn_start_check_still_prevents_stale_agents(
    workers: Fleet, redis_client: redis.Redis, tmp_path: Path
) -> None:
    keys = Keyspace(workers.namespace)
    assert push(workers, tmp_path, BASE).returncode == 0
    with coordinator(workers.settings()) as coord:
        turn_round(coord)
        assert builds(turn_round(coord)) == 0
        # The new version is stored but never announced: no subscriber hears anything.
        redis_client.set(keys.config_doc(), json.dumps({"model": {"max_tokens": 500}}))
        redis_client.incr(keys.config_version())
        replies = turn_round(coord)
        assert builds(replies) == len(SESSIONS), "every turn noticed the version and rebuilt"
        assert builds(turn_round(coord)) == 0
        redis_client.incr(keys.registry_generation())
        assert builds(turn_round(coord)) == len(SESSIONS)


def test_an_empty_document_and_unconfirmed_removals_are_refused_and_change_nothing(
    redis_server: RedisServer, namespace: str, tmp_path: Path, redis_client: redis.Redis
) -> None:
    """Issue 17.4: `config push empty.yaml` published a version that removed every key."""
    made = Fleet(redis_server.url, namespace, tmp_path)  # the CLI's environment; no worker needed
    store = RedisVersionStore(redis_client, Keyspace(namespace))
    assert push(made, tmp_path, BASE).returncode == 0
    before = (store.versions(), store.current_config())
    empty = push(made, tmp_path, "# nothing yet\n", "empty.yaml")
    assert empty.returncode == 2
    assert empty.stderr.startswith(
        "error: empty.yaml is empty: publishing it would remove every key"
    )
    smaller = push(made, tmp_path, "agent:\n  max_iterations: 5\n", "smaller.yaml")
    assert smaller.returncode == 2
    assert smaller.stderr.strip() == (
        "error: this push removes 1 key(s) of the current config: model; they would "
        "fall back to their defaults: add --yes if that is intended"
    )
    assert (store.versions(), store.current_config()) == before, "nothing published"
    check = cli(made, "config", "push", "--check", "--diff", str(tmp_path / "smaller.yaml"))
    assert check.returncode == 0, check.stderr
    assert check.stdout.splitlines() == [
        f"{tmp_path / 'smaller.yaml'}: valid; 1 key(s) would change, 1 removed (push needs --yes)",
        '  - model: {"max_tokens": 800}',
    ]
    confirmed = cli(made, "config", "push", "--yes", str(tmp_path / "smaller.yaml"))
    assert confirmed.returncode == 0, confirmed.stderr
    assert store.current_config() == (2, {"agent": {"max_iterations": 5}})


@pytest.fixture
def mcp_workers(redis_server: RedisServer, namespace: str, tmp_path: Path) -> Iterator[Fleet]:
    """Workers that start the config's MCP servers (AGENT_CLUSTER_MCP_FROM_CONFIG)."""
    with fleet(redis_server.url, namespace, tmp_path, AGENT_CLUSTER_MCP_FROM_CONFIG="true") as made:
        for worker in WORKERS:
            made.start(worker, concurrency=4, wait=False)
        for worker in WORKERS:
            made.wait_live(worker)
        yield made


def test_mcp_reload_rediscovers_tools_on_every_worker(mcp_workers: Fleet, tmp_path: Path) -> None:
    workers = mcp_workers
    tools_file = tmp_path / "tools.json"
    tools_file.write_text(json.dumps(["add"]))
    config = (
        "agent:\n  toolsets: [mcp-test]\n"
        f"mcp_servers:\n  test:\n    command: {sys.executable}\n    args: [{MCP_SERVER}]\n"
        f"    env:\n      MCP_TEST_TOOLS_FILE: {tools_file}\n"
    )
    assert push(workers, tmp_path, config).returncode == 0
    with coordinator(workers.settings()) as coord:

        def shout_round() -> dict[str, str]:
            handles = {
                s: coord.submit_async(s, '!tool mcp_test_shout {"text": "hi"}') for s in SESSIONS
            }
            return {s: h.result(60).text for s, h in handles.items()}

        before = shout_round()
        assert all(text.startswith("echo: ") for text in before.values()), before
        tools_file.write_text(json.dumps(["add", "shout"]))
        reload = cli(workers, "mcp", "reload")
        assert reload.returncode == 0, reload.stderr
        after = shout_round()
        assert all("HI" in text for text in after.values()), after
    for worker in WORKERS:
        assert "MCP reload done (test)" in workers.log(worker)
