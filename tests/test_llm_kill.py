"""kill -9 while a Message Batch runs, ten times: batches are polled, never resubmitted."""
from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from evoagent.envs.intercode_sql.fake_agent import intercode_responder
from evoagent.testing.fake_server import FakeAnthropic, request_key
from stores import DuckDBStore
from tests.conftest import SMALL, cli, cli_env

SETTINGS = ['policy.kind="anthropic"', "policy.batch=true", "policy.batch_poll_s=0.05",
            "policy.batch_idle_s=0.1", "policy.retry_base_s=0.01", "concurrency=16", "budget.generations=1",
            'tasks.ids=["sql/0", "sql/7", "sql/42", "sql/100"]']


@pytest.mark.slow  # a soak: ten kills and resumes (~1 minute); `pytest -m slow`
def test_kill_during_batches_then_resume(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(SMALL)
    store = tmp_path / "k.duckdb"
    sets = [x for s in SETTINGS for x in ("--set", s)]
    rng = random.Random(5)
    with FakeAnthropic(intercode_responder(), batch_latency_s=0.6) as srv:
        env = {**cli_env(), "ANTHROPIC_BASE_URL": srv.url, "ANTHROPIC_API_KEY": "test-key"}
        kills = 0
        for _ in range(40):
            started = store.exists() and _has_campaign(store)
            args = ("resume", str(store)) if started else ("run", str(cfg), "--store", str(store), *sets)
            before = srv.stats["batches_created"]
            proc = subprocess.Popen(cli(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
            if kills < 10:
                deadline = time.monotonic() + 30
                while srv.stats["batches_created"] == before and proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.01)
                if proc.poll() is None:
                    time.sleep(rng.uniform(0.1, 0.5))  # inside the batch's 0.6 s
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    kills += 1
                    continue
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err.decode()[-2000:]
            break
        assert kills == 10
        received = srv.received()
        resumed_polls = srv.stats["requests"].get("GET /v1/messages/batches/{id}", 0)
    with DuckDBStore(store) as s:
        assert s.scalar("SELECT count(*) FROM generations WHERE status = 'committed'") == 2
        bodies = s.query("SELECT any_value(request) FROM raw.llm_calls WHERE status = 'ok' GROUP BY call_key")
        ledger = Counter(request_key(json.loads(b)) for b in bodies.column(0).to_pylist())
        batches = s.scalar("SELECT count(DISTINCT batch_id) FROM raw.llm_batches")
        collected = s.scalar("SELECT count(*) FROM raw.llm_batches WHERE status = 'collected'")
        twice = s.scalar("SELECT count(*) FROM (SELECT call_key FROM raw.llm_calls WHERE status = 'ok' "
                         "GROUP BY call_key HAVING count(*) > 1)")
    # every distinct call reached the server exactly once: none resubmitted after a kill
    assert received == ledger
    assert batches == collected and resumed_polls > 0
    assert twice == 0  # each answer is in the ledger once


def _has_campaign(store: Path) -> bool:
    with DuckDBStore(store) as s:
        return s.get_meta("campaign") is not None


