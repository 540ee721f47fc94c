"""The worker: local agent cache, turn execution, the worker process."""

from worker.cache import AgentCache, config_signature, extract_cache_busting_config, init_for_turn
from worker.process import WorkerOptions, WorkerProcess

__all__ = [
    "AgentCache",
    "WorkerOptions",
    "WorkerProcess",
    "config_signature",
    "extract_cache_busting_config",
    "init_for_turn",
]
