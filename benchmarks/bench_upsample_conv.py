"""Nearest ×2 upsampling + convolution: the literal form against the phase split, per layer.

For every upsampling layer of the two priors as the training step runs them (the paper's
``deconv3 … deconv1`` at width 0.25 / batch 2 with its "custom" resize and 4×4 kernels; the
quick U-Net's two up convolutions, 3×3 after a clean ×2, batch 4), one process times, with
``time_compiled`` (compile apart, median of repeated calls), the forward pass and the forward +
both gradients of

* ``literal``: gather by the index maps, then a 'SAME' convolution at the high resolution
  (:func:`admm_jax.priors.upsample_conv.upsample_conv_reference`, what the library ran before);
* ``split``: :func:`admm_jax.priors.upsample_conv.upsample_conv` with ``force_split=True``
  (four low-resolution convolutions with folded kernels plus the exact edge corrections).

The last column says which of the two the library runs for that layer
(:func:`~admm_jax.priors.upsample_conv.use_phase_split`: the split from 16×16 inputs on).

The two are run alternately in rounds so that machine noise hits both. Usage::

    python benchmarks/bench_upsample_conv.py --out benchmarks/results/cpu_upsample_conv.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import load_average, machine_info, print_table, time_compiled, write_json  # noqa: E402

from admm_jax.priors.layers import resize_index_map  # noqa: E402
from admm_jax.priors.upsample_conv import (  # noqa: E402
    upsample_conv, upsample_conv_reference, use_phase_split,
)

#: (name, batch, input side, C_in, C_out, kernel, index map kind)
LAYERS = (
    ("paper deconv3 (w 0.25, b 2)", 2, 8, 256, 128, 4, "custom"),
    ("paper deconv2 (w 0.25, b 2)", 2, 16, 128, 64, 4, "custom"),
    ("paper deconv1 (w 0.25, b 2)", 2, 32, 64, 32, 4, "custom"),
    ("unet up[1] (w 0.25, b 4)", 4, 16, 64, 32, 3, "clean"),
    ("unet up[0] (w 0.25, b 4)", 4, 32, 32, 16, 3, "clean"),
)


def index_map(kind: str, n: int) -> np.ndarray:
    return np.arange(2 * n) // 2 if kind == "clean" else resize_index_map(n, 2 * n, kind)


def time_layer(layer, repeats: int, rounds: int) -> dict:
    name, b, n, c_in, c_out, k, kind = layer
    key = jax.random.PRNGKey(0)
    x = jax.random.normal(key, (b, n, n, c_in), jnp.float32)
    w = 0.05 * jax.random.normal(jax.random.fold_in(key, 1), (k, k, c_in, c_out), jnp.float32)
    m = index_map(kind, n)
    def split(a, b_, rows, cols):
        return upsample_conv(a, b_, rows, cols, force_split=True)

    impls = {"literal": upsample_conv_reference, "split": split}
    diff = float(jnp.max(jnp.abs(split(x, w, m, m) - upsample_conv_reference(x, w, m, m))))
    times: dict[str, dict[str, list[float]]] = {i: {"fwd": [], "fwd+grad": []} for i in impls}
    compile_s: dict[str, dict[str, float]] = {i: {} for i in impls}
    for r in range(rounds):
        order = list(impls) if r % 2 == 0 else list(reversed(impls))
        for impl in order:
            f = impls[impl]
            fwd = jax.jit(lambda a, b_, f=f: f(a, b_, m, m))
            grad = jax.jit(jax.value_and_grad(lambda a, b_, f=f: jnp.sum(jnp.tanh(f(a, b_, m, m))),
                                              argnums=(0, 1)))
            for what, fn in (("fwd", fwd), ("fwd+grad", grad)):
                res = time_compiled(fn, x, w, repeats=repeats)
                times[impl][what].extend(res["times_s"])
                compile_s[impl][what] = res["lower_s"] + res["compile_s"]
    row = {"layer": name, "max_abs_diff": diff, "compile_s": compile_s,
           "library_uses": "split" if use_phase_split(x.shape, w.shape, m, m) else "literal",
           "times_s": times, "load_end": load_average()}
    for what in ("fwd", "fwd+grad"):
        lit = statistics.median(times["literal"][what])
        spl = statistics.median(times["split"][what])
        row[f"{what}_literal_ms"] = 1e3 * lit
        row[f"{what}_split_ms"] = 1e3 * spl
        row[f"{what}_speedup"] = lit / spl
    return row


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=20, help="timed calls per round")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds")
    ap.add_argument("--out", default=None, help="JSON output path")
    args = ap.parse_args(argv)
    print(f"# bench_upsample_conv: jax {jax.__version__} on {jax.default_backend()}, "
          f"load {load_average()}")
    rows = [time_layer(layer, args.repeats, args.rounds) for layer in LAYERS]
    cols = [("layer", "layer")] + [(f"{w} {i} ms", f"{w}_{i}_ms") for w in ("fwd", "fwd+grad")
                                   for i in ("literal", "split")] + [
        ("fwd x", "fwd_speedup"), ("fwd+grad x", "fwd+grad_speedup"), ("max |diff|", "diff"),
        ("library uses", "library_uses")]
    shown = [{**{k: (f"{v:.2f}" if isinstance(v, float) else v) for k, v in r.items()},
              "diff": f"{r['max_abs_diff']:.1e}"} for r in rows]
    table = print_table(shown, cols)
    payload = {"machine": machine_info(), "command": " ".join(sys.argv), "rows": rows,
               "table": table}
    if args.out:
        print(f"wrote {write_json(args.out, payload)}")
    return payload


if __name__ == "__main__":
    main()
