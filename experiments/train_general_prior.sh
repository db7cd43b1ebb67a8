#!/usr/bin/env bash
# The general prior (issue #12): the UTKFace U-Net prior (results/weights/utkface_du_admm_unet_w0.25)
# fine-tuned on randomised operator families (admm_jax.families.TRAINING_FAMILIES: inpainting
# of random density, scattered holes, block holes, row/column drops, Gaussian blur 0.5-2.5 px,
# random-sign DCT compressive sensing 10-50 %, random 2-D k-space sampling 10-50 %, SR x2 and
# x4; noise sigma ~ U[0, 0.1]) with a learned per-iteration rho schedule rho_t(sigma)
# (admm_jax.rho_rules). Held out on purpose: demosaicing, Cartesian k-space rows, SR x3, motion
# blur. Resumable: rerun with --resume after an interruption.
#   usage: experiments/train_general_prior.sh [--resume] [--steps N] ...
case "${1:-}" in  # --help: the comment block above, nothing run or written
  -h|--help) sed -n '2,/^set -euo pipefail/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
esac
set -euo pipefail
cd "$(dirname "$0")/.."
# admm-jax from the active environment, else from the checkout's .venv
export PATH="$PATH:$PWD/.venv/bin"
OUT=${OUT:-runs/general_prior}
DATA=${DATA:-../shared/data/utkface}
ADMM_JAX_RECIPE="DATA=$DATA experiments/train_general_prior.sh $*" \
admm-jax train --data "$DATA" --cache-dir "${CACHE_DIR:-/tmp/cache}" --out "$OUT" \
    --architecture unet --width 0.25 --loss psnr --lr 2e-4 --batch 10 --steps 1500 \
    --operator-mix families --rho-rule learned \
    --init-weights results/weights/utkface_du_admm_unet_w0.25 \
    --val-every 500 --checkpoint-every 250 "$@"
echo "weights: $OUT/params (copy to results/weights/utkface_general_unet_w0.25 to commit)"
