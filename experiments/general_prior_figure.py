"""Picture grid for RESULTS.md §7: one test face per operator, every method of the evaluation.

Rows: operators (block inpainting, deblurring, CS, and the four held-out families); columns:
ground truth, start A⁺y, wavelet-ℓ1, PnP-ADMM, the specialised prior, the general prior. The
settings (λ, PnP ρ and iterations, the specialised prior's ρ) are read from the evaluation's
``results.json``, so the pictures are the runs of the table (image ``--index`` of the test
split, same operator draw).

    python experiments/general_prior_figure.py --results results/general_prior
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from general_prior_eval import make_solvers, operators  # noqa: E402

ROWS = ("bi", "deblur", "cs_dct", "demosaic", "fourier_rows", "sr3", "motion_blur")
COLS = ("truth", "start", "wavelet", "pnp", "specialised", "general")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default="results/general_prior")
    ap.add_argument("--data", default="../shared/data/utkface")
    ap.add_argument("--cache-dir", default="/tmp/cache")
    ap.add_argument("--general", default="results/weights/utkface_general_unet_w0.25")
    ap.add_argument("--specialised", default="results/weights/utkface_du_admm_unet_w0.25")
    ap.add_argument("--denoiser", default="results/weights/utkface_denoiser_unet_w0.25")
    ap.add_argument("--index", type=int, default=3, help="test image index")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from admm_jax.data import load_source
    from admm_jax.metrics import psnr
    from admm_jax.train.loop import load_prior

    results = json.loads((Path(args.results) / "results.json").read_text())
    test = load_source(args.data, "test", cache_dir=args.cache_dir, progress=False)
    x_all = test[: args.index + 1].astype(np.float32) / 255
    spec_fn, spec_params, _ = load_prior(args.specialised)
    gen_fn, gen_params, _ = load_prior(args.general)
    d_fn, d_params, _ = load_prior(args.denoiser)
    solvers = make_solvers(spec_fn, spec_params, gen_fn, gen_params,
                           lambda v: d_fn(d_params, v))
    ops = operators(0)
    key = jax.random.PRNGKey(args.seed)
    fig, axes = plt.subplots(len(ROWS), len(COLS), figsize=(2 * len(COLS), 2.1 * len(ROWS)))
    for r, name in enumerate(ROWS):
        measure, sigma, _, crop, _ = ops[name]
        res = results[name]
        x = x_all
        if crop:
            c0 = (x.shape[1] - crop) // 2
            x = x[:, c0:c0 + crop, c0:c0 + crop]
        x = jnp.asarray(x)
        idx = jnp.arange(len(x))
        op, y = measure(key, idx, x)
        settings = {"start": None, "wavelet": res.get("wavelet_lam"),
                    "pnp": (float(res["pnp"]["rho"]), int(res["pnp"]["iters"]))
                    if "pnp" in res else None,
                    "specialised": res["specialised_rho"], "general": jnp.float32(sigma)}
        for c, col in enumerate(COLS):
            ax = axes[r, c]
            if col == "truth":
                img, label = x[args.index], "ground truth"
            elif settings[col] is None and col != "start":
                ax.axis("off")
                continue
            else:
                z = jnp.clip(solvers[col](op, y, settings[col]), 0, 1)
                img = z[args.index]
                label = f"{col} {float(psnr(img, x[args.index])):.1f} dB"
            ax.imshow(np.asarray(img), interpolation="nearest")
            ax.set_title(label, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=9)
    fig.tight_layout()
    out = Path(args.results) / "grid.png"
    fig.savefig(out, dpi=110)
    print(f"picture grid written to {out.absolute()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
