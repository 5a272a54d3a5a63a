"""The figures of the `evoagent rm serve` example in docs/reward-models.md, measured.

Serves a trained model directory (``evoagent rm serve`` in-process, on loopback),
sends the example's texts exactly as the docs' curl commands do, and prints one
table: each text's score, the step it ends on, and whether the model ranks the
correct query above the erroring one, for the step prefix ("the agent goes on
from here") and for the same step submitted ("this is the answer").

    python experiments/rm_serve_example.py runs/prm
"""
from __future__ import annotations

import argparse
import os
import platform

import httpx2

from evoagent.rm.hosting import BackgroundServer
from evoagent.rm.model import load_model
from evoagent.rm.text import SUBMITTED

QUESTION = "question: How many singers do we have?"
CORRECT = "step 1 action: SELECT count(*) FROM singer\nstep 1 observation: [(6,)]"
ERRING = ("step 1 action: SELECT * FROM singers\n"
          "step 1 observation: Error executing query: Table concert_singer.singers does not exist")
SUBMIT = f"\nstep 2 action: submit\nstep 2 observation: {SUBMITTED}"
TEXTS = {("step", "correct"): f"{QUESTION}\n{CORRECT}", ("step", "error"): f"{QUESTION}\n{ERRING}",
         ("submitted", "correct"): f"{QUESTION}\n{CORRECT}{SUBMIT}",
         ("submitted", "error"): f"{QUESTION}\n{ERRING}{SUBMIT}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir", help="a model directory written by evoagent rm train (the docs: runs/prm)")
    args = ap.parse_args()
    model = load_model(args.model_dir)
    with BackgroundServer(model) as srv, httpx2.Client(base_url=srv.url) as client:
        got = client.post("/get_reward", json={"query": list(TEXTS.values())}).json()["rewards"]
        digest = client.get("/v1/models").json()["data"][0]["digest"]
    scores = dict(zip(TEXTS, got))
    print(f"model {args.model_dir} (digest {digest}); machine: {platform.machine()}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.2f}")
    print("| prefix | correct query | erroring query | ranked right |")
    print("|---|---:|---:|---|")
    for kind in ("step", "submitted"):
        right, wrong = scores[(kind, "correct")], scores[(kind, "error")]
        print(f"| {kind} | {right:.3f} | {wrong:.3f} | {'yes' if right > wrong else 'no'} |")


if __name__ == "__main__":
    main()
