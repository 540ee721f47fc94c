r"""Seeded, reproducible chaos test of a real cluster (issue 7).

``harness`` plans the chaos (a pure function of the seed) and runs it against
a private ``redis-server`` and real worker processes; ``traffic`` drives the
client sessions; ``checks`` verifies what the cluster did and prints the table;
``run`` is the command line for long runs::

    .venv/bin/python -m tests.integration.chaos.run \
        --seed 3 --duration 600 --workers 6 --sessions 200
"""
