"""The environment of every process the worker starts on the host, built by the worker alone.

A session's shell state (what its commands ``export``) is untrusted: a
variable such as ``BASH_ENV``, ``LD_PRELOAD`` or a ``PATH`` that points into
the session's workspace would make a program the worker starts outside the
sandbox (``bwrap`` itself, the ``process`` tool's launcher and wrapper, an MCP
server) run the session's code as the worker's user. So the one function
here, :func:`host_environment`, builds every such environment from constants
and from what the worker's operator declared, never from the session; a unit
test checks that every ``subprocess``/``Popen`` call and MCP launch in
``agent/tools/`` passes ``env=host_environment(...)``.

The session's variables travel to the inside of its sandbox as data (a
memory file descriptor read by the shell that starts the command, after the
sandbox has dropped every privilege; see :mod:`agent.tools.sandbox`).
"""

from __future__ import annotations

from collections.abc import Mapping

HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""``PATH`` of the worker's host-side helpers (which are started by absolute path anyway)."""
BASH = "/bin/bash"
"""The shell the worker starts its launchers, wrappers and sandboxed commands with."""


def host_environment(declared: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the environment of a process the worker starts on the host.

    Args:
        declared: variables the worker's operator declared for this program
            (an MCP server's ``env``, the worker variables the SDK passes on);
            never anything a session set.

    Returns:
        ``PATH`` (the system directories) and ``LANG``, overridden by ``declared``.
    """
    env = {"PATH": HOST_PATH, "LANG": "C.UTF-8"}
    if declared:
        env.update(declared)
    return env


__all__ = ["BASH", "HOST_PATH", "host_environment"]
