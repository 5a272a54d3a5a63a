"""The package layout, checked from the source (``ast``; nothing is imported).

1. The import graph between units (a package such as ``stores``, ``operators``,
   ``evoagent.rewards``, an environment's package ``evoagent.envs.<kind>``, or a
   top-level module such as ``evoagent.loop``) has no circle, and every arrow
   from a lower layer up to a higher one is listed in ``UPWARD`` with its reason.
   Function-local imports count (a lazy import is still a dependency); imports
   under ``if TYPE_CHECKING:`` do not (they never run).
2. No environment kind is named outside its environment's package and no
   strategy kind outside ``evoagent/strategies/``: the core asks a part, it
   does not branch on a part's name.

The layers and the allowed upward arrows, with their reasons, are the constants
``LAYERS`` and ``UPWARD`` below: the one place they are written down.
"""
from __future__ import annotations

import ast
import functools
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("evoagent", "operators", "stores")

# Layers, low to high: a unit may import its own layer and those below. An environment's package
# (evoagent.envs.<kind>) is a part, like an operator: layer "parts".
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("records", ("evoagent.errors", "evoagent.escaping", "evoagent.boxtable", "evoagent.trajectory", "evoagent.spawn",
                 "evoagent.evolution", "evoagent.registry", "evoagent.prompts", "evoagent.ray_session")),
    ("storage", ("stores",)),
    # a campaign is validated against the parts' declarations (an environment owns its keys): it sits with them
    ("interfaces", ("evoagent.campaign", "evoagent.envs", "evoagent.llm", "evoagent.policies")),
    ("execution", ("evoagent.rollout", "evoagent.rewards", "evoagent.rm")),
    ("parts", ("operators", "evoagent.strategies", "evoagent.executors", "evoagent.envs.*")),
    ("runner", ("evoagent.loop",)),
    ("campaigns", ("evoagent.launch", "evoagent.training_data", "evoagent.report", "evoagent.render", "evoagent.bench",
                   "evoagent.sql_reader", "evoagent.progress")),
    # the contract suites drive parts the way a user's script does: through the API
    ("api", ("evoagent.api", "evoagent", "evoagent.testing")),
    ("cli", ("evoagent.cli", "evoagent.cli_rm", "evoagent.cli_views")),
)

# Upward arrows that stay, each with its reason (importer unit, imported unit): reason.
UPWARD: dict[tuple[str, str], str] = {}

ENV_KINDS = ("intercode_sql", "game24", "code")
STRATEGY_KINDS = ("evolution", "rro", "ipr", "best_of_n", "mcts")
# Files outside a kind's package allowed to name it, each with its reason.
NAMING_ALLOWED: dict[str, str] = {
    # the built-in table: where each built-in part is declared ("<kind>.<name>" -> "module:attr"), and
    # which built-in a campaign gets where it names none (registry.DEFAULTS); no branch
    "evoagent/registry.py": "declarations",
}

# A campaign file's name in a usage example (``evoagent run experiments/<name>.toml``) names a file,
# not a kind: the file itself says which parts it uses. Blanked before a line is searched.
CAMPAIGN_FILE = re.compile(r"experiments/[A-Za-z0-9_]+\.toml\b")


def _sources() -> Iterator[tuple[str, Path]]:
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join(parts), path


MODULES = dict(_sources())


def unit(module: str) -> str:
    """The unit a module belongs to (see the module docstring)."""
    parts = module.split(".")
    if parts[0] != "evoagent" or len(parts) == 1:
        return parts[0]
    if parts[1] == "envs" and len(parts) > 2 and parts[2] not in ("base",):
        return ".".join(parts[:3])
    return ".".join(parts[:2])


def layer(u: str) -> int:
    for i, (_, members) in enumerate(LAYERS):
        if u in members or (u.startswith("evoagent.envs.") and "evoagent.envs.*" in members):
            return i
    raise AssertionError(f"unit {u} has no layer: add it to LAYERS (and docs/plugins-design.md)")


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """Every project module ``module`` imports (resolved to the deepest existing module), with its line."""
    tree = _tree(path)
    skip = _type_checking_lines(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        for target in targets:
            if target.split(".")[0] in PACKAGES:
                while target not in MODULES and "." in target:
                    target = target.rpartition(".")[0]
                yield target, node.lineno


@functools.cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


@functools.cache
def graph() -> dict[str, dict[str, str]]:
    """unit -> {imported unit: where (first file:line)}."""
    edges: dict[str, dict[str, str]] = defaultdict(dict)
    for module, path in MODULES.items():
        for target, line in imports(module, path):
            a, b = unit(module), unit(target)
            if a != b:
                edges[a].setdefault(b, f"{path.relative_to(ROOT)}:{line}")
    return edges


def circles(edges: dict[str, dict[str, str]]) -> list[list[str]]:
    """Strongly connected components of more than one unit (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(set(edges) | {w for ws in edges.values() for w in ws}):
        if v not in index:
            visit(v)
    return out


def test_every_unit_has_a_layer() -> None:
    for module in MODULES:
        layer(unit(module))


def test_no_import_circle_spans_units() -> None:
    found = circles(graph())
    assert not found, "import circles between units:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_upward_imports_are_only_the_justified_ones() -> None:
    edges = graph()
    bad = [f"{a} -> {b} ({where})" for a, targets in sorted(edges.items()) for b, where in sorted(targets.items())
           if layer(unit(b)) > layer(unit(a)) and (a, b) not in UPWARD]
    assert not bad, "upward imports not listed in UPWARD:\n" + "\n".join(bad)


def test_listed_upward_imports_still_exist() -> None:
    """A reason for an arrow that is gone is a stale list: drop it."""
    edges = graph()
    stale = [pair for pair in UPWARD if pair[1] not in edges.get(pair[0], {})]
    assert not stale, f"UPWARD lists arrows the code no longer has: {stale}"


def _strings(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def kind_namings(modules: dict[str, Path] | None = None, root: Path = ROOT) -> list[str]:
    """Every place outside a kind's own package that names it (see the module docstring).

    Environment kinds: the distinctive names (``intercode_sql``, ``game24``) as a word anywhere in a
    file, comments and docstrings included (a campaign file's path, ``CAMPAIGN_FILE``, aside);
    ``code`` as a module path ``envs.code`` or a string that is exactly ``"code"`` compared with or
    assigned to an env kind. Strategy kinds: a string that is
    exactly the kind, or a ``strategy.<kind>`` key path, or an import of a strategy's own module.
    An operator of the same name (``operators/rro.py``) may use its own name, not the strategy's keys.
    """
    found: list[str] = []
    for module, path in (MODULES if modules is None else modules).items():
        rel = str(path.relative_to(root))
        if rel in NAMING_ALLOWED:
            continue
        text = path.read_text()
        tree = _tree(path)
        for kind in ENV_KINDS:
            if module.startswith(f"evoagent.envs.{kind}"):
                continue
            if kind == "code":
                hits = [i + 1 for i, line in enumerate(text.splitlines()) if re.search(r"\benvs[./]code\b", line)]
                hits += [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Compare)
                         and "kind" in ast.unparse(n) and "'code'" in ast.unparse(n)]
            else:
                hits = [i + 1 for i, line in enumerate(text.splitlines())
                        if re.search(rf"\b{kind}\b", CAMPAIGN_FILE.sub("", line))]
            found += [f"{rel}:{line}: environment {kind!r}" for line in hits]
        if module.startswith("evoagent.strategies"):
            continue
        own = module.rpartition(".")[2]  # an operator module named like a strategy owns that name
        for line, s in _strings(tree):
            for kind in STRATEGY_KINDS:
                if (s == kind and kind != own) or f"strategy.{kind}" in s:
                    found.append(f"{rel}:{line}: strategy {kind!r}")
        for target, line in imports(module, path):
            if target.startswith("evoagent.strategies.") and target.rpartition(".")[2] in STRATEGY_KINDS:
                found.append(f"{rel}:{line}: imports strategy module {target}")
    return found


def test_no_kind_named_outside_its_package() -> None:
    found = kind_namings()
    assert not found, f"{len(found)} namings of a part kind outside its package:\n" + "\n".join(found)


# The modules that may read ``ctx.settings`` (the whole campaign's keys, by path), with the reason.
# Every part reads its own ``registry.Settings`` instead (issue 18): a reward model its factory's
# parameters, a strategy ``self.own``, an operator ``ctx.keys_of(PART)``, an executor its first argument.
WHOLE_CAMPAIGN = {
    "evoagent/rollout.py": "Context.keys_of builds an operator's own Settings from it",
}


def whole_campaign_reads(modules: dict[str, Path] | None = None, root: Path = ROOT) -> list[str]:
    """``<...>ctx.settings`` read outside ``WHOLE_CAMPAIGN``: a part reading keys it did not declare."""
    found = []
    for path in (modules or MODULES).values():
        rel = path.relative_to(root).as_posix()
        if rel in WHOLE_CAMPAIGN:
            continue
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Attribute) and node.attr == "settings":
                owner = node.value
                name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
                if name.endswith("ctx"):
                    found.append(f"{rel}:{node.lineno}: reads {ast.unparse(node)} (the whole campaign)")
    return found


def test_no_part_reads_the_whole_campaign_through_its_context() -> None:
    found = whole_campaign_reads()
    assert not found, "read your part's own Settings instead:\n" + "\n".join(found)
    assert all((ROOT / rel).exists() for rel in WHOLE_CAMPAIGN)


def test_the_checks_see_what_they_look_for(tmp_path: Path) -> None:
    """The checkers find a circle, an upward arrow and a naming in a made-up example (they can fail)."""
    assert circles({"a": {"b": "x"}, "b": {"c": "y"}, "c": {"a": "z"}, "d": {"a": "w"}}) == [["a", "b", "c"]]
    assert layer("stores") < layer("evoagent.loop") < layer("evoagent.cli")
    assert layer("evoagent.envs.game24") == layer("operators")
    src = "def f():\n    from evoagent import launch\n    return launch\n"
    (tmp_path / "m.py").write_text(src)
    assert list(imports("stores.m", tmp_path / "m.py")) == [("evoagent.launch", 2)]
    named = ('"""Run: evoagent run experiments/intercode_sql.toml (a file\'s name is no naming)."""\n'
             'def f(c):\n    if c.get("env.kind") == "game24":  # branches on a kind\n'
             '        return c.get("strategy.evolution.first_operator")\n    return "best_of_n"\n')
    (tmp_path / "evoagent").mkdir()
    (tmp_path / "evoagent" / "n.py").write_text(named)
    found = kind_namings({"evoagent.n": tmp_path / "evoagent" / "n.py"}, tmp_path)
    assert sorted(found) == ["evoagent/n.py:3: environment 'game24'", "evoagent/n.py:4: strategy 'evolution'",
                             "evoagent/n.py:5: strategy 'best_of_n'"], found
    reader = "def make(ctx, params):\n    return ctx.settings.get('executor.address'), self.ctx.settings, params\n"
    (tmp_path / "evoagent" / "r.py").write_text(reader)
    assert sorted(whole_campaign_reads({"evoagent.r": tmp_path / "evoagent" / "r.py"}, tmp_path)) == [
        "evoagent/r.py:2: reads ctx.settings (the whole campaign)",
        "evoagent/r.py:2: reads self.ctx.settings (the whole campaign)"]
    guarded = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from evoagent import loop\n"
    (tmp_path / "g.py").write_text(guarded)
    assert list(imports("stores.g", tmp_path / "g.py")) == []
