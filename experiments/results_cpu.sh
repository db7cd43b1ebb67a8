#!/usr/bin/env bash
# The CPU-scale runs behind RESULTS.md (2-core machine, no GPU). Outputs in runs/ (git-ignored).
# Data: ../shared/data/utkface (faces) and ../shared/data/bsds500 (natural photos).
case "${1:-}" in  # --help: the comment block above, nothing run or written
  -h|--help) sed -n '2,/^set -euo pipefail/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
esac
set -euo pipefail
cd "$(dirname "$0")/.."
A=.venv/bin/admm-jax
UTK=../shared/data/utkface
BSDS=../shared/data/bsds500

# Export a run's final parameters as float32 weights, evaluate them alone on the first 500 test
# images (paper protocol) and sweep the test-time T (1-16) on the first 200.
# Usage: export_and_evaluate RUN WEIGHTS DATASET EVAL_OUT SWEEP_OUT DATA_ARGS...
export_and_evaluate() {
  local run=$1 weights=$2 dataset=$3 eval_out=$4 sweep_out=$5
  shift 5
  .venv/bin/python experiments/export_weights.py "$run/params" "$weights" --dtype float32
  $A evaluate "$@" --du-admm "$weights" --no-wavelet --n-images 500 --preset paper \
      --dataset "$dataset" --out "$eval_out" --no-progress
  .venv/bin/python experiments/psnr_vs_iterations.py --prior "$weights" "$@" --n-images 200 \
      --out "$sweep_out"
}

# Faces (UTKFace): DU-ADMM with the residual prior (width 1/16), OneNet projector (width 1/16)
$A train --data $UTK --cache-dir /tmp/cache --out runs/utk_du_res --width 0.0625 --residual \
    --lr 1e-3 --batch 4 --steps 3000 --val-every 500 --checkpoint-every 500 --no-progress
$A pretrain-onenet --data $UTK --cache-dir /tmp/cache --out runs/utk_onenet --width 0.0625 \
    --steps 800 --batch 4 --checkpoint-every 200 --no-progress
$A evaluate --data $UTK --cache-dir /tmp/cache --du-admm runs/utk_du_res/params \
    --onenet runs/utk_onenet/params --n-images 500 --preset paper --dataset faces \
    --out runs/eval_utk_paper --no-progress

# Faces, the paper's prior architecture (no residual), width 1/16, 6,000 steps
$A train --data $UTK --cache-dir /tmp/cache --out runs/utk_du_paper_w0625 --width 0.0625 \
    --lr 1e-3 --batch 4 --steps 6000 --val-every 1000 --checkpoint-every 1000 --no-progress
$A evaluate --data $UTK --cache-dir /tmp/cache --du-admm runs/utk_du_paper_w0625/params \
    --no-wavelet --n-images 500 --preset paper --dataset faces \
    --out runs/eval_utk_paper_arch --no-progress

# Faces, the paper's prior architecture at width 1/8 (the largest CPU configuration), 6,000 steps
$A train --data $UTK --cache-dir /tmp/cache --out runs/utk_du_paper_w125 --width 0.125 \
    --lr 1e-3 --batch 4 --steps 6000 --val-every 1000 --checkpoint-every 500 --no-progress
export_and_evaluate runs/utk_du_paper_w125 results/weights/utkface_du_admm_w0.125 faces \
    runs/eval_utk_paper_arch_w125 runs/utk_psnr_vs_T_w125 --data $UTK --cache-dir /tmp/cache

# Natural images (BSDS500): 500 64x64 images derived from the 200 test photos only
.venv/bin/python experiments/bsds_test_crops.py --out local_data/bsds_test500.npz --overwrite
for preset in paper corrected; do
  $A evaluate --data local_data/bsds_test500.npz --n-images 500 --preset $preset \
      --dataset natural --out runs/eval_bsds_wavelet_$preset --no-progress
done
$A evaluate --data $UTK --cache-dir /tmp/cache --n-images 500 --preset corrected \
    --dataset faces --out runs/eval_utk_wavelet_corrected --no-progress

# Natural images: train on 6,000 crops of the 300 train+val photos (test split = the 500 above)
.venv/bin/python experiments/bsds_train_crops.py --test local_data/bsds_test500.npz \
    --out local_data/bsds.npz --overwrite
$A train --data local_data/bsds.npz --out runs/bsds_du_res --width 0.0625 --residual \
    --lr 1e-3 --batch 4 --steps 3000 --val-every 500 --checkpoint-every 500 --no-progress
$A pretrain-onenet --data local_data/bsds.npz --out runs/bsds_onenet --width 0.0625 \
    --steps 800 --batch 4 --checkpoint-every 200 --no-progress
$A evaluate --data local_data/bsds.npz --du-admm runs/bsds_du_res/params \
    --onenet runs/bsds_onenet/params --n-images 500 --preset paper --dataset natural \
    --out runs/eval_bsds_paper --no-progress

# Natural images, the paper's prior architecture (no residual), width 1/16, 6,000 steps
$A train --data local_data/bsds.npz --out runs/bsds_du_paper_w0625 --width 0.0625 \
    --lr 1e-3 --batch 4 --steps 6000 --val-every 1000 --checkpoint-every 1000 --no-progress
$A evaluate --data local_data/bsds.npz --du-admm runs/bsds_du_paper_w0625/params --no-wavelet \
    --n-images 500 --preset paper --dataset natural --out runs/eval_bsds_paper_arch --no-progress
.venv/bin/python experiments/export_weights.py runs/bsds_du_paper_w0625/params \
    results/weights/bsds_du_admm_w0.0625 --dtype float32

# Diagnosis of the SR failure (RESULTS.md section 4)
.venv/bin/python experiments/correction_energy.py --prior runs/utk_du_res/params \
    --data $UTK --cache-dir /tmp/cache --n-images 1000

# Faces: the OneNet projector resumed from 800 to 4,000 steps
cp -r runs/utk_onenet runs/utk_onenet_4k
$A pretrain-onenet --data $UTK --cache-dir /tmp/cache --out runs/utk_onenet_4k --width 0.0625 \
    --steps 4000 --batch 4 --checkpoint-every 400 --resume --no-progress
.venv/bin/python experiments/export_weights.py runs/utk_onenet_4k/params \
    results/weights/utkface_onenet_w0.0625_4k --dtype float32
$A evaluate --data $UTK --cache-dir /tmp/cache --onenet results/weights/utkface_onenet_w0.0625_4k \
    --no-wavelet --n-images 500 --preset paper --dataset faces \
    --out runs/eval_utk_onenet_4k --no-progress

# The residual U-Net prior (NOT the paper's network) with the per-sample PSNR loss (NOT the
# paper's MSE): the SR check on the bundled crops (RESULTS.md section 4), then both data sets
$A train --architecture unet --width 0.25 --lr 5e-4 --loss psnr --batch 4 --steps 900 \
    --val-every 150 --out runs/unet_q2 --no-progress
$A train --data $UTK --cache-dir /tmp/cache --out runs/utk_du_unet_w25 --architecture unet \
    --width 0.25 --loss psnr --lr 5e-4 --batch 8 --steps 3000 --val-every 500 \
    --checkpoint-every 500 --no-progress
export_and_evaluate runs/utk_du_unet_w25 results/weights/utkface_du_admm_unet_w0.25 faces \
    runs/eval_utk_unet runs/utk_psnr_vs_T_unet --data $UTK --cache-dir /tmp/cache
$A train --data local_data/bsds.npz --out runs/bsds_du_unet_w25 --architecture unet \
    --width 0.25 --loss psnr --lr 5e-4 --batch 8 --steps 3000 --val-every 500 \
    --checkpoint-every 500 --no-progress
export_and_evaluate runs/bsds_du_unet_w25 results/weights/bsds_du_admm_unet_w0.25 natural \
    runs/eval_bsds_unet runs/bsds_psnr_vs_T_unet --data local_data/bsds.npz
# Table 2 with all three methods (first 16 test images)
$A evaluate --data $UTK --cache-dir /tmp/cache --du-admm results/weights/utkface_du_admm_unet_w0.25 \
    --onenet results/weights/utkface_onenet_w0.0625_4k --n-images 16 --batch 16 --preset paper \
    --dataset faces --out runs/eval_utk_unet_table2 --no-progress
$A evaluate --data local_data/bsds.npz --du-admm results/weights/bsds_du_admm_unet_w0.25 \
    --onenet results/weights/bsds_onenet_w0.0625 --n-images 16 --batch 16 --preset paper \
    --dataset natural --out runs/eval_bsds_unet_table2 --no-progress
