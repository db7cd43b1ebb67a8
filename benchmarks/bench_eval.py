"""Evaluation throughput: the Table 1 evaluation timed end to end, per (problem, method) block.

Runs :func:`admm_jax.evaluate.run_evaluation` exactly as ``admm-jax evaluate`` does (paper
protocol, compiled batches, each sample stopping on its own) and records, besides the total wall
time, each block's compile time and run time (the sum of its compiled batch calls, which
includes drawing the operators and noise inside the compiled program), the iterations run, and
the load average. Image loading (decoding and caching the data set) is timed apart.

    python benchmarks/bench_eval.py --data ../shared/data/utkface \\
        --du-admm results/weights/utkface_du_admm_unet_w0.25 \\
        --onenet results/weights/utkface_onenet_w0.0625_4k --n-images 500 \\
        --problems pid,bi,si,sr,cs_dct --out benchmarks/results/cpu_eval.json

The evaluation's own outputs (tables, figures) go to ``--eval-out`` (a fresh folder each run).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_average, machine_info, print_table, write_json  # noqa: E402


def block_rows(eval_out: Path, methods: list, problems: tuple[str, ...], n: int) -> list[dict]:
    """Per (problem, method): compile s, run s (sum of batch calls), images/s, mean iterations,
    mean PSNR, read from the evaluation's saved blocks."""
    rows = []
    for pname in problems:
        for m_index, method in enumerate(methods):
            block = dict(np.load(eval_out / "partial" / f"{pname}__{m_index}.npz"))
            run_s = float(block["seconds"].sum())
            rows.append({"problem": pname, "method": method.name, "n_images": n,
                         "compile_s": round(float(block["compile_s"]), 2),
                         "run_s": round(run_s, 2), "images_per_s": round(n / run_s, 1),
                         "iters_mean": round(float(block["iterations"].mean()), 2),
                         "psnr_mean": round(float(block["psnr"].mean()), 2)})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="data source (folder, .npz, 'bundled')")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--du-admm", default=None, help="trained prior folder")
    ap.add_argument("--onenet", default=None, help="pretrained OneNet projector folder")
    ap.add_argument("--no-wavelet", action="store_true")
    ap.add_argument("--n-images", type=int, default=500)
    ap.add_argument("--problems", default="pid,bi,si,sr")
    ap.add_argument("--preset", default="paper", choices=["paper", "released", "corrected"])
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--eval-out", default=None,
                    help="folder for the evaluation's outputs (default: a temporary folder)")
    ap.add_argument("--out", default="benchmarks/results/cpu_eval.json")
    args = ap.parse_args(argv)

    from admm_jax.data import load_source
    from admm_jax.evaluate import EvalConfig, methods_from_weights, run_evaluation

    problems = tuple(args.problems.split(","))
    cfg = EvalConfig(problems=problems, preset=args.preset, batch_size=args.batch)
    methods = methods_from_weights(args.du_admm, args.onenet, not args.no_wavelet)
    if not methods:
        ap.error("nothing to evaluate: give --du-admm and/or --onenet, or drop --no-wavelet")
    eval_out = Path(args.eval_out or tempfile.mkdtemp(prefix="bench_eval_"))
    if eval_out.exists() and any(eval_out.iterdir()):
        ap.error(f"--eval-out {eval_out} is not empty")
    load_start = load_average()
    t0 = time.perf_counter()
    images = load_source(args.data, "test", cache_dir=args.cache_dir, progress=False)
    images = images[: args.n_images]
    load_s = time.perf_counter() - t0
    print(f"{len(images)} test images loaded in {load_s:.1f} s; evaluating "
          f"{[m.name for m in methods]} on {list(problems)}", flush=True)
    t0 = time.perf_counter()
    run_evaluation(images, methods, cfg, eval_out, progress=False)
    eval_s = time.perf_counter() - t0
    rows = block_rows(eval_out, methods, problems, len(images))
    print_table(rows, [(k, k) for k in rows[0]])
    compile_total = sum(r["compile_s"] for r in rows)
    run_total = sum(r["run_s"] for r in rows)
    print(f"\nevaluation wall {eval_s:.1f} s (compile {compile_total:.1f} s, compiled runs "
          f"{run_total:.1f} s, rest: tables, figures, bookkeeping); images loaded in "
          f"{load_s:.1f} s; load average {load_start} -> {load_average()}", flush=True)
    write_json(args.out, {
        "machine": machine_info(),
        "n_images": len(images), "problems": list(problems), "preset": args.preset,
        "batch": args.batch, "methods": [m.name for m in methods],
        "eval_wall_s": round(eval_s, 2), "image_load_s": round(load_s, 2),
        "compile_total_s": round(compile_total, 2), "run_total_s": round(run_total, 2),
        "load_average_start": load_start, "load_average_end": load_average(), "blocks": rows})
    if args.eval_out is None:
        shutil.rmtree(eval_out, ignore_errors=True)
    else:
        print(f"evaluation outputs in {eval_out.absolute()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
