"""DU-ADMM PSNR against the number of test-time iterations T (1..16), per problem.

    python experiments/psnr_vs_iterations.py --prior runs/utk_du_res/params \
        --data ../shared/data/utkface --n-images 200 --out results/utkface_psnr_vs_T

One compiled run per problem: the converging solver with a vanishing tolerance and a cap of
``--max-t`` records the PSNR of z after every iteration, which is the PSNR of T-iteration
DU-ADMM for every T up to the cap (same operators as ``admm-jax evaluate``, seed 0).
Writes ``psnr_vs_T.csv`` and ``psnr_vs_T.png``.
"""

import argparse
import csv
import sys
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prior", required=True, help="a trained prior's params/ folder")
    ap.add_argument("--data", required=True,
                    help="image source with a test split (folder, .npz pack or 'bundled')")
    ap.add_argument("--cache-dir", default=None, help="folder for decoded 64x64 image caches")
    ap.add_argument("--n-images", type=int, default=200, help="first N test images")
    ap.add_argument("--max-t", type=int, default=16, help="largest T to report")
    ap.add_argument("--preset", default="paper", choices=["paper", "released", "corrected"],
                    help="test protocol: ρ per problem and the SR adjoint (see admm_jax.presets)")
    ap.add_argument("--batch", type=int, default=50, help="images per compiled batch")
    ap.add_argument("--out", required=True, help="output folder")
    args = ap.parse_args(argv)

    import jax
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from admm_jax.admm import converging_admm
    from admm_jax.data import load_source
    from admm_jax.presets import get_preset
    from admm_jax.problems import PAPER_PROBLEMS, get_problems, measure_indexed
    from admm_jax.train import load_prior

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prior_fn, params, _ = load_prior(args.prior)
    x_all = load_source(args.data, "test", cache_dir=args.cache_dir, progress=False)
    x_all = x_all[: args.n_images].astype(np.float32) / 255.0
    problems = get_problems()
    preset = get_preset(args.preset)
    key = jax.random.PRNGKey(0)
    curves = {}
    for name in PAPER_PROBLEMS:
        p = problems[name]
        rho = preset.settings(name).du_admm.rho

        @jax.jit
        def run(idx, x):
            op, y = measure_indexed(p, key, idx, x)
            op = preset.test_operator(op)
            res = converging_admm(lambda v, r: prior_fn(params, v), op, y, rho, tol=1e-30,
                                  max_iters=args.max_t, x_true=x, validate=False)
            return res.history["psnr"]

        hist = []
        for s in range(0, len(x_all), args.batch):
            x = x_all[s:s + args.batch]
            hist.append(np.asarray(run(np.arange(s, s + len(x)), x)))
        curves[name] = np.concatenate(hist, axis=1).mean(axis=1)  # (max_t,)
        print(name, " ".join(f"{v:.2f}" for v in curves[name]))
    with open(out / "psnr_vs_T.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["T"] + list(curves))
        for t in range(args.max_t):
            w.writerow([t + 1] + [f"{curves[k][t]:.4f}" for k in curves])
    fig, ax = plt.subplots(figsize=(6, 4))
    for k, c in curves.items():
        ax.plot(np.arange(1, args.max_t + 1), c, "o-", label=k.upper())
    ax.axvline(8, color="grey", ls=":", lw=1)
    ax.set_xlabel("test-time iterations T (trained with T = 8)")
    ax.set_ylabel(f"mean PSNR over {len(x_all)} images (dB)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "psnr_vs_T.png", dpi=110)
    print(f"outputs: {out.absolute()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
