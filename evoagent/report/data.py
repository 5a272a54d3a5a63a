"""What the report and the terminal views show, read through the store's SQL views only.

Every function takes an open (read-only) store and returns plain Python rows,
so the same numbers feed the HTML report, the terminal views and the tests.
Panels whose data a store does not have (no LLM calls, no reward model, no
search) come back empty and are left out of the report.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

from evoagent.errors import UserError
from stores.base import Store

# Outcome reward sources that are the environment's own score, not a model's.
ENV_SOURCES = ("env", "recorded")
_HEX = re.compile(r"[0-9a-fA-F]{1,64}")


def finite(v: Any) -> Any:
    """None for NaN/inf, so that every number can go into JSON and arithmetic."""
    return None if isinstance(v, float) and not math.isfinite(v) else v


def rows(store: Store, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
    return [{k: finite(v) for k, v in r.items()} for r in store.query(sql, params).to_pylist()]


def view_columns(store: Store, name: str) -> set[str]:
    """Columns of a view in this store (empty when the store has no such view)."""
    got = store.query("SELECT column_name FROM information_schema.columns "
                      "WHERE table_schema = 'main' AND table_name = ?", [name])
    return set(got.column("column_name").to_pylist())


def campaign(store: Store) -> dict[str, Any]:
    """The campaign's configuration as written at its start ({} for imported data)."""
    try:
        value = json.loads(store.get_meta("campaign") or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def progress(store: Store) -> list[dict[str, Any]]:
    """Per generation: success (best per task), members solved, mean reward, the replay-pool bound."""
    out = []
    for r in rows(store, "SELECT generation, status, success_rate, mean_reward, best_reward, nevals, "
                         "env_steps, stats FROM generations WHERE generation IS NOT NULL ORDER BY generation"):
        try:
            stats = json.loads(r.pop("stats") or "{}")
        except ValueError:
            stats = {}
        stats = stats if isinstance(stats, dict) else {}
        r["members_solved"] = _number(stats.get("members_solved"))
        r["bound"] = _number(stats.get("bound"))
        out.append(r)
    return out


def _number(v: Any) -> float | None:
    return finite(float(v)) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def operators(store: Store) -> list[dict[str, Any]]:
    """Per operator and generation: children, their success rate, mean gain over the best parent, cost."""
    return rows(store, """
        WITH reward AS (SELECT traj_id, max(outcome_reward) AS r FROM trajectories GROUP BY traj_id),
        items AS (SELECT generation, item_id, operator, traj_id, parents FROM work_items WHERE status = 'done'),
        best_parent AS (SELECT i.generation, i.item_id, max(p.r) AS best
                        FROM items i, unnest(i.parents) AS u(pid) JOIN reward p ON p.traj_id = u.pid GROUP BY ALL),
        spend AS (SELECT generation, item_id, sum(cost_usd) AS usd FROM llm_calls WHERE status = 'ok' GROUP BY ALL)
        SELECT i.operator, i.generation, count(*) AS children,
               avg(CASE WHEN c.r >= 1.0 THEN 1.0 ELSE 0.0 END) AS success_rate,
               avg(c.r - b.best) AS mean_gain, sum(greatest(c.r - b.best, 0)) AS reward_gained,
               coalesce(sum(s.usd), 0) AS cost_usd,
               coalesce(sum(s.usd), 0) / nullif(sum(greatest(c.r - b.best, 0)), 0) AS usd_per_reward
        FROM items i JOIN reward c USING (traj_id) LEFT JOIN best_parent b USING (generation, item_id)
        LEFT JOIN spend s USING (generation, item_id)
        GROUP BY ALL ORDER BY i.generation, i.operator""")


def costs(store: Store) -> dict[str, Any]:
    """Where the money and the work went: LLM spend, environment steps and seconds, budget used."""
    llm = rows(store, "SELECT generation, operator, batched, sum(calls)::BIGINT AS calls, "
                      "sum(input_tokens + output_tokens)::BIGINT AS tokens, "
                      "sum(cache_read_tokens)::BIGINT AS cache_read_tokens, sum(cost_usd) AS cost_usd "
                      "FROM llm_costs GROUP BY ALL ORDER BY ALL")
    work = rows(store, "SELECT generation, operator, count(*) AS items, sum(env_steps)::BIGINT AS env_steps, "
                       "sum(seconds) AS seconds FROM work_items WHERE status <> 'pending' GROUP BY ALL ORDER BY ALL")
    c = campaign(store)
    used = {
        "env_steps": sum(w["env_steps"] or 0 for w in work),
        "usd": sum(x["cost_usd"] or 0 for x in llm),
        "tokens": sum(x["tokens"] or 0 for x in llm),
        "generations": max((w["generation"] for w in work if w["generation"] is not None), default=None),
    }
    budget = [{"what": k, "used": used[k], "limit": _number(c.get(f"budget.{k}")) or None} for k in used]
    return {"llm": llm, "work": work, "budget": budget}


def reward_models(store: Store) -> list[dict[str, Any]]:
    """Each reward model's score of whole trajectories (every ``rewards`` source other than the environment's
    and the recorded runs', ``mc`` included), with the truth: a trajectory-level score, or the score of the
    step prefix that is the whole trajectory (a step-level model scores prefixes by their content id).
    Non-finite scores too, for the figure only (it leaves them out of its bins and says how many; they
    are never embedded as JSON, which has no NaN or infinity)."""
    cols = view_columns(store, "rewards")
    reused = "any_value(r.reused)" if "reused" in cols else "NULL"
    return rows(store, f"""
        SELECT r.reward_source AS model, arg_max(r.value, coalesce(r.step_idx, -1)) AS score,
               any_value(t.solved) AS solved, {reused} AS reused
        FROM rewards r JOIN (SELECT traj_id, bool_or(solved) AS solved FROM trajectories GROUP BY traj_id) t
        USING (traj_id)
        WHERE r.reward_source NOT IN ({", ".join(f"'{s}'" for s in ENV_SOURCES)})
        GROUP BY r.reward_source, r.traj_id
        ORDER BY model, r.traj_id""")


SEARCH_VIEW, SEARCH_COLUMNS = "search_steps", {"generation", "candidates", "rising"}


def search(store: Store) -> list[dict[str, Any]]:
    """Step-level search (RRO/IPR): candidates per step and the share that raised the process reward.

    Read from a ``search_steps`` view (one row per searched step: ``generation``,
    ``candidates``, ``rising``) when the store has one."""
    if not SEARCH_COLUMNS <= view_columns(store, SEARCH_VIEW):
        return []
    return rows(store, f"SELECT generation, count(*) AS steps, avg(candidates) AS candidates_per_step, "
                       f"sum(rising) / nullif(sum(candidates), 0) AS rising_share "
                       f"FROM {SEARCH_VIEW} GROUP BY generation ORDER BY generation")


def best_per_task(store: Store) -> list[dict[str, Any]]:
    """Each task's best trajectory (reward, then fewest steps), with the task and how many were tried."""
    out = rows(store, """
        WITH ranked AS (SELECT traj_id, task_id, outcome_reward, n_steps, operator, generation, source,
                               row_number() OVER (PARTITION BY task_id ORDER BY outcome_reward DESC NULLS LAST,
                                                  n_steps, created_at, traj_id) AS rk,
                               count(DISTINCT traj_id) OVER (PARTITION BY task_id) AS tried
                        FROM trajectories),
        task AS (SELECT task_id, any_value(db) AS db, any_value(hardness) AS hardness,
                        any_value(question) AS question FROM tasks GROUP BY task_id)
        SELECT r.task_id, k.db, k.hardness, k.question, r.traj_id, r.outcome_reward, r.n_steps,
               r.operator, r.generation, r.source, r.tried
        FROM ranked r LEFT JOIN task k USING (task_id) WHERE r.rk = 1""")
    return sorted(out, key=lambda r: natural_key(r["task_id"]))


def natural_key(text: str | None) -> list[Any]:
    """Sort ``sql/2`` before ``sql/10``."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", text or "")]


def trajectories(store: Store, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """One row per trajectory id (its first record when several sources share it)."""
    got = rows(store, """
        SELECT t.traj_id, t.task_id, t.source, t.campaign, t.generation, t.operator, t.outcome_reward,
               t.n_steps, t.cost_usd, t.input_tokens, t.output_tokens, t.seed, t.item_id, t.solved,
               k.question, k.db, k.hardness
        FROM trajectories t LEFT JOIN (SELECT task_id, any_value(db) AS db, any_value(hardness) AS hardness,
                                       any_value(question) AS question FROM tasks GROUP BY task_id) k USING (task_id)
        WHERE t.traj_id IN (SELECT unnest(?::VARCHAR[]))
        QUALIFY row_number() OVER (PARTITION BY t.traj_id ORDER BY t.created_at, t.source) = 1""", [list(ids)])
    return {r["traj_id"]: r for r in got}


def steps(store: Store, ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Steps of the given trajectories, in order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows(store, "SELECT traj_id, idx, thought, action, observation, reward, valid, process_reward "
                         "FROM steps WHERE traj_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY traj_id, idx",
                  [list(ids)]):
        out.setdefault(r.pop("traj_id"), []).append(r)
    return out


def scores(store: Store, traj_id: str) -> list[dict[str, Any]]:
    """Every reward recorded for one trajectory: the environment's and any model's."""
    return rows(store, "SELECT reward_source, value, step_idx FROM rewards WHERE traj_id = ? "
                       "ORDER BY step_idx NULLS FIRST, reward_source", [traj_id])


def resolve(store: Store, given: str) -> str:
    """The full id of a trajectory from its id or a unique prefix of it."""
    text = given.strip()
    if not _HEX.fullmatch(text):
        raise UserError(f"{given!r} is not a trajectory id (hex digits, e.g. from "
                        "evoagent sql STORE \"SELECT traj_id FROM trajectories LIMIT 5\")")
    found = store.query("SELECT DISTINCT traj_id FROM trajectories WHERE starts_with(traj_id, ?) "
                        "ORDER BY traj_id LIMIT 3", [text.lower()]).column("traj_id").to_pylist()
    if not found:
        raise UserError(f"no trajectory {text!r} in {store.path}")
    if len(found) > 1:
        raise UserError(f"{text!r} matches several trajectories ({', '.join(found[:2])}, ...): give more of the id")
    return found[0]
