"""LLM policies in the code environment (through the official SDK, against the loopback fake server), and
Reflexion's loop offline: revise follows the recorded reflections with the replay policy."""
from __future__ import annotations

import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from evoagent import campaign, launch
from evoagent.envs.code.agent import RecordedAdvisor, failed_tests, reflexion_prompt
from evoagent.envs.code.data import load_tasks
from evoagent.envs.code.fake_agent import code_responder
from evoagent.envs.code.policies import CodeReplayPolicy, recorded_programs, recorded_reflections
from evoagent.policies.base import Guidance
from evoagent.testing.fake_server import FakeAnthropic
from evoagent.trajectory import Step, Trajectory
from stores import open_reader

WRONG = "def truncate_number(number: float) -> float:\n    return number\n"
RIGHT = "def truncate_number(number: float) -> float:\n    return number % 1.0\n"

CAMPAIGN = """
name = "code-llm"
seed = 1
mu = 1
lambda = 1
concurrency = 1
[env]
kind = "code"
max_steps = 4
[tasks]
set = "humaneval"
ids = ["HumanEval/2"]
[policy]
kind = "anthropic"
retry_base_s = 0.01
processes = 0
[search]
reward = "visible"
[fitness]
reward = "visible"
[budget]
generations = 0
"""


def _run(tmp_path: Path, *sets: str) -> Path:
    (tmp_path / "c.toml").write_text(CAMPAIGN)
    store = tmp_path / "s.duckdb"
    assert launch.start(campaign.load(tmp_path / "c.toml", list(sets)), str(store)).status == "completed"
    return store


def _run_on_fake_claude(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, programs: list[str],
                        *sets: str) -> tuple[list[dict[str, Any]], Path]:
    """The campaign against the loopback server whose stand-in model writes ``programs`` in turn; the
    requests it received, and the store."""
    seen: list[dict[str, Any]] = []
    respond = code_responder({"truncate_number": programs})

    def recording(body: dict[str, Any]) -> dict[str, Any]:
        seen.append(body)
        return respond(body)

    with FakeAnthropic(recording) as srv:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-code")
        return seen, _run(tmp_path, *sets)


def test_claude_acts_in_reflexions_loop_through_the_sdk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen, store = _run_on_fake_claude(tmp_path, monkeypatch, [WRONG, RIGHT])
    with open_reader(str(store)) as r:
        steps = r.query("SELECT action, thought, observation, reward FROM steps ORDER BY idx").to_pylist()
        assert r.scalar("SELECT count(*) FROM llm_calls WHERE template = 'agent/code/v1'") == 3
        assert r.scalar("SELECT max(outcome_reward) FROM trajectories") == 1.0  # the hidden tests, afterwards
    assert [s["action"] for s in steps] == [WRONG, RIGHT]
    assert steps[0]["observation"].startswith("Tested passed:") and "# output: 3.5" in steps[0]["observation"]
    assert steps[1]["thought"].startswith("Attempt 1 failed assert truncate_number(3.5) == 0.5")
    second = "\n".join(b["text"] for b in seen[1]["messages"][-1]["content"])
    # the request: the problem with its visible tests, the last program, its test feedback
    assert "def truncate_number(number: float) -> float:" in second and "Visible tests:" in second
    assert f"Your last implementation (attempt 1):\n```python\n{WRONG}" in second
    assert "Test feedback:\nTested passed:" in second and "# output: 3.5" in second
    third = "\n".join(b["text"] for b in seen[2]["messages"][-1]["content"])
    assert "Your reflections so far:\n- Attempt 1 failed assert truncate_number(3.5) == 0.5" in third
    assert "def check(" not in second + third  # never the hidden tests


def test_revise_asks_claude_for_a_reflection_on_the_failed_program(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    seen, store = _run_on_fake_claude(tmp_path, monkeypatch, [WRONG, WRONG + "# again\n"], "budget.generations=1",
                                      "operators.revise.rate=1.0", "operators.recombine.rate=0",
                                      "operators.refine.rate=0", "operators.sample.rate=0")
    with open_reader(str(store)) as r:
        assert r.scalar("SELECT count(*) FROM llm_calls WHERE template = 'operator/revise/code/v1'") >= 1
    reflections = [b for b in seen if b.get("tool_choice", {}).get("name") == "write_reflection"]
    assert reflections and "Implementation:\n```python\n" + WRONG in reflections[0]["messages"][0]["content"]
    guided = [b for b in seen if "It failed assert truncate_number" in json.dumps(b.get("messages"))
              and b.get("tool_choice") is None]
    assert guided  # the re-rolled agent was shown the reflection


class _OpenAICodeHandler(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat server whose model writes RIGHT, then submits once the tests pass."""

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert self.path == "/v1/chat/completions"
        names = [t["function"]["name"] for t in body["tools"]]
        assert names == ["write_program", "submit"], names
        text = json.dumps(body["messages"])
        call = {"name": "submit", "arguments": "{}"} if "Test feedback:" in text else {
            "name": "write_program", "arguments": json.dumps({"program": RIGHT})}
        data = json.dumps({"choices": [{"finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": call}]}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 10}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_an_openai_compatible_server_acts_in_the_code_environment(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OpenAICodeHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        store = _run(tmp_path, "policy.kind=openai", f"policy.base_url='http://127.0.0.1:{server.server_address[1]}/v1'",
                     "policy.model='local'")
    finally:
        server.shutdown()
    with open_reader(str(store)) as r:
        assert r.query("SELECT action FROM steps ORDER BY idx").column(0).to_pylist() == [RIGHT]
        assert r.scalar("SELECT max(outcome_reward) FROM trajectories") == 1.0


# -- offline: the recorded reflections -----------------------------------------------------------------------
def test_revise_offline_gives_the_recorded_reflection_and_replay_writes_the_program_after_it() -> None:
    tasks = {t.task_id: t for t in load_tasks("humaneval")}
    reflections = recorded_reflections()
    (task_id, program), reflection = next((k, v) for k, v in sorted(reflections.items()) if k[0] in tasks)
    parent = Trajectory(task_id, (Step(0, program, "Tested passed:\n\nTests failed:\nassert f(1) == 2 # output: 3\n",
                                       0.0),), 0.0, "test")
    advisor = RecordedAdvisor(reflections)
    assert advisor.reflect(tasks[task_id], parent, 0, random.Random(0)) == reflection
    after = [p for p, t in recorded_programs().get(task_id, ()) if t == reflection]
    assert after
    policy = CodeReplayPolicy(max_programs=4)
    guidance = Guidance(avoid=frozenset([program]), notes=reflection)
    for seed in range(5):
        assert policy.next_action(tasks[task_id], [], guidance, random.Random(seed)).text in after
    # a program no recorder reflected on: its failed tests are the notes
    unknown = Trajectory(task_id, (Step(0, "def f(): pass", parent.steps[0].observation, 0.0),), 0.0, "test")
    assert advisor.reflect(tasks[task_id], unknown, 0, random.Random(0)) == "Tests failed:\nassert f(1) == 2 # output: 3"


def test_the_reflexion_prompt_holds_reflections_last_program_and_feedback() -> None:
    history = [Step(0, "def a(): pass", "Error: error: NameError: x\n\nTested passed:\n\nTests failed:\nassert a() # err\n",
                    0.0), Step(1, "def b(): pass", "Tested passed:\nassert b()\n\nTests failed:\n", 0.0, thought="a was wrong")]
    text = reflexion_prompt(history, Guidance(notes="use b"), 2000)
    assert "- a was wrong\n- use b\n" in text and "(attempt 2):\n```python\ndef b(): pass" in text
    assert "Test feedback:\nTested passed:\nassert b()" in text and "def a()" not in text
    assert failed_tests(history[0].observation) == "Error: error: NameError: x\nTests failed:\nassert a() # err"
