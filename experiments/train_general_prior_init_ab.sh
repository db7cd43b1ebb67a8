#!/usr/bin/env bash
# Does the general prior generalise better to held-out operators when its unrolled training
# starts from the plug-and-play denoiser? (issue #12; an A/B probe, not a shipped prior.)
# PnP-ADMM with the face-trained Gaussian denoiser (results/weights/utkface_denoiser_unet_w0.25)
# beats every unrolled prior on demosaicing and motion blur, even on natural images it never
# saw, so a denoiser's weights may be a better starting point than a specialised DU-ADMM
# prior's. Two arms, same U-Net width 0.25, data, "families+paper" mix, learned rho rule
# (fresh schedule in both arms), seed, steps, T = 8 and lr; only the starting weights differ:
#   denoiser     the Gaussian denoiser above
#   specialised  the BSDS500 DU-ADMM prior (results/weights/bsds_du_admm_unet_w0.25), the
#                start of the shipped general_natural prior
# Compare them with experiments/general_prior_eval.py (RESULTS.md section 7.0d).
# Resumable: rerun with --resume.
# DATA and OUT_PREFIX (default runs/init_ab: runs/init_ab_<arm>) choose the images and the run folders.
#   usage: [ARMS="denoiser specialised"] [STEPS=600] experiments/train_general_prior_init_ab.sh [--resume] ...
case "${1:-}" in  # --help: the comment block above, nothing run or written
  -h|--help) sed -n '2,/^set -euo pipefail/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
esac
set -euo pipefail
cd "$(dirname "$0")/.."
# admm-jax from the active environment, else from the checkout's .venv
export PATH="$PATH:$PWD/.venv/bin"
DATA=${DATA:-local_data/bsds.npz}
OUT_PREFIX=${OUT_PREFIX:-runs/init_ab}
declare -A INIT=([denoiser]=results/weights/utkface_denoiser_unet_w0.25
                 [specialised]=results/weights/bsds_du_admm_unet_w0.25)
for arm in ${ARMS:-denoiser specialised}; do  # all arms checked before any trains
    [[ -n "${INIT[$arm]:-}" ]] || { echo "unknown arm '$arm'; arms: denoiser specialised" >&2; exit 2; }
done
for arm in ${ARMS:-denoiser specialised}; do
    ADMM_JAX_RECIPE="ARMS=$arm STEPS=${STEPS:-600} DATA=$DATA experiments/train_general_prior_init_ab.sh $*" \
    admm-jax train --data "$DATA" --cache-dir "${CACHE_DIR:-/tmp/cache}" \
        --out "${OUT_PREFIX}_$arm" --architecture unet --width 0.25 --loss psnr --lr 2e-4 \
        --batch 10 --steps "${STEPS:-600}" --operator-mix families+paper --rho-rule learned \
        --init-weights "${INIT[$arm]}" --val-every "${STEPS:-600}" --checkpoint-every 100 "$@"
    echo "weights: ${OUT_PREFIX}_$arm/params"
done
