#!/usr/bin/env bash
# The general prior, stage 2 (issue #12): the stage-1 general prior
# (results/weights/utkface_general_unet_w0.25, experiments/train_general_prior.sh) fine-tuned
# 1,500 more steps on the "families+paper" mix (admm_jax.families.FAMILY_MIXES): the nine
# randomised families plus the paper's exact PID / BI / SI masks in the mask group (the centred
# block twice as likely as any other mask family). Same faces, same learned rho_t(sigma) rule
# (continued from stage 1), lr 1e-4. Held out as before: demosaicing, Cartesian k-space rows,
# SR x3, motion blur. Resumable: rerun with --resume after an interruption.
#   usage: experiments/train_general_prior_stage2.sh [--resume] [--steps N] ...
# Measured 2026-12-01 on the project's 2-core AMD EPYC (family 26): 1,500 steps in 14.4 min.
case "${1:-}" in  # --help: the comment block above, nothing run or written
  -h|--help) sed -n '2,/^set -euo pipefail/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
esac
set -euo pipefail
cd "$(dirname "$0")/.."
# admm-jax from the active environment, else from the checkout's .venv
export PATH="$PATH:$PWD/.venv/bin"
OUT=${OUT:-runs/general_paper}
DATA=${DATA:-../shared/data/utkface}
ADMM_JAX_RECIPE="DATA=$DATA experiments/train_general_prior_stage2.sh $*" \
admm-jax train --data "$DATA" --cache-dir "${CACHE_DIR:-/tmp/cache}" --out "$OUT" \
    --architecture unet --width 0.25 --loss psnr --lr 1e-4 --batch 10 --steps 1500 \
    --operator-mix families+paper --rho-rule learned \
    --init-weights results/weights/utkface_general_unet_w0.25 \
    --val-every 250 --checkpoint-every 250 "$@"
echo "weights: $OUT/params (copy state/, weights.json, config.json with metrics.csv and"
echo "validation.jsonl to results/weights/utkface_general_paper_unet_w0.25 to commit)"
