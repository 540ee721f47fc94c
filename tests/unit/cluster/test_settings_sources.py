"""One settings source: flags > AGENT_CLUSTER_* > settings file > the default; a generated table."""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

import pytest

from cluster.errors import ConfigError
from cluster.settings import ClusterSettings
from cluster.settings_sources import load_settings, settings_markdown
from coordinator.cli import build_parser, main
from worker.cache import AgentCache
from worker.process import WorkerOptions

DOCS = Path(__file__).parents[3] / "docs" / "settings.md"


def test_docs_settings_md_is_generated_from_the_definitions() -> None:
    assert DOCS.read_text() == settings_markdown(), (
        "docs/settings.md is stale: run `agent-cluster settings --markdown > docs/settings.md`"
    )


def test_flags_win_over_the_environment_which_wins_over_the_file(tmp_path: Path) -> None:
    file = tmp_path / "settings.yaml"
    file.write_text("lease_ttl: 11\ncache_size: 7\nnamespace: fromfile\n")
    env = {"AGENT_CLUSTER_LEASE_TTL": "12", "AGENT_CLUSTER_NAMESPACE": "fromenv"}
    s = load_settings(
        {"namespace": "fromflag", "turn_timeout": None}, environ=env, settings_file=str(file)
    )
    assert (s.namespace, s.lease_ttl, s.cache_size) == ("fromflag", 12.0, 7)
    assert s.turn_timeout == ClusterSettings().turn_timeout
    env["AGENT_CLUSTER_SETTINGS_FILE"] = str(file)
    assert load_settings({}, environ=env).cache_size == 7


def test_a_bad_value_names_where_it_came_from(tmp_path: Path) -> None:
    file = tmp_path / "settings.yaml"
    file.write_text("\nlease_ttl: soon\n")
    with pytest.raises(ConfigError, match=r"settings.yaml: lease_ttl must be a number"):
        load_settings({}, environ={}, settings_file=str(file))
    with pytest.raises(ConfigError, match=r"^AGENT_CLUSTER_CACHE_SIZE must be a whole number"):
        load_settings({}, environ={"AGENT_CLUSTER_CACHE_SIZE": "many"})
    with pytest.raises(ConfigError, match=r"^--concurrency must be a whole number > 0, got 0"):
        load_settings({"concurrency": 0}, environ={})
    file.write_text("lease_ttl: 3\nlease_tll: 4\n")
    with pytest.raises(ConfigError, match=r"line 2: unknown setting 'lease_tll'"):
        load_settings({}, environ={}, settings_file=str(file))


def test_each_default_is_defined_once() -> None:
    settings = ClusterSettings()
    options = WorkerOptions()
    assert (options.concurrency, options.cache_size, options.idle_ttl, options.sweep_interval) == (
        settings.concurrency,
        settings.cache_size,
        settings.idle_ttl,
        settings.sweep_interval,
    )
    cache: AgentCache[object] = AgentCache()
    try:
        assert (cache.max_size, cache.idle_ttl) == (settings.cache_size, settings.idle_ttl)
    finally:
        cache.shutdown()
    assert WorkerOptions.from_settings(dataclasses.replace(settings, cache_size=5)).cache_size == 5


def test_help_shows_each_default_and_version_exists(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["worker", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag, default in (
        ("--turn-timeout", "600.0"),
        ("--cache-size", "128"),
        ("--idle-ttl", "3600.0"),
    ):
        assert flag in text
        assert f"default {default}" in text
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("agent-cluster ")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("argv", "expected", "code"),
    [
        (
            ["config", "history", "--redis-url", "redis://127.0.0.1:{port}/0"],
            "error: cannot reach Redis at redis://127.0.0.1:{port}/0",
            3,
        ),
        (
            ["config", "push", "/nonexistent.yaml"],
            "error: cannot read the config file '/nonexistent.yaml'",
            2,
        ),
        (
            ["settings", "--lease-ttl", "0"],
            "error: --lease-ttl must be a finite number of seconds > 0",
            2,
        ),
        (
            ["config", "history", "--redis-url", "redis://u:hunter2@127.0.0.1:{port}/0"],
            "redis://u:***@127.0.0.1",
            3,
        ),
    ],
)
def test_a_user_mistake_prints_one_line_and_exits_non_zero(
    argv: list[str], expected: str, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    port = _closed_port()
    argv = [a.format(port=port) for a in argv]
    assert main(argv) == code
    err = capsys.readouterr().err
    assert expected.format(port=port) in err
    assert "Traceback" not in err and "hunter2" not in err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1


def test_settings_command_shows_each_value_and_where_it_came_from(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    file = tmp_path / "s.yaml"
    file.write_text("idle_ttl: 99\n")
    monkeypatch.setenv("AGENT_CLUSTER_LEASE_TTL", "12")
    monkeypatch.setenv("AGENT_CLUSTER_SETTINGS_FILE", str(file))
    assert main(["settings", "--cache-size", "7"]) == 0
    rows = {
        line.split("|")[1].strip(): line.split("|")[2:4]
        for line in capsys.readouterr().out.splitlines()[2:]
    }
    assert [c.strip() for c in rows["cache_size"]] == ["7", "--cache-size"]
    assert [c.strip() for c in rows["lease_ttl"]] == ["12.0", "AGENT_CLUSTER_LEASE_TTL"]
    assert [c.strip() for c in rows["idle_ttl"]] == ["99.0", f"{file}: idle_ttl"]
    assert [c.strip() for c in rows["turn_timeout"]] == ["600.0", "default"]
