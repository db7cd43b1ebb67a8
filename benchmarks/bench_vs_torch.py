"""admm_jax's DU-ADMM training step side by side with a PyTorch peer (eager and torch.compile).

One invocation builds, for every configuration, admm_jax's compiled ``make_train_step`` (the
"paper" training preset: per-sample mixed PID/BI/SI/SR problems, T = 8 tied iterations, MSE on
z_T, clip ±10 then Adam) and the same step in PyTorch (``benchmarks/torch_peer.py``), eager and
under ``torch.compile``, all from the same initial parameters, and then times them
**alternating**: each round runs one step of every implementation, in a rotated order, so a
change of machine load hits all of them alike.

Configurations: the paper's prior at every ``--widths`` × ``--batches``, and (unless
``--no-unet``) the residual U-Net prior with the quick preset's settings (width, batch, loss,
learning rate read from ``admm_jax.reproduce.PRESETS["quick"]``).

Reported per configuration and implementation: warm-up (time to the first finished step from
nothing compiled: admm_jax = trace + XLA compile + first step, its compile part also stored
apart; torch.compile = first call, i.e. dynamo + inductor compile of forward and backward + one
step; eager = first call), then the median, quartiles and min/max of the timed steps, and the
ratios ``torch eager / admm_jax`` and ``torch.compile / admm_jax`` (> 1: admm_jax is faster),
both of the medians and per round (paired). "cores busy" is the process's CPU time (user +
system, all threads, ``os.times``) over the wall time of a timed step, median over steps: how
many cores the step keeps working (at most the machine's core count). The load average
(``os.getloadavg``) is recorded before and after each configuration. As a check that the
three compute the same step, the loss of each one's first step (same weights, same batch) is
printed with its relative difference to admm_jax's.

Differences in what is timed (both small next to the network): admm_jax's step draws its
operators and noise inside the compiled step (a new draw every step, ``fold_in(key, step)``);
the peer reuses admm_jax's step-0 draw, passed in as tensors. The time of that draw alone,
compiled, is reported as ``jax_draw_ms``. torch.compile covers the loss (forward through the T
iterations and, via AOTAutograd, its backward); gradient clipping and Adam run eagerly. The
inductor cache is a fresh temporary folder unless ``--keep-torch-cache`` (a warm cache would
hide the compile time); JAX's persistent compilation cache is off unless configured.

Devices: admm_jax uses JAX's default backend; the peer uses CUDA when
``torch.cuda.is_available()``, else the CPU (GPU steps are synchronised before timing).

Usage::

    .venv/bin/python benchmarks/bench_vs_torch.py --widths 0.25 --batches 2 --no-unet \\
        --out benchmarks/results/cpu_vs_torch_w025_b2.json
    python benchmarks/bench_vs_torch.py --widths 1.0 --batches 10 64   # a GPU
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

IMPLS = ("admm_jax", "torch_eager", "torch_compile")


# --------------------------------------------------------------------------- statistics
def summarize(times: list[float]) -> dict[str, Any]:
    """Median, quartiles (linear interpolation), min and max of a list of seconds."""
    import numpy as np

    if not times:
        return {"n": 0, "median_s": None, "q1_s": None, "q3_s": None, "min_s": None,
                "max_s": None}
    q1, med, q3 = (float(v) for v in np.percentile(times, [25, 50, 75]))
    return {"n": len(times), "median_s": med, "q1_s": q1, "q3_s": q3,
            "min_s": min(times), "max_s": max(times)}


def paired_ratios(num: list[float], den: list[float]) -> dict[str, Any]:
    """Per-round ratios num[r]/den[r] (same round = same load): median, min, max."""
    r = [a / b for a, b in zip(num, den)]
    if not r:
        return {"median": None, "min": None, "max": None}
    return {"median": statistics.median(r), "min": min(r), "max": max(r), "values": r}


# --------------------------------------------------------------------------- configurations
def build_configs(args) -> list[dict[str, Any]]:
    """Paper prior at every width × batch, then the quick preset's U-Net (unless disabled)."""
    configs = [{"name": f"paper w={w:g} b={b}", "architecture": "paper", "width": w,
                "batch": b, "loss": "mse", "learning_rate": 1e-4}
               for w in args.widths for b in args.batches]
    if not args.no_unet:
        from admm_jax.reproduce import PRESETS

        q = PRESETS["quick"]
        configs.append({"name": f"unet (quick) w={q.du_width:g} b={q.du_batch}",
                        "architecture": q.du_architecture, "width": q.du_width,
                        "batch": q.du_batch, "loss": q.du_loss, "learning_rate": q.du_lr})
    return configs


# --------------------------------------------------------------------------- the runners
def torch_device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def make_torch_runner(cfg, params, batch, compile: bool) -> Callable[[], float]:
    """A closure running one peer step (synchronised) and returning its loss."""
    import torch
    import torch_peer as tp

    dev = torch_device()
    net = tp.peer_prior(cfg)
    tp.load_jax_params(net, params)
    net = net.to(dev)
    batch = batch.to(dev)
    step = tp.make_train_step(net, cfg, compile=compile)

    def run() -> float:
        loss = step(batch)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return float(loss)

    return run


def make_jax_runner(cfg, prior_fn, params, problems, images, base_key, mesh
                    ) -> tuple[Callable[[], float], dict[str, float]]:
    """Compile admm_jax's step; returns (run, {"lower_s", "compile_s"}). ``run`` threads the
    (donated) state through the calls and returns the loss of the step it ran."""
    import jax

    from admm_jax.train.optim import make_optimizer
    from admm_jax.train.step import init_train_state, make_train_step

    tx = make_optimizer(cfg)
    holder = {"state": init_train_state(params, tx, mesh)}
    step = make_train_step(prior_fn, tx, problems, cfg, mesh)
    t0 = time.perf_counter()
    lowered = step.lower(holder["state"], images, base_key)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()

    def run() -> float:
        state, metrics = compiled(holder["state"], images, base_key)
        jax.block_until_ready((state, metrics))
        holder["state"] = state
        return float(metrics["loss"])

    return run, {"lower_s": t1 - t0, "compile_s": t2 - t1}


def time_draw(problems, images, key, repeats: int = 5) -> float:
    """Median seconds of admm_jax's compiled per-sample operator + noise draw alone."""
    import jax

    from admm_jax.problems import measure_mixed

    draw = jax.jit(lambda k, x: measure_mixed(problems, k, x))
    jax.block_until_ready(draw(key, images))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(draw(key, images))
        times.append(time.perf_counter() - t)
    return statistics.median(times)


# --------------------------------------------------------------------------- one configuration
def setup_config(c: dict[str, Any], args) -> tuple[dict[str, Callable], dict[str, Any]]:
    """Build the three runners of one configuration from the same weights and batch."""
    import jax
    import jax.numpy as jnp
    import torch_peer as tp

    from admm_jax.presets import training_rho
    from admm_jax.problems import get_problems, measure_mixed
    from admm_jax.train.config import preset
    from admm_jax.train.loop import build_prior
    from admm_jax.train.step import make_mesh, shard_batch

    cfg = preset("paper", architecture=c["architecture"], width=c["width"],
                 batch_size=c["batch"], loss=c["loss"], learning_rate=c["learning_rate"],
                 num_iters=args.iters, seed=args.seed)
    table = get_problems()
    problems = tuple(table[n] for n in cfg.problems)
    mesh = make_mesh()
    images = shard_batch(jax.random.uniform(jax.random.PRNGKey(args.seed + 1),
                                            (c["batch"], 64, 64, 3), jnp.float32), mesh)
    base_key = jax.random.PRNGKey(args.seed)
    prior_fn, params = build_prior(cfg)
    key0 = jax.random.fold_in(base_key, 0)  # the draw of admm_jax's first step
    op, y, index = jax.jit(lambda k, x: measure_mixed(problems, k, x))(key0, images)
    rho = jnp.asarray([training_rho(p) for p in problems], jnp.float32)[index]
    batch = tp.peer_batch_from_jax(op, y, rho, index, images)
    host_params = tp.flatten_jax_params(params)  # before admm_jax's step donates the buffers
    runners: dict[str, Callable] = {}
    extra: dict[str, Any] = {"params": int(sum(v.size for v in host_params.values())),
                             "jax_draw_ms": 1e3 * time_draw(problems, images, key0)}
    if "torch_eager" in args.impls:
        runners["torch_eager"] = make_torch_runner(cfg, host_params, batch, compile=False)
    if "torch_compile" in args.impls:
        runners["torch_compile"] = make_torch_runner(cfg, host_params, batch, compile=True)
    for u in args.jax_unroll:  # variants first: the main runner's step donates ``params``
        copy = jax.tree.map(jnp.copy, params)
        runners[f"admm_jax_unroll{u}"], extra[f"jax_compile_unroll{u}"] = make_jax_runner(
            dataclasses.replace(cfg, unroll=u), prior_fn, copy, problems, images, base_key,
            mesh)
    if "admm_jax" in args.impls:
        runners["admm_jax"], extra["jax_compile"] = make_jax_runner(
            cfg, prior_fn, params, problems, images, base_key, mesh)
    return runners, extra


def _process_cpu_s() -> float:
    """User + system CPU time of this process, all threads (seconds)."""
    t = os.times()
    return t.user + t.system


def run_config(c: dict[str, Any], args) -> dict[str, Any]:
    """Warm up every implementation, then time them alternating; returns the JSON row."""
    from common import load_average, on_accelerator

    load_start = load_average()
    runners, extra = setup_config(c, args)
    names = [n for n in IMPLS if n in runners] + [n for n in runners if n not in IMPLS]
    first, first_loss = {}, {}
    for n in names:  # first call: compile (torch.compile) / allocator warm-up (eager)
        t = time.perf_counter()
        first_loss[n] = runners[n]()
        first[n] = time.perf_counter() - t
        for _ in range(args.warmup):
            runners[n]()
        print(f"   {n}: first step {first[n]:.1f} s, loss {first_loss[n]:.6g}", flush=True)
    large = (not on_accelerator()) and c["width"] >= args.large_width
    repeats = args.repeats_large if large else args.repeats
    times: dict[str, list[float]] = {n: [] for n in names}
    busy: dict[str, list[float]] = {n: [] for n in names}  # CPU seconds per wall second
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            c0, t = _process_cpu_s(), time.perf_counter()
            runners[n]()
            times[n].append(time.perf_counter() - t)
            busy[n].append((_process_cpu_s() - c0) / times[n][-1])
    for n in names:
        jc = extra.get("jax_compile" + n[len("admm_jax"):]) if n.startswith("admm_jax") else None
        if jc:
            first[n] += jc["lower_s"] + jc["compile_s"]
    ref = first_loss.get("admm_jax")
    impls = {n: {**summarize(times[n]), "times_s": times[n], "warmup_s": first[n],
                 "cores_busy": statistics.median(busy[n]),
                 "first_step_loss": first_loss[n],
                 "loss_rel_diff_vs_jax": (abs(first_loss[n] - ref) / abs(ref)
                                          if ref else None)} for n in names}
    ratios = {}
    for n in names:
        if n != "admm_jax" and "admm_jax" in impls:
            ratios[f"{n}/admm_jax"] = {
                "of_medians": impls[n]["median_s"] / impls["admm_jax"]["median_s"],
                "paired": paired_ratios(times[n], times["admm_jax"])}
    return {**c, "T": args.iters, "repeats": repeats, "extra_warmup": args.warmup, **extra,
            "impls": impls, "ratios": ratios, "load_average_start": load_start,
            "load_average_end": load_average()}


# --------------------------------------------------------------------------- output
def table_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One printable row per (configuration, implementation)."""
    out = []
    ms = lambda s: f"{1e3 * s:.1f}" if s is not None else None  # noqa: E731
    for r in rows:
        for n, v in r["impls"].items():
            ratio = r["ratios"].get(f"{n}/admm_jax")
            out.append({
                "config": r["name"], "impl": n, "warmup": f"{v['warmup_s']:.1f}",
                "median": ms(v["median_s"]), "iqr": f"{ms(v['q1_s'])}–{ms(v['q3_s'])}",
                "range": f"{ms(v['min_s'])}–{ms(v['max_s'])}", "n": v["n"],
                "cores busy": (f"{v['cores_busy']:.2f}" if v.get("cores_busy") is not None
                               else None),
                "ratio": (f"{ratio['of_medians']:.2f} (paired {ratio['paired']['min']:.2f}–"
                          f"{ratio['paired']['max']:.2f})") if ratio else "1",
                "loss": (f"{v['loss_rel_diff_vs_jax']:.1e}"
                         if v["loss_rel_diff_vs_jax"] is not None else None),
                "load": f"{r['load_average_start'][0]}→{r['load_average_end'][0]}"
                        if r["load_average_start"] and r["load_average_end"] else None,
            })
    return out


def headline(rows: list[dict[str, Any]]) -> list[str]:
    """The ratios, one line per configuration (> 1: admm_jax faster)."""
    lines = []
    for r in rows:
        parts = [f"{k.split('/')[0]} / admm_jax = {v['of_medians']:.2f}x"
                 for k, v in r["ratios"].items()]
        if parts:
            lines.append(f"{r['name']}: " + ", ".join(parts) + " (> 1: admm_jax faster)")
    return lines


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--widths", type=float, nargs="+", default=[0.125, 0.25, 1.0],
                    help="widths of the paper's prior (default 0.125 0.25 1.0)")
    ap.add_argument("--batches", type=int, nargs="+", default=[2, 10],
                    help="batch sizes of the paper's prior (default 2 10)")
    ap.add_argument("--no-unet", action="store_true",
                    help="skip the U-Net prior at the quick preset's settings")
    ap.add_argument("--impls", nargs="+", default=list(IMPLS), choices=IMPLS,
                    help="implementations to run (default: all three)")
    ap.add_argument("--jax-unroll", type=int, nargs="*", default=[],
                    help="extra admm_jax variants with these scan unroll values (the main "
                         "admm_jax row uses the default unroll='auto'); reported as "
                         "admm_jax_unroll<u>, with ratios to admm_jax")
    ap.add_argument("--iters", type=int, default=8, help="T, unrolled iterations (default 8)")
    ap.add_argument("--repeats", type=int, default=10,
                    help="timed rounds (one step of each implementation per round)")
    ap.add_argument("--repeats-large", type=int, default=2,
                    help="timed rounds on CPU for widths >= --large-width (default 2)")
    ap.add_argument("--large-width", type=float, default=0.5,
                    help="widths from this one up count as large on CPU (default 0.5)")
    ap.add_argument("--warmup", type=int, default=1,
                    help="untimed steps of each implementation after its first (default 1)")
    ap.add_argument("--torch-threads", type=int, default=None,
                    help="torch.set_num_threads (default: torch's own choice)")
    ap.add_argument("--keep-torch-cache", action="store_true",
                    help="use inductor's usual cache folder (default: a fresh temporary one, "
                         "so torch.compile's compile time is a cold one)")
    ap.add_argument("--seed", type=int, default=0, help="weights / images / operators seed")
    ap.add_argument("--out", default="benchmarks/results/vs_torch.json",
                    help="JSON output path")
    return ap.parse_args(argv)


def main(argv=None) -> dict[str, Any]:
    args = parse_args(argv)
    if not args.keep_torch_cache:  # before torch is imported
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor_bench_")
    try:
        import torch
    except ImportError:
        sys.exit("bench_vs_torch.py needs torch: pip install -e '.[bench]' (on a CPU machine "
                 "the CPU build, e.g. pip install torch==2.13.0)")
    from common import machine_info, print_table, write_json

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    info = machine_info()
    info.update({"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                 "torch_device": str(torch_device()),
                 "inductor_cache_dir": os.environ.get("TORCHINDUCTOR_CACHE_DIR")})
    print(f"# bench_vs_torch: jax {info['jax']} on {info['backend']}, torch {info['torch']} on "
          f"{info['torch_device']} ({info['torch_threads']} threads), {info['cpu_model']}, "
          f"{info['cpu_count']} cores, load {info['load_average_start']}", flush=True)
    rows = []
    configs = build_configs(args)
    for i, c in enumerate(configs):
        print(f"-- {c['name']} (T={args.iters}, loss {c['loss']}) ...", flush=True)
        rows.append(run_config(c, args))
        for line in headline(rows[-1:]):
            print("   " + line, flush=True)
        if i + 1 < len(configs):
            # what is finished survives a run stopped at a time limit (a lent GPU's call)
            write_json(args.out, {"benchmark": "bench_vs_torch", "machine": info,
                                  "settings": vars(args), "results": rows,
                                  "partial": f"{i + 1} of {len(configs)} configurations"})
        gc.collect()
    print()
    text = print_table(table_rows(rows), [
        ("config", "config"), ("impl", "impl"), ("warm-up s", "warmup"),
        ("median ms", "median"), ("IQR ms", "iqr"), ("min–max ms", "range"), ("steps", "n"),
        ("/ admm_jax", "ratio"), ("cores busy", "cores busy"), ("loss diff", "loss"),
        ("load 1m", "load")])
    print()
    lines = headline(rows)
    print("\n".join(lines))
    payload = {"benchmark": "bench_vs_torch", "machine": info, "settings": vars(args),
               "results": rows, "table": text, "headline": lines,
               "notes": [
                   "warm-up s: time to the first finished step; admm_jax = lower + compile + "
                   "first step (lower/compile also under jax_compile), torch = first call "
                   "(torch.compile: dynamo + inductor compile + one step).",
                   "timed steps alternate between implementations (rotated order per round); "
                   "'/ admm_jax' = ratio of medians (> 1: admm_jax faster), paired = per-round "
                   "ratios min-max.",
                   "loss diff: |first-step loss - admm_jax's| / |admm_jax's| (same weights, "
                   "same batch).",
                   "admm_jax draws operators inside its step (jax_draw_ms alone); the peer "
                   "reuses admm_jax's step-0 draw."]}
    write_json(args.out, payload)
    return payload


if __name__ == "__main__":
    main()
