"""Benchmarks run from the command line (``evoagent bench``): ``search`` compares search methods
at equal environment budgets (``evoagent.bench.search``, table in ``evoagent.bench.table``)."""
