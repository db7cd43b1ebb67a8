#!/usr/bin/env bash
# The plug-and-play baseline of issue #12 (item 4): the prior's architecture (the U-Net, width
# 0.25, as the UTKFace U-Net prior and the general prior) trained as a plain blind Gaussian
# denoiser: every sample draws sigma ~ U[0, 0.2] (images in [0, 1]), input x + sigma*xi (not
# clipped), loss -mean PSNR of the output (admm_jax.train.step.denoise_loss). No operator, rho
# or unrolling; validation reports denoising PSNR at sigma = 0.05, 0.1, 0.2. The weights are
# then used as the prox of PnP-ADMM (admm_jax.baselines.pnp; rho and the iteration count tuned
# per operator by experiments/tune_pnp.py).
# Resumable: rerun with --resume after an interruption.
#   usage: experiments/train_denoiser.sh [--resume] [--steps N] ...
case "${1:-}" in  # --help: the comment block above, nothing run or written
  -h|--help) sed -n '2,/^set -euo pipefail/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
esac
set -euo pipefail
cd "$(dirname "$0")/.."
# admm-jax from the active environment, else from the checkout's .venv
export PATH="$PATH:$PWD/.venv/bin"
OUT=${OUT:-runs/denoiser}
DATA=${DATA:-../shared/data/utkface}
ADMM_JAX_RECIPE="DATA=$DATA experiments/train_denoiser.sh $*" \
admm-jax train --data "$DATA" --cache-dir "${CACHE_DIR:-/tmp/cache}" --out "$OUT" \
    --objective denoise --architecture unet --width 0.25 --loss psnr --lr 5e-4 --batch 8 \
    --steps "${STEPS:-7000}" --val-every 500 --checkpoint-every 500 "$@"
echo "weights: $OUT/params (copy to results/weights/utkface_denoiser_unet_w0.25 to commit)"
