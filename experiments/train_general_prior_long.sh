#!/usr/bin/env bash
# The general prior trained for long runs (issue #12): the shipped stage-2 general prior
# (results/weights/utkface_general_paper_unet_w0.25) fine-tuned with T = 32 unrolled
# iterations, its learned 8-step rho_t(sigma) schedule repeated four times (the "cycle" rule
# the shipped prior already uses for 32 iterations), and the loss averaged over z_8, z_16,
# z_24, z_32 (--loss-every 8) so that it stays good at every block end (T = 8 included).
# Same faces and "families+paper" mix as stage 2; lr 1e-4. Held out as before: demosaicing,
# Cartesian k-space rows, SR x3, motion blur. Resumable: rerun with --resume.
# The same stage for the natural-image general prior (BSDS500 crops, RESULTS section 7.0):
#   DATA=local_data/bsds.npz INIT=results/weights/bsds_general_unet_w0.25 \
#   OUT=runs/general_natural_long experiments/train_general_prior_long.sh
#   usage: experiments/train_general_prior_long.sh [--resume] [--steps N] ...
case "${1:-}" in  # --help: the comment block above, nothing run or written
  -h|--help) sed -n '2,/^set -euo pipefail/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
esac
set -euo pipefail
cd "$(dirname "$0")/.."
# admm-jax from the active environment, else from the checkout's .venv
export PATH="$PATH:$PWD/.venv/bin"
OUT=${OUT:-runs/general_long}
DATA=${DATA:-../shared/data/utkface}
INIT=${INIT:-results/weights/utkface_general_paper_unet_w0.25}
ADMM_JAX_RECIPE="DATA=$DATA INIT=$INIT experiments/train_general_prior_long.sh $*" \
admm-jax train --data "$DATA" --cache-dir "${CACHE_DIR:-/tmp/cache}" --out "$OUT" \
    --architecture unet --width 0.25 --loss psnr --lr 1e-4 --batch 10 --steps 800 \
    --iters 32 --rho-period 8 --loss-every 8 --operator-mix families+paper --rho-rule learned \
    --init-weights "$INIT" \
    --val-every 200 --checkpoint-every 100 "$@"
echo "weights: $OUT/params (copy state/, weights.json, config.json with metrics.csv and"
echo "validation.jsonl to results/weights/<name>_long_unet_w0.25 to commit)"
