#!/usr/bin/env bash
# The prepared GPU check (issue 23): one script, bounded to 8 minutes, that a lent GPU machine
# only has to start. It trains the MiniLM PRM for a fixed number of steps on the device
# (evoagent rm train --backbone minilm, through experiments/bench_rm.py), serves it with
# `evoagent rm serve`, and measures served requests/s at concurrency 64 and 256 against the
# in-process batched forward pass, plus tokens/s of that pass; figures go to a small JSON.
#
#   bash experiments/gpu_check.sh                      # on the GPU machine, from the repo root
#   bash experiments/gpu_check.sh --device cpu         # the same path on CPU (tested here)
#   bash experiments/gpu_check.sh --wheels .whl        # install carried wheels first (no network there)
#
# Options: --device cuda|cpu (default cuda: fails at once if CUDA is absent), --steps N (MiniLM
# optimiser steps, default 60), --texts N (prefix texts, default 4096), --out DIR (default $OUT, else ./gpu_check), --wheels DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
device=cuda steps=60 texts=4096 wheels="" out="${OUT:-gpu_check}"
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device="$2"; shift 2 ;;
        --steps) steps="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --texts) texts="$2"; shift 2 ;;
        --wheels) wheels="$2"; shift 2 ;;
        *) echo "error: unknown option $1 (see the header of $0)" >&2; exit 2 ;;
    esac
done
case "$device" in cuda|cpu) ;; *) echo "error: --device must be cuda or cpu, not $device" >&2; exit 2 ;; esac
case "$texts" in ''|*[!0-9]*) echo "error: --texts must be a positive integer" >&2; exit 2 ;; esac
case "$steps" in ''|*[!0-9]*) echo "error: --steps must be a positive integer" >&2; exit 2 ;; esac
mkdir -p "$out"
py=${PYTHON:-python3}
if [ -n "$wheels" ]; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$wheels"/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
[ "$device" = cpu ] && export CUDA_VISIBLE_DEVICES=""
"$py" - "$device" <<'PY'
import sys, torch
want = sys.argv[1]
if want == "cuda" and not torch.cuda.is_available():
    sys.exit("error: --device cuda but torch sees no CUDA device (torch %s)" % torch.__version__)
print("# torch", torch.__version__, "device", torch.cuda.get_device_name() if want == "cuda" else "cpu")
PY
# evoagent must be importable as a package for `python -m evoagent.cli` (the server is started that way).
status=0
timeout 450 "$py" experiments/bench_rm.py --backbone minilm --minilm-steps "$steps" --concurrency 64 256 \
    --batched 64 --workers 0 --seconds 3 --texts "$texts" --device-report 2>&1 | tee "$out/bench_rm.txt" || status=$?
[ "$status" = 0 ] || echo "# bench_rm stopped with status $status (124: the 450 s bound); figures so far follow" >&2
"$py" - "$out" "$device" "$steps" <<'PY'
import json, re, sys
out, device, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
text = open(f"{out}/bench_rm.txt").read()
rows = []
for line in text.splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) == 8 and cells[0] not in ("model", "---") and not cells[0].startswith("-"):
        num = lambda s: float(s.replace(",", "").rstrip("x")) if re.match(r"^[\d.,]+x?$", s) else None
        rows.append({"model": cells[0], "mode": cells[1], "concurrency": num(cells[2]), "scores_per_s": num(cells[3]),
                     "p50_ms": num(cells[4]), "p99_ms": num(cells[5]), "vs_in_process": num(cells[6])})
device_line = next((l[2:] for l in text.splitlines() if "tokens/s" in l), "")
tokens = re.search(r"([\d,]+) tokens/s", device_line)
trained = re.search(r"trained the minilm PRM .* in ([\d.]+) s", text)
figures = {"complete": bool(device_line), "device": device, "minilm_steps": steps, "train_seconds": float(trained.group(1)) if trained else None,
           "tokens_per_s": float(tokens.group(1).replace(",", "")) if tokens else None,
           "device_report": device_line, "rows": rows}
json.dump(figures, open(f"{out}/gpu_check.json", "w"), indent=1)
print(f"wrote {out}/gpu_check.json: {len(rows)} rows")
PY
exit "$status"
