"""Is the learned ρ rule what a general prior lacks on a held-out operator? (issue #12)

    python experiments/general_prior_rho_probe.py --data local_data/bsds.npz \\
        --general results/weights/bsds_general_long_unet_w0.25

Runs the general prior at T = 8 on ``--n`` TRAINING images (the tuning key of
``experiments/general_prior_eval.py``, whose operators and draws it imports) with its learned
schedule ρ_t(σ) changed in two ways: a floor ``max(ρ_t, c)`` (keeps the first iterations from
trusting the data at frequencies the operator nearly removes) and a scale ``s·ρ_t``. If no
change moves the PSNR by much, the gap to a tuned PnP on that operator is the network's, not
the penalty's. Prints one line per (operator, change): mean PSNR in dB.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from admm_jax.admm import unrolled_admm
from admm_jax.metrics import psnr
from admm_jax.rho_rules import rho_for_batch

CHANGES = ((0.0, 1.0), (0.01, 1.0), (0.03, 1.0), (0.1, 1.0), (0.3, 1.0), (0.0, 2.0), (0.0, 0.5))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="local_data/bsds.npz")
    ap.add_argument("--cache-dir", default="/tmp/cache")
    ap.add_argument("--general", default="results/weights/bsds_general_long_unet_w0.25")
    ap.add_argument("--operators", default="motion_blur,demosaic,deblur",
                    help="comma list of general_prior_eval.py operator names")
    ap.add_argument("--n", type=int, default=32, help="training images (multiple of 16)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from admm_jax.data import load_source
    from admm_jax.train.loop import load_prior

    path = Path(__file__).resolve().parent / "general_prior_eval.py"
    spec = importlib.util.spec_from_file_location("general_prior_eval", path)
    gpe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpe)
    gen_fn, params, _ = load_prior(args.general)
    images = load_source(args.data, "train", cache_dir=args.cache_dir, progress=False)
    images = images[: args.n].astype(np.float32) / 255

    @jax.jit
    def solve(op, y, sigma, floor, scale):
        rho = jnp.maximum(rho_for_batch(params["rho"], sigma, y.shape[0]) * scale, floor)
        return unrolled_admm(lambda v, r: gen_fn(params, v), op, y, rho, rho.shape[0],
                             validate=False)

    key = jax.random.PRNGKey(args.seed + 1000)  # general_prior_eval.py's tuning key
    ops = gpe.operators(0)
    for name in args.operators.split(","):
        measure, sigma, _, crop, _ = ops[name]
        x = images
        if crop:
            c0 = (x.shape[1] - crop) // 2
            x = x[:, c0:c0 + crop, c0:c0 + crop]
        for floor, scale in CHANGES:
            vals = []
            for s in range(0, len(x), 16):
                xb = jnp.asarray(x[s:s + 16])
                op, y = measure(key, jnp.arange(s, s + len(xb)), xb)
                z = solve(op, y, jnp.full((len(xb),), sigma), floor, scale)
                vals.append(np.asarray(psnr(jnp.clip(z, 0, 1), xb)))
            print(f"{name:12s} floor {floor:4.2f}  scale {scale:3.1f}:  "
                  f"{np.concatenate(vals).mean():6.2f} dB", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
