"""Learned process reward models: the prefix text every model reads, training, loading, evaluation.

``prefix_text`` (:mod:`evoagent.rm.text`) is the one rendering of a (task, step
prefix); ``load_model`` (:mod:`evoagent.rm.model`) reads a model directory
written by ``evoagent rm train`` (:mod:`evoagent.rm.train`); ``evoagent rm eval``
is :mod:`evoagent.rm.evaluate`. The CPU backbone (:mod:`evoagent.rm.features`)
needs only the default install; the transformer backbone
(:mod:`evoagent.rm.transformer`) imports PyTorch only when it is used.
"""
from __future__ import annotations

from evoagent.rm.model import ProcessRewardModel, load_model
from evoagent.rm.text import prefix_text

__all__ = ["ProcessRewardModel", "load_model", "prefix_text"]
