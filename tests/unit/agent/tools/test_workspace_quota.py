"""The workspace quota watch: growth past the quota kills, shrinking never does."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.tools.sandbox_config import SandboxConfig, SandboxLimits
from agent.tools.workspace_quota import CHECK_INTERVAL, QuotaWatch, workspace_usage
from agent.tools.workspace_volume import VolumeSpec
from cluster.errors import ConfigError

KIB = 1024
MIB = 1024 * KIB


def limits(quota: int, file_bytes: int = 64 * MIB) -> SandboxLimits:
    return SandboxLimits(workspace_bytes=quota, file_bytes=file_bytes)


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
    watch = QuotaWatch(tmp_path, limits(128 * KIB))
    assert watch.check(now=0.0) == ""
    write(tmp_path / "big", 256 * KIB)
    assert watch.check(now=CHECK_INTERVAL / 2) == "", "not checked again before the interval"
    assert "quota of 0 MiB" in watch.check(now=CHECK_INTERVAL)


def test_a_workspace_already_over_quota_may_shrink_but_not_grow(tmp_path: Path) -> None:
    write(tmp_path / "old", 256 * KIB)
    watch = QuotaWatch(tmp_path, limits(128 * KIB))
    (tmp_path / "old").unlink()
    assert watch.check(now=0.0) == ""
    write(tmp_path / "new", 512 * KIB)
    assert "quota" in watch.check(now=CHECK_INTERVAL)


def test_a_command_may_write_only_what_is_left_of_the_quota(tmp_path: Path) -> None:
    write(tmp_path / "old", 256 * KIB)
    used = workspace_usage(tmp_path)
    assert QuotaWatch(tmp_path, limits(MIB)).file_bytes == MIB - used
    assert QuotaWatch(tmp_path, limits(MIB, file_bytes=64 * KIB)).file_bytes == 64 * KIB
    assert QuotaWatch(tmp_path, limits(128 * KIB)).file_bytes == 0, "over quota: no growth"


def test_a_volume_has_one_file_per_8_kib_of_quota_within_the_configured_count() -> None:
    assert VolumeSpec.for_quota(20 * MIB, 100_000) == VolumeSpec(size=20 * MIB, files=2560)
    assert VolumeSpec.for_quota(2048 * MIB, 100_000).files == 100_000
    assert VolumeSpec.for_quota(64 * KIB, 100_000).files == 64


def test_the_way_the_quota_is_enforced_is_a_worker_setting() -> None:
    assert SandboxConfig.from_env({}).workspace_fs == "auto"
    config = SandboxConfig.from_env(
        {
            "AGENT_CLUSTER_SANDBOX_WORKSPACE_FS": "watch",
            "AGENT_CLUSTER_SANDBOX_WORKSPACE_FILES": "9",
        }
    )
    assert (config.workspace_fs, config.limits.workspace_files) == ("watch", 9)
    with pytest.raises(ConfigError, match="AGENT_CLUSTER_SANDBOX_WORKSPACE_FS must be one of"):
        SandboxConfig.from_env({"AGENT_CLUSTER_SANDBOX_WORKSPACE_FS": "quota"})


def test_shared_workspaces_are_never_volumes() -> None:
    assert SandboxConfig().for_shared_workspaces().workspace_fs == "watch"
    with pytest.raises(ConfigError, match="cannot be used with workspace_mode shared"):
        SandboxConfig(workspace_fs="volume").for_shared_workspaces()
