"""Workspace hand-over between two hosts (two homes) on fakeredis, with a fake clock."""

from __future__ import annotations

from pathlib import Path

import fakeredis
import pytest

from agent.tools import ToolEnvironment
from agent.tools.sandbox_config import SandboxConfig
from cluster.errors import LeaseLost
from cluster.keys import Keyspace
from cluster.leases import Lease, RedisLeaseStore
from cluster.ownership import RedisOwnershipStore
from cluster.tool_state import RedisToolStateStore
from cluster.workspace_store import RedisWorkspaceStore
from tests.fakes import FakeClock
from worker.workspace_archive import Omitted
from worker.workspace_handoff import WorkspaceHandoff
from worker.workspace_notice import LostProcess, restore_notice

SESSION = "chat-1"


class Host:
    """One worker's side: its own home directory and hand-over, on the shared fake Redis."""

    def __init__(
        self, client: fakeredis.FakeRedis, tmp: Path, worker_id: str, clock: FakeClock, **kw: object
    ) -> None:
        self.worker_id = worker_id
        self.keyspace = Keyspace("t")
        self.client = client
        self.env = ToolEnvironment.default(tmp / worker_id, sandbox=SandboxConfig(backend="local"))
        self.leases = RedisLeaseStore(client, self.keyspace)
        self.ownership = RedisOwnershipStore(client, self.keyspace)
        self.store = RedisWorkspaceStore(client, self.keyspace)
        self.handoff = WorkspaceHandoff(
            tool_env=self.env,
            store=self.store,
            tool_state=RedisToolStateStore(client, self.keyspace),
            leases=self.leases,
            ownership=self.ownership,
            worker_id=worker_id,
            mode=str(kw.get("mode", "snapshot")),
            max_bytes=int(kw.get("max_bytes", 1024 * 1024)),  # type: ignore[call-overload]
            lease_ttl=30.0,
            clock=clock,
        )

    def own(self) -> None:
        self.ownership.lookup_or_assign(SESSION, eligible=[self.worker_id], proposed=self.worker_id)

    def lease(self) -> Lease:
        lease = self.leases.acquire(SESSION, self.worker_id, 30.0)
        assert lease is not None
        return lease

    @property
    def workspace(self) -> Path:
        return self.env.sandbox_dir(SESSION)

    def turn(self, write: dict[str, bytes] | None = None) -> str | None:
        """A turn here: own the session, restore, let the "tools" write files, snapshot."""
        self.own()
        lease = self.lease()
        try:
            notice = self.handoff.before_turn(lease, self.store.stored_digest(SESSION))
            for name, data in (write or {}).items():
                path = self.workspace / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            self.handoff.after_turn(lease)
            return notice
        finally:
            self.leases.release(lease)


@pytest.fixture
def client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_files_written_on_one_host_are_there_on_the_next(
    client: fakeredis.FakeRedis, tmp_path: Path, clock: FakeClock
) -> None:
    a, b = Host(client, tmp_path, "a", clock), Host(client, tmp_path, "b", clock)
    assert a.turn({"notes.txt": b"hello", "src/main.py": b"print(1)"}) is None
    assert b.turn() is None, "everything came along: nothing to tell the agent"
    assert (b.workspace / "notes.txt").read_bytes() == b"hello"
    assert (b.workspace / "src" / "main.py").read_bytes() == b"print(1)"
    b.turn({"notes.txt": b"changed on b"})
    a.turn()
    assert (a.workspace / "notes.txt").read_bytes() == b"changed on b", "a's old copy was replaced"


def test_an_unchanged_workspace_is_not_uploaded_again(
    client: fakeredis.FakeRedis, tmp_path: Path, clock: FakeClock
) -> None:
    a = Host(client, tmp_path, "a", clock)
    a.turn({"f": b"x"})
    key = a.keyspace.session(SESSION).workspace
    first = client.hget(key, "digest")
    a.own()
    lease = a.lease()
    assert a.handoff.after_turn(lease) is False
    (a.workspace / "f").write_bytes(b"x")  # rewritten with the same content: a new mtime
    assert a.handoff.after_turn(lease) is False, "same digest: nothing stored"
    assert client.hget(key, "digest") == first


def test_a_stale_lease_or_a_non_owner_writes_nothing(
    client: fakeredis.FakeRedis, tmp_path: Path, clock: FakeClock
) -> None:
    a, b = Host(client, tmp_path, "a", clock), Host(client, tmp_path, "b", clock)
    a.turn({"f": b"from a"})
    a.own()
    stale = a.lease()
    a.leases.release(stale)
    (a.workspace / "f").write_bytes(b"late write on a")
    with pytest.raises(LeaseLost):
        a.handoff.after_turn(stale)
    b.turn({"f": b"b is the owner now"})
    lease = a.lease()  # a takes a fresh lease but b owns the session
    (a.workspace / "g").write_bytes(b"a's copy is stale")
    assert a.handoff.after_turn(lease) is False, "a's copy does not descend from b's snapshot"
    a.leases.release(lease)
    b.turn()
    assert (b.workspace / "f").read_bytes() == b"b is the owner now"


def test_over_the_cap_files_and_lost_processes_are_told_with_the_snapshot_age(
    client: fakeredis.FakeRedis, tmp_path: Path, clock: FakeClock
) -> None:
    a = Host(client, tmp_path, "a", clock, max_bytes=1000)
    b = Host(client, tmp_path, "b", clock, max_bytes=1000)
    a.turn({"big.bin": b"x" * 5000, "small.txt": b"ok"})
    RedisToolStateStore(client, a.keyspace).save(
        SESSION,
        "processes",
        {
            "next_id": 2,
            "items": {
                "p1": {
                    "id": "p1",
                    "command": "python -m http.server",
                    "host": "elsewhere:boot",
                    "pid": 1,
                }
            },
        },
    )
    stored_at = float(client.hget(a.keyspace.session(SESSION).workspace, "at") or 0) / 1000
    clock.now = stored_at + 300
    notice = b.turn()
    assert notice is not None
    assert "snapshot taken 5 min ago" in notice
    assert "over the snapshot size cap: big.bin (4.9 KiB)" in notice
    assert "p1: python -m http.server" in notice
    assert (b.workspace / "small.txt").read_bytes() == b"ok"
    assert not (b.workspace / "big.bin").exists()


def test_a_reset_elsewhere_clears_an_old_copy_here(
    client: fakeredis.FakeRedis, tmp_path: Path, clock: FakeClock
) -> None:
    a = Host(client, tmp_path, "a", clock)
    a.turn({"old": b"before the reset"})
    client.delete(a.keyspace.session(SESSION).workspace)  # what session_reset.lua does
    a.turn()
    assert list(a.workspace.iterdir()) == []


def test_shared_mode_takes_no_snapshot(
    client: fakeredis.FakeRedis, tmp_path: Path, clock: FakeClock
) -> None:
    a = Host(client, tmp_path, "a", clock, mode="shared")
    a.turn({"f": b"x"})
    assert client.exists(a.keyspace.session(SESSION).workspace) == 0
    assert a.handoff.snapshot_owned() == 0


def test_a_drain_snapshots_what_changed_since_the_last_turn(
    client: fakeredis.FakeRedis, tmp_path: Path, clock: FakeClock
) -> None:
    a, b = Host(client, tmp_path, "a", clock), Host(client, tmp_path, "b", clock)
    a.turn({"f": b"turn"})
    (a.workspace / "late").write_bytes(b"a background process wrote this")
    assert a.handoff.snapshot_owned() == 1
    assert a.leases.holder(SESSION) is None, "the drain's lease is released"
    b.turn()
    assert (b.workspace / "late").exists()


def test_a_corrupt_snapshot_is_told_and_the_next_turn_heals_it(
    client: fakeredis.FakeRedis, tmp_path: Path, clock: FakeClock
) -> None:
    a, b = Host(client, tmp_path, "a", clock), Host(client, tmp_path, "b", clock)
    a.turn({"f": b"x"})
    client.hset(a.keyspace.session(SESSION).workspace, "data", b"garbage")
    notice = b.turn({"g": b"new"})
    assert notice is not None and "could NOT be restored" in notice
    a.turn()
    assert (a.workspace / "g").read_bytes() == b"new"


def test_the_notice_is_none_when_nothing_is_missing_and_bounded_otherwise() -> None:
    assert restore_notice(omitted=[], lost=[], taken_at=0, now=10) is None
    many = [
        Omitted(f"f{i}".encode(), 2 * 1024 * 1024, "over the snapshot size cap") for i in range(30)
    ]
    text = restore_notice(omitted=many, lost=[LostProcess("p1", "sleep 1")], taken_at=0, now=7200)
    assert text is not None and "and 10 more" in text and "2.0 MiB" in text and "2.0 h ago" in text
