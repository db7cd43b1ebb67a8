"""Where the training step spends its time: XLA op categories from a jax.profiler trace.

    python benchmarks/profile_step.py [paper|unet] [batch] [--trace-dir DIR]

Traces 3 steps of the DU-ADMM training step (width 0.25, T = 8, float32) after two warm-up
steps, reads the trace with ``jax.profiler.ProfileData`` and prints the op time per step summed
over XLA's worker threads, grouped by op name without its numeric suffix (``ynn_fusion`` =
YNNPACK kernels, ``convolution`` = XLA's own, ``*_fusion`` = generated elementwise code).
The trace goes to a new temporary folder (or ``--trace-dir``, which must not exist yet), whose
path is printed.
"""
import argparse
import collections
import glob
import re
import sys
import tempfile
from pathlib import Path

import jax

sys.path.insert(0, "benchmarks")
from admm_jax.problems import get_problems  # noqa: E402
from admm_jax.train.config import preset  # noqa: E402
from admm_jax.train.loop import build_prior  # noqa: E402
from admm_jax.train.optim import make_optimizer  # noqa: E402
from admm_jax.train.step import (init_train_state, make_mesh, make_train_step,  # noqa: E402
                                 shard_batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("arch", nargs="?", default="paper", choices=["paper", "unet"])
    parser.add_argument("batch", nargs="?", type=int, default=2)
    parser.add_argument("--trace-dir", default=None,
                        help="folder for the profiler trace (must not exist; default: a new "
                             "temporary folder)")
    args = parser.parse_args()
    if args.batch < 1:
        parser.error(f"batch must be >= 1, got {args.batch}")
    if args.trace_dir is not None and Path(args.trace_dir).exists():
        parser.error(f"--trace-dir {args.trace_dir} exists; give a new folder")
    trace_dir = args.trace_dir or tempfile.mkdtemp(prefix=f"profile_{args.arch}_")

    kw = dict(width=0.25, batch_size=args.batch)
    if args.arch == "unet":
        kw.update(architecture="unet", loss="psnr")
    cfg = preset("paper", **kw)
    mesh = make_mesh()
    problems = tuple(get_problems()[n] for n in cfg.problems)
    prior_fn, params = build_prior(cfg)
    tx = make_optimizer(cfg)
    state = init_train_state(params, tx, mesh)
    step = jax.jit(make_train_step(prior_fn, tx, problems, cfg, mesh))
    images = shard_batch(jax.random.uniform(jax.random.PRNGKey(1), (args.batch, 64, 64, 3)),
                         mesh)
    key = jax.random.PRNGKey(0)
    for _ in range(2):
        state, m = step(state, images, key)
        jax.block_until_ready(m)
    n_steps = 3
    with jax.profiler.trace(trace_dir):
        for i in range(n_steps):
            state, m = step(state, images, jax.random.fold_in(key, i))
            jax.block_until_ready(m)
    print(f"trace written to {trace_dir}")
    f = glob.glob(trace_dir + "/**/*.xplane.pb", recursive=True)[0]
    pd = jax.profiler.ProfileData.from_file(f)
    tot = collections.Counter()
    cnt = collections.Counter()
    for plane in pd.planes:
        for line in plane.lines:
            for ev in line.events:
                tot[(plane.name, line.name, ev.name)] += ev.duration_ns
                cnt[(plane.name, line.name, ev.name)] += 1
    cat = collections.Counter()
    ncat = collections.Counter()
    for (p, line, n), v in tot.items():
        if not line.startswith("tf_XLAEigen") or n.startswith("ThunkExecutor"):
            continue
        c = re.sub(r"\.\d+$", "", n)
        cat[c] += v
        ncat[c] += cnt[(p, line, n)]
    total = sum(cat.values())
    per_step = n_steps * 1e6  # ns summed over n_steps -> ms per step
    print("total op time per step (both threads):", total / per_step, "ms")
    for c, v in cat.most_common(25):
        print(f"{v / per_step:9.1f} ms/step {100 * v / total:5.1f}%  "
              f"n={ncat[c] // n_steps:5d}  {c}")


if __name__ == "__main__":
    main()
