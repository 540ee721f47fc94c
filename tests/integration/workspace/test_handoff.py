"""A session's files follow it to another host: drain, kill -9, the cap, hostile workspaces, shared
roots.

Real worker processes, each with a home of its own (a host), on a real Redis;
the offline model runs ``!sh`` commands with the terminal tool.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from pathlib import Path

import msgpack
import pytest
import redis

from agent.tools.workspace_volume import mounted_volumes, volume_problem
from cluster.keys import Keyspace
from tests.integration.workspace.conftest import home_of, start_host, workspace_of
from tests.support.fleet import Fleet, coordinator, user_texts

pytestmark = pytest.mark.integration

TIMEOUT = 60


def _workspace_key(namespace: str, session: str) -> str:
    return Keyspace(namespace).session(session).workspace


def test_after_a_drain_the_next_owner_reads_the_same_files(
    workers: Fleet, redis_client: redis.Redis, namespace: str
) -> None:
    start_host(workers, "w0")
    with coordinator(workers.settings()) as coord:
        first = coord.submit(
            "proj",
            "!sh mkdir -p src && echo 'print(42)' > src/app.py && echo hello > notes.txt",
            timeout=TIMEOUT,
        )
        assert first.worker_id == "w0"
        # Written after the turn, as a background process would: only the drain's snapshot has it.
        (workspace_of(workers, "w0", "proj") / "late.txt").write_text("written after the turn\n")
        start_host(workers, "w1")
        volumes = volume_problem() is None  # a root worker's workspaces are volumes
        assert os.path.ismount(workspace_of(workers, "w0", "proj")) == volumes
        assert workers.terminate("w0") == 0, workers.log("w0")
        assert not mounted_volumes(home_of(workers, "w0")), "a stopped worker leaves no mount"
        second = coord.submit("proj", "!sh cat notes.txt src/app.py late.txt", timeout=TIMEOUT)
        assert second.worker_id == "w1"
        assert "hello" in second.text and "print(42)" in second.text, second.text
        assert "written after the turn" in second.text, second.text
        # Restored into a volume of w1's own.
        assert os.path.ismount(workspace_of(workers, "w1", "proj")) == volumes
        assert (workspace_of(workers, "w1", "proj") / "notes.txt").read_text() == "hello\n"
        assert redis_client.exists(_workspace_key(namespace, "proj")) == 1
        coord.submit("proj", "/new", timeout=TIMEOUT)
    assert redis_client.exists(_workspace_key(namespace, "proj")) == 0, "a reset deletes it"


def test_after_kill_9_the_last_end_of_turn_snapshot_is_restored(
    workers: Fleet, redis_client: redis.Redis, namespace: str
) -> None:
    start_host(workers, "w0")
    start_host(workers, "w1")
    with coordinator(workers.settings()) as coord:
        first = coord.submit("crashy", "!sh echo survived > state.txt", timeout=TIMEOUT)
        owner = first.worker_id
        survivor = "w1" if owner == "w0" else "w0"
        workers.kill(owner)
        second = coord.submit("crashy", "!sh cat state.txt", timeout=TIMEOUT)
    assert second.worker_id == survivor
    assert "survived" in second.text, second.text
    assert not any(
        "agent-cluster notice" in t for t in user_texts(redis_client, namespace, "crashy")
    ), "everything came along: nothing to tell the agent"


def test_files_over_the_cap_are_told_to_the_model(
    workers: Fleet, redis_client: redis.Redis, namespace: str
) -> None:
    cap = {"AGENT_CLUSTER_WORKSPACE_SNAPSHOT_MAX_BYTES": "65536"}
    start_host(workers, "w0", **cap)
    with coordinator(workers.settings()) as coord:
        coord.submit(
            "big",
            "!sh head -c 200000 /dev/zero > big.bin && echo small > small.txt",
            timeout=TIMEOUT,
        )
        start_host(workers, "w1", **cap)
        assert workers.terminate("w0") == 0, workers.log("w0")
        told = coord.submit("big", "what happened to my files?", timeout=TIMEOUT)
        listing = coord.submit("big", "!sh ls", timeout=TIMEOUT)
    assert told.worker_id == "w1"
    assert "over the snapshot size cap: big.bin (195.3 KiB)" in told.text, told.text
    seen = user_texts(redis_client, namespace, "big")[1]
    assert seen.startswith("[agent-cluster notice: ") and "big.bin" in seen, "the model got it"
    assert seen.endswith("what happened to my files?")
    assert "small.txt" in listing.text and "big.bin" not in listing.text, listing.text


def test_a_hostile_workspace_restores_nothing_outside_its_directory(
    workers: Fleet, redis_client: redis.Redis, namespace: str, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("host file")
    start_host(workers, "w0")
    with coordinator(workers.settings()) as coord:
        coord.submit(
            "hostile",
            f"!sh ln -s {outside} out && ln -s {outside}/secret secret && ln -s ../../.. up "
            "&& mkfifo pipe && mkdir d && ln -s / d/root && echo fine > real.txt",
            timeout=TIMEOUT,
        )
        start_host(workers, "w1")
        assert workers.terminate("w0") == 0, workers.log("w0")
        moved = coord.submit("hostile", "!sh cat real.txt", timeout=TIMEOUT)
        # A forged snapshot (written straight to Redis) naming paths outside the workspace.
        raw = msgpack.packb(
            [
                1,
                [
                    [b"../x", "f", 0o644, b"escaped"],
                    [str(outside / "pwned").encode(), "f", 0o644, b"escaped"],
                    [b"ok", "f", 0o644, b"fine"],
                ],
                [],
            ],
            use_bin_type=True,
        )
        redis_client.hset(
            _workspace_key(namespace, "forged"),
            mapping={
                "digest": hashlib.sha256(raw).hexdigest(),
                "data": zlib.compress(raw),
                "worker": "w0",
                "token": 1,
                "at": 0,
            },
        )
        forged = coord.submit("forged", "hello", timeout=TIMEOUT)
    assert moved.worker_id == "w1" and "fine" in moved.text, moved.text
    restored = workspace_of(workers, "w1", "hostile")
    assert sorted(p.name for p in restored.iterdir()) == ["d", "real.txt"]
    assert list((restored / "d").iterdir()) == [], "no link came along"
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert (outside / "secret").read_text() == "host file"
    assert "could NOT be restored" in forged.text, forged.text
    assert not (home_of(workers, "w1") / "sandboxes" / "x").exists()
    notice = user_texts(redis_client, namespace, "hostile")[1]
    assert "symbolic link (links are never snapshotted): d/root, out, secret, up." in notice
    assert "special file (fifo, socket or device): pipe." in notice


def test_a_shared_root_takes_no_snapshot(
    workers: Fleet, redis_client: redis.Redis, namespace: str
) -> None:
    shared = {"AGENT_CLUSTER_WORKSPACE_MODE": "shared"}
    workers.start("w0", env=shared)  # both workers use the fleet's one home: a shared volume
    with coordinator(workers.settings()) as coord:
        assert (
            coord.submit("nfs", "!sh echo on the volume > f.txt", timeout=TIMEOUT).worker_id == "w0"
        )
        # Volumes would be mounted by two hosts at once: shared workspaces are plain.
        assert not mounted_volumes(workers.tmp)
        workers.start("w1", env=shared)
        assert workers.terminate("w0") == 0, workers.log("w0")
        second = coord.submit("nfs", "!sh cat f.txt", timeout=TIMEOUT)
    assert second.worker_id == "w1" and "on the volume" in second.text, second.text
    assert redis_client.exists(_workspace_key(namespace, "nfs")) == 0
