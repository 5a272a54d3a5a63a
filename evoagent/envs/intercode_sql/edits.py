"""Schema-aware edits of executed SQL: actions no recording contains.

The replay policy can only recombine what recorded agents typed, so no search
over it can beat the recordings' bound. These mutations (parsed and rewritten
with sqlglot) make near misses of a query from three things a policy may see:
the query itself, the database schema the environment shows (``Task.meta["schema"]``)
and values printed in earlier observations. Never the gold answer.

Mutations (``MUTATIONS``): add, drop or alter a WHERE predicate; change a
compared value to one seen in an observation; swap an aggregate; change a
selected or grouped column to another column of the same table; flip an
ORDER BY direction; change LIMIT; add DISTINCT; change a join key.

Used by the replay policy (near-miss distractors in its pool, ``policy.distractors``;
edits of executed actions, ``policy.edit_p``) and by the ``edit`` operator.
Input is untrusted agent text: queries longer than ``MAX_SQL`` characters and
observations beyond ``MAX_OBS`` characters are not read.
"""
from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping, Sequence

import sqlglot
from sqlglot import exp

MAX_SQL = 2000
MAX_OBS = 4000
MAX_VALUES = 64
DIALECT = "mysql"  # the dialect recorded agents wrote (the environment translates it)

AGGREGATES: tuple[type[exp.Expression], ...] = (exp.Count, exp.Sum, exp.Avg, exp.Min, exp.Max)
FLIPS: dict[type[exp.Expression], type[exp.Expression]] = {
    exp.EQ: exp.NEQ, exp.NEQ: exp.EQ, exp.GT: exp.LT, exp.LT: exp.GT, exp.GTE: exp.GT, exp.LTE: exp.LT,
}
_VALUE = re.compile(r"'((?:[^'\\]|\\.){1,80})'|(?<![\w.])(-?\d+(?:\.\d+)?)(?![\w.])")

Schema = Mapping[str, Sequence[str]]
Edit = Callable[[exp.Select, Schema, list[str | float], random.Random], bool]


def observed_values(observations: Sequence[str | None]) -> list[str | float]:
    """Distinct literal values printed in observations (strings and numbers), first ``MAX_VALUES``."""
    out: dict[str | float, None] = {}
    for obs in observations:
        if not obs:
            continue
        for m in _VALUE.finditer(obs[:MAX_OBS]):
            value: str | float = m.group(1) if m.group(1) is not None else float(m.group(2))
            out.setdefault(value, None)
            if len(out) >= MAX_VALUES:
                return list(out)
    return list(out)


def _literal(value: str | float) -> exp.Literal:
    if isinstance(value, str):
        return exp.Literal.string(value)
    return exp.Literal.number(int(value) if float(value).is_integer() else value)


def _tables(select: exp.Select, schema: Schema) -> dict[str, str]:
    """Alias or name (lower case) -> schema table name, for the tables this SELECT reads."""
    lower = {t.lower(): t for t in schema}
    out: dict[str, str] = {}
    for table in select.find_all(exp.Table):
        real = lower.get(table.name.lower())
        if real is None:
            continue
        out[table.name.lower()] = real
        if table.alias:
            out[table.alias.lower()] = real
    return out


def _table_of(col: exp.Column, tables: dict[str, str], schema: Schema) -> str | None:
    if col.table:
        return tables.get(col.table.lower())
    owners = {t for t in set(tables.values()) if col.name.lower() in (c.lower() for c in schema[t])}
    return owners.pop() if len(owners) == 1 else None


def _other_column(col: exp.Column, tables: dict[str, str], schema: Schema, rng: random.Random) -> bool:
    table = _table_of(col, tables, schema)
    if table is None:
        return False
    others = [c for c in schema[table] if c.lower() != col.name.lower()]
    if not others:
        return False
    col.set("this", exp.to_identifier(rng.choice(others)))
    return True


def _columns_in(nodes: Sequence[exp.Expression]) -> list[exp.Column]:
    return [c for n in nodes for c in n.find_all(exp.Column)]


def _comparisons(select: exp.Select) -> list[exp.Binary]:
    where = select.args.get("where")
    if where is None:
        return []
    return [c for c in where.find_all(exp.EQ, exp.NEQ, exp.GT, exp.LT, exp.GTE, exp.LTE)]


def add_predicate(select: exp.Select, schema: Schema, values: list[str | float], rng: random.Random) -> bool:
    tables = _tables(select, schema)
    if not tables or not values:
        return False
    alias = rng.choice(sorted(tables))
    column = rng.choice(list(schema[tables[alias]]) or [""])
    if not column:
        return False
    value = rng.choice(values)
    op = exp.EQ if isinstance(value, str) else rng.choice((exp.EQ, exp.GT, exp.LT))
    pred = op(this=exp.column(column, table=alias if len(tables) > 1 else None), expression=_literal(value))
    select.where(pred, copy=False)
    return True


def drop_predicate(select: exp.Select, schema: Schema, values: list[str | float], rng: random.Random) -> bool:
    where = select.args.get("where")
    if where is None:
        return False
    conjuncts = list(where.this.flatten()) if isinstance(where.this, exp.And) else [where.this]
    if len(conjuncts) == 1:
        select.set("where", None)
        return True
    drop = rng.randrange(len(conjuncts))
    kept = [c for i, c in enumerate(conjuncts) if i != drop]
    select.set("where", exp.Where(this=exp.and_(*kept, copy=False)))
    return True


def alter_predicate(select: exp.Select, schema: Schema, values: list[str | float], rng: random.Random) -> bool:
    comps = _comparisons(select)
    if not comps:
        return False
    comp = rng.choice(comps)
    comp.replace(FLIPS[type(comp)](this=comp.this, expression=comp.expression))
    return True


def change_value(select: exp.Select, schema: Schema, values: list[str | float], rng: random.Random) -> bool:
    slots = [c.expression for c in _comparisons(select) if isinstance(c.expression, exp.Literal)]
    if not slots or not values:
        return False
    lit = rng.choice(slots)
    same = [v for v in values if isinstance(v, str) == lit.is_string and str(v) != lit.this]
    if not same:
        return False
    lit.replace(_literal(rng.choice(same)))
    return True


def swap_aggregate(select: exp.Select, schema: Schema, values: list[str | float], rng: random.Random) -> bool:
    aggs = [a for a in select.find_all(*AGGREGATES) if not isinstance(a.this, exp.Star)]
    if not aggs:
        return False
    agg = rng.choice(aggs)
    new = rng.choice([k for k in AGGREGATES if not isinstance(agg, k)])
    agg.replace(new(this=agg.this))
    return True


def change_column(select: exp.Select, schema: Schema, values: list[str | float], rng: random.Random) -> bool:
    group = select.args.get("group")
    cols = _columns_in(list(select.expressions) + (list(group.expressions) if group else []))
    rng.shuffle(cols)
    tables = _tables(select, schema)
    return any(_other_column(c, tables, schema, rng) for c in cols)


def flip_order(select: exp.Select, schema: Schema, values: list[str | float], rng: random.Random) -> bool:
    order = select.args.get("order")
    if order is None or not order.expressions:
        return False
    item = rng.choice(order.expressions)
    desc = not item.args.get("desc")
    item.set("desc", desc)
    item.set("nulls_first", not desc)  # MySQL's own NULL order for the new direction (no emulation)
    return True


def change_limit(select: exp.Select, schema: Schema, values: list[str | float], rng: random.Random) -> bool:
    limit = select.args.get("limit")
    if limit is None:
        if select.args.get("order") is None:
            return False
        select.limit(1, copy=False)
        return True
    n = limit.expression
    if not (isinstance(n, exp.Literal) and not n.is_string and n.this.isdigit()):
        return False
    options = sorted({max(1, int(n.this) + d) for d in (-1, 1)} | {1} - {int(n.this)})
    if rng.random() < 0.25:
        select.set("limit", None)
    else:
        limit.set("expression", exp.Literal.number(rng.choice(options)))
    return True


def add_distinct(select: exp.Select, schema: Schema, values: list[str | float], rng: random.Random) -> bool:
    if select.args.get("distinct"):
        return False
    select.set("distinct", exp.Distinct())
    return True


def change_join_key(select: exp.Select, schema: Schema, values: list[str | float], rng: random.Random) -> bool:
    keys = _columns_in([j.args["on"] for j in select.args.get("joins") or () if j.args.get("on") is not None])
    rng.shuffle(keys)
    tables = _tables(select, schema)
    return any(_other_column(c, tables, schema, rng) for c in keys)


MUTATIONS: dict[str, Edit] = {f.__name__: f for f in (
    add_predicate, drop_predicate, alter_predicate, change_value, swap_aggregate, change_column,
    flip_order, change_limit, add_distinct, change_join_key)}


def _parse(sql: str) -> exp.Select | None:
    if len(sql) > MAX_SQL:
        return None
    try:
        tree = sqlglot.parse_one(sql, read=DIALECT)
    except (sqlglot.errors.SqlglotError, RecursionError, ValueError):
        return None
    return tree if isinstance(tree, exp.Select) else None


def normal(sql: str) -> str:
    """Whitespace-folded text: how edits are compared with recorded actions."""
    return " ".join(sql.split())


def edit(sql: str, schema: Schema, values: Sequence[str | float], rng: random.Random,
         kinds: Sequence[str] | None = None) -> tuple[str, str] | None:
    """One mutation of ``sql`` as ``(mutation name, new SQL)``, or None when none applies.

    Mutations are tried in a random order (``rng``) until one changes the query's text.
    """
    tree = _parse(sql)
    if tree is None:
        return None
    order = list(kinds or MUTATIONS)
    rng.shuffle(order)
    vals = list(values)
    for kind in order:
        new = tree.copy()
        try:
            if not MUTATIONS[kind](new, schema, vals, rng):
                continue
            text = new.sql(dialect=DIALECT)
        except (sqlglot.errors.SqlglotError, ValueError, KeyError, AttributeError):
            continue
        if normal(text) != normal(sql):
            return kind, text
    return None


__all__ = ["MUTATIONS", "edit", "normal", "observed_values"]
