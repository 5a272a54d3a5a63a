"""Test-only machinery, kept apart from the modules users read first.

``store_contract``: the store contract suite; every store implementation runs
it (``from evoagent.testing.store_contract import *`` in a test module).

``env_contract``, ``policy_contract``, ``reward_contract``, ``operator_contract``,
``strategy_contract``: the contract of each kind of part (determinism under a
seed, resumability, totality of ``step``, bounded outputs, ``uses_gold``
honesty), as plain functions (``check_env``, ``check_policy``,
``check_reward_model``, ``check_operator``, ``check_strategy``) a plug-in's own
pytest tests call; each raises ``AssertionError`` naming what broke. Every
built-in part runs them in ``tests/test_contracts.py``.

``fake_server`` (with ``fake_wire``): a loopback server that speaks Anthropic's
Messages, streaming, Batches and count_tokens wire format and, with an
environment's fake agent (its part's ``fake_agent``), plays that environment
from recorded actions, for tests, benchmarks and offline demos
(``python -m evoagent.testing.fake_server --responder ENV``).
"""
