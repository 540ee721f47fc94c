"""The workspace quota watch: growth past the quota kills, shrinking never does."""

from __future__ import annotations

from pathlib import Path

from agent.tools.workspace_quota import CHECK_INTERVAL, QuotaWatch, workspace_usage

KIB = 1024


def write(path: Path, size: int) -> None:
    path.write_bytes(b"x" * size)


def test_usage_counts_allocated_bytes_and_never_follows_symlinks(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    write(outside / "huge", 512 * KIB)
    workspace = tmp_path / "ws"
    (workspace / "sub").mkdir(parents=True)
    write(workspace / "sub" / "a", 64 * KIB)
    (workspace / "link").symlink_to(outside)
    used = workspace_usage(workspace)
    assert 64 * KIB <= used < 256 * KIB


def test_growth_past_the_quota_is_reported_at_the_next_check(tmp_path: Path) -> None:
    watch = QuotaWatch(tmp_path, quota=128 * KIB)
    assert watch.check(now=0.0) == ""
    write(tmp_path / "big", 256 * KIB)
    assert watch.check(now=CHECK_INTERVAL / 2) == "", "not checked again before the interval"
    assert "quota of 0 MiB" in watch.check(now=CHECK_INTERVAL)


def test_a_workspace_already_over_quota_may_shrink_but_not_grow(tmp_path: Path) -> None:
    write(tmp_path / "old", 256 * KIB)
    watch = QuotaWatch(tmp_path, quota=128 * KIB)
    (tmp_path / "old").unlink()
    assert watch.check(now=0.0) == ""
    write(tmp_path / "new", 512 * KIB)
    assert "quota" in watch.check(now=CHECK_INTERVAL)
