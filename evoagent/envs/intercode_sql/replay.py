"""Re-execute recorded InterCode runs and check that our rewards match theirs.

Agreement is counted per executed action: after each action the recorder
sent to MySQL we compare our InterCode reward with the recorded one
(tolerance 0.005). Actions the recording harness never executed are skipped
and counted apart: its "format your SQL" replies (the model wrote no SQL) and
``blocked`` steps (the provider returned no answer; imported with no
observation). Every disagreement is put in one class by looking at both
results, so the report says why, not just how often.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from evoagent.envs.intercode_sql.data import load_recorded, load_tasks, split_joined_rows
from evoagent.envs.intercode_sql.env import ERROR_PREFIX, InterCodeSQLEnv
from evoagent.envs.intercode_sql.reward import intercode_reward
from evoagent.errors import UserError

TOLERANCE = 0.005
MAX_EXAMPLES = 3

CAUSES = {
    "mysql_functional_dependency": "MySQL accepted non-aggregated columns functionally dependent on GROUP BY keys",
    "mysql_only_syntax": "MySQL-only syntax or function that the translation does not cover",
    "mysql_stricter": "MySQL rejected a query that DuckDB accepts",
    "recorded_db_modified": "an earlier recorded action modified the MySQL database (we refuse writes)",
    "tie_order": "same rows, different order of ties (no total ORDER BY)",
    "collation_or_padding": "string comparison/grouping differs (accents, trailing spaces, case)",
    "numeric_formatting": "same values printed differently (float/decimal/int types)",
    "result_differs": "different rows for another reason",
    "our_error_other": "we raised an error that MySQL did not",
}


@dataclass
class ReplayReport:
    """Per-action agreement between our rewards and the recorded ones."""

    source: str
    agreed: int = 0
    total: int = 0  # executed actions: the agreement's denominator
    format_retries: int = 0
    blocked: int = 0
    by_cause: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def percent(self) -> float:
        return 100.0 * self.agreed / self.total if self.total else 100.0

    def render(self) -> str:
        """Human-readable report; the last line is ``agreement: A/N executed actions (P%)``."""
        lines = [f"replay of {self.source}: {self.total + self.format_retries + self.blocked} actions, "
                 f"{self.total} executed by the recorder; skipped, never executed: {self.format_retries} "
                 f"format retries (no SQL in the answer), {self.blocked} blocked (no answer)"]
        for cause, n in sorted(self.by_cause.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {n:5d}  {cause}: {CAUSES.get(cause, cause)}")
            for ex in self.examples.get(cause, []):
                lines.append(f"           e.g. {ex}")
        lines.append(f"agreement: {self.agreed}/{self.total} executed actions ({self.percent:.1f}%)")
        return "\n".join(lines)


def _executed_by_recorder(obs: str) -> bool:
    s = obs.lstrip()
    return s.startswith(("[", "(", "Error executing query")) or s in ("None", "")


def _rows_of(obs: str) -> list[str] | None:
    """Stringified rows of a recorded or our observation (None: error/unparseable)."""
    if obs.startswith(ERROR_PREFIX) or obs.startswith("Error executing query"):
        return None
    s = obs.strip()
    if s.startswith("[") and s.endswith("]"):
        s = s[1:-1]
        # str(list) separates rows with ", "; rejoin so the tokenizer split applies
        return split_joined_rows(re.sub(r"\),\s\(", ")(", s)) if s else []
    return split_joined_rows(s)


_NUM = re.compile(r"Decimal\('(-?[\d.]+)'\)|(-?\d+\.\d+(?:e-?\d+)?)|(-?\d+)")


def _norm_numbers(row: str) -> str:
    def one(m: re.Match) -> str:
        text = m.group(1) or m.group(2) or m.group(3)
        try:
            return repr(round(float(text), 4))
        except ValueError:
            return text
    return _NUM.sub(one, row)


def classify(action: str, ours: str, recorded: str, modified_before: bool) -> str:
    """One cause for a disagreement between our step and the recorded one."""
    ours_err = ours.startswith(ERROR_PREFIX)
    rec_err = recorded.startswith("Error executing query")
    if modified_before:
        return "recorded_db_modified"
    if ours_err and not rec_err:
        low = ours.lower()
        if "group by" in low or "aggregate" in low:
            return "mysql_functional_dependency"
        if "syntax" in low or "does not exist" in low or "function" in low or "scalar" in low:
            return "mysql_only_syntax"
        return "our_error_other"
    if rec_err and not ours_err:
        return "mysql_stricter"
    a, b = _rows_of(ours), _rows_of(recorded)
    if a is None or b is None:
        return "result_differs"
    if Counter(a) == Counter(b):
        return "tie_order"
    if Counter(map(_norm_numbers, a)) == Counter(map(_norm_numbers, b)):
        return "numeric_formatting"
    fold = lambda rows: Counter(r.lower().replace(" '", "'").replace(" ',", "',") for r in rows)  # noqa: E731
    if fold(a) == fold(b) or len(a) != len(b):
        return "collation_or_padding"
    return "result_differs"


_WRITES = re.compile(r"^\s*(ALTER|UPDATE|INSERT|DELETE|CREATE|DROP|REPLACE|TRUNCATE|RENAME)\b", re.I)


def replay_file(path: str | Path, **env_kwargs: object) -> ReplayReport:
    """Replay every executed action of ``path``, each task from a fresh episode."""
    trajs = load_recorded(path)
    tasks = {t.task_id: t for t in load_tasks()}
    report = ReplayReport(source=Path(path).name)
    env = InterCodeSQLEnv(**env_kwargs)  # type: ignore[arg-type]
    causes: Counter[str] = Counter()
    try:
        for traj in trajs:
            task = tasks.get(traj.task_id)
            if task is None:
                raise UserError(f"{path}: task {traj.task_id} is not one of the {len(tasks)} bundled tasks")
            env.reset(task)
            modified = False
            for step in traj.steps:
                if step.observation is None:
                    report.blocked += 1
                    continue
                if not _executed_by_recorder(step.observation):
                    report.format_retries += 1
                    continue
                report.total += 1
                if step.action.strip().lower() == "submit":
                    obs, rows, _ = env.execute(step.action)  # InterCode ran it as SQL
                    ours = intercode_reward(rows, env.gold_rows(task))
                else:
                    obs, ours, _, _ = env.step(step.action)
                if abs(ours - step.reward) <= TOLERANCE:
                    report.agreed += 1
                else:
                    cause = classify(step.action, obs, step.observation, modified)
                    causes[cause] += 1
                    exs = report.examples.setdefault(cause, [])
                    if len(exs) < MAX_EXAMPLES:
                        exs.append(f"{traj.task_id}#{step.idx}: ours {ours} vs recorded {step.reward}: "
                                   f"{' '.join(step.action.split())[:140]}")
                if _WRITES.match(step.action) and step.observation.strip() == "None":
                    modified = True
    finally:
        env.close()
    report.by_cause = dict(causes)
    return report
