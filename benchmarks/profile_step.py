"""Where the training step spends its time: XLA op categories from a jax.profiler trace.

    python benchmarks/profile_step.py [paper|unet] [batch]

Traces 3 steps of the DU-ADMM training step (width 0.25, T = 8, float32) after two warm-up
steps, reads the trace with ``jax.profiler.ProfileData`` and prints the op time per step summed
over XLA's worker threads, grouped by op name without its numeric suffix (``ynn_fusion`` =
YNNPACK kernels, ``convolution`` = XLA's own, ``*_fusion`` = generated elementwise code).
"""
import collections, glob, os, sys, time
import jax, jax.numpy as jnp
sys.path.insert(0, "benchmarks")
from admm_jax.problems import get_problems
from admm_jax.train.config import preset
from admm_jax.train.loop import build_prior
from admm_jax.train.optim import make_optimizer
from admm_jax.train.step import make_train_step, init_train_state, make_mesh, shard_batch
arch = sys.argv[1] if len(sys.argv) > 1 else "paper"
batch = int(sys.argv[2]) if len(sys.argv) > 2 else 2
kw = dict(width=0.25, batch_size=batch)
if arch == "unet":
    kw.update(architecture="unet", loss="psnr")
cfg = preset("paper", **kw)
mesh = make_mesh()
problems = tuple(get_problems()[n] for n in cfg.problems)
prior_fn, params = build_prior(cfg)
tx = make_optimizer(cfg)
state = init_train_state(params, tx, mesh)
step = jax.jit(make_train_step(prior_fn, tx, problems, cfg, mesh))
images = shard_batch(jax.random.uniform(jax.random.PRNGKey(1), (batch, 64, 64, 3)), mesh)
key = jax.random.PRNGKey(0)
state, m = step(state, images, key); jax.block_until_ready(m)
state, m = step(state, images, key); jax.block_until_ready(m)
d = "/tmp/prof_" + arch
os.system(f"rm -rf {d}")
with jax.profiler.trace(d):
    for i in range(3):
        state, m = step(state, images, jax.random.fold_in(key, i)); jax.block_until_ready(m)
f = glob.glob(d + "/**/*.xplane.pb", recursive=True)[0]
pd = jax.profiler.ProfileData.from_file(f)
tot = collections.Counter(); cnt = collections.Counter()
for plane in pd.planes:
    for line in plane.lines:
        for ev in line.events:
            tot[(plane.name, line.name, ev.name)] += ev.duration_ns
            cnt[(plane.name, line.name, ev.name)] += 1
import re
cat = collections.Counter(); ncat = collections.Counter()
for (p, l, n), v in tot.items():
    if not l.startswith("tf_XLAEigen") or n.startswith("ThunkExecutor"):
        continue
    c = re.sub(r"\.\d+$", "", n)
    cat[c] += v; ncat[c] += cnt[(p, l, n)]
s = sum(cat.values())
print("total op time per step (both threads):", s / 3e6, "ms")
for c, v in cat.most_common(25):
    print(f"{v/3e6:9.1f} ms/step {100*v/s:5.1f}%  n={ncat[c]//3:5d}  {c}")
