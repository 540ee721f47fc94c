"""Routing, the Python ingress, the HTTP gateway and the embedded mode.

Importing this package loads no worker or agent code: the gateway
(``coordinator.http``) and the Python ingress meet the workers only through
``cluster/``. The embedded mode, which runs workers in this process, is
imported from ``coordinator.embedded``.
"""

from coordinator.ingress import Coordinator, Reply, TurnHandle
from coordinator.routing import Router

__all__ = ["Coordinator", "Reply", "TurnHandle", "Router"]
