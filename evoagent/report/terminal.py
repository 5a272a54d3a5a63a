"""Terminal views of one trajectory: its transcript (``evoagent show``) and its ancestry (``evoagent lineage``).

Plain text, no markup: whatever a value holds is printed as it is, except
control characters (an agent's observation may carry terminal escapes), which
are shown escaped.
"""
from __future__ import annotations

from typing import Any

from evoagent.escaping import visible
from evoagent.report import data
from evoagent.report.ancestry import store_parents, walk
from stores.base import Store

SHOW_CHARS = 600  # per thought/action/observation unless --full


def clean(text: Any) -> str:
    """A value as printable text: control characters (not newline/tab) escaped."""
    if text is None:
        return "–"
    return visible(text)


def num(v: Any, digits: int = 2) -> str:
    return "–" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))


def _block(label: str, text: Any, full: bool, width: int = 13) -> list[str]:
    body = clean(text)
    if not full and len(body) > SHOW_CHARS:
        body = body[:SHOW_CHARS] + f" … [{len(body) - SHOW_CHARS} more characters; --full shows all]"
    lines = body.split("\n") or [""]
    pad = " " * (width + 2)
    head = f"  {label:<{width}}{lines[0]}" if lines[0] else f"  {label}"  # no padding after an empty value
    return [head] + [pad + ln for ln in lines[1:]]


def summary(t: dict[str, Any]) -> str:
    """One line about a trajectory: reward, generation, operator, steps."""
    return (f"{t['traj_id']}  {clean(t.get('task_id'))}  reward {num(t.get('outcome_reward'))}  "
            f"gen {num(t.get('generation'))}  {clean(t.get('operator') or t.get('source'))}  "
            f"{steps(t.get('n_steps'))}")


def steps(n: Any) -> str:
    return f"{num(n)} step{'' if n == 1 else 's'}"


def show(store: Store, traj_id: str, full: bool = False) -> list[str]:
    """The transcript of one trajectory with where it came from, its parents, children and rewards."""
    tid = data.resolve(store, traj_id)
    t = data.trajectories(store, [tid])[tid]
    parents = list(store_parents(store)([tid]))
    info = data.trajectories(store, [e.parent for e in parents])
    children = store.query("SELECT DISTINCT child_id, operator FROM lineage WHERE parent_id = ? AND child_id <> ? "
                           "ORDER BY child_id", [tid, tid]).to_pylist()
    out = [f"trajectory  {tid}",
           f"task        {clean(t['task_id'])}" + (f"  ({clean(t['db'])}, {clean(t['hardness'])})" if t["db"] else ""),
           f"question    {clean(t['question'])}",
           f"made by     {clean(t['operator'] or 'import')}, generation {num(t['generation'])}, "
           f"item {num(t['item_id'])}, seed {num(t['seed'])}; source {clean(t['source'])}, "
           f"campaign {clean(t['campaign'])}",
           f"outcome     reward {num(t['outcome_reward'])} ({'solved' if t['solved'] else 'not solved'}), "
           f"{steps(t['n_steps'])}, ${num(t['cost_usd'], 4)}, "
           f"{num(t['input_tokens'])} input + {num(t['output_tokens'])} output tokens"]
    rewards = [clean(r["reward_source"]) + ("" if r["step_idx"] is None else f" (step {r['step_idx']})")
               + f" {num(r['value'])}" for r in data.scores(store, tid)]
    out.append(f"rewards     {'; '.join(rewards) or '–'}")
    if not parents:
        out.append("parents     none (a fresh rollout or an imported run)")
    for k, e in enumerate(parents):
        p = info.get(e.parent, {"traj_id": e.parent})
        out.append(f"{'parents' if k == 0 else '':<12}{clean(e.operator)} <- {summary(p)}")
    if children:
        shown = ", ".join(f"{c['child_id']} ({clean(c['operator'])})" for c in children[:5])
        out.append(f"children    {len(children)}: {shown}{' …' if len(children) > 5 else ''}")
    for s in data.steps(store, [tid]).get(tid, []):
        out.append("")
        out.append(f"step {s['idx']}  env reward {num(s['reward'])}  process reward {num(s['process_reward'])}  "
                   f"{'valid' if s['valid'] else 'error'}")
        for label in ("thought", "action", "observation"):
            out += _block(label, s[label], full)
    return out


def lineage(store: Store, traj_id: str, depth: int = 10) -> list[str]:
    """The ancestry tree of one trajectory, up to ``depth`` generations of parents.

    Lineage is a DAG (a parent can be reached by two paths): a trajectory met
    again is printed once more as a reference, not walked again."""
    tid = data.resolve(store, traj_id)
    tree = walk(store_parents(store), [tid], depth)
    info = data.trajectories(store, list(tree.depth))
    parents = tree.parents()
    out = [summary(info.get(tid, {"traj_id": tid}))]
    printed = {tid}

    def branch(node: str, prefix: str) -> None:
        edges = parents.get(node, [])
        for k, e in enumerate(edges):
            last = k == len(edges) - 1
            again = e.parent in printed
            line = f"{clean(e.operator)} <- {summary(info.get(e.parent, {'traj_id': e.parent}))}"
            if again:
                line = f"{clean(e.operator)} <- {e.parent} (shown above)"
            elif e.parent in tree.cut:
                line += "  [more ancestors: raise --depth]"
            out.append(f"{prefix}{'└── ' if last else '├── '}{line}")
            if not again:
                printed.add(e.parent)
                branch(e.parent, prefix + ("    " if last else "│   "))

    branch(tid, "")
    deepest = max(tree.depth.values())
    out.append(f"({len(tree.depth)} trajectories, {len(tree.edges)} edges, {deepest} generations back"
               + (f"; cut at --depth {depth}" if tree.cut else "") + ")")
    return out

