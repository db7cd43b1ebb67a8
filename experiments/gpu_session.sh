#!/usr/bin/env bash
# One GPU session's work for the paper-scale results, in stages that each fit one device call
# (≤ 10 min). Not run yet: no session so far was lent a GPU. Prepare on the CPU machine first:
#
#   .venv/bin/python -c "from admm_jax.data import pack_source; \
#       pack_source('../shared/data/utkface', 'local_data/utkface64.npz')"     # ~48 MiB, WebP
#
# then call the device tool with carry=["local_data/utkface64.npz"] and, per call, e.g.
#   command: "bash experiments/gpu_session.sh bench"        (~4 min)
#   command: "bash experiments/gpu_session.sh train 540"    (repeat back to back: the warm
#            machine keeps runs/ between calls; each call resumes from the last checkpoint)
#   command: "bash experiments/gpu_session.sh export"       (bf16 weights + logs into $OUT)
# The GPU image already has jax, flax, optax, orbax, chex, tqdm, matplotlib and pillow, so the
# package runs from the checkout (PYTHONPATH) without installing anything.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT="${OUT:-outputs/gpu_session}"
mkdir -p "$OUT"
DATA="${DATA:-local_data/utkface64.npz}"
RUN="${RUN:-runs/paper_utkface}"
PY=python3

case "${1:-}" in
  bench)
    nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
    $PY benchmarks/bench_train.py --widths 1.0 --dtypes float32 bfloat16 --repeats 20 \
        --unroll auto --memory-only-unroll --out "$OUT/gpu_train.json" 2>&1 | tee "$OUT/bench.log"
    $PY benchmarks/bench_core.py --repeats 50 --out "$OUT/gpu_core.json" 2>&1 | tail -n 5
    ;;
  train)
    budget="${2:-540}"  # seconds of training in this call; the checkpoint every 1000 steps
    timeout --signal=INT "$budget" $PY -m admm_jax.cli train --preset paper --data "$DATA" \
        --dtype bfloat16 --out "$RUN" --resume --checkpoint-every 1000 --val-every 2500 \
        --no-progress 2>&1 | tail -n 40 | tee "$OUT/train_tail.log" || true
    cp "$RUN/validation.jsonl" "$RUN/metrics.csv" "$OUT/" 2>/dev/null || true
    ;;
  export)
    # a finished run exports params/, an unfinished one its latest checkpoint; $OUT returns
    # files ≤ 16 MiB at most two folders down, so the folder travels as a split tar
    $PY experiments/export_weights.py "$RUN" outputs/weights_bf16 --dtype bfloat16 --overwrite
    tar -cf - -C outputs weights_bf16 | split -b 15m - "$OUT/weights_bf16.tar.part-"
    echo "here: cat <files_at>/weights_bf16.tar.part-* | tar -xf - -C results/weights/"
    ;;
  *)
    echo "usage: $0 bench | train [seconds] | export" >&2
    exit 2
    ;;
esac
echo "outputs: $OUT"
