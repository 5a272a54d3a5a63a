"""The fake Anthropic server, exercised through the real SDK over HTTP (no mocking)."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from evoagent.testing.fake_server import FakeAnthropic, request_key


class _SDK:
    """The anthropic module, imported on first use: the SDK takes seconds to import, and test
    collection (every module imported) should not pay that for tests it may not run."""

    def __getattr__(self, name: str) -> object:
        if name.startswith("_"):  # pytest probes every module global for fixture markers
            raise AttributeError(name)
        import anthropic as sdk

        return getattr(sdk, name)


anthropic = _SDK()
MODEL = "claude-fake-1"
MSGS = [{"role": "user", "content": "hello there"}]


def client(server: FakeAnthropic) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="test", max_retries=0)


@pytest.fixture
def server():
    with FakeAnthropic(batch_latency_s=0.2) as srv:
        yield srv


def tool_responder(body: dict) -> dict:
    if body["messages"][-1]["role"] == "user" and isinstance(body["messages"][-1]["content"], str):
        return {"content": [{"type": "text", "text": "let me look"},
                            {"type": "tool_use", "id": "toolu_01", "name": "run_sql",
                             "input": {"query": "SELECT 1", "limit": [1, 2], "opts": {"x": None}}}],
                "stop_reason": "tool_use", "output_tokens": 7}
    return {"content": [{"type": "text", "text": "done"}], "stop_reason": "end_turn"}


def test_plain_message(server):
    msg = client(server).messages.create(model=MODEL, max_tokens=64, messages=MSGS)
    assert isinstance(msg, anthropic.types.Message)
    assert msg.type == "message" and msg.role == "assistant" and msg.model == MODEL
    key = request_key({"model": MODEL, "max_tokens": 64, "messages": MSGS})
    assert msg.content[0].type == "text" and msg.content[0].text == f"ok {key[:8]}"
    assert msg.stop_reason == "end_turn" and msg.stop_sequence is None
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    assert msg.usage.cache_read_input_tokens == 0 and msg.usage.cache_creation_input_tokens == 0
    assert msg.id.startswith("msg_")


def test_streaming_both_apis():
    with FakeAnthropic(tool_responder) as srv:
        c = client(srv)
        events = list(c.messages.create(model=MODEL, max_tokens=64, messages=MSGS, stream=True))
        kinds = [e.type for e in events]
        assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
        assert "message_delta" in kinds and kinds.count("content_block_start") == 2
        assert {e.delta.type for e in events if e.type == "content_block_delta"} == {"text_delta", "input_json_delta"}
        with c.messages.stream(model=MODEL, max_tokens=64, messages=MSGS) as s:
            text = "".join(s.text_stream)
            final = s.get_final_message()
        assert text == "let me look"
        assert final.stop_reason == "tool_use" and final.usage.output_tokens == 7
        tool = final.content[1]
        assert isinstance(tool, anthropic.types.ToolUseBlock)
        assert tool.input == {"query": "SELECT 1", "limit": [1, 2], "opts": {"x": None}}
        plain = c.messages.create(model=MODEL, max_tokens=64, messages=MSGS)
        assert final.usage.input_tokens == plain.usage.input_tokens
        # streamed and plain calls of the same params share one key
        assert srv.received()[request_key({"model": MODEL, "max_tokens": 64, "messages": MSGS})] == 3


def test_tool_use_round_trip():
    with FakeAnthropic(tool_responder) as srv:
        c = client(srv)
        tools = [{"name": "run_sql", "description": "run SQL",
                  "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}}}]
        msg = c.messages.create(model=MODEL, max_tokens=64, messages=MSGS, tools=tools)
        assert msg.stop_reason == "tool_use"
        block = msg.content[1]
        assert isinstance(block, anthropic.types.ToolUseBlock)
        assert block.id == "toolu_01" and block.name == "run_sql" and block.input["query"] == "SELECT 1"
        history = MSGS + [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in msg.content]},
                          {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id,
                                                        "content": "1"}]}]
        msg2 = c.messages.create(model=MODEL, max_tokens=64, messages=history, tools=tools)
        assert msg2.content[0].text == "done" and msg2.usage.input_tokens > msg.usage.input_tokens


def test_count_tokens(server):
    c = client(server)
    small = c.messages.count_tokens(model=MODEL, messages=MSGS)
    big = c.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "x" * 4000}], system="sys")
    assert 0 < small.input_tokens < 20 and 1000 <= big.input_tokens < 1050
    msg = c.messages.create(model=MODEL, max_tokens=8, messages=MSGS)
    assert msg.usage.input_tokens == small.input_tokens


def test_batches(server):
    c = client(server)
    reqs = [{"custom_id": f"r{i}", "params": {"model": MODEL, "max_tokens": 32,
                                              "messages": [{"role": "user", "content": f"q{i}"}]}}
            for i in range(3)]
    batch = c.messages.batches.create(requests=reqs)
    assert batch.id.startswith("msgbatch_") and batch.type == "message_batch"
    assert batch.processing_status == "in_progress" and batch.ended_at is None and batch.results_url is None
    assert batch.request_counts.processing == 3
    deadline = time.time() + 5
    while (b := c.messages.batches.retrieve(batch.id)).processing_status != "ended":
        assert time.time() < deadline
        time.sleep(0.05)
    assert b.request_counts.succeeded == 3 and b.ended_at is not None
    assert b.results_url == f"{server.url}/v1/messages/batches/{batch.id}/results"
    results = {r.custom_id: r for r in c.messages.batches.results(batch.id)}
    assert set(results) == {"r0", "r1", "r2"}
    for i, req in enumerate(reqs):
        res = results[f"r{i}"].result
        assert res.type == "succeeded"
        assert res.message.content[0].text == f"ok {request_key(req['params'])[:8]}"
    # batch items count under the same key as the same params sent to /v1/messages
    c.messages.create(**reqs[0]["params"])
    assert server.received()[request_key(reqs[0]["params"])] == 2
    assert server.delivered()[request_key(reqs[1]["params"])] == 1
    assert server.stats["batches_created"] == 1


def test_unknown_batch_404(server):
    with pytest.raises(anthropic.NotFoundError) as ei:
        client(server).messages.batches.retrieve("msgbatch_nope")
    assert ei.value.status_code == 404
    assert ei.value.body["type"] == "error" and ei.value.body["error"]["type"] == "not_found_error"


def test_prompt_caching(server):
    c = client(server)
    system = [{"type": "text", "text": "You are a SQL agent. " * 50, "cache_control": {"type": "ephemeral"}}]
    m1 = c.messages.create(model=MODEL, max_tokens=8, system=system, messages=MSGS)
    assert m1.usage.cache_creation_input_tokens > 200 and m1.usage.cache_read_input_tokens == 0
    m2 = c.messages.create(model=MODEL, max_tokens=8, system=system,
                           messages=[{"role": "user", "content": "another question"}])
    assert m2.usage.cache_read_input_tokens == m1.usage.cache_creation_input_tokens
    assert m2.usage.cache_creation_input_tokens == 0 and m2.usage.input_tokens > 0
    # moving the breakpoint later in a conversation reads the earlier prefix and writes the rest
    turn = [{"role": "user", "content": [{"type": "text", "text": "step one " * 30,
                                          "cache_control": {"type": "ephemeral"}}]}]
    m3 = c.messages.create(model=MODEL, max_tokens=8, system=system, messages=turn)
    turn2 = [{"role": "user", "content": [{"type": "text", "text": "step one " * 30}]},
             {"role": "assistant", "content": "ok"},
             {"role": "user", "content": [{"type": "text", "text": "step two", "cache_control": {"type": "ephemeral"}}]}]
    m4 = c.messages.create(model=MODEL, max_tokens=8, system=system, messages=turn2)
    assert m4.usage.cache_read_input_tokens == (m3.usage.cache_read_input_tokens
                                                + m3.usage.cache_creation_input_tokens)
    assert 0 < m4.usage.cache_creation_input_tokens < 20


def test_fault_429():
    with FakeAnthropic(faults={429: 1.0}, retry_after_s=0.25) as srv:
        with pytest.raises(anthropic.RateLimitError) as ei:
            client(srv).messages.create(model=MODEL, max_tokens=8, messages=MSGS)
        err = ei.value
        assert err.status_code == 429 and err.body["error"]["type"] == "rate_limit_error"
        assert float(err.response.headers["retry-after"]) == 0.25
        assert err.response.headers["retry-after-ms"] == "250"
        assert err.response.headers["request-id"]
        key = request_key({"model": MODEL, "max_tokens": 8, "messages": MSGS})
        assert srv.received()[key] == 1 and srv.delivered()[key] == 0
        assert srv.stats["faults"] == {429: 1}


def test_fault_529_and_500():
    with FakeAnthropic(faults={529: 1.0}) as srv:
        with pytest.raises(anthropic.InternalServerError) as ei:
            client(srv).messages.create(model=MODEL, max_tokens=8, messages=MSGS)
        assert isinstance(ei.value, anthropic.OverloadedError) and ei.value.status_code == 529
        assert ei.value.body["error"]["type"] == "overloaded_error"
    with FakeAnthropic(faults={500: 1.0}) as srv:
        with pytest.raises(anthropic.InternalServerError) as ei:
            client(srv).messages.create(model=MODEL, max_tokens=8, messages=MSGS, stream=True)
        assert ei.value.status_code == 500 and ei.value.body["error"]["type"] == "api_error"


def test_received_delivered_with_sdk_retries():
    with FakeAnthropic(faults={429: 0.5}, retry_after_s=0.001, seed=1) as srv:
        c = anthropic.Anthropic(base_url=srv.url, api_key="test", max_retries=30)
        for i in range(20):
            c.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": f"q{i}"}])
        received, delivered = srv.received(), srv.delivered()
        assert len(delivered) == 20 and set(delivered.values()) == {1}
        assert sum(received.values()) == 20 + srv.stats["faults"][429] > 20
        assert srv.stats["requests"]["POST /v1/messages"] == sum(received.values())


def test_responder_error_is_500():
    def boom(body: dict) -> dict:
        raise RuntimeError("bad responder")
    with FakeAnthropic(boom) as srv:
        with pytest.raises(anthropic.InternalServerError, match="bad responder"):
            client(srv).messages.create(model=MODEL, max_tokens=8, messages=MSGS)


def test_cli_standalone():
    proc = subprocess.Popen([sys.executable, "-m", "evoagent.testing.fake_server", "--port", "0",
                             "--faults", "429=0.0"], stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        c = anthropic.Anthropic(base_url=url, api_key="test", max_retries=0)
        assert c.messages.create(model=MODEL, max_tokens=8, messages=MSGS).content[0].text.startswith("ok ")
    finally:
        proc.terminate()
        proc.wait(timeout=5)
