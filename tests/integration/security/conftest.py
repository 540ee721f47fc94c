"""A real worker process under attack: a fake api key in its environment, a
password-protected redis-server, the Redis URL in a file (not in argv), and
the default ``bwrap`` tool sandbox. Tests drive ``!sh`` messages through the
coordinator as a hostile chat user would (the offline model turns ``!sh CMD``
into a terminal call and ``!tool NAME {json}`` into any tool call).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from agent.tools.state import safe_task_id
from cluster.settings import ClusterSettings
from coordinator.ingress import Coordinator, Reply
from tests.conftest import RedisServer, start_redis_server
from tests.sandbox_support import require_bwrap

FAKE_KEY = "sk-fake-" + "7Qm2xR9vL4kT8nW3pZ6y"
REDIS_PASSWORD = "pw-" + uuid.uuid4().hex
TEAM_CRED = "tc-" + uuid.uuid4().hex[:12]
"""The key of an endpoint the worker declares, in a variable not named like a secret."""


@dataclass
class Target:
    """The worker under attack and the ways to talk to it."""

    redis: RedisServer
    url: str
    namespace: str
    home: Path
    worker: subprocess.Popen[bytes]
    coordinator: Coordinator
    client: redis.Redis
    backend: str = "bwrap"

    def send(self, session: str, text: str, timeout: float = 90.0) -> Reply:
        """Submit one message and return the reply (the tool result is quoted in it)."""
        return self.coordinator.submit(session, text, timeout=timeout)

    def sh(self, session: str, command: str) -> str:
        """Run ``command`` through ``!sh`` and return the reply text."""
        return self.send(session, f"!sh {command}").text

    def terminal(self, session: str, command: str, timeout: float) -> str:
        """Run ``command`` with an explicit terminal timeout."""
        args = json.dumps({"command": command, "timeout": timeout})
        return self.send(session, f"!tool terminal {args}").text

    def tool(self, session: str, name: str, **args: object) -> str:
        return self.send(session, f"!tool {name} {json.dumps(args)}").text

    def workspace(self, session: str) -> Path:
        """The session's workspace as the host sees it (an attacker reads it in
        /proc/self/mountinfo)."""
        return self.home / "sandboxes" / safe_task_id(session)

    def worker_alive(self) -> bool:
        return self.worker.poll() is None

    def stored_values(self) -> list[bytes]:
        """Every value the cluster keeps in Redis (strings, hashes, lists, sets, zsets)."""
        values: list[bytes] = []
        for key in self.client.scan_iter(count=1000):
            kind = self.client.type(key)
            if kind == b"string":
                values.append(self.client.get(key) or b"")
            elif kind == b"hash":
                values += list(self.client.hgetall(key).values())
            elif kind == b"list":
                values += self.client.lrange(key, 0, -1)
            elif kind == b"set":
                values += list(self.client.smembers(key))
            elif kind == b"zset":
                values += [m for m, _ in self.client.zrange(key, 0, -1, withscores=True)]
        return values


UNPRIVILEGED_UID = 65534
"""The uid (``nobody``) an unprivileged worker runs as in these tests."""


# Runs "$@" in a private mount namespace where the directory that hides the
# interpreter ($2, e.g. /root) is an empty tmpfs holding only the one entry
# leading to it ($1, e.g. /root/.pyenv), bound back through the mount point $3.
_REVEAL = (
    "set -e; keep=$1; hidden=$2; scratch=$3; shift 3\n"
    'mount --bind "$keep" "$scratch"\n'
    'mount -t tmpfs -o mode=0755,size=1m tmpfs "$hidden"\n'
    'mkdir "$keep"\n'
    'mount --bind "$scratch" "$keep"\n'
    'umount -l "$scratch"\n'
    'exec "$@"\n'
)


def _as_unprivileged(uid: int, scratch: Path) -> list[str]:
    """The argv prefix that runs a command as ``uid`` with this interpreter reachable.

    The test interpreter may live under a directory only root may enter (pyenv
    under ``/root``); then that directory is replaced, in a mount namespace of
    the worker's own, by one that shows only the interpreter's tree.
    """
    drop = ["/usr/bin/setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    python = Path(sys.executable).resolve()
    for hidden in reversed(python.parents):
        if hidden != python.parents[0] and not os.stat(hidden).st_mode & 0o001:
            keep = python.parents[len(python.parents) - len(hidden.parents) - 2]
            scratch.mkdir(exist_ok=True)
            return [
                "/usr/bin/unshare",
                "--mount",
                "--",
                "/bin/sh",
                "-c",
                _REVEAL,
                "reveal",
                str(keep),
                str(hidden),
                str(scratch),
                *drop,
            ]
    return drop


def unprivileged_worker_problem() -> str | None:
    """Why this machine cannot run a worker as ``nobody`` with its bwrap sandbox, or ``None``."""
    if os.geteuid() != 0:
        return "the tests run unprivileged already (starting a worker as nobody needs root)"
    scratch = Path(tempfile.mkdtemp(prefix="ac-reveal-"))
    try:
        imports = subprocess.run(
            [
                *_as_unprivileged(UNPRIVILEGED_UID, scratch / "m"),
                sys.executable,
                "-c",
                "import coordinator.cli",
            ],
            capture_output=True,
            check=False,
            cwd="/",
        )
    finally:
        with contextlib.suppress(OSError):
            (scratch / "m").rmdir()
        scratch.rmdir()
    if imports.returncode != 0:
        return (
            f"nobody cannot run this checkout with {sys.executable}: "
            + (imports.stderr.decode("utf-8", "replace").strip().splitlines() or ["?"])[-1]
        )
    probe = subprocess.run(
        ["/usr/bin/bwrap", "--unshare-user", "--disable-userns", "--ro-bind", "/", "/", "true"],
        user=UNPRIVILEGED_UID,
        group=UNPRIVILEGED_UID,
        extra_groups=[],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        return "bwrap cannot make a user namespace for an unprivileged user here: " + (
            probe.stderr.decode("utf-8", "replace").strip()
        )
    return None


@contextlib.contextmanager
def running_target(
    tmp: Path, *, uid: int | None = None, backend: str = "bwrap"
) -> Iterator[Target]:
    """Start the password-protected Redis and a real worker (as ``uid``, default ours) under
    ``tmp``.

    ``tmp`` must be reachable by ``uid``: the worker's home and its Redis URL
    file are handed to it. ``backend`` is its ``AGENT_CLUSTER_SANDBOX``.
    """
    server = start_redis_server(tmp)
    # Password-protect it once it is up (the fixture's readiness probe does not AUTH).
    with server.client() as admin:
        admin.config_set("requirepass", REDIS_PASSWORD)
    url = f"redis://:{REDIS_PASSWORD}@{server.host}:{server.port}/0"
    url_file = tmp / "redis-url"
    url_file.write_text(url + "\n")
    url_file.chmod(0o600)
    namespace = f"atk{uuid.uuid4().hex[:6]}"
    home = tmp / "home"
    home.mkdir()
    if uid is not None:
        for path in (url_file, home):
            os.chown(path, uid, uid)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("AGENT_CLUSTER_") and key != "OPENAI_API_KEY"
    }
    env.update(
        {
            "OPENAI_API_KEY": FAKE_KEY,
            "AGENT_CLUSTER_HOME": str(home),
            "AGENT_CLUSTER_SANDBOX_FILE_MB": "64",
            "AGENT_CLUSTER_SANDBOX_WORKSPACE_MB": "128",
            "AGENT_CLUSTER_SANDBOX": backend,
            "AGENT_CLUSTER_ENDPOINTS": (
                '{"team": {"provider": "openai", "base_url": "http://127.0.0.1:9/v1", '
                '"api_key_env": "TEAM_CRED"}}'
            ),
            "TEAM_CRED": TEAM_CRED,
        }
    )
    prefix: list[str] = []
    if uid is not None:
        prefix = _as_unprivileged(uid, tmp / "reveal")
        env["HOME"] = str(home)
    log = (tmp / "worker.log").open("wb")
    worker = subprocess.Popen(
        [
            *prefix,
            sys.executable,
            "-m",
            "coordinator.cli",
            "worker",
            "--redis-url-file",
            str(url_file),
            "--namespace",
            namespace,
            "--id",
            "w-target",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
        cwd="/" if uid is not None else None,
    )
    client = redis.Redis(host=server.host, port=server.port, password=REDIS_PASSWORD)
    coordinator = Coordinator(settings=ClusterSettings(redis_url=url, namespace=namespace))
    try:
        deadline = time.monotonic() + 30
        while not coordinator.membership.active_workers():
            assert worker.poll() is None, (tmp / "worker.log").read_text()
            assert time.monotonic() < deadline, "the worker did not register"
            time.sleep(0.05)
        yield Target(server, url, namespace, home, worker, coordinator, client, backend)
    finally:
        coordinator.close()
        if worker.poll() is None:
            worker.terminate()
            worker.wait(timeout=60)
        log.close()
        client.close()
        server.process.terminate()
        server.process.wait(timeout=10)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    require_bwrap()
    with running_target(tmp_path_factory.mktemp("attack")) as running:
        yield running
