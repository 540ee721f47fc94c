"""Names and label values the worker's and the gateway's Prometheus metrics share.

The worker defines its metrics in ``worker/metrics.py``, the gateway its own
and the cluster view (built from the workers' health records) in
``coordinator/metrics.py``; both name them from here so the two agree.
"""

from __future__ import annotations

__all__ = ["LATENCY_BUCKETS", "PREFIX", "TOKEN_KINDS"]

PREFIX = "agent_cluster"
"""Prefix of every metric name."""

LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)
"""Histogram buckets (seconds) of turn duration, time to first token, queue wait and requests."""

TOKEN_KINDS = ("input", "cache_read", "cache_write", "output")
"""Values of the ``kind`` label of ``agent_cluster_provider_tokens_total``."""
