#!/usr/bin/env bash
# One GPU session's work, in stages that each fit one device call (≤ 10 min). Not run yet: no
# session so far was lent a GPU. What a call sends is the checkout's tracked and untracked
# (not ignored) files plus the paths named in `carry`, at most 64 MiB in all; run
#
#   bash experiments/gpu_session.sh preflight [carried paths ...]     # here, no device time
#
# first: it prints what would travel against that limit and exits 1 if it is over.
# On 2026-12-07 the tracked files alone were 58.5 MiB (committed weights, figures and
# per-image results), so a call can carry about 5 MiB more. The stages that need no data fit:
#   command: "bash experiments/gpu_session.sh vs_torch"     (issue #13 item 5, ≤ 9 min)
#   command: "bash experiments/gpu_session.sh bench"        (~4 min)
# The training stages need training images on that machine. UTKFace at 64×64, packed with
#   .venv/bin/python -c "from admm_jax.data import pack_source; \
#       pack_source('../shared/data/utkface', 'local_data/utkface64.npz')"     # 44.7 MiB
# no longer fits beside the tree (preflight local_data/utkface64.npz says so): they wait for a
# smaller tree or a data path that does not travel with the call. Once the data is there:
#   command: "bash experiments/gpu_session.sh train 540"    (repeat back to back: the warm
#            machine keeps runs/ between calls; each call resumes from the last checkpoint)
#   command: "bash experiments/gpu_session.sh export"       (bf16 weights + logs into $OUT)
# The GPU image already has jax, flax, optax, orbax, chex, tqdm, matplotlib, pillow and torch,
# so the package runs from the checkout (PYTHONPATH) without installing anything.
case "${1:-}" in  # --help: the comment block above, nothing run or written
  -h|--help) sed -n '2,/^set -euo pipefail/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
esac
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT="${OUT:-outputs/gpu_session}"
case "${1:-}" in vs_torch|bench|train|export) mkdir -p "$OUT" ;; esac  # others write nothing
DATA="${DATA:-local_data/utkface64.npz}"
RUN="${RUN:-runs/paper_utkface}"
PY=python3

case "${1:-}" in
  preflight)
    # tracked files that exist + untracked, not ignored files + the carried paths, in bytes
    shift
    # (a tracked file missing from the working tree is skipped: stat's error is dropped)
    tracked=$({ git ls-files -z | xargs -0 stat -c %s 2>/dev/null || true; } \
        | awk '{s += $1} END {print s + 0}')
    untracked=$({ git ls-files -z --others --exclude-standard | xargs -0 -r stat -c %s || true; } \
        | awk '{s += $1} END {print s + 0}')
    carried=0
    if [ $# -gt 0 ]; then carried=$(du -scb "$@" | tail -n 1 | cut -f 1); fi
    awk -v t="$tracked" -v u="$untracked" -v c="$carried" 'BEGIN {
        m = 1048576; total = t + u + c; limit = 64 * m
        printf "tracked %.1f MiB + untracked %.1f MiB + carried %.1f MiB = %.1f MiB of %d MiB\n",
               t / m, u / m, c / m, total / m, limit / m
        if (total > limit) { print "over the device call'"'"'s limit: it would be refused"; exit 1 }
        printf "room left for carried data: %.1f MiB\n", (limit - total) / m }'
    exit $?
    ;;
  vs_torch)
    # issue #13 item 5: admm_jax's training step and the PyTorch peer (eager, torch.compile)
    # side by side on the GPU, the paper's prior at full width, batch 10 and 64, and the quick
    # preset's U-Net; the JSON is rewritten after each configuration, so a run stopped by the
    # timeout still returns what it finished
    nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
    timeout "${2:-540}" $PY benchmarks/bench_vs_torch.py --widths 1.0 --batches 10 64 \
        --repeats 10 --out "$OUT/gpu_vs_torch.json" 2>&1 | tee "$OUT/vs_torch.log" || true
    ;;
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
    echo "usage: $0 preflight [paths] | vs_torch [seconds] | bench | train [seconds] | export" >&2
    exit 2
    ;;
esac
echo "outputs: $OUT"
