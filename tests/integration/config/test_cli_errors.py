"""A user mistake against a real Redis prints one line and a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import RedisServer, start_redis_server

pytestmark = pytest.mark.integration


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coordinator.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        input=stdin,
    )


def one_line(result: subprocess.CompletedProcess[str], code: int, *parts: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for part in parts:
        assert part in errors[0]


def test_bad_database_number_and_unknown_worker(redis_server: RedisServer, namespace: str) -> None:
    url = redis_server.url.removesuffix("/0")
    one_line(run("config", "history", "--redis-url", f"{url}/99"), 3, "has no database 99", "/99")
    one_line(
        run("drain", "nosuch", "--redis-url", redis_server.url, "--namespace", namespace),
        2,
        "worker 'nosuch' is not registered",
    )


def test_refused_credentials_name_the_url_without_the_password(tmp_path: Path) -> None:
    server = start_redis_server(tmp_path)
    try:
        server.client().config_set("requirepass", "right-password")
        bad = f"redis://:wrong-password@127.0.0.1:{server.port}/0"
        result = subprocess.run(
            [sys.executable, "-m", "coordinator.cli", "config", "show"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "AGENT_CLUSTER_REDIS_URL": bad},
        )
        one_line(result, 3, "refused the credentials", f"redis://:***@127.0.0.1:{server.port}/0")
        assert "wrong-password" not in result.stderr
        missing = subprocess.run(
            [sys.executable, "-m", "coordinator.cli", "worker", "--id", "w1"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "AGENT_CLUSTER_REDIS_URL": f"redis://127.0.0.1:{server.port}/0"},
        )
        one_line(missing, 3, "refused the credentials")
    finally:
        server.process.terminate()
        server.process.wait(10)


def test_the_coordinator_names_what_to_fix_and_exits_non_zero(
    redis_server: RedisServer, namespace: str
) -> None:
    lines = '{"session": "a"}\nnot json\n{"session": "a", "text": 3}\n\n'
    result = run(
        "coordinator", "--redis-url", redis_server.url, "--namespace", namespace, stdin=lines
    )
    assert result.returncode == 1
    out = result.stdout.splitlines()
    assert len(out) == 3
    assert 'line 1 has no \\"text\\" (the message to send)' in out[0]
    assert "line 2 is not JSON" in out[1]
    assert 'line 3: \\"text\\" must be a string, got 3' in out[2]
    assert "KeyError" not in result.stdout and "Traceback" not in result.stderr
    assert result.stderr.strip() == "error: 3 line(s) failed"
