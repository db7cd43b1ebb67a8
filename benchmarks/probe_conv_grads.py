"""Per-convolution cost of the training step's priors: forward, input gradient, weight gradient.

    python benchmarks/probe_conv_grads.py [--arch paper unet] [--repeats 20] [--torch] [--out FILE]

Records every ``admm_jax.priors.conv2d`` call one prior evaluation makes (the paper prior at
width 0.25 on batch 2, the U-Net at width 0.25 on batch 4, i.e. the issue-#13 step settings),
then times each distinct shape, jit-compiled, median of ``repeats`` runs:

* ``fwd``: the convolution itself;
* ``gx`` / ``gw``: the input and weight gradients as ``conv2d``'s ``custom_vjp`` states them
  (each timed alone);
* ``gw_shift``: the weight gradient written as kh·kw matrix products, one per kernel offset,
  ``gw[i, j] = x_pad[:, i:i+H_out, j:j+W_out, :]ᵀ g`` contracted over (B, H_out, W_out), a
  candidate for layers where the convolution form is slow (large images, few channels);
* ``gw_im2col``: the same as one matrix product, the kh·kw shifted copies of the padded input
  concatenated along the channels (B·H_out·W_out, kh·kw·C_in), transposed, times g.

Each alternative is checked against ``gw`` before it is timed. Times are per call of one
convolution (the step calls each one T = 8 times forward and backward).

``--torch`` adds PyTorch's CPU kernels (oneDNN) for the same convolution in the same process
(channels-last tensors, ``torch.set_num_threads(os.cpu_count())``): ``torch_fwd``, ``torch_gx``
and ``torch_gw`` (``aten.convolution_backward`` asked for one gradient at a time), their output
checked against admm_jax's first. Asymmetric padding (the stride-2 layers) is applied to torch's
input once, outside the timing, since ``torch.nn.functional.conv2d`` pads symmetrically only.
``fwd_cores`` / ``torch_fwd_cores``: process CPU time over wall time while the forward runs,
i.e. how many of the machine's cores each library keeps busy on that convolution.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, "benchmarks")
from admm_jax.priors import conv2d  # noqa: E402
from admm_jax.train.config import preset  # noqa: E402
from admm_jax.train.loop import build_prior  # noqa: E402


def _conv_calls(jaxpr) -> list[tuple]:
    """(x shape, kernel shape, strides, padding) of every convolution in a jaxpr, nested
    jaxprs (the custom_vjp of conv2d, scans, ...) included."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            x, k = (v.aval.shape for v in eqn.invars[:2])
            found.append((tuple(x), tuple(k), tuple(eqn.params["window_strides"]),
                          tuple(tuple(p) for p in eqn.params["padding"])))
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    found += _conv_calls(inner)
    return found


def record_shapes(arch: str, batch: int) -> list[tuple]:
    """Distinct convolutions of one prior evaluation and how often each runs."""
    kw = dict(width=0.25, batch_size=batch)
    if arch == "unet":
        kw.update(architecture="unet", loss="psnr")
    prior_fn, params = build_prior(preset("paper", **kw))
    closed = jax.make_jaxpr(prior_fn)(params, jnp.zeros((batch, 64, 64, 3), jnp.float32))
    counts: dict[tuple, int] = {}
    for call in _conv_calls(closed.jaxpr):
        counts[call] = counts.get(call, 0) + 1
    return list(counts.items())


def gw_shift(x, g, kshape, strides, pads):
    """Weight gradient as one matrix product per kernel offset (stride 1 only)."""
    kh, kw = kshape[:2]
    xp = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    ho, wo = g.shape[1:3]
    rows = []
    for i in range(kh):
        row = []
        for j in range(kw):
            xs = xp[:, i:i + ho, j:j + wo, :]
            row.append(jnp.einsum("bhwc,bhwo->co", xs, g))
        rows.append(jnp.stack(row))
    return jnp.stack(rows)


def gw_im2col(x, g, kshape, strides, pads):
    """Weight gradient as one (kh·kw·C_in, B·H·W) × (B·H·W, C_out) product (stride 1)."""
    kh, kw = kshape[:2]
    xp = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    ho, wo = g.shape[1:3]
    cols = jnp.concatenate([xp[:, i:i + ho, j:j + wo, :] for i in range(kh) for j in range(kw)],
                           axis=-1)
    n = cols.shape[0] * ho * wo
    gw = jnp.dot(cols.reshape(n, -1).T, g.reshape(n, -1))
    return gw.reshape(kh, kw, x.shape[-1], g.shape[-1])


def time_fn(fn, args, repeats):
    compiled = jax.jit(fn).lower(*args).compile()
    jax.block_until_ready(compiled(*args))
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        ts.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(ts)


def cores_busy(run, seconds: float = 0.5) -> float:
    """Process CPU time over wall time while ``run`` is called for about ``seconds`` (after one
    warm-up call; long enough that the CPU clock's granularity does not matter)."""
    run()
    c0, t0 = time.process_time(), time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        run()
    return (time.process_time() - c0) / (time.perf_counter() - t0)


def probe_torch(row, x, kernel, g, strides, pads, repeats):
    """PyTorch's forward and each gradient of the same convolution, in ``row`` (ms)."""
    import numpy as np
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    cl = torch.channels_last
    xp = np.pad(np.asarray(x), ((0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0)))
    xt = torch.from_numpy(xp).permute(0, 3, 1, 2).contiguous(memory_format=cl)
    kt = torch.from_numpy(np.array(kernel)).permute(3, 2, 0, 1).contiguous()
    gt = torch.from_numpy(np.asarray(g)).permute(0, 3, 1, 2).contiguous(memory_format=cl)
    with torch.no_grad():
        out = torch.nn.functional.conv2d(xt, kt, stride=strides)
        ref = np.asarray(conv2d(x, kernel, strides, pads))
        err = np.max(np.abs(out.permute(0, 2, 3, 1).numpy() - ref)) / np.max(np.abs(ref))
        assert err < 1e-4, ("torch forward differs", err)

        def fwd():
            torch.nn.functional.conv2d(xt, kt, stride=strides)

        def grad(mask):
            return lambda: torch.ops.aten.convolution_backward(
                gt, xt, kt, None, list(strides), [0, 0], [1, 1], False, [0, 0], 1, mask)

        for name, run in (("torch_fwd", fwd), ("torch_gx", grad([True, False, False])),
                          ("torch_gw", grad([False, True, False]))):
            for _ in range(2):
                run()
            ts = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                run()
                ts.append(1e3 * (time.perf_counter() - t0))
            row[name + "_ms"] = statistics.median(ts)
        row["torch_fwd_cores"] = cores_busy(fwd)


def probe(shape, repeats, with_torch=False):
    xs, ks, strides, pads = shape
    kx, kk, kg = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(kx, xs)
    kernel = jax.random.normal(kk, ks)
    conv = lambda a, b: conv2d(a, b, strides, pads)  # noqa: E731
    g = jax.random.normal(kg, jax.eval_shape(conv, x, kernel).shape)
    # each gradient alone: jit drops the forward convolution and the other gradient as dead code
    gx_only = lambda a, b, c: jax.vjp(conv, a, b)[1](c)[0]  # noqa: E731
    gw_only = lambda a, b, c: jax.vjp(conv, a, b)[1](c)[1]  # noqa: E731
    row = {"x": xs, "kernel": ks, "pads": pads}
    row["fwd_ms"] = time_fn(conv, (x, kernel), repeats)
    row["gx_ms"] = time_fn(gx_only, (x, kernel, g), repeats)
    row["gw_ms"] = time_fn(gw_only, (x, kernel, g), repeats)
    fwd = jax.jit(conv).lower(x, kernel).compile()
    row["fwd_cores"] = cores_busy(lambda: jax.block_until_ready(fwd(x, kernel)))
    if with_torch:
        probe_torch(row, x, kernel, g, strides, pads, repeats)
    if strides == (1, 1):
        ref = gw_only(x, kernel, g)
        for name, form in (("gw_shift", gw_shift), ("gw_im2col", gw_im2col)):
            alt = lambda a, c, form=form: form(a, c, ks, strides, pads)  # noqa: E731
            err = float(jnp.max(jnp.abs(jax.jit(alt)(x, g) - ref)) / jnp.max(jnp.abs(ref)))
            assert err < 1e-4, (name, err)
            row[name + "_ms"] = time_fn(alt, (x, g), repeats)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", nargs="+", default=["paper", "unet"], choices=["paper", "unet"])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", default=None, help="JSON file for the rows")
    parser.add_argument("--torch", action="store_true",
                        help="also time PyTorch's kernels for each convolution (needs torch)")
    args = parser.parse_args()
    if args.torch:
        try:
            import torch  # noqa: F401
        except ImportError:
            parser.exit(2, "error: --torch needs PyTorch: pip install torch "
                           "(the CPU build is enough)\n")
    rows = []
    for arch in args.arch:
        batch = 2 if arch == "paper" else 4
        for shape, n in record_shapes(arch, batch):
            r = probe(shape, args.repeats, args.torch)
            r.update(arch=arch, calls_per_eval=n)
            rows.append(r)
            alts = "  ".join(f"{k[:-3]} {r[k]:7.3f}" for k in ("gw_shift_ms", "gw_im2col_ms")
                             if k in r)
            if args.torch:
                alts += "  torch " + "  ".join(f"{k} {r[f'torch_{k}_ms']:7.3f}"
                                               for k in ("fwd", "gx", "gw"))
            print(f"{arch:5s} x{str(r['x']):18s} k{str(r['kernel']):16s} n={n}  "
                  f"fwd {r['fwd_ms']:7.3f}  gx {r['gx_ms']:7.3f}  gw {r['gw_ms']:7.3f}  {alts} ms",
                  flush=True)
    if args.out:
        with open(args.out, "w") as f:
            meta = {"jax": jax.__version__, "cpu_count": os.cpu_count()}
            if args.torch:
                import torch
                meta["torch"] = torch.__version__
            json.dump({"rows": rows, **meta}, f, indent=1)
        print("wrote", args.out)


if __name__ == "__main__":
    main()
