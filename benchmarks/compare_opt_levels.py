"""How far XLA:CPU's LLVM optimisation level moves the priors' numbers (the tests compile at -O0).

    python benchmarks/compare_opt_levels.py [--levels default 0] [--out FILE]

For each level, a fresh process (``XLA_FLAGS=--xla_backend_optimization_level=N``; "default"
leaves XLA's own) computes, for the U-Net prior (width 0.25) and the paper's prior (width
1/16) at their seed-0 initialisation on a fixed batch of two 64×64 images: the forward pass,
the mean-squared reconstruction loss and its gradient with respect to every parameter, each
jit-compiled. The script then reports, per array, whether the levels agree bit for bit and
the largest difference, relative to the prior's largest gradient entry (the scale the tests'
gradient tolerances use) and, for arrays that are not zero by construction (a bias ahead of
an instance norm has a zero gradient up to rounding), relative to the array itself.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np


def compute(path: str) -> None:
    """Child process: the arrays, saved to ``path`` (.npz)."""
    import jax
    import jax.numpy as jnp

    from admm_jax.priors import build_prior_network

    out = {}
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 64, 64, 3)), jnp.float32)
    for arch, width in (("unet", 0.25), ("paper", 1 / 16)):
        apply_fn, params = build_prior_network(arch, width=width, seed=0)
        loss = lambda p, f=apply_fn: jnp.mean((f(p, x) - x) ** 2)  # noqa: E731
        value, grads = jax.jit(jax.value_and_grad(loss))(params)
        out[f"{arch}/loss"] = np.asarray(value)
        out[f"{arch}/forward"] = np.asarray(jax.jit(apply_fn)(params, x))
        for leaf_path, leaf in jax.tree_util.tree_leaves_with_path(grads):
            out[f"{arch}/grad{jax.tree_util.keystr(leaf_path)}"] = np.asarray(leaf)
    np.savez(path, **out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--levels", nargs=2, default=["default", "0"],
                        help="two levels to compare: 0-3 or 'default' (XLA's own)")
    parser.add_argument("--out", default=None, help="JSON file for the per-array results")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        compute(args.child)
        return
    for level in args.levels:
        if level not in ("default", "0", "1", "2", "3"):
            parser.error(f"--levels: {level!r} is not 0, 1, 2, 3 or 'default'")
    arrays = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, level in enumerate(args.levels):
            env = dict(os.environ, JAX_PLATFORMS="cpu")
            flags = [f for f in env.get("XLA_FLAGS", "").split()
                     if "xla_backend_optimization_level" not in f]
            if level != "default":
                flags.append(f"--xla_backend_optimization_level={level}")
            env["XLA_FLAGS"] = " ".join(flags)
            path = os.path.join(tmp, f"{i}.npz")
            subprocess.run([sys.executable, __file__, "--child", path], env=env, check=True)
            arrays.append(dict(np.load(path)))
    a, b = arrays
    # a gradient's natural scale is the largest entry of the whole gradient of its prior: some
    # arrays are zero up to rounding by construction (a bias followed by instance norm), and
    # their "relative" differences are noise over noise
    grad_scale = {arch: max(float(np.max(np.abs(v))) for k, v in a.items()
                            if k.startswith(f"{arch}/grad")) for arch in ("unet", "paper")}
    rows = []
    for name in a:
        diff = float(np.max(np.abs(a[name].astype(np.float64) - b[name])))
        own = float(np.max(np.abs(a[name])))
        arch = name.split("/")[0]
        overall = grad_scale[arch] if "/grad" in name else own
        rows.append({"array": name, "identical": bool(np.array_equal(a[name], b[name])),
                     "max_abs": own, "max_abs_diff": diff,
                     "rel_to_array": diff / own if own else 0.0,
                     "rel_to_scale": diff / overall if overall else 0.0})
    differ = [r for r in rows if not r["identical"]]
    print(f"levels {args.levels[0]} vs {args.levels[1]}: {len(rows)} arrays, {len(differ)} differ")
    print(f"  largest difference relative to the prior's largest gradient entry (gradients) or "
          f"to the array's (forward, loss): {max(r['rel_to_scale'] for r in rows):.2e}")
    sizable = [r for r in rows if "/grad" not in r["array"]
               or r["max_abs"] > 1e-4 * grad_scale[r["array"].split("/")[0]]]
    print(f"  largest difference relative to the array itself, over the {len(sizable)} arrays "
          f"not ~0 by construction: {max(r['rel_to_array'] for r in sizable):.2e}")
    for r in sorted(differ, key=lambda r: -r["rel_to_scale"])[:6]:
        print(f"  {r['array']:48s} max|x| {r['max_abs']:.1e}  max|diff| {r['max_abs_diff']:.1e}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"levels": args.levels, "rows": rows}, f, indent=1)
        print("wrote", args.out)


if __name__ == "__main__":
    main()
