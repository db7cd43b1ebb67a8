"""The OneNet pretraining step: compile time and steady-state time per step.

    python benchmarks/bench_onenet.py [--width 0.0625] [--batch 4] [--norm instance]
        [--repeats 10] [--out FILE]

Times ``make_pretrain_step`` (projector + image and latent discriminators, both losses, both
Adam updates, the discriminators' weight clamp; the OneNet noise drawn inside the step) as the
main job's quick preset runs it (width 1/16, batch 4), jit-compiled: trace, XLA compile, and
the median of ``repeats`` steps after one warm-up step. Run it in a worktree of an older commit
for a "before" number (BENCHMARKS.md, "OneNet pretraining step").
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info, print_table, time_compiled, write_json  # noqa: E402

from admm_jax.baselines.onenet_train import (OneNetConfig, build_models,  # noqa: E402
                                             make_pretrain_step)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=float, default=0.0625, help="network width (default 1/16)")
    ap.add_argument("--batch", type=int, default=4, help="batch size (default 4, the quick preset)")
    ap.add_argument("--norm", choices=["instance", "virtual_batch"], default="instance")
    ap.add_argument("--repeats", type=int, default=10, help="timed steps (default 10)")
    ap.add_argument("--out", default=None, help="JSON file for the results")
    args = ap.parse_args(argv)
    if args.batch < 1 or args.repeats < 1 or args.width <= 0:
        ap.error(f"--batch and --repeats must be >= 1 and --width > 0, got {args.batch}, "
                 f"{args.repeats}, {args.width}")

    cfg = OneNetConfig(width=args.width, batch_size=args.batch, norm=args.norm, n_reference=3)
    splits, _ = build_models(cfg)
    step, init = make_pretrain_step(cfg, splits)
    state = init(tuple(s[1] for s in splits))
    images = jax.random.uniform(jax.random.PRNGKey(1), (args.batch, 64, 64, 3))
    extra = ()
    if args.norm == "virtual_batch":
        extra = (2.0 * jax.random.uniform(jax.random.PRNGKey(2), (3, 64, 64, 3)) - 1.0,)
    res = time_compiled(step, state, images, jax.random.PRNGKey(0), *extra,
                        repeats=args.repeats, carry=True)
    row = {"config": f"OneNet w={args.width:g} b={args.batch} {args.norm}",
           "trace_s": round(res["lower_s"], 2), "compile_s": round(res["compile_s"], 2),
           "median_ms": round(1e3 * res["median_s"], 1), "min_ms": round(1e3 * res["min_s"], 1),
           "load_end": res["load_average_end"]}
    print_table([row], [("config", "config"), ("trace s", "trace_s"),
                        ("XLA compile s", "compile_s"), ("median ms/step", "median_ms"),
                        ("min ms", "min_ms"), ("load at end", "load_end")])
    if args.out:
        write_json(args.out, {"machine": machine_info(), "command": " ".join(sys.argv),
                              "results": [{**row, "times_s": res["times_s"]}]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
