"""Worker-process sending (``policy.processes``): same answers, faults survived, no orphans."""
from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from evoagent.llm import make_transports, sender_processes
from evoagent.llm.errors import LLMError, TransientError
from evoagent.testing.fake_server import FakeAnthropic
from evoagent.llm.transports import OpenAITransport
from evoagent.llm.workers import ProcessTransport

ROOT = Path(__file__).resolve().parents[1]
REQUEST = {"model": "claude-haiku-4-5", "max_tokens": 32,
           "messages": [{"role": "user", "content": "Say something."}]}


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-workers")


def gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie waiting for a reaper counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True
    return state in ("Z", "X")


def wait_until(condition: Callable[[], bool], seconds: float = 15.0) -> bool:
    """Poll ``condition`` until it holds (True) or ``seconds`` pass (False)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def wait_gone(pids: list[int], seconds: float = 15.0) -> bool:
    return wait_until(lambda: all(gone(p) for p in pids), seconds)


def received(srv: FakeAnthropic) -> int:
    """Messages requests the server has received (answered or still waiting on its latency)."""
    return srv.stats["requests"].get("POST /v1/messages", 0)


def calls_in_background(sender: ProcessTransport, n: int) -> tuple[list[threading.Thread], list[BaseException]]:
    """``n`` threads each sending REQUEST once; the list fills with what they raise."""
    errors: list[BaseException] = []

    def call() -> None:
        try:
            sender.send(REQUEST)
        except BaseException as exc:  # noqa: BLE001 - inspected by the test
            errors.append(exc)
    callers = [threading.Thread(target=call) for _ in range(n)]
    for t in callers:
        t.start()
    return callers, errors


def test_auto_setting() -> None:
    assert sender_processes("auto", 32) == 0 and sender_processes("auto", 64) == 0
    assert sender_processes("auto", 128) >= 2
    assert sender_processes(3, 8) == 3 and sender_processes(0, 512) == 0


def test_workers_answer_like_the_campaign_process(api_key: None) -> None:
    with FakeAnthropic() as srv:
        local, sender = make_transports("anthropic", srv.url, 10.0, in_flight=8, processes=2)
        try:
            assert isinstance(sender, ProcessTransport)
            pids = sender.start()
            assert len(pids) == 2 and os.getpid() not in pids
            for pid in pids:  # Ctrl-C reaches the process group: it is the campaign's to handle
                os.kill(pid, signal.SIGINT)
            direct = local.send(REQUEST)
            answers: list[dict] = []
            threads = [threading.Thread(target=lambda: answers.append(sender.send(REQUEST))) for _ in range(16)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert sender.start() == pids  # the same workers answered
        finally:
            sender.close()
            local.close()
        assert wait_gone(pids)  # close() stops the workers
        assert srv.stats["requests"]["POST /v1/messages"] == 17
    assert len(answers) == 16
    for a in answers:
        assert a["content"] == direct["content"] and a["usage"] == direct["usage"]


def test_server_faults_come_back_as_transient_with_retry_after(api_key: None) -> None:
    with FakeAnthropic(faults={429: 1.0}, retry_after_s=0.25) as srv:
        _, sender = make_transports("anthropic", srv.url, 10.0, in_flight=2, processes=1)
        try:
            with pytest.raises(TransientError) as err:
                sender.send(REQUEST)
        finally:
            sender.close()
    assert "429" in str(err.value) and err.value.retry_after == pytest.approx(0.25)


@pytest.mark.slow  # long: CI's slow step runs it (the default run stays under 3 minutes)
def test_a_killed_worker_fails_its_calls_as_transient_and_is_restarted(api_key: None) -> None:
    with FakeAnthropic(latency_s=1.0) as srv:
        _, sender = make_transports("anthropic", srv.url, 10.0, in_flight=4, processes=1)
        try:
            [pid] = sender.start()
            callers, errors = calls_in_background(sender, 3)
            assert wait_until(lambda: received(srv) == 3)  # the calls are in the worker, waiting on the server
            os.kill(pid, signal.SIGKILL)
            for t in callers:
                t.join(10)
            assert len(errors) == 3 and all(isinstance(e, TransientError) for e in errors)
            answer = sender.send(REQUEST)  # a new worker takes over
            assert answer["content"]
            assert sender.start() != [pid]
        finally:
            sender.close()


def test_a_worker_that_cannot_build_its_transport_is_a_clear_error() -> None:
    sender = ProcessTransport(functools.partial(OpenAITransport, ""), processes=1, threads=1)
    with pytest.raises(LLMError, match="could not start its transport: LLMError: policy.kind = openai needs"):
        sender.send(REQUEST)
    sender.close()


def test_workers_exit_when_the_campaign_process_is_killed(tmp_path: Path) -> None:
    script = (
        "import functools, os, signal, sys\n"
        "from evoagent.llm.transports import OpenAITransport\n"
        "from evoagent.llm.workers import ProcessTransport\n"
        "t = ProcessTransport(functools.partial(OpenAITransport, 'http://127.0.0.1:9/v1'), 2, 2)\n"
        "print(' '.join(map(str, t.start())), flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    pids = [int(p) for p in proc.stdout.split()]
    assert len(pids) == 2
    assert wait_gone(pids), "worker processes outlived the campaign process"


@pytest.mark.slow  # long: CI's slow step runs it (the default run stays under 3 minutes)
def test_a_failed_start_leaves_no_half_started_worker(api_key: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import evoagent.llm.workers as workers

    real_popen, started = subprocess.Popen, []

    def second_fails(*args, **kwargs):  # the OS refusing a second process (EAGAIN, EMFILE)
        if started:
            raise OSError(11, "Resource temporarily unavailable")
        started.append(real_popen(*args, **kwargs))
        return started[-1]

    with FakeAnthropic() as srv:
        _, sender = make_transports("anthropic", srv.url, 10.0, in_flight=4, processes=2)
        try:
            monkeypatch.setattr(workers.subprocess, "Popen", second_fails)
            with pytest.raises(OSError):
                sender.start()
            assert wait_gone([started[0].pid])  # the first one was stopped, not left without a reader
            monkeypatch.setattr(workers.subprocess, "Popen", real_popen)
            answer: list[dict] = []
            t = threading.Thread(target=lambda: answer.append(sender.send(REQUEST)), daemon=True)
            t.start()
            t.join(60)
            assert answer and answer[0]["content"]  # answered, not hung
            # A restart that fails later is transient: the client retries it.
            [pid, _] = sender.start()
            started.clear()
            started.append(None)
            monkeypatch.setattr(workers.subprocess, "Popen", second_fails)
            os.kill(pid, signal.SIGKILL)
            assert wait_gone([pid])
            time.sleep(0.2)  # the reader sees the socket end
            with pytest.raises(TransientError, match="restart failed"):
                sender.send(REQUEST)
            monkeypatch.setattr(workers.subprocess, "Popen", real_popen)
        finally:
            sender.close()


@pytest.mark.slow  # long: CI's slow step runs it (the default run stays under 3 minutes)
def test_close_abandons_calls_in_flight_at_once(api_key: None) -> None:
    with FakeAnthropic(latency_s=30.0) as srv:
        _, sender = make_transports("anthropic", srv.url, 60.0, in_flight=4, processes=2)
        pids = sender.start()
        callers, errors = calls_in_background(sender, 2)
        assert wait_until(lambda: received(srv) == 2)  # in flight: the server holds them for 30 s
        t0 = time.monotonic()
        sender.close()  # an abort: the calls are not waited for
        assert time.monotonic() - t0 < 5
        for t in callers:
            t.join(10)
        assert len(errors) == 2 and all(isinstance(e, TransientError) for e in errors)
        assert wait_gone(pids)
        with pytest.raises(LLMError, match="closed"):
            sender.send(REQUEST)
