#!/usr/bin/env bash
# Does training on blurs whose transfer functions have zeros help the held-out motion blur?
# (issue #12; an A/B probe, not a shipped prior). Two arms from the same start, the shipped
# general_natural prior (results/weights/bsds_general_long_unet_w0.25), same seed, steps, T = 8
# and lr: A keeps its "families+paper" mix, B uses "families+paper+zeros" (box and defocus
# blurs added to the blur group; motion blur stays held out). A third arm C uses
# "families+paper+cfa+aniso" (random colour filter arrays and elliptical Gaussian blurs: the
# nearest training relatives of the held-out demosaicing and motion blur). Compare them with
# experiments/general_prior_eval.py (RESULTS.md section 7.0b). Resumable: rerun with --resume.
#   usage: [ARMS="A B C"] experiments/train_general_prior_zeros_ab.sh [--resume] [--steps N] ...
case "${1:-}" in  # --help: the comment block above, nothing run or written
  -h|--help) sed -n '2,/^set -euo pipefail/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
esac
set -euo pipefail
cd "$(dirname "$0")/.."
# admm-jax from the active environment, else from the checkout's .venv
export PATH="$PATH:$PWD/.venv/bin"
DATA=${DATA:-local_data/bsds.npz}
INIT=${INIT:-results/weights/bsds_general_long_unet_w0.25}
train_arm() {  # name, mix, extra arguments
    local name=$1 mix=$2
    shift 2
    ADMM_JAX_RECIPE="ARMS=$name DATA=$DATA INIT=$INIT experiments/train_general_prior_zeros_ab.sh $*" \
    admm-jax train --data "$DATA" --cache-dir "${CACHE_DIR:-/tmp/cache}" \
        --out "runs/zeros_ab_$name" --architecture unet --width 0.25 --loss psnr --lr 1e-4 \
        --batch 10 --steps 600 --operator-mix "$mix" --rho-rule learned --init-weights "$INIT" \
        --val-every 600 --checkpoint-every 100 "$@"
}
declare -A MIX=([A]=families+paper [B]=families+paper+zeros [C]=families+paper+cfa+aniso)
for arm in ${ARMS:-A B C}; do  # all arms checked before any trains
    [[ -n "${MIX[$arm]:-}" ]] || { echo "unknown arm '$arm'; arms: A B C" >&2; exit 2; }
done
for arm in ${ARMS:-A B C}; do
    train_arm "$arm" "${MIX[$arm]}" "$@"
    echo "weights: runs/zeros_ab_$arm/params"
done
