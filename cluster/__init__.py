"""What the coordinator and the workers share: settings, keyspace, stores, ring."""

from cluster.errors import AgentClusterError

__all__ = ["AgentClusterError"]
