"""The workspace snapshot: what goes in under the cap, the format, and what a restore refuses."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import msgpack
import pytest

from agent.tools.workspace_archive import (
    Member,
    ScannedEntry,
    check_member_path,
    decode_archive,
    encode_archive,
    fingerprint,
    plan_snapshot,
)
from agent.tools.workspace_files import read_members, scan_workspace, write_members
from cluster.errors import ToolError

MiB = 1024 * 1024


def _file(path: str, size: int, mtime: int = 1) -> ScannedEntry:
    return ScannedEntry(path.encode(), "file", 0o644, size, mtime, 1)


def test_files_past_the_cap_are_listed_and_smaller_later_files_still_go_in() -> None:
    plan = plan_snapshot(
        [_file("b.bin", 3 * MiB), _file("a.txt", 1 * MiB), _file("c.txt", 1 * MiB)],
        max_bytes=2 * MiB,
    )
    assert [m.path for m in plan.members] == [b"a.txt", b"c.txt"]
    assert [(o.path, o.reason) for o in plan.omitted] == [(b"b.bin", "over the snapshot size cap")]
    assert sum(m.size for m in plan.members) == 2 * MiB


def test_links_special_files_and_unreadable_dirs_never_go_in() -> None:
    entries = [
        ScannedEntry(b"d", "dir", 0o755),
        ScannedEntry(b"d/link", "symlink", 0o777),
        ScannedEntry(b"fifo", "special", 0o644),
        ScannedEntry(b"locked", "unreadable", 0),
    ]
    plan = plan_snapshot(entries, max_bytes=MiB)
    assert [m.path for m in plan.members] == [b"d"]
    assert {o.path for o in plan.omitted} == {b"d/link", b"fifo", b"locked"}


def test_the_member_count_is_bounded() -> None:
    plan = plan_snapshot([_file(f"f{i:02}", 1) for i in range(10)], max_bytes=MiB, max_members=4)
    assert len(plan.members) == 4 and len(plan.omitted) == 6


def test_a_negative_cap_is_a_clear_error() -> None:
    with pytest.raises(ToolError, match="cap must be >= 0"):
        plan_snapshot([], max_bytes=-1)


def test_fingerprint_changes_with_a_write_and_not_with_order() -> None:
    a, b = _file("a", 1), _file("b", 2)
    assert fingerprint([a, b]) == fingerprint([b, a])
    assert fingerprint([a, b]) != fingerprint([a, _file("b", 2, mtime=2)])


def test_equal_content_gives_the_same_digest_and_round_trips() -> None:
    members = [Member(b"d", 0o755, None), Member(b"d/f", 0o600, b"hello"), Member(b"x", 0o644, b"")]
    digest, blob, size = encode_archive(members)
    assert encode_archive(list(reversed(members)))[0] == digest
    assert encode_archive([*members[:2], Member(b"x", 0o644, b"!")])[0] != digest
    archive = decode_archive(blob, digest=digest, max_bytes=MiB)
    assert list(archive.members) == members and size > 0


@pytest.mark.parametrize(
    "path", [b"", b"/etc/passwd", b"../x", b"a/../../x", b"a//b", b"./a", b"a/.", b"a\0b"]
)
def test_unsafe_member_paths_are_refused(path: bytes) -> None:
    with pytest.raises(ToolError):
        check_member_path(path)


def _raw_blob(document: object) -> tuple[str, bytes]:
    import hashlib

    raw = msgpack.packb(document, use_bin_type=True)
    return hashlib.sha256(raw).hexdigest(), zlib.compress(raw)


def test_a_forged_snapshot_with_a_dotdot_member_is_refused_whole() -> None:
    digest, blob = _raw_blob([1, [[b"ok", "f", 0o644, b"1"], [b"../x", "f", 0o644, b"2"]], []])
    with pytest.raises(ToolError, match=r"'\.\.' component"):
        decode_archive(blob, digest=digest, max_bytes=MiB)


def test_digest_mismatch_bomb_and_garbage_are_refused() -> None:
    digest, blob, _ = encode_archive([Member(b"f", 0o644, b"x")])
    with pytest.raises(ToolError, match="digest"):
        decode_archive(blob, digest="0" * 64, max_bytes=MiB)
    bomb = zlib.compress(b"\0" * (20 * MiB))
    with pytest.raises(ToolError, match="larger than"):
        decode_archive(bomb, digest=digest, max_bytes=MiB)
    with pytest.raises(ToolError, match="corrupt"):
        decode_archive(b"not zlib", digest=digest, max_bytes=MiB)
    digest, blob = _raw_blob({"v": 1})
    with pytest.raises(ToolError, match="format version"):
        decode_archive(blob, digest=digest, max_bytes=MiB)


def test_scan_lists_links_without_following_and_reads_only_regular_files(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("do not copy")
    ws = tmp_path / "ws"
    (ws / "sub").mkdir(parents=True)
    (ws / "sub" / "a.txt").write_text("a")
    (ws / "to-outside").symlink_to(outside)
    (ws / "to-secret").symlink_to(outside / "secret")
    os.mkfifo(ws / "fifo")
    entries = scan_workspace(ws)
    kinds = {e.path: e.kind for e in entries}
    assert kinds == {
        b"fifo": "special",
        b"sub": "dir",
        b"sub/a.txt": "file",
        b"to-outside": "symlink",
        b"to-secret": "symlink",
    }
    members, omitted = read_members(ws, plan_snapshot(entries, max_bytes=MiB))
    assert {m.path: m.data for m in members} == {b"sub": None, b"sub/a.txt": b"a"}
    assert {o.path for o in omitted} == {b"fifo", b"to-outside", b"to-secret"}


def test_a_file_that_changed_after_the_scan_is_listed_not_copied(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "log").write_text("12")
    plan = plan_snapshot(scan_workspace(ws), max_bytes=MiB)
    (ws / "log").write_text("1234")
    members, omitted = read_members(ws, plan)
    assert members == [] and [o.path for o in omitted] == [b"log"]


def test_restore_writes_modes_and_refuses_what_is_not_a_directory(tmp_path: Path) -> None:
    target = tmp_path / "new"
    target.mkdir()
    refused = write_members(
        target,
        [
            Member(b"bin", 0o755, None),
            Member(b"bin/run.sh", 0o755, b"#!/bin/sh\n"),
            Member(b"notes", 0o600, b"n"),
            Member(b"notes/inner", 0o600, b"file under a file"),
        ],
        owner=None,
    )
    assert (target / "bin" / "run.sh").read_bytes() == b"#!/bin/sh\n"
    assert (target / "bin" / "run.sh").stat().st_mode & 0o777 == 0o755
    assert [r.path for r in refused] == [b"notes/inner"]


def test_restore_never_follows_a_link_in_its_target(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "new"
    target.mkdir()
    (target / "d").symlink_to(outside)  # planted: must not be written through
    refused = write_members(target, [Member(b"d/x", 0o644, b"escaped?")], owner=None)
    assert list(outside.iterdir()) == []
    assert [r.path for r in refused] == [b"d/x"]


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")
def test_restored_files_belong_to_the_sessions_uid(tmp_path: Path) -> None:
    target = tmp_path / "new"
    target.mkdir()
    write_members(target, [Member(b"d", 0o755, None), Member(b"d/f", 0o644, b"x")], owner=64123)
    assert (target / "d").stat().st_uid == 64123
    assert (target / "d" / "f").stat().st_uid == 64123
    assert (target / "d" / "f").stat().st_gid == 64123
