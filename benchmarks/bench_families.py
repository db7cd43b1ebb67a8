"""Cost of mixing many operator families in one batch (issue #12).

Two measurements, each compile apart, median of ``--repeats`` steady-state calls:

1. **The data step alone** (T = 8 ADMM iterations with an identity prox, so only the start
   ``A⁺y``, ``Aᵀy`` and the eight exact solves are timed) on one batch of 10 samples drawn from
   the nine training families (:data:`admm_jax.families.TRAINING_FAMILIES`), laid out two ways:
   ``OperatorGroups`` (one vmap per operator kind: each sample pays for its own solve) and a
   ``SelectOperator`` over the six operator kinds (under vmap every sample evaluates all six
   branches and keeps one — the K× cost the grouping avoids).
2. **One full training step** (U-Net prior width 1/4, T = 8, batch 10, clipped Adam) with the
   family mix (``operator_mix="families"``, learned ρ rule) against the paper's four-problem mix
   (``operator_mix="problems"``), same prior and batch.

    .venv/bin/python benchmarks/bench_families.py --out benchmarks/results/cpu_families.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import machine_info, print_table, time_compiled, write_json  # noqa: E402

from admm_jax.admm import unrolled_admm  # noqa: E402
from admm_jax.families import FamilyMix, sample_family_batch  # noqa: E402
from admm_jax.operators import SelectOperator  # noqa: E402


def _images(n: int, size: int = 64) -> jnp.ndarray:
    rng = np.random.default_rng(0)
    low = rng.random((n, size // 8, size // 8, 3))
    return jnp.clip(jax.image.resize(jnp.asarray(low, jnp.float32), (n, size, size, 3),
                                     "cubic"), 0, 1)


def select_layout(batch):
    """The same samples as a SelectOperator over the operator kinds: every branch is a batch
    of B operators (a sample's own operator in its branch, a copy of the group's first one in
    the others) and y has one slot per branch (zeros outside the sample's branch)."""
    groups, sizes = batch.op.groups, batch.op.sizes
    total = sum(sizes)
    branches, ys, index = [], [], []
    for g, (op, y, n) in enumerate(zip(groups, batch.y, sizes)):
        start = sum(sizes[:g])
        rows = np.clip(np.arange(total) - start, 0, n - 1)
        if op.is_batched:
            full = jax.tree_util.tree_map(lambda a: a[rows], op)
        else:  # a shared operator (e.g. BoxDownsample): nothing to batch
            full = op
        branches.append(full)
        slot = jnp.zeros((total,) + y.shape[1:], y.dtype).at[start:start + n].set(y)
        ys.append(slot)
        index += [g] * n
    return SelectOperator.create(tuple(branches), jnp.asarray(index, jnp.int32)), tuple(ys)


def bench_data_step(repeats: int) -> list[dict]:
    mix = FamilyMix()
    images = _images(mix.batch_size)
    batch = sample_family_batch(mix, jax.random.PRNGKey(0), images)
    sel_op, sel_y = select_layout(batch)
    identity = lambda v, r: v  # noqa: E731
    run = lambda op, y: unrolled_admm(identity, op, y, 0.3, 8, validate=False)  # noqa: E731
    # (compiled here for the equality check, so the timed calls below exclude compilation)
    z_g = jax.jit(run)(batch.op, batch.y)
    z_s = jax.jit(run)(sel_op, sel_y)
    err = float(jnp.max(jnp.abs(z_g - z_s)))
    rows = []
    for name, op, y in (("OperatorGroups", batch.op, batch.y),
                        ("SelectOperator (6 kinds)", sel_op, sel_y)):
        t = time_compiled(run, op, y, repeats=repeats)
        rows.append({"layout": name,
                     "median_ms": round(1e3 * t["median_s"], 2),
                     "min_ms": round(1e3 * t["min_s"], 2), "max_abs_diff": err,
                     "times_s": t["times_s"]})
    return rows


def bench_train_step(repeats: int) -> list[dict]:
    from admm_jax.problems import get_problems
    from admm_jax.train import make_optimizer, preset
    from admm_jax.train.loop import build_prior
    from admm_jax.train.step import init_train_state, make_mesh, make_train_step, shard_batch

    rows = []
    mesh = make_mesh(jax.devices()[:1])
    images = shard_batch(np.asarray(_images(10)), mesh)
    for label, mix, rule in (("four paper problems (SelectOperator)", "problems", "fixed"),
                             ("nine families (OperatorGroups) + learned rho", "families",
                              "learned")):
        cfg = preset("paper", architecture="unet", width=0.25, loss="psnr", batch_size=10,
                     learning_rate=5e-4, operator_mix=mix, rho_rule=rule)
        problems = tuple(get_problems()[n] for n in cfg.problems)
        prior_fn, params = build_prior(cfg)
        tx = make_optimizer(cfg)
        step = make_train_step(prior_fn, tx, problems, cfg, mesh)
        state = init_train_state(params, tx, mesh)
        t = time_compiled(step, state, images, jax.random.PRNGKey(0), repeats=repeats,
                          carry=True)
        rows.append({"mix": label, "compile_s": round(t["compile_s"], 2),
                     "median_ms": round(1e3 * t["median_s"], 1),
                     "min_ms": round(1e3 * t["min_s"], 1), "times_s": t["times_s"]})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--train-repeats", type=int, default=10)
    ap.add_argument("--out", default="benchmarks/results/cpu_families.json")
    args = ap.parse_args(argv)
    data = bench_data_step(args.repeats)
    print("data step only (T = 8, identity prox, batch 10 of 9 families):")
    print_table(data, [("layout", "layout"), ("median ms", "median_ms"), ("min ms", "min_ms"),
                       ("max |z_groups - z_select|", "max_abs_diff")])
    train = bench_train_step(args.train_repeats)
    print("\nfull training step (U-Net width 1/4, T = 8, batch 10):")
    print_table(train, [("mix", "mix"), ("compile s", "compile_s"), ("median ms", "median_ms"),
                        ("min ms", "min_ms")])
    path = write_json(args.out, {"machine": machine_info(), "data_step": data,
                                 "train_step": train, "command": " ".join(sys.argv)})
    print(f"\nwritten to {path.absolute()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
