"""The tool environment a worker's turns run in: the sandbox and the secret redactor.

Built once per worker process from the settings and the process' environment
(:class:`worker.process.WorkerOptions`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from agent.tools import ToolEnvironment
from agent.tools.redaction import SecretRedactor
from agent.tools.sandbox_config import SandboxConfig
from cluster.settings import ClusterSettings


def worker_tool_environment(
    settings: ClusterSettings, *, sandbox_root: Path | None, environ: Mapping[str, str]
) -> ToolEnvironment:
    """The worker's tool environment: sandbox from the environment, secrets redacted."""
    sandbox = SandboxConfig.from_env(environ)
    if settings.workspace_mode == "shared":
        sandbox = sandbox.for_shared_workspaces()
    return ToolEnvironment.default(
        sandbox_root,
        sandbox=sandbox,
        # The Redis URL may come from a file or the settings file, not the environment.
        redactor=SecretRedactor.from_environ(
            environ,
            urls=(settings.redis_url,),
            secret_names=settings.endpoint_table().key_variables(),
        ),
    )
