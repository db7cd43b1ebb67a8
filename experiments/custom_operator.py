"""Plug in your own operator and your own prox, compiled, in a few lines.

    python experiments/custom_operator.py

The operator below is written by the user with ``apply`` only (a horizontal motion blur of 5
pixels followed by dropping every other row); its adjoint comes from ``jax.linear_transpose``
and its solves from conjugate gradients, inside the same compiled solvers as the built-ins.
The prox is first a user-written smoothing denoiser, then the shipped general prior
(``aj.pretrained("general")``), which needs only the noise level (here 0) for this operator
it never saw.
"""

import jax
import jax.numpy as jnp

import admm_jax as aj


@aj.operator_pytree
class BlurThenDropRows(aj.LinearOperator):
    """y = (every other row of) horizontal 5-tap box blur of x.  Only ``apply`` is written."""

    in_shape: tuple = aj.static_field(default=(64, 64, 3))

    def apply(self, x):
        blurred = sum(jnp.roll(x, s, axis=1) for s in range(-2, 3)) / 5.0
        return blurred[::2]


def smoothing_prox(v, rho):
    """A simple denoiser: average with the 4-neighbourhood, then clip to [0, 1]."""
    neighbours = sum(jnp.roll(v, s, axis=a) for s in (-1, 1) for a in (1, 2)) / 4.0
    return jnp.clip(0.5 * v + 0.5 * neighbours, 0.0, 1.0)


def main():
    photo = aj.data.bundled_dataset("test", n=4)  # (4, 64, 64, 3) uint8, offline
    x = jnp.asarray(photo, jnp.float32) / 255.0
    op = BlurThenDropRows()
    y = jax.vmap(op.apply)(x)

    unrolled = jax.jit(lambda y: aj.unrolled_admm(smoothing_prox, op, y, rho=0.5, num_iters=8))
    z8 = unrolled(y)
    converging = jax.jit(lambda y: aj.converging_admm(smoothing_prox, op, y, rho=0.5,
                                                      tol=1e-3, max_iters=100))
    res = converging(y)
    z0 = aj.initial_state(op, y).z
    print("PSNR of the start A⁺y:     ", aj.psnr(z0, x))
    print("PSNR after 8 unrolled its: ", aj.psnr(z8, x))
    print("PSNR converged:            ", aj.psnr(res.z, x), "iterations", res.iterations)
    general = aj.pretrained("general")
    for t in (8, 48):  # 48: the iteration count chosen for new operators (its metadata)
        z = general.solve(op, y, sigma=0.0, num_iters=t)
        print(f"general prior, T = {t}:{' ' * (8 - len(str(t)))}", aj.psnr(z, x))


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    main()
