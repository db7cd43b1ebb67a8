"""The DU-ADMM training step: compile time, ms/step, achieved FLOP/s, peak memory.

One step = ``make_train_step`` of the "paper" preset: per-sample mixed problems (PID, BI, SI,
SR), batch 10, T = 8 unrolled ADMM iterations with the CNN prior, MSE on z_T, clipped Adam —
exactly what ``admm_jax.train.loop.train`` compiles (same ``build_prior``, ``make_optimizer``,
``init_train_state``, ``make_mesh``, ``shard_batch``). The state is threaded through the timed
calls (the step donates it), the images and base key stay fixed (the per-step key
``fold_in(key, step)`` still changes the operators each step).

Configurations (one factor at a time around the default ``unroll="auto"``):

* every width in ``--widths`` × every ``--remat`` value (× every ``--dtypes`` value on an
  accelerator; on CPU the dtype variants only at the variant width, first remat value);
* at the variant width (default: the first of ``--widths``) also every ``--unroll`` value
  other than "auto" × ``--remat`` (first dtype), timed;
* at the variant width, ``--memory-only-unroll`` values (default 2 and 4) with remat=on,
  compiled only: how the memory saved by remat depends on the scan unrolling;
* on CPU, widths >= ``--large-width`` run ``--repeats-large`` steps with no warm-up, and
  remat=on there is compiled only (its memory) unless ``--time-large-remat``.

FLOPs: XLA's ``cost_analysis()['flops']`` of the compiled step where it can be trusted; it
counts a while-loop body once, so for a rolled scan (unroll < T) the analytic estimate
``3 × B × T × 16.43 GFLOP × width²`` (design notes §4; exact at width 1, approximate at other
widths since the first/last layers scale with width, not width²) is used instead. Both are
stored. "fraction of matmul ref" = achieved FLOP/s / the square-matmul FLOP/s measured in the
same run and dtype.

Goal stated by the project (one H100, full width, batch 10): ≤ 25 ms/step float32,
≤ 12 ms/step bfloat16.

Usage::

    # CPU (this repository's results)
    .venv/bin/python benchmarks/bench_train.py --out benchmarks/results/cpu_train.json
    # GPU: full width, float32 and bfloat16, remat off/on, rolled vs unrolled
    python benchmarks/bench_train.py --widths 1.0 --dtypes float32 bfloat16 \\
        --out benchmarks/results/gpu_train.json
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import (  # noqa: E402
    fmt_bytes, fmt_flops, load_average, machine_info, matmul_reference, on_accelerator,
    print_table, time_compiled, write_json,
)

from admm_jax.problems import get_problems  # noqa: E402
from admm_jax.train.config import preset  # noqa: E402
from admm_jax.train.loop import build_prior  # noqa: E402
from admm_jax.train.optim import make_optimizer  # noqa: E402
from admm_jax.train.step import (  # noqa: E402
    init_train_state, make_mesh, make_train_step, shard_batch,
)

#: FLOPs of one pass of the full-width prior on one 64×64 image (design notes §4).
PRIOR_GFLOP_PER_IMAGE = 16.43


def analytic_flops(batch: int, iters: int, width: float) -> float:
    return 3.0 * batch * iters * PRIOR_GFLOP_PER_IMAGE * 1e9 * width ** 2


def parse_unroll(v: str):
    return v if v == "auto" else int(v)


def build_configs(args) -> list[dict]:
    """The list of configurations (see the module docstring); each has ``mode`` "time" (run
    and time it) or "memory" (compile only: compile time, FLOPs, memory)."""
    accel = on_accelerator()
    variant_width = args.variant_width if args.variant_width is not None else args.widths[0]
    dt0, remat0 = args.dtypes[0], args.remat[0]
    configs = []
    seen = set()

    def add(width, dtype, remat, unroll, mode="time"):
        key = (width, dtype, remat, str(unroll))
        if key not in seen:
            seen.add(key)
            configs.append({"width": width, "dtype": dtype, "remat": remat, "unroll": unroll,
                            "mode": mode})

    for width in args.widths:
        large_cpu = not accel and width >= args.large_width
        for dtype in args.dtypes:
            if dtype != dt0 and not accel and width != variant_width:
                continue  # CPU: dtype variants only at the variant width
            for remat in args.remat:
                if dtype != dt0 and not accel and remat != remat0:
                    continue  # CPU: dtype variants only with the first remat value
                mode = "memory" if (large_cpu and remat and not args.time_large_remat) else "time"
                add(width, dtype, remat, "auto", mode)
        if width == variant_width or args.unroll_all_widths:
            for unroll in args.unroll:
                if unroll != "auto":
                    for remat in args.remat:
                        add(width, dt0, remat, unroll, "memory" if large_cpu else "time")
            if True in args.remat:
                for unroll in args.memory_only_unroll:
                    add(width, dt0, True, unroll, "memory")
    return configs


def run_config(c: dict, args, problems, mesh, images, base_key) -> dict:
    cfg = preset("paper", width=c["width"], compute_dtype=c["dtype"], remat=c["remat"],
                 unroll=c["unroll"], batch_size=args.batch, num_iters=args.iters)
    prior_fn, params = build_prior(cfg)
    n_params = int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
    tx = make_optimizer(cfg)
    state = init_train_state(params, tx, mesh)
    step = make_train_step(prior_fn, tx, problems, cfg, mesh)
    rolled = c["unroll"] != "auto" and int(c["unroll"]) < args.iters
    cpu = not on_accelerator()
    if c["mode"] == "memory":
        repeats, warmup = 0, 0
    elif cpu and c["width"] >= args.large_width:
        repeats, warmup = args.repeats_large, 0
    elif cpu and rolled:
        repeats, warmup = args.repeats_rolled, 0
    else:
        repeats, warmup = args.repeats, 1
    res = time_compiled(step, state, images, base_key, repeats=repeats, warmup=warmup,
                        carry=True)
    analytic = analytic_flops(args.batch, args.iters, c["width"])
    if res["flops"] is not None and not rolled:
        flops, source = res["flops"], "xla_cost_analysis"
    else:
        flops, source = analytic, "analytic_3BT_16.43GFLOP_w2"
    med = res["median_s"]
    return {**c, "params": n_params, "batch": args.batch, "T": args.iters, **res,
            "xla_flops": res["flops"], "analytic_flops": analytic,
            "flops": flops, "flops_source": source,
            "flops_per_s": flops / med if med else None,
            "analytic_flops_per_s": analytic / med if med else None}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--out", default="benchmarks/results/train.json", help="JSON output path")
    ap.add_argument("--widths", type=float, nargs="+", default=[0.125, 1.0],
                    help="prior width multipliers (default 0.125 1.0)")
    ap.add_argument("--remat", nargs="+", default=["off", "on"], choices=["off", "on"],
                    help="jax.checkpoint per ADMM iteration (default: both)")
    ap.add_argument("--unroll", nargs="+", default=["auto", "1"],
                    help='scan unroll values: "auto" (CPU: 1, rolled; else T, full) and/or '
                         'integers (default: auto 1; non-auto values only at the variant width)')
    ap.add_argument("--dtypes", nargs="+", default=None, choices=["float32", "bfloat16"],
                    help="compute dtype of the prior (default: float32 bfloat16)")
    ap.add_argument("--variant-width", type=float, default=None,
                    help="width at which unroll/dtype variants run (default: first width)")
    ap.add_argument("--unroll-all-widths", action="store_true",
                    help="run the unroll variants at every width")
    ap.add_argument("--repeats", type=int, default=10, help="timed steps (median reported)")
    ap.add_argument("--repeats-large", type=int, default=2,
                    help="timed steps on CPU for widths >= --large-width (no warm-up step)")
    ap.add_argument("--repeats-rolled", type=int, default=2,
                    help="timed steps on CPU for rolled scans (unroll < T; no warm-up step)")
    ap.add_argument("--time-large-remat", action="store_true",
                    help="on CPU also time remat=on at widths >= --large-width (default: "
                         "compile only, for its memory)")
    ap.add_argument("--memory-only-unroll", type=int, nargs="*", default=[2, 4],
                    help="unroll values compiled (not run) at the variant width with remat=on, "
                         "to show how remat memory depends on unrolling (default: 2 4)")
    ap.add_argument("--large-width", type=float, default=0.5,
                    help="widths from this one up count as large (fewer timed steps on CPU)")
    ap.add_argument("--batch", type=int, default=10, help="global batch size (the paper: 10)")
    ap.add_argument("--iters", type=int, default=8, help="T, unrolled ADMM iterations")
    ap.add_argument("--matmul-n", type=int, default=None,
                    help="matmul reference size (default 2048 CPU / 8192 accelerator)")
    args = ap.parse_args(argv)
    args.remat = [r == "on" for r in args.remat]
    args.unroll = [parse_unroll(u) for u in args.unroll]
    if args.dtypes is None:
        args.dtypes = ["float32", "bfloat16"]

    info = machine_info()
    print(f"# bench_train on {info['backend']} ({info['device_kind']}, {info['cpu_model']}, "
          f"{info['cpu_count']} cores), jax {info['jax']}, load {info['load_average_start']}",
          flush=True)
    refs = {}
    for dt in args.dtypes:
        refs[dt] = matmul_reference(args.matmul_n, jnp.dtype(dt), repeats=5)
        print(f"matmul reference {refs[dt]['n']}² {dt}: {refs[dt]['median_s'] * 1e3:.1f} ms, "
              f"{fmt_flops(refs[dt]['flops_per_s'])}FLOP/s", flush=True)

    mesh = make_mesh()
    all_problems = get_problems()
    problems = tuple(all_problems[n] for n in preset("paper").problems)
    images = shard_batch(jax.random.uniform(jax.random.PRNGKey(1),
                                            (args.batch, 64, 64, 3), jnp.float32), mesh)
    base_key = jax.random.PRNGKey(0)

    configs = build_configs(args)
    print(f"{len(configs)} configurations", flush=True)
    rows = []
    for c in configs:
        t0 = time.perf_counter()
        print(f"-- width {c['width']} {c['dtype']} remat={c['remat']} unroll={c['unroll']} ...",
              flush=True)
        r = run_config(c, args, problems, mesh, images, base_key)
        r["fraction_of_matmul_ref"] = (r["flops_per_s"] / refs[c["dtype"]]["flops_per_s"]
                                       if r["flops_per_s"] else None)
        r["wall_s"] = time.perf_counter() - t0
        rows.append(r)
        ms = f"{r['median_s'] * 1e3:.1f} ms/step" if r["median_s"] else "compile only"
        print(f"   compile {r['lower_s'] + r['compile_s']:.1f} s, {ms} "
              f"({r['repeats']} steps), {fmt_flops(r['flops_per_s'])}FLOP/s "
              f"({r['flops_source']}), mem {fmt_bytes(r['memory']['peak_bytes'])}, "
              f"load {r['load_average_end']}", flush=True)
        gc.collect()

    # remat memory comparison (same width/dtype/unroll)
    remat_cmp = []
    for r in rows:
        if r["remat"]:
            continue
        for q in rows:
            if (q["remat"] and q["width"] == r["width"] and q["dtype"] == r["dtype"]
                    and str(q["unroll"]) == str(r["unroll"])):
                m_off, m_on = r["memory"]["peak_bytes"], q["memory"]["peak_bytes"]
                remat_cmp.append({
                    "width": r["width"], "dtype": r["dtype"], "unroll": r["unroll"],
                    "peak_bytes_remat_off": m_off, "peak_bytes_remat_on": m_on,
                    "ratio_on_over_off": (m_on / m_off) if m_off and m_on else None,
                    "temp_bytes_remat_off": (r["memory"]["compiled"] or {}).get("temp_bytes"),
                    "temp_bytes_remat_on": (q["memory"]["compiled"] or {}).get("temp_bytes"),
                    "time_ratio_on_over_off": (q["median_s"] / r["median_s"]
                                               if q["median_s"] and r["median_s"] else None),
                })
    unroll_cmp = []
    for r in rows:
        if r["unroll"] == "auto" or not r["median_s"]:
            continue
        for q in rows:
            if (q["unroll"] == "auto" and q["median_s"] and q["width"] == r["width"] and q["dtype"] == r["dtype"]
                    and q["remat"] == r["remat"]):
                unroll_cmp.append({
                    "width": r["width"], "dtype": r["dtype"], "remat": r["remat"],
                    "unroll": r["unroll"], "median_s_unroll": r["median_s"],
                    "median_s_auto": q["median_s"],
                    "ratio_unroll_over_auto": r["median_s"] / q["median_s"],
                    "compile_s_unroll": r["lower_s"] + r["compile_s"],
                    "compile_s_auto": q["lower_s"] + q["compile_s"],
                })

    table = [{
        "width": r["width"], "dtype": r["dtype"], "remat": "on" if r["remat"] else "off",
        "unroll": r["unroll"], "params": f"{r['params']:,}",
        "compile": f"{r['lower_s'] + r['compile_s']:.1f}",
        "ms": f"{r['median_s'] * 1e3:.1f}" if r["median_s"] else "(compile only)",
        "n": r["repeats"],
        "flop_s": fmt_flops(r["flops_per_s"]),
        "src": "xla" if r["flops_source"] == "xla_cost_analysis" else "analytic",
        "frac": (f"{100 * r['fraction_of_matmul_ref']:.0f}%"
                 if r["fraction_of_matmul_ref"] else None),
        "mem": fmt_bytes(r["memory"]["peak_bytes"]),
        "load": r["load_average_end"][0] if r["load_average_end"] else None,
    } for r in rows]
    print()
    text = print_table(table, [
        ("width", "width"), ("dtype", "dtype"), ("remat", "remat"), ("unroll", "unroll"),
        ("params", "params"), ("compile s", "compile"), ("median ms/step", "ms"),
        ("steps", "n"), ("FLOP/s", "flop_s"), ("FLOPs from", "src"),
        ("of matmul ref", "frac"), ("peak mem", "mem"), ("load 1m", "load")])
    for c in remat_cmp:
        print(f"remat memory width {c['width']} {c['dtype']} unroll={c['unroll']}: "
              f"off {fmt_bytes(c['peak_bytes_remat_off'])}, on {fmt_bytes(c['peak_bytes_remat_on'])}"
              f" (x{c['ratio_on_over_off']:.2f})" + (
                  f"; time x{c['time_ratio_on_over_off']:.2f}"
                  if c["time_ratio_on_over_off"] else ""))
    for c in unroll_cmp:
        print(f"unroll={c['unroll']} vs auto, width {c['width']} remat={c['remat']}: "
              f"x{c['ratio_unroll_over_auto']:.2f} time")
    payload = {
        "benchmark": "bench_train", "machine": info, "load_average_end": load_average(),
        "settings": {"preset": "paper", "batch": args.batch, "T": args.iters,
                     "problems": list(preset("paper").problems), "per_sample_problems": True,
                     "repeats": args.repeats, "repeats_large": args.repeats_large,
                     "repeats_rolled": args.repeats_rolled, "large_width": args.large_width,
                     "configs": build_configs(args)},
        "matmul_reference": refs, "results": rows, "remat_memory": remat_cmp,
        "unroll_comparison": unroll_cmp, "table": text,
        "notes": [
            "compile s = lower_s + compile_s of the jitted step (tracing + XLA compile).",
            "median ms/step: median of the timed steps, after one untimed step (warmup=1); on "
            "CPU the slow rows (large width, rolled scan) time every step including the first "
            "(warmup=0). '(compile only)' rows were compiled for memory/FLOPs, not run.",
            "FLOPs from 'xla' = compiled.cost_analysis()['flops'] (counts remat recompute); "
            "'analytic' = 3*B*T*16.43 GFLOP*width^2 (useful work only), used for rolled scans "
            "whose while-loop body XLA counts once.",
            "peak mem on CPU = compiled.memory_analysis() temp+argument+output-alias bytes; on "
            "GPU the device's peak_bytes_in_use (process-wide high-water mark, monotone over "
            "the run) and the compiled numbers are both stored.",
        ],
    }
    write_json(args.out, payload)
    return payload


if __name__ == "__main__":
    main()
