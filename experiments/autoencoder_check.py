"""Sanity check behind RESULTS.md §4: how fast the paper's prior learns the identity map.

    python experiments/autoencoder_check.py --width 0.125 --lr 1e-3 --b1 0.0 --steps 300

Trains the DU-ADMM prior network alone to reproduce its input (MSE, clipped Adam, batches of 8
bundled training crops) and prints the PSNR of P(x) against x on 32 crops every 50 steps.
"""

import argparse
import sys
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=float, default=0.125, help="channel width multiplier")
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    ap.add_argument("--b1", type=float, default=0.0, help="Adam beta1 (the paper: 0)")
    ap.add_argument("--steps", type=int, default=300, help="training steps")
    ap.add_argument("--residual", action="store_true", help="P(x) = x + net(x) (not the paper)")
    args = ap.parse_args(argv)

    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from flax import nnx

    from admm_jax.data import bundled_dataset
    from admm_jax.metrics import psnr
    from admm_jax.priors import du_admm_prior, make_prior_fn

    x_all = jnp.asarray(bundled_dataset("train", n=256), jnp.float32) / 255
    f, p = make_prior_fn(du_admm_prior(width=args.width, rngs=nnx.Rngs(0),
                                       residual=args.residual))
    tx = optax.chain(optax.clip(10.0), optax.adam(args.lr, b1=args.b1, b2=0.9))
    st = tx.init(p)

    @jax.jit
    def step(p, st, x):
        loss, g = jax.value_and_grad(lambda q: jnp.mean((f(q, x) - x) ** 2))(p)
        u, st = tx.update(g, st, p)
        return optax.apply_updates(p, u), st, loss

    rng = np.random.default_rng(0)
    t0 = time.time()
    for i in range(args.steps + 1):
        p, st, loss = step(p, st, x_all[rng.integers(0, 256, 8)])
        if i % 50 == 0:
            val = float(jnp.mean(psnr(f(p, x_all[:32]), x_all[:32])))
            print(f"step {i:4d}  loss {float(loss):.4f}  PSNR(P(x), x) {val:.2f} dB  "
                  f"{time.time() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
