"""The LLM side of the SE-Agent operators: reflect, combine, shorten.

Operators call these when the campaign runs an LLM policy; with the offline
replay policy they use their built-in heuristics instead. Each call renders a
template from ``evoagent/prompts.py`` and goes through the same ledger-backed
client as the policy (content-addressed, budgeted, retried).
"""
from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

from evoagent.llm.client import LLMClient
from evoagent.policies.llm import schema_text, tool_call
from evoagent.trajectory import Task, Trajectory
from evoagent.prompts import COMBINE, REFLECT, SHORTEN, Template, render_steps

__all__ = ["Advisor"]

_REF = re.compile(r"^([A-Z])\[?(\d+)\]?$")


class Advisor:
    """Asks the model for guidance, plans and clean-ups; returns None when it gives none."""

    def __init__(self, client: LLMClient, *, model: str, max_tokens: int = 512, show_rewards: bool = False):
        self.client, self.model, self.max_tokens = client, model, max_tokens
        self.show_rewards = show_rewards  # only for a search signal the policy may see (no gold)

    def _ask(self, template: Template, tool: str, rng: random.Random, **fields: Any) -> dict[str, Any] | None:
        request = {
            "model": self.model, "max_tokens": self.max_tokens,
            "system": template.system, "tools": list(template.tools),
            "tool_choice": {"type": "tool", "name": tool},
            "messages": [{"role": "user", "content": template.user.format(**fields)}],
        }
        reply = self.client.complete(request, template=template.name, template_hash=template.hash,
                                     nonce=f"{rng.getrandbits(64):016x}",
                                     valid=lambda a: tool_call(a, (tool,)) is not None)
        block = tool_call({"content": reply.content}, (tool,))
        return dict(block["input"]) if block else None

    def _steps(self, steps: Any, prefix: str = "") -> str:
        return render_steps(steps, prefix=prefix, show_rewards=self.show_rewards)

    def _task_fields(self, task: Task) -> dict[str, str]:
        return {"db": task.meta.get("db", ""), "schema": schema_text(task), "question": task.question}

    def reflect(self, task: Task, parent: Trajectory, wrong: int, rng: random.Random) -> str:
        """Guidance for re-rolling ``parent`` from step ``wrong``."""
        outcome = f"It scored {parent.outcome_reward:g} (1.0 is a correct answer). " if self.show_rewards else ""
        out = self._ask(REFLECT, "write_guidance", rng, steps=self._steps(parent.steps),
                        outcome=outcome, wrong=wrong, **self._task_fields(task)) or {}
        return " ".join(str(out.get(k, "")) for k in ("diagnosis", "advice")).strip()

    def combine(self, task: Task, parents: Sequence[Trajectory], rng: random.Random) -> list[str] | None:
        """A plan of parent steps (by reference) to execute, in order."""
        letters = [chr(ord("A") + i) for i in range(len(parents))]
        attempts = "\n\n".join(
            f"Attempt {x}{f' (scored {p.outcome_reward:g})' if self.show_rewards else ''}:\n"
            f"{self._steps(p.steps, prefix=x)}" for x, p in zip(letters, parents))
        out = self._ask(COMBINE, "propose_plan", rng, attempts=attempts, **self._task_fields(task)) or {}
        plan = []
        for ref in out.get("steps") or []:
            m = _REF.match(str(ref).strip())
            if m and m.group(1) in letters:
                steps = parents[letters.index(m.group(1))].steps
                if int(m.group(2)) < len(steps):
                    plan.append(steps[int(m.group(2))].action)
        return list(dict.fromkeys(plan)) or None

    def shorten(self, task: Task, parent: Trajectory, rng: random.Random) -> list[str] | None:
        """The actions of the steps the model would keep, in order."""
        out = self._ask(SHORTEN, "keep_steps", rng, steps=self._steps(parent.steps), **self._task_fields(task)) or {}
        keep = [int(i) for i in out.get("steps") or [] if str(i).lstrip("-").isdigit()]
        actions = [parent.steps[i].action for i in keep if 0 <= i < len(parent.steps)]
        return actions or None
