"""``python -m coordinator.cli``: the same as the ``agent-cluster`` command."""

from coordinator.cli.main import main

raise SystemExit(main())
