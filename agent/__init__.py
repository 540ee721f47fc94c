"""The per-session LLM agent the cluster caches, its providers, tools and simulator."""

from agent.agent import AIAgent
from agent.messages import TurnResult, Usage
from agent.prompt import FrozenPrompt

__all__ = ["AIAgent", "FrozenPrompt", "TurnResult", "Usage"]
