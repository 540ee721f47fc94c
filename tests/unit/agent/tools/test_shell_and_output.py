"""Pure pieces of the terminal: output capping and the persisted shell session."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.tools import InMemoryToolStateStore
from agent.tools.shell import SANDBOX_ENV_VAR, ShellSession, base_environment, parse_env_dump
from agent.tools.terminal import CappedOutput


def test_short_output_is_kept_whole() -> None:
    output = CappedOutput(100)
    output.feed(b"hello ")
    output.feed(b"world")
    assert output.render() == "hello world"


def test_long_output_keeps_head_and_tail_and_says_how_much_was_cut() -> None:
    output = CappedOutput(100)
    for index in range(1000):
        output.feed(f"{index:04d}\n".encode())
    text = output.render()
    assert text.startswith("0000\n0001\n")
    assert text.endswith("0998\n0999\n")
    assert "[... 4900 bytes of output cut (5000 total, limit 100) ...]" in text


def test_undecodable_bytes_do_not_break_rendering() -> None:
    output = CappedOutput(100)
    output.feed(b"\xff\xfeok")
    assert output.render().endswith("ok")


def test_env_dump_parsing() -> None:
    assert parse_env_dump(b"A=1\0B=x=y\0EMPTY=\0\0") == {"A": "1", "B": "x=y", "EMPTY": ""}


def test_captured_session_keeps_only_the_tasks_own_changes(tmp_path: Path) -> None:
    base = base_environment(tmp_path)
    final = {**base, "FOO": "bar", "PWD": str(tmp_path), "SHLVL": "2", "_": "/usr/bin/env"}
    final.pop("PAGER")
    session = ShellSession.captured(tmp_path, str(tmp_path / "src"), final)
    assert session == ShellSession(cwd="src", env_set={"FOO": "bar"}, env_unset=("PAGER",))
    env = session.environment(tmp_path)
    assert env["FOO"] == "bar" and "PAGER" not in env and env[SANDBOX_ENV_VAR] == str(tmp_path)


def test_cwd_inside_the_sandbox_is_stored_relative_and_survives_a_new_root(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    (new / "src").mkdir(parents=True)
    session = ShellSession.captured(old, str(old / "src"), base_environment(old))
    assert session.cwd == "src"
    assert session.working_dir(new) == new / "src"
    assert ShellSession.captured(old, str(old), {}).cwd is None


def test_missing_cwd_falls_back_to_the_sandbox(tmp_path: Path) -> None:
    assert ShellSession(cwd="/no/such/dir").working_dir(tmp_path) == tmp_path


def test_worker_secrets_are_not_in_the_base_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    assert "OPENAI_API_KEY" not in base_environment(tmp_path)


def test_session_round_trips_through_a_store() -> None:
    store = InMemoryToolStateStore()
    session = ShellSession(cwd="a/b", env_set={"X": "1"}, env_unset=("HOME",))
    session.save(store, "t")
    assert ShellSession.load(store, "t") == session
    store.save("t", "terminal", "garbage")
    assert ShellSession.load(store, "t") == ShellSession()
