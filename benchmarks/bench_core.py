"""Core kernels of admm_jax at 64×64×3, batch 10, jit-compiled.

Measures (compile time, median ms, FLOP/s from XLA's cost analysis where meaningful):

1. each operator's batched ``solve(b, rho)`` — the exact ADMM data step
   ``(AᵀA + ρI)⁻¹ b`` — as the solvers call it (``vmap_over_batch``):
   Mask (pixelwise), BoxDownsample (×2), DenseOperator ``gaussian_cs`` 10 % (shared and
   per-sample; a 1229 × 12288 float32 matrix is 60 MB per sample), CircularConvolution
   ``gaussian_blur`` (shared and per-sample kernel), and the conjugate-gradient fallback
   ``as_custom(BoxDownsample)``;
2. one ADMM iteration (``admm_step``) of the wavelet-ℓ1 solver on the PID problem;
3. an 8-iteration ``unrolled_admm`` whose prox is a cheap stand-in (a learnable 3×3 smoothing,
   once as a shifted-add stencil and once as a dense 3→3 ``lax.conv``) with ``unroll=1`` (rolled ``lax.scan``) vs ``unroll=8`` (full), forward
   and gradient w.r.t. the stand-in's parameters — to see whether XLA:CPU's rolled-scan trap
   (design notes §4) shows up for a cheap prox.

Usage::

    .venv/bin/python benchmarks/bench_core.py --out benchmarks/results/cpu_core.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import (  # noqa: E402
    fmt_bytes, fmt_flops, load_average, machine_info, matmul_reference, print_table,
    time_compiled, write_json,
)

from admm_jax.admm import (  # noqa: E402
    ADMMState, admm_step, initial_state, unrolled_admm,
)
from admm_jax.operators import (  # noqa: E402
    BoxDownsample, CircularConvolution, as_custom, gaussian_blur, gaussian_cs, pixelwise_mask,
    vmap_over_batch,
)
from admm_jax.presets import get_preset  # noqa: E402
from admm_jax.problems import get_problems, measure  # noqa: E402
from admm_jax.wavelets import wavelet_l1_prox  # noqa: E402

SHAPE = (64, 64, 3)


def batched_solve(op, b, rho):
    return vmap_over_batch(lambda o, bb, r: o.solve(bb, r), op, b, rho)


def make_operators(batch: int, key, include_batched_cs: bool):
    keys = jax.random.split(key, batch)
    ops = {}
    ops["mask_pixelwise (per-sample)"] = jax.vmap(lambda k: pixelwise_mask(k, SHAPE, 0.5))(keys)
    ops["box_downsample x2 (shared)"] = BoxDownsample(in_shape=SHAPE, factor=2)
    ops["gaussian_cs 10% (shared)"] = gaussian_cs(keys[0], SHAPE, ratio=0.1)
    if include_batched_cs:
        ops["gaussian_cs 10% (per-sample)"] = jax.vmap(
            lambda k: gaussian_cs(k, SHAPE, ratio=0.1))(keys)
    blur = gaussian_blur(SHAPE, sigma=1.5)
    ops["gaussian_blur fft (shared)"] = blur
    ops["gaussian_blur fft (per-sample)"] = CircularConvolution(
        kernel=jnp.broadcast_to(blur.kernel, (batch,) + blur.kernel.shape),
        in_shape=SHAPE, rcond=blur.rcond)
    ops["CG: as_custom(box_downsample)"] = as_custom(BoxDownsample(in_shape=SHAPE, factor=2))
    return ops


def operator_bytes(op) -> int:
    return int(sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(op)))


def stand_in_prox(kind: str):
    """A cheap learnable stand-in prior ``prox_fn(params, v)`` with 3×3 smoothing weights.

    ``"stencil"``: per-channel 3×3 smoothing written as 9 shifted multiply-adds (edge padding);
    elementwise work only. ``"conv"``: a dense 3→3-channel 3×3 ``lax.conv`` ('SAME' zero
    padding), i.e. the operation the CNN prior is made of. (A depthwise ``lax.conv`` with
    ``feature_group_count=3`` was avoided: XLA:CPU ran it far slower than the stencil.)
    """
    c = SHAPE[-1]
    h, w = SHAPE[0], SHAPE[1]
    if kind == "stencil":
        params = {"kernel": jnp.full((3, 3, c), 1.0 / 9.0, jnp.float32),
                  "bias": jnp.zeros((c,), jnp.float32)}

        def prox_fn(params, v):
            k = params["kernel"]
            vp = jnp.pad(v, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
            out = sum(k[i, j] * vp[:, i:i + h, j:j + w, :] for i in range(3) for j in range(3))
            return out + params["bias"]
    elif kind == "conv":
        params = {"kernel": jnp.full((3, 3, c, c), 1.0 / (9.0 * c), jnp.float32),
                  "bias": jnp.zeros((c,), jnp.float32)}

        def prox_fn(params, v):
            out = jax.lax.conv_general_dilated(
                v, params["kernel"], window_strides=(1, 1), padding="SAME",
                dimension_numbers=("NHWC", "HWIO", "NHWC"))
            return out + params["bias"]
    else:
        raise ValueError(kind)
    return prox_fn, params


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results/core.json", help="JSON output path")
    ap.add_argument("--repeats", type=int, default=20,
                    help="steady-state runs per benchmark (median reported)")
    ap.add_argument("--batch", type=int, default=10, help="images per batch")
    ap.add_argument("--iters", type=int, default=8, help="T for the unrolled_admm benchmark")
    ap.add_argument("--no-batched-cs", action="store_true",
                    help="skip the per-sample (B × 60 MB) compressive-sensing operator")
    ap.add_argument("--matmul-n", type=int, default=None,
                    help="matmul reference size (default 2048 CPU / 8192 accelerator)")
    args = ap.parse_args(argv)

    info = machine_info()
    print(f"# bench_core on {info['backend']} ({info['device_kind']}, {info['cpu_model']}, "
          f"{info['cpu_count']} cores), jax {info['jax']}, load {info['load_average_start']}",
          flush=True)
    ref = matmul_reference(args.matmul_n, jnp.float32, repeats=max(3, args.repeats // 2))
    print(f"matmul reference {ref['n']}² f32: {ref['median_s'] * 1e3:.1f} ms, "
          f"{fmt_flops(ref['flops_per_s'])}FLOP/s", flush=True)

    B = args.batch
    key = jax.random.PRNGKey(0)
    k_img, k_op, k_b = jax.random.split(key, 3)
    b = jax.random.uniform(k_b, (B,) + SHAPE, jnp.float32)
    rho = jnp.full((B,), 0.3, jnp.float32)
    rows = []

    # ---------------------------------------------------------------- 1. operator solves
    ops = make_operators(B, k_op, not args.no_batched_cs)
    for name, op in ops.items():
        res = time_compiled(batched_solve, op, b, rho, repeats=args.repeats)
        rows.append({"group": "solve", "name": name, "operator_bytes": operator_bytes(op),
                     **res})
        print(f"  solve {name}: {res['median_s'] * 1e3:.3f} ms", flush=True)
        del res

    # ---------------------------------------------------------------- 2. one wavelet ADMM step
    pid = get_problems()["pid"]
    images = jax.random.uniform(k_img, (B,) + SHAPE, jnp.float32)
    op, y = measure(pid, k_op, images)
    ws = get_preset("paper").settings("pid").wavelet
    prox = wavelet_l1_prox(ws.lam, ws.wavelet, ws.level)
    st = initial_state(op, y)
    aty = vmap_over_batch(lambda o, yy: o.adjoint(yy), op, y)
    rho_w = jnp.full((B,), ws.rho, jnp.float32)

    def wavelet_step(op, aty, rho, x, z, u):
        return admm_step(prox, op, aty, rho, ADMMState(x, z, u))

    res = time_compiled(wavelet_step, op, aty, rho_w, st.x, st.z, st.u, repeats=args.repeats)
    rows.append({"group": "admm_step", "name": f"wavelet-l1 {ws.wavelet} L{ws.level}, PID",
                 **res})
    print(f"  admm_step wavelet PID: {res['median_s'] * 1e3:.3f} ms", flush=True)

    # ---------------------------------------------------------------- 3. unrolled, cheap prox
    T = args.iters
    rho_p = jnp.full((B,), get_preset("paper").settings("pid").du_admm.rho, jnp.float32)
    for kind in ("stencil", "conv"):
        prox_fn, params = stand_in_prox(kind)
        for unroll in (1, T):
            def fwd(params, op, y, images, unroll=unroll, prox_fn=prox_fn):
                z = unrolled_admm(lambda v, r: prox_fn(params, v), op, y, rho_p, T,
                                  unroll=unroll, validate=False)
                return jnp.mean(jnp.square(z - images))

            grad = jax.value_and_grad(fwd)
            for mode, f in (("forward", fwd), ("value_and_grad", grad)):
                res = time_compiled(f, params, op, y, images, repeats=args.repeats)
                rows.append({"group": "unrolled_admm",
                             "name": f"T={T} {kind} prox, PID, {mode}",
                             "prox": kind, "unroll": unroll, "mode": mode, **res})
                print(f"  unrolled_admm {kind} unroll={unroll} {mode}: "
                      f"{res['median_s'] * 1e3:.3f} ms", flush=True)

    # ---------------------------------------------------------------- report
    table = []
    for r in rows:
        table.append({
            "bench": r["group"], "name": r["name"] + (f" unroll={r['unroll']}" if "unroll" in r
                                                     else ""),
            "compile_s": f"{r['lower_s'] + r['compile_s']:.2f}",
            "median_ms": f"{r['median_s'] * 1e3:.3f}",
            "flops": fmt_flops(r["flops"]), "flop_s": fmt_flops(r["flops_per_s"]),
            "mem": fmt_bytes(r["memory"]["peak_bytes"]),
        })
    print()
    text = print_table(table, [("benchmark", "bench"), ("case", "name"),
                               ("compile s", "compile_s"), ("median ms", "median_ms"),
                               ("FLOPs (XLA)", "flops"), ("FLOP/s", "flop_s"),
                               ("peak mem", "mem")])
    roll = {(r["prox"], r["unroll"], r["mode"]): r["median_s"] for r in rows
            if r["group"] == "unrolled_admm"}
    ratios = {f"{kind} {mode}": roll[(kind, 1, mode)] / roll[(kind, T, mode)]
              for kind in ("stencil", "conv") for mode in ("forward", "value_and_grad")}
    print(f"\nrolled (unroll=1) / unrolled (unroll={T}) median time: "
          + ", ".join(f"{m} {v:.2f}x" for m, v in ratios.items()))
    payload = {
        "benchmark": "bench_core", "machine": info, "load_average_end": load_average(),
        "settings": {"batch": B, "image_shape": SHAPE, "repeats": args.repeats, "T": T},
        "matmul_reference": ref, "results": rows,
        "rolled_over_unrolled": ratios, "table": text,
        "notes": [
            "compile_s in the table = lower_s + compile_s (tracing/lowering + XLA compile).",
            "FLOPs are XLA cost_analysis()['flops']; XLA counts a while-loop body once, so the "
            "CG fallback and unroll=1 rows undercount (their FLOP/s is not meaningful).",
            "Memory is compiled.memory_analysis() temp+argument+output-alias on CPU.",
        ],
    }
    write_json(args.out, payload)
    return payload


if __name__ == "__main__":
    main()
