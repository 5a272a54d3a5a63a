"""Reward models on the cluster: a learned PRM's forward pass in one shared Ray actor per model.

With ``rewards.prm.placement = "ray"`` the campaign's process does not load
the model's weights for scoring: :class:`RemoteModel` stands in for the loaded
model (same ``digest``, ``max_chars`` and ``score_texts``), and sends each
batch of texts to a :class:`ModelActor` that loaded the directory once, with
``rewards.prm.num_cpus`` / ``num_gpus`` as its resources. Everything else is
unchanged: the driver's store-backed Scorer looks every query up, batches,
and writes every score before it is used; only the forward pass moves.

- One actor per model *content*: it is named ``evoagent-prm-<digest>`` in the
  ``evoagent`` namespace and created with ``get_if_exists``, so every campaign
  (driver process or Runner) on the same cluster that uses the same model
  sends its batches to the same actor, which runs them one at a time on its
  device. The first campaign's ``num_cpus``/``num_gpus`` are the actor's.
- Lifetime ``detached``: a campaign that ends (or dies) does not take the
  actor away from the campaigns still using it. It lives until the Ray
  session ends (a ``local`` session ends with the campaign that started it)
  or someone frees it: ``ray.kill(ray.get_actor("evoagent-prm-<digest>",
  namespace="evoagent"))``.
- The actor reads the model directory at the same path on its node, and
  refuses it unless its content digest is the driver's (a name never serves
  other weights than the ones the cached scores were computed with).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from evoagent.errors import UserError
from evoagent.ray_session import connect, disconnect

NAMESPACE = "evoagent"
START_TIMEOUT_S = 600.0  # the actor's creation and model load (a GPU node may have to free up first)

__all__ = ["ModelActor", "RemoteModel", "actor_name"]


def actor_name(digest: str) -> str:
    """The shared actor's name for a model's content digest."""
    return f"evoagent-prm-{digest}"


class ModelActor:
    """A Ray actor: one model directory, loaded once; scores the texts of every campaign that uses it."""

    def __init__(self, path: str, digest: str):
        from evoagent.rm.model import load_model

        self.model = load_model(path)
        if self.model.digest != digest:
            raise UserError(f"key 'rewards.prm.path': {path} on the Ray node holding the model is another "
                            f"model (digest {self.model.digest}, the campaign's is {digest}); the directory "
                            "must be the same files on every node")
        self.batches = self.texts = 0

    def score_texts(self, texts: list[str]) -> list[float]:
        self.batches += 1
        self.texts += len(texts)
        return self.model.score_texts(texts)

    def info(self) -> dict[str, Any]:
        """What it serves and has served (batches and texts since it started), and its process id."""
        return {"digest": self.model.digest, "batches": self.batches, "texts": self.texts, "pid": os.getpid()}


class RemoteModel:
    """In the driver: a model whose forward passes run in the shared :class:`ModelActor`."""

    def __init__(self, path: str, *, address: str, num_cpus: float, num_gpus: float,
                 note: Callable[[str], None] = lambda stage: None):
        from evoagent.rm.model import content_digest, read_config

        folder = Path(path).resolve()
        self.max_chars = int(read_config(folder)["max_chars"])
        self.digest = content_digest(folder)
        self._owns_session, self._tmp = connect(address, note)
        try:
            import ray

            self.actor = ray.remote(ModelActor).options(
                name=actor_name(self.digest), namespace=NAMESPACE, get_if_exists=True, lifetime="detached",
                num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=3, max_task_retries=3,  # scoring is pure
            ).remote(str(folder), self.digest)
            try:
                ray.get(self.actor.info.remote(), timeout=START_TIMEOUT_S)
            except ray.exceptions.GetTimeoutError:
                raise UserError(f"key 'rewards.prm.placement': the model's Ray actor did not start in "
                                f"{START_TIMEOUT_S:.0f} s (does a node have num_cpus={num_cpus}, "
                                f"num_gpus={num_gpus} free?)") from None
            except ray.exceptions.RayActorError as exc:
                cause = getattr(exc, "error_msg", "") or str(exc)
                lines = [ln.strip() for ln in cause.splitlines() if "UserError" in ln or "Error" in ln]
                raise UserError(f"key 'rewards.prm.placement': the model's Ray actor failed to start: "
                                f"{(lines[-1] if lines else type(exc).__name__)[:300]}") from None
        except BaseException:
            self.close()
            raise

    def score_texts(self, texts: Sequence[str]) -> list[float]:
        """One probability per text, computed by the shared actor (one batch, in order)."""
        import ray

        return ray.get(self.actor.score_texts.remote(list(texts)))

    def info(self) -> dict[str, Any]:
        import ray

        return ray.get(self.actor.info.remote())

    def close(self) -> None:
        """Leave the shared actor to the other campaigns; end the Ray session if this model started it."""
        if self._owns_session:
            self._owns_session = False
            disconnect(self._tmp)
