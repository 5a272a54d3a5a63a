"""Run every command in the README and on the docs' pages exactly as written, in a fresh copy of this checkout.

A new user pastes the set-up commands, then the tour's, into one terminal. This does
the same: it copies the working tree (the files git tracks or would track, so no
`.venv/`, no `runs/`) into a temporary folder and runs, in one bash session and in
README order, every command of the ```bash blocks as written (so what the set-up
does to the shell, e.g. activating the venv, carries on to the tour), every
```python block with `python -`, and every query of the ```sql blocks with
`evoagent sql` on the main job's store. The session starts with no virtual
environment on PATH and an empty cache of built databases, as on a new machine.
It stops at the first command that exits non-zero (exit status 1), and checks
what the README says a command prints: a trailing `# last line: ...`, and result
rows written as comments under a query (`#  gpt-4 | 1034 | 73.7`). Background
commands (`... &`) are stopped at the end.

After the README come the documentation's pages, in the order of mkdocs.yml's `nav`, in
the same session (so a page may use what an earlier one made, as a reader who follows
the site would). A command already run as written earlier (a page repeating the
README's set-up) is not run twice. A block that cannot run here is marked on its page,
visibly, by a line right above it: `*Not run by the docs check: REASON.*`; it is listed,
with its reason, and skipped.

    python experiments/readme_commands.py [--keep DIR] [--readme-only]

Takes several minutes: it installs the project, runs the main job and the test suite.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MKDOCS = ROOT / "mkdocs.yml"
_FENCE = re.compile(r"^```(\w*)[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
_NOT_RUN = re.compile(r"^\*?Not run by the docs check: (.+?)\*?[ \t]*$")
_NAV_PAGE = re.compile(r"^\s*-\s*(?:.*:\s*)?([\w./-]+\.md)\s*$", re.M)
_LAST_LINE = re.compile(r"#\s*last line:\s*(.+?)\s*$")
_MARK = "@@readme-step"


@dataclass
class Step:
    """One thing the README tells the user to run, and what it says the output holds."""

    kind: str  # "bash", "python" or "sql"
    text: str  # exactly as in the README (a bash command keeps its continuation lines)
    last_line: str | None = None  # "# last line: X": the output's last line is X
    rows: list[list[str]] = field(default_factory=list)  # result rows given as comments
    page: str = "README.md"  # where it is written


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced code block, in order."""
    return [(m.group(1), m.group(2)) for m in _FENCE.finditer(text)]


def not_run_reason(text: str, start: int) -> str | None:
    """The reason given right above the block that starts at ``start``, if it is marked not run."""
    before = [ln for ln in text[:start].splitlines() if ln.strip()]
    m = _NOT_RUN.match(before[-1].strip()) if before else None
    return m.group(1).rstrip(".") if m else None


def doc_pages() -> list[Path]:
    """The documentation's pages in the order of mkdocs.yml's nav (every page is in it: the
    strict build fails on one that is not)."""
    if not MKDOCS.exists():
        return []
    return [ROOT / "docs" / rel for rel in _NAV_PAGE.findall(MKDOCS.read_text())]


def all_steps() -> tuple[list[Step], list[tuple[str, str, str]]]:
    """The README's steps, then each docs page's not run before; and the blocks marked not
    run, as (page, first line, reason)."""
    steps = readme_steps(README.read_text())
    seen = {(s.kind, s.text.strip()) for s in steps}
    skipped: list[tuple[str, str, str]] = []
    for page in doc_pages():
        text = page.read_text()
        rel = str(page.relative_to(ROOT))
        for m in _FENCE.finditer(text):
            block = readme_steps(m.group(0))
            reason = not_run_reason(text, m.start())
            if reason is not None:
                if block:
                    skipped.append((rel, block[0].text.strip().splitlines()[0], reason))
                continue
            for s in block:
                if (s.kind, s.text.strip()) not in seen:
                    seen.add((s.kind, s.text.strip()))
                    s.page = rel
                    steps.append(s)
    return steps, skipped


def _row(comment: str) -> list[str] | None:
    """A result row written as a comment, `#  gpt-4 | 1034 | 73.7   (paper: 73.7%)`."""
    body = comment.lstrip("#").strip()
    if "|" not in body:
        return None
    return [re.sub(r"\(.*?\)", "", cell).strip() for cell in body.split("|")]


def bash_steps(body: str) -> list[Step]:
    """The commands of a bash block: continuation lines joined, comment lines kept as claims.

    A comment line right under a command, shaped as a table row, is a claim about its
    output; the first such row is the header and is not checked."""
    steps: list[Step] = []
    lines = body.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped:
            i += 1
            continue
        if stripped.startswith("#"):
            row = _row(stripped)
            if steps and row is not None and steps[-1].kind == "bash":
                steps[-1].rows.append(row)
            i += 1
            continue
        command = [line]
        while command[-1].rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            command.append(lines[i])
        text = "\n".join(command)
        m = _LAST_LINE.search(command[-1])
        steps.append(Step("bash", text, last_line=m.group(1) if m else None))
        i += 1
    for s in steps:
        s.rows = s.rows[1:]  # drop the header row
    return steps


def sql_queries(body: str) -> list[str]:
    """The statements of a sql block (split at a `;` that ends a line), without the comment
    lines that caption them (a query must not start with `--`: the CLI would read an option)."""
    queries = []
    for chunk in re.split(r";[ \t]*$", body, flags=re.M):
        lines = chunk.strip().splitlines()
        while lines and lines[0].strip().startswith("--"):
            lines.pop(0)
        if lines:
            queries.append("\n".join(lines))
    return queries


def main_store(steps: list[Step]) -> str:
    """The `--store` of the set-up's `evoagent run`: where the README's queries run."""
    for s in steps:
        words = shlex.split(s.text.replace("\\\n", " "), comments=True)
        for j, w in enumerate(words[:-1]):
            if w == "--store" and "run" in words[:j]:
                return words[j + 1]
    raise ValueError("the README runs no campaign (`evoagent run ... --store PATH`)")


def readme_steps(text: str) -> list[Step]:
    """Every step of the README in order: bash commands, python blocks, sql queries."""
    steps: list[Step] = []
    for lang, body in fenced_blocks(text):
        if lang in ("bash", "sh", "shell", "console"):
            steps += bash_steps(body)
        elif lang == "python":
            steps.append(Step("python", body))
        elif lang == "sql":
            steps += [Step("sql", q) for q in sql_queries(body)]
    return steps


# After every step: a background command (`... &`) that has ended must have ended well
# (e.g. a server that could not bind its port); those still running are stopped at exit.
_BACKGROUND = f"""trap 'kill $(jobs -p) 2>/dev/null' EXIT
declare -A bg_step
check_bg() {{
  for p in "${{!bg_step[@]}}"; do
    if ! kill -0 "$p" 2>/dev/null; then
      wait "$p"; r=$?; n=${{bg_step[$p]}}; unset "bg_step[$p]"
      if [ $r -ne 0 ]; then echo "{_MARK} failed $n $r"; exit 1; fi
    fi
  done
}}"""


def session_script(steps: list[Step]) -> str:
    """One bash script that runs the steps in order and stops at the first failure."""
    store = main_store(steps)
    out = [_BACKGROUND]
    for n, s in enumerate(steps):
        out.append(f"echo '{_MARK} {n}'")
        if s.kind == "bash":
            out.append(s.text)
        elif s.kind == "python":
            out.append(f"python - <<'README_PY'\n{s.text.rstrip()}\nREADME_PY")
        else:
            out.append(f"evoagent sql {shlex.quote(store)} {shlex.quote(s.text)}")
        out.append(f"rc=$?; if [ $rc -ne 0 ]; then echo '{_MARK} failed {n}' $rc; exit 1; fi")
        if s.kind == "bash" and re.search(r"(^|[^&])&\s*(#.*)?$", s.text.rstrip()):
            out.append(f"bg_step[$!]={n}")
        out.append("check_bg")
    out.append(f"echo '{_MARK} done'")
    return "\n".join(out) + "\n"


def fresh_env(cache: Path) -> dict[str, str]:
    """This environment without any virtual environment, and an empty database cache."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "CONDA_PREFIX")}
    keep = [p for p in env.get("PATH", "").split(os.pathsep)
            if p and not (Path(p).parent / "pyvenv.cfg").exists()]
    env["PATH"] = os.pathsep.join(keep)
    env["EVOAGENT_CACHE_DIR"] = str(cache)
    return env


def copy_checkout(dest: Path) -> None:
    """The files git tracks or would track (ignored ones left out), as a fresh clone has them."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], check=True, capture_output=True).stdout
    for rel in sorted(set(filter(None, listed.decode().split("\0")))):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def check_claims(step: Step, output: list[str]) -> str | None:
    """What the README says the step prints, if the output does not show it."""
    lines = [ln for ln in output if ln.strip()]
    if step.last_line is not None and (not lines or lines[-1].strip() != step.last_line):
        return f"last line {lines[-1].strip() if lines else ''!r}, README says {step.last_line!r}"
    for row in step.rows:
        pattern = r"(^|\W)" + r"\W+".join(re.escape(c) for c in row if c) + r"(\W|$)"
        if not any(re.search(pattern, ln) for ln in lines):
            return f"no output row shows {' | '.join(row)}"
    return None


def run_readme(workdir: Path, readme_only: bool = False) -> int:
    """Run the README's steps (and the docs pages') in ``workdir``; 0 if all ran and printed what they say."""
    steps, skipped = (readme_steps(README.read_text()), []) if readme_only else all_steps()
    for page, first, reason in skipped:
        print(f"not run: {page}: {first[:80]} ({reason})")
    repo = workdir / "evoagent"
    copy_checkout(repo)
    proc = subprocess.Popen(["bash", "-c", session_script(steps)], cwd=repo, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=fresh_env(workdir / "cache"), text=True, bufsize=1)
    outputs: dict[int, list[str]] = {}
    times: dict[int, float] = {}
    current, started, failed = -1, time.monotonic(), None
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(_MARK):
            now = time.monotonic()
            if current >= 0:
                times[current] = now - started
            word = line.split()[1]
            if word == "failed":
                failed = (int(line.split()[2]), line.split()[3])
            elif word != "done":
                current, started = int(word), now
                first = steps[current].text.strip().splitlines()[0]
                print(f"\n$ [{current + 1}/{len(steps)}] ({steps[current].page}) {first[:150]}", flush=True)
            continue
        outputs.setdefault(current, []).append(line.rstrip("\n"))
        print(line, end="", flush=True)
    proc.wait()
    print("\n  s      step")
    for n, secs in times.items():
        print(f"{secs:7.1f}  {steps[n].text.strip().splitlines()[0][:110]}")
    if failed is not None:
        print(f"\nFAILED: step {failed[0] + 1} ({steps[failed[0]].page}) exited {failed[1]}: {steps[failed[0]].text}")
        return 1
    if proc.returncode != 0 or current != len(steps) - 1:
        print(f"\nFAILED: the session ended early (exit {proc.returncode})")
        return 1
    problems = [(n, p) for n, s in enumerate(steps) if (p := check_claims(s, outputs.get(n, [])))]
    for n, p in problems:
        print(f"\nFAILED: step {n + 1} of {steps[n].page} ({steps[n].text.strip().splitlines()[0][:80]}): {p}")
    if not problems:
        print(f"\nall {len(steps)} steps of the README and the docs ran as written"
              + (f" ({len(skipped)} blocks marked not run)" if skipped else ""))
    return 1 if problems else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", type=Path, help="Run in this (new or empty) folder and keep it.")
    ap.add_argument("--readme-only", action="store_true", help="The README's commands only, not the docs pages'.")
    args = ap.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        if any(args.keep.iterdir()):
            sys.exit(f"error: {args.keep} is not empty")
        sys.exit(run_readme(args.keep.resolve(), args.readme_only))
    with tempfile.TemporaryDirectory(prefix="readme-") as tmp:
        sys.exit(run_readme(Path(tmp), args.readme_only))


if __name__ == "__main__":
    main()
