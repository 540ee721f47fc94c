"""Teardown removes a workspace even when a command locked parts of it, and follows no symlink."""

from __future__ import annotations

import os
from pathlib import Path

from agent.tools.environment import remove_tree


def test_locked_directories_are_unlocked_and_removed(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    locked = workspace / "a" / "locked"
    locked.mkdir(parents=True)
    (locked / "inner").mkdir()
    (locked / "inner" / "file").write_text("x")
    os.chmod(locked / "inner", 0)
    os.chmod(locked, 0)
    remove_tree(workspace)
    assert not workspace.exists()


def test_symlinked_directories_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("keep")
    os.chmod(outside, 0o555)
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "link").symlink_to(outside)
    remove_tree(workspace)
    assert not workspace.exists()
    assert (outside / "keep").read_text() == "keep"
    assert oct(outside.stat().st_mode & 0o777) == oct(0o555), "not chmodded through the link"
    os.chmod(outside, 0o755)
