#!/usr/bin/env bash
# A general prior for natural images (issue #12, BSDS500 side): the first stage of the shipped
# general_natural prior, whose second stage is train_general_prior_long.sh. The BSDS500 U-Net
# prior (results/weights/bsds_du_admm_unet_w0.25, the 'natural' pretrained prior) fine-tuned
# 3,000 steps on BSDS500 train+val crops with the "families+paper" mix
# (admm_jax.families.FAMILY_MIXES: nine randomised operator families plus the paper's PID/BI/SI
# masks) and a learned rho_t(sigma) rule, in one stage. Held out as for the faces: demosaicing,
# Cartesian k-space rows, SR x3, motion blur. Needs local_data/bsds.npz
# (experiments/bsds_test_crops.py, then experiments/bsds_train_crops.py).
# Resumable: rerun with --resume after an interruption.
#   usage: experiments/train_general_prior_natural.sh [--resume] [--steps N] ...
case "${1:-}" in  # --help: the comment block above, nothing run or written
  -h|--help) sed -n '2,/^set -euo pipefail/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
esac
set -euo pipefail
cd "$(dirname "$0")/.."
# admm-jax from the active environment, else from the checkout's .venv
export PATH="$PATH:$PWD/.venv/bin"
OUT=${OUT:-runs/general_natural}
DATA=${DATA:-local_data/bsds.npz}
ADMM_JAX_RECIPE="DATA=$DATA experiments/train_general_prior_natural.sh $*" \
admm-jax train --data "$DATA" --cache-dir "${CACHE_DIR:-/tmp/cache}" --out "$OUT" \
    --architecture unet --width 0.25 --loss psnr --lr 2e-4 --batch 10 --steps 3000 \
    --operator-mix families+paper --rho-rule learned \
    --init-weights results/weights/bsds_du_admm_unet_w0.25 \
    --val-every 500 --checkpoint-every 250 "$@"
echo "weights: $OUT/params (copy state/, weights.json, config.json with metrics.csv and"
echo "validation.jsonl to results/weights/bsds_general_unet_w0.25 to commit)"
