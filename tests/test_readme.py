"""The README's and the docs pages' commands, checked fast: each finds its program after the
set-up, and every `evoagent` subcommand, flag and experiment script they name exists.

(`python experiments/readme_commands.py` runs them all for real, in a fresh copy and venv;
`.ci/run` does.)
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import click
import pytest

from evoagent.cli import main
from readme_commands import README, ROOT, Step, all_steps, doc_pages, fresh_env, readme_steps  # experiments/

TEXT = "\n".join(p.read_text() for p in [README, *doc_pages()])
STEPS = all_steps()[0]
_OPERATORS = {"&&", "||", ";", "|", "&", "(", ")", ";;"}


def simple_commands(text: str) -> list[list[str]]:
    """The simple commands of a shell command line (split at && || ; | &), words unquoted."""
    lex = shlex.shlex(text.replace("\\\n", " "), posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    out: list[list[str]] = [[]]
    for tok in lex:
        if tok in _OPERATORS:
            out.append([])
        else:
            out[-1].append(tok)
    return [c for c in out if c]


def program(words: list[str]) -> tuple[str, list[str]]:
    """The program a simple command runs (after `VAR=value` assignments) and its arguments."""
    i = 0
    while i < len(words) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[i]):
        i += 1
    return (words[i], words[i + 1:]) if i < len(words) else ("", [])


def venv_programs() -> set[str]:
    """What only the project's venv provides: its interpreter, pip, and the console scripts."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {"python", "pip", "pytest", *project.get("scripts", {})}


def shell_builtins() -> set[str]:
    out = subprocess.run(["bash", "-c", "compgen -b -k"], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def unreachable_programs(steps: list[Step], root: Path) -> list[str]:
    """Commands whose program a new user's shell would not find, running the steps in order.

    A venv program (`evoagent`, `python`, ...) is found as `.venv/bin/X` once a step made the
    venv, or by name once a step activated it; anything else must be a shell builtin, a
    file of the checkout, or on this machine's PATH without any virtual environment."""
    builtins, venv_only = shell_builtins(), venv_programs()
    system_path = fresh_env(root / "cache")["PATH"]
    made = activated = False
    bad: list[str] = []
    for step in steps:
        if step.kind != "bash":  # python and sql steps run with the venv's `python`/`evoagent`
            if not activated:
                bad.append(f"{step.kind} block: `python`/`evoagent` are not on PATH here")
            continue
        for words in simple_commands(step.text):
            prog, args = program(words)
            name = Path(prog).name
            if prog in ("source", ".") and args[:1] == [".venv/bin/activate"]:
                activated = activated or made
                ok = made
            elif "/" in prog:
                ok = (made and prog.startswith(".venv/bin/") and name in venv_only) or (root / prog).is_file()
            elif name in venv_only:
                ok = activated
            else:
                ok = prog in builtins or shutil.which(prog, path=system_path) is not None
            if not ok:
                bad.append(f"`{prog}` in: {step.text.strip()}")
            if name.startswith("python") and args[:3] == ["-m", "venv", ".venv"]:
                made = True
    return bad


def test_the_readme_steps_are_found_in_order() -> None:
    bash = [s.text for s in STEPS if s.kind == "bash"]
    assert "-m venv .venv" in bash[0] and "--store runs/main.duckdb" in bash[0]  # the set-up, first
    assert re.search(r"\bpython -m pytest -q$", bash[1])
    names = [program(simple_commands(t)[-1])[1][:1] for t in bash]
    for sub in ("sql", "status", "import", "replay", "export", "run"):
        assert [sub] in names, f"no `evoagent {sub}` found in the README's bash blocks"
    assert sum(s.kind == "python" for s in STEPS) >= 1 and sum(s.kind == "sql" for s in STEPS) >= 6
    claims = [s for s in STEPS if s.last_line or s.rows]
    assert any(s.last_line and s.last_line.startswith("agreement:") for s in claims)
    assert any(["gpt-4", "1034", "73.7"] in s.rows for s in claims)


def test_every_readme_command_finds_its_program_after_the_set_up() -> None:
    assert unreachable_programs(STEPS, ROOT) == []


def test_a_tour_without_an_active_venv_is_caught() -> None:
    """The check itself: the README before the fix ran `evoagent` that only .venv/bin had."""
    old = readme_steps("```bash\npython3 -m venv .venv && .venv/bin/pip install -e '.[test]'\n```\n"
                       "```bash\nevoagent status runs/main.duckdb\n.venv/bin/evoagent status runs/x\n```\n")
    assert unreachable_programs(old, ROOT) == ["`evoagent` in: evoagent status runs/main.duckdb"]


def invocations() -> list[tuple[str, list[str]]]:
    """Every `evoagent ...` the README shows: in its bash blocks and in inline code."""
    found = []
    for s in STEPS:
        if s.kind == "bash":
            for words in simple_commands(s.text):
                prog, args = program(words)
                if Path(prog).name == "evoagent":
                    found.append((s.text.strip(), args))
    for span in re.findall(r"`(evoagent\s[^`]+)`", TEXT):
        found.append((span, span.replace("\\|", " ").split()[1:]))
    return found


def _name(cmd: click.Command) -> str:
    return "evoagent" if cmd is main else str(cmd.name)


def unknown_words(args: list[str]) -> list[str]:
    """Subcommands and options in ``args`` that the `evoagent` command does not have."""
    cmd: click.Command = main
    bad = []
    for word in args:
        tok = word.strip("[](),.")
        if tok.startswith("-") and len(tok) > 1 and not tok[1].isdigit():
            opts = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
            if tok.split("=")[0] not in opts:
                bad.append(f"{_name(cmd)} {tok}")
        elif isinstance(cmd, click.Group):
            # `replay lats|reflexion`: each alternative must exist; the CLI's groups load commands lazily
            subs = [cmd.get_command(click.Context(cmd), alt) for alt in tok.split("|")]
            if None in subs:
                bad.append(f"{_name(cmd)} {tok}")
                break
            cmd = subs[0]
    return bad


def test_every_evoagent_subcommand_and_flag_in_the_readme_exists() -> None:
    found = invocations()
    assert len(found) >= 15
    bad = [f"{b!r} in: {text}" for text, args in found for b in unknown_words(args)]
    assert bad == []


@pytest.mark.parametrize("args, bad", [
    (["stauts", "runs/x"], ["evoagent stauts"]),
    (["sql", "p", "q", "--fromat", "csv"], ["sql --fromat"]),
    (["import", "intercode", "--bundeld"], ["intercode --bundeld"]),
    (["replay", "intercode", "--bundled", "gpt-4"], []),
])
def test_a_readme_typo_would_be_caught(args: list[str], bad: list[str]) -> None:
    assert unknown_words(args) == bad


def test_every_experiment_script_and_flag_in_the_readme_exists() -> None:
    spans = re.findall(r"python (experiments/\S+\.py)([^`]*)`", TEXT)
    assert len(spans) >= 5
    for script, rest in spans:
        path = ROOT / script
        assert path.is_file(), f"README names {script}, which does not exist"
        source = path.read_text()
        for flag in re.findall(r"--[a-z][a-z0-9-]*", rest):
            assert f'"{flag}"' in source or f"'{flag}'" in source, f"{script} has no option {flag}"
