"""MySQL's ONLY_FULL_GROUP_BY rule, so grouped queries behave as they did there.

MySQL 8 accepts a non-aggregated column in a grouped query when it is
functionally dependent on the GROUP BY columns: its table's primary (or
unique NOT NULL) key is fixed by grouped columns, by equalities in ON/WHERE,
or by constants. DuckDB refuses all such columns. After DuckDB's refusal we
decide as MySQL would: dependent columns are wrapped in ``ANY_VALUE`` (the
value is unique per group, so nothing is lost); otherwise we answer with
MySQL's error.
"""
from __future__ import annotations

from collections.abc import Callable

import sqlglot
from sqlglot import exp

from evoagent.envs.intercode_sql.dialect import text_cache

Catalog = Callable[[str], "tuple[list[str], list[frozenset[str]]] | None"]


def _conjuncts(cond: exp.Expression | None) -> list[exp.Expression]:
    if cond is None:
        return []
    if isinstance(cond, exp.And):
        return _conjuncts(cond.this) + _conjuncts(cond.expression)
    if isinstance(cond, exp.Paren):
        return _conjuncts(cond.this)
    return [cond]


def _in_aggregate(node: exp.Expression, stop: exp.Expression) -> bool:
    p = node.parent
    while p is not None and p is not stop:
        if isinstance(p, (exp.AggFunc, exp.Window)):
            return True
        if isinstance(p, (exp.Select, exp.Subquery)) and p is not stop:
            return True  # belongs to an inner query
        p = p.parent
    return False


def _check_select(sel: exp.Select, catalog: Catalog) -> str | None:
    """Rewrite ``sel`` in place; return a MySQL error message if MySQL would refuse."""
    group = sel.args.get("group")
    has_agg = any(a.find_ancestor(exp.Select) is sel for a in sel.find_all(exp.AggFunc))
    if group is None and not has_agg:
        return None
    # alias -> (columns, keys); None for derived tables
    scope: dict[str, tuple[list[str], list[frozenset[str]]] | None] = {}
    sources = [sel.args.get("from_") or sel.args.get("from")] + list(sel.args.get("joins") or [])
    for src in sources:
        if src is None:
            continue
        t = src.this if isinstance(src, (exp.From, exp.Join)) else src
        alias = (t.alias_or_name or "").lower()
        scope[alias] = catalog(t.name) if isinstance(t, exp.Table) else None

    def resolve(col: exp.Column) -> tuple[str, str] | None:
        name = col.name.lower()
        if col.table:
            return (col.table.lower(), name)
        owners = [a for a, info in scope.items() if info and name in info[0]]
        return (owners[0], name) if len(owners) == 1 else None

    determined: set[tuple[str, str]] = set()
    for g in (group.expressions if group is not None else []):
        if isinstance(g, exp.Column) and (r := resolve(g)):
            determined.add(r)
    eqs: list[tuple[tuple[str, str], tuple[str, str]]] = []
    conds = _conjuncts(sel.args.get("where").this if sel.args.get("where") else None)
    for j in sel.args.get("joins") or []:
        if (j.side or "").upper() not in ("LEFT", "RIGHT", "FULL"):
            conds += _conjuncts(j.args.get("on"))
    for c in conds:
        if isinstance(c, exp.EQ):
            a, b = c.this, c.expression
            ra = resolve(a) if isinstance(a, exp.Column) else None
            rb = resolve(b) if isinstance(b, exp.Column) else None
            if ra and rb:
                eqs.append((ra, rb))
            elif ra and isinstance(b, exp.Literal):
                determined.add(ra)
            elif rb and isinstance(a, exp.Literal):
                determined.add(rb)
    full: set[str] = set()
    changed = True
    while changed:
        changed = False
        for a, b in eqs:
            for x, y in ((a, b), (b, a)):
                if (x in determined or x[0] in full) and y not in determined:
                    determined.add(y)
                    changed = True
        for alias, info in scope.items():
            if alias in full or not info:
                continue
            if any(k and all((alias, c) in determined for c in k) for k in info[1]):
                full.add(alias)
                changed = True

    select_aliases = {e.alias.lower() for e in sel.expressions if e.alias}
    parts: list[exp.Expression] = list(sel.expressions)
    for key in ("having", "order"):
        if sel.args.get(key) is not None:
            parts.append(sel.args[key])
    to_wrap = []
    for pos, part in enumerate(parts):
        for col in list(part.find_all(exp.Column)):
            if _in_aggregate(col, sel) or col.find_ancestor(exp.Select) is not sel:
                continue
            if not col.table and col.name.lower() in select_aliases and pos >= len(sel.expressions):
                continue
            r = resolve(col)
            if r is None or not (r in determined or r[0] in full):
                if group is None:
                    return (f"In aggregated query without GROUP BY, expression #{pos + 1} of SELECT list "
                            f"contains nonaggregated column '{col.sql()}'; this is incompatible with "
                            "sql_mode=only_full_group_by")
                return (f"Expression #{pos + 1} of SELECT list is not in GROUP BY clause and contains "
                        f"nonaggregated column '{col.sql()}' which is not functionally dependent on "
                        "columns in GROUP BY clause; this is incompatible with sql_mode=only_full_group_by")
            if r not in determined or group is None or not any(
                    isinstance(g, exp.Column) and resolve(g) == r for g in group.expressions):
                to_wrap.append(col)
    for col in to_wrap:
        col.replace(exp.AnyValue(this=col.copy()))
    return None


@text_cache(8192)
def _rewrite_cached(sql: str, catalog: Catalog) -> tuple[str | None, str | None]:
    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except sqlglot.errors.SqlglotError:
        return None, None
    for sel in list(tree.find_all(exp.Select)):
        err = _check_select(sel, catalog)
        if err:
            return None, err
    return tree.sql(dialect="duckdb"), None


def full_group_by(sql: str, catalog: Catalog) -> tuple[str | None, str | None]:
    """(rewritten SQL, None) if MySQL accepts ``sql``; (None, MySQL's error) if not."""
    return _rewrite_cached(sql, catalog)
