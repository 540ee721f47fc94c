"""What the coordinator and the workers share: settings, keyspace, stores, ring.

Importing this package stays light (no agent, no rq): ``agent`` imports
``cluster.errors``.
"""

from cluster.errors import AgentClusterError
from cluster.keys import Keyspace
from cluster.ring import HashRing
from cluster.settings import ClusterSettings

__all__ = ["AgentClusterError", "ClusterSettings", "HashRing", "Keyspace"]
