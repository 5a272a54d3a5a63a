"""`evoagent rm serve`: a real trained model directory behind the real aiohttp server on loopback.

Every route in vLLM's and OpenRLHF's shapes, one-line 4xx answers, truncation,
dynamic batching, a model error that fails only its own request, 503 when full or
when too many bodies are being received.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx2
import pytest
from click.testing import CliRunner

from evoagent.rm.hosting import BackgroundServer
from evoagent.rm.model import ProcessRewardModel, load_model
from evoagent.cli.rm import serve as serve_command
from evoagent.rm.server import Limits

ROOT = Path(__file__).resolve().parent.parent
VLLM = ROOT / "tests" / "data" / "vllm"


@pytest.fixture(scope="module")
def model(prm_dir: Path) -> ProcessRewardModel:
    return load_model(prm_dir)


@pytest.fixture(scope="module")
def server(model: ProcessRewardModel) -> Iterator[BackgroundServer]:
    with BackgroundServer(model, limits=Limits(max_chars=300, max_body_bytes=64_000, max_inputs=16,
                                               max_wait_ms=20)) as s:
        yield s


TEXTS = [("question: How many singers do we have?\nstep 1 action: SELECT count(*) FROM singer\n"
          "step 1 observation: [(6,)]"),
         ("question: How many singers do we have?\nstep 1 action: SELECT * FROM singr\n"
          "step 1 observation: Error executing query: Table 'singr' doesn't exist"),
         ("question: List the names of all stadiums.\nstep 1 action: SHOW TABLES\nstep 1 observation: "
          "[('stadium',), ('singer',), ('concert',)]")]


def _shape(doc: object) -> object:
    """Keys and nesting of a JSON document, values dropped (to compare with the recorded bodies)."""
    if isinstance(doc, dict):
        return {k: _shape(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_shape(doc[0])] if doc and isinstance(doc[0], (dict, list)) else "list"
    return type(doc).__name__ if doc is not None else None


def test_every_route_answers_like_vllm_and_openrlhf(server: BackgroundServer, model: ProcessRewardModel,
                                                   prm_dir: Path) -> None:
    expected = model.score_texts(TEXTS)
    assert len(set(expected)) == 3  # the texts are told apart, so a mix-up would show
    with httpx2.Client(base_url=server.url) as c:
        assert c.get("/health").status_code == 200
        models = c.get("/v1/models").json()
        assert models["data"][0]["id"] == prm_dir.name == model.name
        recorded_models = json.loads((VLLM / "models.json").read_text())
        # vLLM's fields, plus the digest of the served weights (also on every answer, as a header)
        assert set(models["data"][0]) - {"digest"} <= set(recorded_models["data"][0])
        assert models["data"][0]["digest"] == model.digest and len(model.digest) == 12
        assert c.get("/health").headers["X-Model-Digest"] == model.digest

        pooled = c.post("/pooling", json={"model": model.name, "input": TEXTS}).json()
        assert [d["data"][-1] for d in pooled["data"]] == pytest.approx(expected)
        assert [d["index"] for d in pooled["data"]] == [0, 1, 2]
        recorded = json.loads((VLLM / "pooling_reward.json").read_text())
        assert set(pooled) == set(recorded) and set(pooled["data"][0]) == set(recorded["data"][0])
        assert set(pooled["usage"]) == set(recorded["usage"]) and pooled["object"] == "list"

        classified = c.post("/classify", json={"input": TEXTS}).json()
        assert _shape(classified) == _shape(json.loads((VLLM / "classify.json").read_text()))
        assert [d["probs"][1] for d in classified["data"]] == pytest.approx(expected)
        assert [d["label"] for d in classified["data"]] == ["LABEL_1" if p >= 0.5 else "LABEL_0" for p in expected]
        one = c.post("/v1/classify", json={"input": TEXTS[1]}).json()  # a single string, vLLM's /v1 spelling
        assert one["data"][0]["probs"][1] == pytest.approx(expected[1])

        rewards = c.post("/get_reward", json={"query": TEXTS, "prompts": ["ignored"]}).json()
        assert _shape(rewards) == _shape(json.loads((VLLM / "openrlhf_get_reward.json").read_text()))
        assert rewards["rewards"] == pytest.approx(expected)


def test_bad_requests_get_one_line_4xx_and_the_server_goes_on(server: BackgroundServer) -> None:
    cases = [
        (b"{not json", 400, "invalid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b"[" * 100_000, 413, "limit"),  # deep nesting is refused by size first
        (b'{"input": []}', 400, "'input' is empty"),
        (b'{"input": ["a", 3]}', 400, "list of strings"),
        (b'{"prompt": "a"}', 400, "missing 'input'"),
        (b'{"messages": [{"role": "user", "content": "a"}]}', 400, "messages"),
        (json.dumps({"input": ["x"] * 17}).encode(), 400, "too many inputs: 17"),
        (b'{"model": "gpt-9", "input": "a"}', 404, "does not exist"),
        (b'{"input": "' + b"x" * 70_000 + b'"}', 413, "over the server's limit"),
    ]
    with httpx2.Client(base_url=server.url) as c:
        for body, status, reason in cases:
            r = c.post("/pooling", content=body, headers={"content-type": "application/json"})
            assert (r.status_code, reason in r.json()["error"]["message"]) == (status, True), (body[:40], r.text)
            assert "\n" not in r.json()["error"]["message"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield b'{"input": "'
            for _ in range(70):
                yield b"y" * 1000
            yield b'"}'

        r = c.post("/classify", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413 and "limit" in r.json()["error"]["message"]
        for kind in ("text/plain", "application/x-www-form-urlencoded", None):  # curl -d's default, none
            r = c.post("/classify", content=b'{"input": "a"}', headers={"content-type": kind} if kind else {})
            assert r.status_code == 415 and "application/json" in r.json()["error"]["message"]
        assert c.get("/nowhere").status_code == 404
        assert c.get("/pooling").status_code == 405
        assert c.post("/get_reward", json={"query": "x"}).status_code == 200  # still serving


def test_a_long_text_keeps_its_end(server: BackgroundServer, model: ProcessRewardModel) -> None:
    long = "question: " + "padding words " * 200 + "\n" + TEXTS[0].split("\n", 1)[1]
    assert len(long) > 300
    whole, end = model.score_texts([long, long[-300:]])
    assert whole != end  # so the check below can tell truncation happened (JSON keeps floats exact)
    with httpx2.Client() as c:
        got = c.post(server.url + "/get_reward", json={"query": [long]}).json()["rewards"][0]
    assert got == end


def test_concurrent_requests_share_forward_passes(server: BackgroundServer, model: ProcessRewardModel) -> None:
    texts = [f"{TEXTS[i % 3]} {'x' * i}" for i in range(48)]
    expected = model.score_texts(texts)
    before = server.stats.forward_passes
    got: list[float | None] = [None] * len(texts)
    start = threading.Barrier(len(texts))

    def one(i: int) -> None:
        start.wait()
        got[i] = client.post(server.url + "/get_reward", json={"query": [texts[i]]}).json()["rewards"][0]

    with httpx2.Client(limits=httpx2.Limits(max_connections=64)) as client:
        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(texts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert got == pytest.approx(expected)
    passes = server.stats.forward_passes - before
    assert passes < len(texts) / 2, passes  # 48 requests, batched into far fewer model calls
    assert server.stats.largest_forward > 1


class _Flaky:
    """The trained model, except that a text holding POISON raises (as a model bug would)."""

    def __init__(self, model: ProcessRewardModel):
        self.model, self.name = model, model.name
        self.gate = threading.Event()
        self.entered = threading.Event()

    def score_texts(self, texts: Sequence[str]) -> list[float]:
        self.entered.set()
        self.gate.wait(10)
        if any("POISON" in t for t in texts):
            raise RuntimeError("tensor shape mismatch\nsecond line")
        return self.model.score_texts(texts)


def test_a_model_error_fails_only_its_request(model: ProcessRewardModel) -> None:
    flaky = _Flaky(model)
    flaky.gate.set()
    texts = TEXTS + ["POISON " + TEXTS[0]] + TEXTS
    answers: list[httpx2.Response | None] = [None] * len(texts)
    with BackgroundServer(flaky, limits=Limits(max_wait_ms=200, max_batch=64)) as srv, httpx2.Client() as client:
        def one(i: int) -> None:
            answers[i] = client.post(srv.url + "/classify", json={"input": texts[i]})

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(texts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [a.status_code for a in answers] == [200, 200, 200, 500, 200, 200, 200]  # type: ignore[union-attr]
        assert answers[3].json()["error"]["message"] == (  # type: ignore[union-attr]
            "the model failed on this request: RuntimeError: tensor shape mismatch")
        good = [a.json()["data"][0]["probs"][1] for i, a in enumerate(answers) if i != 3]  # type: ignore[union-attr]
        assert good == pytest.approx(model.score_texts(TEXTS + TEXTS))
        assert srv.stats.batches < len(texts)  # they were batched together, and still told apart
        assert client.get(srv.url + "/health").status_code == 200


def test_a_full_queue_answers_503(model: ProcessRewardModel) -> None:
    slow = _Flaky(model)
    with BackgroundServer(slow, limits=Limits(max_queued=4, max_inputs=4, max_wait_ms=0)) as srv, \
            httpx2.Client(base_url=srv.url) as client:
        first = threading.Thread(target=client.post, args=("/get_reward",), kwargs={"json": {"query": ["a"]}})
        first.start()
        assert slow.entered.wait(10)  # the model is busy with the first request
        queued = threading.Thread(target=client.post, args=("/get_reward",),
                                  kwargs={"json": {"query": ["b", "c", "d", "e"]}})
        queued.start()
        for _ in range(1000):
            if srv.batcher.queued == 4:
                break
            threading.Event().wait(0.01)
        r = client.post("/get_reward", json={"query": ["f"]})
        assert r.status_code == 503 and "retry later" in r.json()["error"]["message"]
        slow.gate.set()
        first.join()
        queued.join()
        assert client.post("/get_reward", json={"query": ["f"]}).status_code == 200


def test_serve_command_mistakes_are_one_line(prm_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(serve_command, [str(tmp_path)])  # a folder that holds no model
    assert out.exit_code == 2 and out.output.count("\n") == 1 and "no config.json" in out.output
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        out = runner.invoke(serve_command, [str(prm_dir), "--port", str(busy.getsockname()[1])])
        assert out.exit_code == 2 and "cannot listen on 127.0.0.1:" in out.output, out.output
        out = runner.invoke(serve_command, [str(prm_dir), "--max-batch", "0"])
        assert out.exit_code == 2 and "--max-batch must be within 1.." in out.output, out.output
    finally:
        busy.close()


@pytest.mark.slow  # a fresh interpreter imports the CLI and the model (~3 s)
def test_rm_serve_prints_its_url_serves_and_stops_on_sigint(prm_dir: Path) -> None:
    import signal

    proc = subprocess.Popen([sys.executable, "-c", "from evoagent.cli.rm import serve; serve()",
                             str(prm_dir), "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith(f"serving {prm_dir.name} at http://127.0.0.1:"), line
        url = line.split(" at ", 1)[1].split(" ", 1)[0]
        assert httpx2.post(url + "/get_reward", json={"query": TEXTS}).status_code == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow  # two spawned replica processes import the model (~3 s)
def test_replica_processes_serve_the_same_scores_and_survive_a_dead_replica(
        prm_dir: Path, model: ProcessRewardModel) -> None:
    import multiprocessing
    import os
    import signal

    from evoagent.rm.hosting import ProcessReplicas

    replicas = ProcessReplicas(prm_dir, 2, model.name)
    try:
        with BackgroundServer(replicas, parallel=2, limits=Limits(max_batch=4)) as srv, \
                httpx2.Client(base_url=srv.url) as client:
            texts = [f"{TEXTS[i % 3]} {i}" for i in range(12)]
            got = client.post("/get_reward", json={"query": texts}).json()["rewards"]
            assert got == model.score_texts(texts)
            children = multiprocessing.active_children()
            assert len(children) == 2
            os.kill(children[0].pid, signal.SIGKILL)
            children[0].join(10)
            first = client.post("/get_reward", json={"query": TEXTS})
            assert first.status_code in (200, 500)  # the batch a dead replica held fails; never the server
            if first.status_code == 500:
                assert "replica died" in first.json()["error"]["message"]
            assert client.post("/get_reward", json={"query": TEXTS}).json()["rewards"] == model.score_texts(TEXTS)
    finally:
        replicas.close()


def test_batches_are_cut_into_sub_batches_of_similar_length() -> None:
    from evoagent.rm.batching import length_groups

    texts = ["x" * n for n in [5] * 20 + [6, 500, 7] + [1000] * 3 + [3] * 2]
    lengths = [[len(texts[i]) for i in g] for g in length_groups(texts)]
    # sorted; a sub-batch closes at a text over twice its shortest once it holds 16 (a small one takes anything)
    assert lengths == [[3, 3] + [5] * 20 + [6], [7, 500, 1000, 1000, 1000]]
    more = texts * 4
    lengths = [[len(more[i]) for i in g] for g in length_groups(more)]
    assert lengths == [[3] * 8 + [5] * 80 + [6] * 4, [7] * 4 + [500] * 4 + [1000] * 8, [1000] * 4]


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "the server did not get there in 10 s"
        time.sleep(0.005)
