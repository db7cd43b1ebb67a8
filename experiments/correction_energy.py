"""Why a small residual prior pulls super-resolution below its start: measure it.

    python experiments/correction_energy.py --prior results/weights/utkface_du_admm_residual_w0.0625 \
        --data ../shared/data/utkface --n-images 64

For a residual prior ``P(v) = v + c(v)`` it prints, per problem, the RMS of the correction
``c(v)`` on the pinv start ``v = A⁺y`` next to the RMS error of that start, and the same for
clean images. With every hidden layer ending in instance norm, the features that reach the last
(linear) layer have unit variance whatever the input, so with few channels ``c`` has about the
same energy on every input. In ADMM the part of ``c`` in the null space of A is never pulled
back by the data step (there ``z = x`` and ``u`` stays 0), so it accumulates over the T
iterations: that fills holes in inpainting, but in super-resolution (3/4 of the pixels' degrees
of freedom are in the null space, and the start is already accurate) it only adds error. The
last column is PSNR after T = 1, 2, 4, 8 iterations (true SR adjoint, the training setting).
"""

import argparse
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prior", required=True, help="a DU-ADMM params/ folder")
    ap.add_argument("--data", default="bundled", help="image source (test split is used)")
    ap.add_argument("--cache-dir", default=None, help="folder for decoded 64x64 image caches")
    ap.add_argument("--n-images", type=int, default=64, help="first N test images")
    ap.add_argument("--seed", type=int, default=1, help="seed of the operators and noise")
    args = ap.parse_args(argv)

    import jax
    import jax.numpy as jnp
    import numpy as np

    from admm_jax import get_problem, measure, psnr, training_rho, unrolled_admm
    from admm_jax.data import load_source
    from admm_jax.train import load_prior

    prior_fn, params, cfg = load_prior(args.prior)
    images = load_source(args.data, "test", cache_dir=args.cache_dir)[:args.n_images]
    x = jnp.asarray(np.asarray(images, np.float32) / 255.0)
    fn = jax.jit(prior_fn)
    rms = lambda a: float(jnp.sqrt(jnp.mean(jnp.square(a))))  # noqa: E731
    print(f"prior {args.prior} (width {cfg.width}, residual {cfg.residual}); "
          f"{len(x)} test images of {args.data!r}")
    print(f"{'input':8s} {'RMS c(v)':>9s} {'RMS(v-x)':>9s}   PSNR after T = 1, 2, 4, 8")
    print(f"{'clean':8s} {rms(fn(params, x) - x):9.4f} {0.0:9.4f}")
    prox = lambda v, _r: fn(params, v)  # noqa: E731
    for name in ("pid", "bi", "si", "sr"):
        problem = get_problem(name)
        op, y = measure(problem, jax.random.PRNGKey(args.seed), x)
        v = jax.vmap(lambda o, yy: o.pinv(yy))(op, y)
        curve = [float(jnp.mean(psnr(unrolled_admm(prox, op, y, training_rho(problem), t), x)))
                 for t in (1, 2, 4, 8)]
        print(f"{name:8s} {rms(fn(params, v) - v):9.4f} {rms(v - x):9.4f}   "
              + ", ".join(f"{c:.2f}" for c in curve)
              + f"   (start {float(jnp.mean(psnr(v, x))):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
