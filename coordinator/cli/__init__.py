"""The ``agent-cluster`` command line: the top of the import graph (it may import every package)."""

from coordinator.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
