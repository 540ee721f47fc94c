"""Routing, the Python ingress and the embedded mode."""

from coordinator.embedded import EmbeddedCluster
from coordinator.ingress import Coordinator, Reply, TurnHandle
from coordinator.routing import Router

__all__ = ["Coordinator", "EmbeddedCluster", "Reply", "Router", "TurnHandle"]
