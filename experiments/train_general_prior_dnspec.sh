#!/usr/bin/env bash
# The shipped faces general prior, aj.pretrained("general") since 2026-12-02 (issue #12,
# RESULTS.md section 7.0f): the plug-and-play denoiser WITH a specialised stage. The denoiser
# start without it (train_general_prior_init_ab.sh,
# arm "denoiser") closed most of the held-out gaps but lost ~1 dB of block inpainting (BI) against
# the shipped `general`, whose lineage began with 3,000 steps on the paper's four problems alone.
# This script gives the denoiser start that missing stage, then the same two stages as before:
#   1. paper  the Gaussian denoiser (results/weights/utkface_denoiser_unet_w0.25) trained as a
#             DU-ADMM prior on the paper's PID/BI/SI/SR mix (fixed per-problem rho, T = 8,
#             lr 5e-4, batch 8: the recipe of results/weights/utkface_du_admm_unet_w0.25)
#   2. family "families+paper" mix, learned rho_t(sigma) rule (fresh schedule), T = 8, lr 2e-4,
#             batch 10 (the init_ab recipe)
#   3. long   experiments/train_general_prior_long.sh from stage 2 (T = 32, lr 1e-4, 800 steps)
# Resumable: rerun with --resume (every stage resumes; a finished one runs no steps and only
# rewrites its final weights, the same values, and appends a provenance record).
# OUT_PREFIX (default runs/dnspec) names the folders <prefix>_paper, <prefix>_family, <prefix>_long.
# Measured 2026-12-02 on the project's 2-core AMD EPYC (family 26): 11 + 17 + 34 min. Then
# export_weights.py each stage, general_prior_eval.py, general_prior_iterations.py and
# export_pretrained.py as in RESULTS.md section 7.0f.
#   usage: [STEPS_PAPER=1500] [STEPS_FAMILY=1800] experiments/train_general_prior_dnspec.sh [--resume]
case "${1:-}" in  # --help: the comment block above, nothing run or written
  -h|--help) sed -n '2,/^set -euo pipefail/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
esac
set -euo pipefail
cd "$(dirname "$0")/.."
# admm-jax from the active environment, else from the checkout's .venv
export PATH="$PATH:$PWD/.venv/bin"
DATA=${DATA:-../shared/data/utkface}
OUT_PREFIX=${OUT_PREFIX:-runs/dnspec}
CACHE=${CACHE_DIR:-/tmp/cache}
RECIPE="DATA=$DATA STEPS_PAPER=${STEPS_PAPER:-1500} STEPS_FAMILY=${STEPS_FAMILY:-1800} experiments/train_general_prior_dnspec.sh $*"
ADMM_JAX_RECIPE="$RECIPE (stage paper)" \
admm-jax train --data "$DATA" --cache-dir "$CACHE" --out "${OUT_PREFIX}_paper" \
    --architecture unet --width 0.25 --loss psnr --lr 5e-4 --batch 8 \
    --steps "${STEPS_PAPER:-1500}" --init-weights results/weights/utkface_denoiser_unet_w0.25 \
    --val-every 500 --checkpoint-every 250 "$@"
ADMM_JAX_RECIPE="$RECIPE (stage family)" \
admm-jax train --data "$DATA" --cache-dir "$CACHE" --out "${OUT_PREFIX}_family" \
    --architecture unet --width 0.25 --loss psnr --lr 2e-4 --batch 10 \
    --steps "${STEPS_FAMILY:-1800}" --operator-mix families+paper --rho-rule learned \
    --init-weights "${OUT_PREFIX}_paper/params" --val-every "${STEPS_FAMILY:-1800}" \
    --checkpoint-every 100 "$@"
DATA="$DATA" INIT="${OUT_PREFIX}_family/params" OUT="${OUT_PREFIX}_long" \
    experiments/train_general_prior_long.sh "$@"
echo "weights: ${OUT_PREFIX}_paper/params, ${OUT_PREFIX}_family/params, ${OUT_PREFIX}_long/params"
