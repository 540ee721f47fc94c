"""A session's exported variables never reach what the worker starts on the host.

Each attack plants code in the session's workspace, exports a variable that
points a host-side launch at it (the workspace's host path is known: it is in
the sandbox's ``/proc/self/mountinfo``), then triggers a launch. The planted
code appends its command line to a file at a host path outside the
workspace, which nothing inside a ``bwrap`` sandbox can even see: any line
there is code run on the host. Every attack runs against a root worker, a
worker running as ``nobody`` with bwrap's user namespace (where this machine
allows it), and a worker with the unsandboxed ``local`` backend, where the
session's own commands run on the host by design, but the programs the
worker starts (the command's launcher, the process tool's launcher and
wrapper) must not run the planted code either.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.tools.environment import remove_tree
from tests.integration.security.conftest import (
    REDIS_PASSWORD,
    TEAM_CRED,
    UNPRIVILEGED_UID,
    Target,
    running_target,
    unprivileged_worker_problem,
)
from tests.sandbox_support import require_bwrap

pytestmark = pytest.mark.integration

# The argv0 of the programs the worker itself starts on the host: the shell that
# loads a command's environment and the process tool's launcher and wrapper.
WORKER_LAUNCHES = ("ac-enter", "agent-launcher", "agent-process")
# Appends the running shell's command line to the proof file; planted with
# printf inside double quotes, hence the escaped $$.
RECORD = "tr '\\\\0' ' ' < /proc/\\$\\$/cmdline >> {proof}; echo >> {proof}"


@pytest.fixture(scope="module", params=["root", "unprivileged", "local"])
def worker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    if request.param == "local":
        with running_target(tmp_path_factory.mktemp("escape"), backend="local") as target:
            yield target
        return
    require_bwrap()
    if request.param == "root":
        with running_target(tmp_path_factory.mktemp("escape")) as target:
            yield target
        return
    problem = unprivileged_worker_problem()
    if problem is not None:
        pytest.skip(problem)
    # pytest's own temporary directories are private to root: nobody needs its own.
    tmp = Path(tempfile.mkdtemp(prefix="ac-escape-"))
    try:
        tmp.chmod(0o755)
        with running_target(tmp, uid=UNPRIVILEGED_UID) as target:
            yield target
    finally:
        remove_tree(tmp)


def session() -> str:
    return f"escape-{uuid.uuid4().hex[:8]}"


def proof_path(target: Target) -> Path:
    """A host path outside every workspace, writable by the worker's user."""
    return target.home / f"pwned-{uuid.uuid4().hex[:8]}"


def host_runs(target: Target, proof: Path) -> list[str]:
    """Command lines of the host-side processes that ran the planted code.

    Under ``bwrap`` any line is one (a sandbox cannot see the proof's path);
    under ``local`` only the programs the worker starts count.
    """
    lines = proof.read_text().splitlines() if proof.exists() else []
    if target.backend == "local":
        return [line for line in lines if any(name in line for name in WORKER_LAUNCHES)]
    return lines


def run_process(target: Target, chat: str, command: str) -> str:
    """Start ``command`` with the process tool and return its poll once it has exited."""
    started = target.tool(chat, "process", action="start", command=command)
    assert "started p" in started, started
    proc_id = started.split("started ", 1)[1].split()[0]
    deadline = time.monotonic() + 30
    while True:
        polled = target.tool(chat, "process", action="poll", id=proc_id)
        if "exited" in polled or time.monotonic() > deadline:
            return polled
        time.sleep(0.1)


def test_bash_env_pointing_into_the_workspace_runs_nothing_on_the_host(worker: Target) -> None:
    chat = session()
    # The attacker is handed its workspace's host path (a bind-mounted workspace
    # shows it in /proc/self/mountinfo; a quota volume does not): the defence
    # must not rest on that path being secret.
    proof = proof_path(worker)
    record = RECORD.format(proof=proof)
    planted = worker.sh(
        chat,
        f"printf '%s\\n' \"{record}\" > be.sh && "
        f"export BASH_ENV={worker.workspace(chat)}/be.sh && echo planted",
    )
    assert "planted" in planted
    polled = run_process(worker, chat, "echo job-ran")
    assert "job-ran" in polled and "exited (code 0)" in polled
    assert host_runs(worker, proof) == []


def test_a_fake_bash_first_on_path_runs_nothing_on_the_host(worker: Target) -> None:
    chat = session()
    proof = proof_path(worker)
    record = RECORD.format(proof=proof)
    planted = worker.sh(
        chat,
        "mkdir -p bin && "
        f"printf '%s\\n' '#!/bin/sh' \"{record}\" 'exec /bin/bash \"$@\"' > bin/bash && "
        f"chmod 755 bin/bash && export PATH={worker.workspace(chat)}/bin:$PATH && echo planted",
    )
    assert "planted" in planted
    polled = run_process(worker, chat, "echo job-ran")
    assert "job-ran" in polled and "exited (code 0)" in polled
    assert host_runs(worker, proof) == []


def test_ld_preload_of_a_workspace_library_runs_nothing_on_the_host(worker: Target) -> None:
    chat = session()
    proof = proof_path(worker)
    source = (
        "#include <stdio.h>\n"
        "__attribute__((constructor)) static void escape(void) {\n"
        '  FILE *in = fopen("/proc/self/cmdline", "r");\n'
        f'  FILE *out = fopen("{proof}", "a");\n'
        "  int c;\n"
        "  if (in && out) { while ((c = fgetc(in)) != EOF) fputc(c ? c : ' ', out); }\n"
        "  if (out) { fputc('\\n', out); fclose(out); }\n"
        "  if (in) fclose(in);\n"
        "}\n"
    )
    planted = worker.sh(
        chat,
        f"cat > p.c <<'EOF'\n{source}EOF\n"
        "TMPDIR=$PWD gcc -shared -fPIC -o p.so p.c && "
        f"export LD_PRELOAD={worker.workspace(chat)}/p.so && echo planted",
    )
    assert "planted" in planted, planted
    worker.sh(chat, "true")
    run_process(worker, chat, "true")
    assert host_runs(worker, proof) == []


def test_exported_variables_still_apply_to_the_sessions_commands(worker: Target) -> None:
    chat = session()
    worker.sh(chat, "export GREETING=hello-from-the-session PATH=$PWD/bin:$PATH")
    worker.sh(
        chat,
        "mkdir -p bin && printf '#!/bin/sh\\necho own-tool\\n' > bin/mytool && chmod 755 "
        "bin/mytool",
    )
    assert "hello-from-the-session" in worker.sh(chat, 'echo "$GREETING"')
    assert "own-tool" in worker.sh(chat, "mytool")
    polled = run_process(worker, chat, 'echo "$GREETING"; mytool')
    assert "hello-from-the-session" in polled and "own-tool" in polled


def test_sandbox_tmp_is_writable_and_gcc_works(worker: Target) -> None:
    reply = worker.sh(
        session(),
        "echo scratch > /tmp/ac-x-$$ && cat /tmp/ac-x-$$ && rm /tmp/ac-x-$$ && "
        "printf 'int main(void){return 0;}' > t.c && gcc -o t t.c && ./t && echo compiled",
    )
    assert "scratch" in reply and "compiled" in reply, reply


def test_the_redis_password_from_the_url_file_is_redacted(worker: Target) -> None:
    """The worker read its Redis URL from a file, not its environment: it is still a secret."""
    reply = worker.sh(session(), f"echo {REDIS_PASSWORD}")
    assert REDIS_PASSWORD not in reply and "[redacted]" in reply


def test_the_key_of_a_declared_endpoint_is_redacted_whatever_its_variable_is_called(
    worker: Target,
) -> None:
    """TEAM_CRED is not named like a secret; the worker knows it is one (an endpoint's key)."""
    reply = worker.sh(session(), f"echo {TEAM_CRED}")
    assert TEAM_CRED not in reply and "[redacted]" in reply
