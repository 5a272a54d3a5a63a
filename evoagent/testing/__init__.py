"""Test-only machinery, kept apart from the modules users read first.

``store_contract``: the store contract suite; every store implementation runs
it (``from evoagent.testing.store_contract import *`` in a test module).

``fake_server`` (with ``fake_wire`` and ``fake_intercode``): a loopback server
that speaks Anthropic's Messages, streaming, Batches and count_tokens wire
format and plays InterCode-SQL from the recorded actions, for tests, benchmarks
and offline demos (``python -m evoagent.testing.fake_server``).
"""
