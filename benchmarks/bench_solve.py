"""Throughput of ``solve`` with a shipped pretrained prior: images per second, compile apart.

For each image size (default 64, 256, 512) and problem (default pid and sr), one compiled
program runs T = 8 unrolled ADMM iterations of the pretrained U-Net prior on a batch of
``--batch`` images of that size (the program ``admm_jax.restore.restore`` runs, batched):
the start ``A⁺y`` and the eight prior + data steps. Reported per configuration: lowering and
XLA compile time, the median and min of ``--repeats`` steady-state calls (after one warm-up),
images per second from the median, XLA's FLOP count, and the load average. With
``--ensembles none,hflip,dihedral`` every configuration also runs with the prior's test-time
self-ensemble (``aj.pretrained(name, ensemble=...)``), right after the plain prior, and
reports the time ratio against ``none`` measured in the same run.

    .venv/bin/python benchmarks/bench_solve.py --out benchmarks/results/cpu_solve.json
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

from common import (  # noqa: E402
    fmt_flops, machine_info, print_table, time_compiled, write_json,
)

import admm_jax as aj  # noqa: E402
from admm_jax.admm import initial_state, unrolled_admm  # noqa: E402
from admm_jax.restore import Degradation, simulate  # noqa: E402


def batch_of(problem: str, size: int, batch: int):
    """``batch`` measured images (smooth random fields) of ``size``² with their operators."""
    rng = np.random.default_rng(0)
    ops, ys = [], []
    for i in range(batch):
        x = rng.random((size // 8, size // 8, 3)).astype(np.float32)
        x = np.kron(x, np.ones((8, 8, 1), np.float32))  # piecewise-constant test image
        op, y, _ = simulate(Degradation(problem), jax.random.PRNGKey(i), x)
        ops.append(op), ys.append(np.asarray(y))
    op = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *ops)
    return op, jnp.asarray(np.stack(ys))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="64,256,512", help="comma list of image sides")
    ap.add_argument("--problems", default="pid,sr", help="comma list of problems")
    ap.add_argument("--batch", type=int, default=1, help="images per compiled call")
    ap.add_argument("--prior", default="natural", help="pretrained prior name")
    ap.add_argument("--repeats", type=int, default=5, help="timed steady-state calls")
    ap.add_argument("--ensembles", default="none",
                    help="comma list of the prior's self-ensembles (none, hflip, dihedral)")
    ap.add_argument("--out", default=None, help="JSON file for the results")
    args = ap.parse_args(argv)

    prior = aj.pretrained(args.prior)
    ensembles = args.ensembles.split(",")
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        for problem in args.problems.split(","):
            op, y = batch_of(problem, size, args.batch)
            rho = prior.rho_for(problem)
            plain_ms = None
            for ens in ensembles:
                rows.append(_time_one(aj.pretrained(args.prior, ensemble=ens), op, y, rho,
                                      args) | {"size": size, "problem": problem,
                                               "ensemble": ens})
                plain_ms = rows[-1]["median_ms"] if ens == "none" else plain_ms
                rows[-1]["vs_none"] = (rows[-1]["median_ms"] / plain_ms if plain_ms
                                       else float("nan"))
                print(f"{size}x{size} {problem} ensemble={ens}: "
                      f"{rows[-1]['images_per_s']:.2f} images/s (median "
                      f"{rows[-1]['median_ms']:.0f} ms, compile {rows[-1]['compile_s']:.1f} s)",
                      flush=True)
    shown = [{**r, "compile_s": f"{r['compile_s']:.1f}", "median_ms": f"{r['median_ms']:.0f}",
              "min_ms": f"{r['min_ms']:.0f}", "images_per_s": f"{r['images_per_s']:.2f}",
              "vs_none": f"{r['vs_none']:.2f}"} for r in rows]
    print_table(shown, [("size", "size"), ("problem", "problem"), ("ensemble", "ensemble"),
                        ("batch", "batch"), ("compile s", "compile_s"),
                        ("median ms", "median_ms"), ("min ms", "min_ms"),
                        ("images/s", "images_per_s"), ("time / none", "vs_none"),
                        ("FLOP/s", "flops_per_s")])
    if args.out:
        write_json(args.out, {"machine": machine_info(), "args": vars(args),
                              "prior": prior.metadata["label"], "rows": rows})
    return 0


def _time_one(prior, op, y, rho, args) -> dict:
    """One compiled solve (start + T iterations) of ``prior`` timed by ``time_compiled``."""
    def solve(o, yy):
        return unrolled_admm(prior, o, yy, rho, prior.num_iters,
                             validate=False), initial_state(o, yy).z

    r = time_compiled(solve, op, y, repeats=args.repeats)
    return {"batch": args.batch, "T": prior.num_iters,
            "compile_s": r["lower_s"] + r["compile_s"], "median_ms": 1e3 * r["median_s"],
            "min_ms": 1e3 * r["min_s"], "images_per_s": args.batch / r["median_s"],
            "flops_per_s": fmt_flops(r["flops_per_s"]),
            "load_average_end": r["load_average_end"]}


if __name__ == "__main__":
    sys.exit(main())
