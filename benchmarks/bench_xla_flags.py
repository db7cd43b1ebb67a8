"""XLA:CPU flags tried on the DU-ADMM training step: each configuration in its own process.

XLA reads ``XLA_FLAGS`` once per process, so every flag set runs ``bench_train.py`` (paper
prior, width 0.25, batch 2, T = 8, float32, full unroll, remat off) in a fresh subprocess; the
flag sets are run in ``--rounds`` rotated rounds so that a change of machine load hits all of
them alike. Reported per flag set: median ms/step over rounds (each round itself a median of
``--repeats`` steps), compile seconds, and the ratio to the default configuration.

    python benchmarks/bench_xla_flags.py --rounds 2 --out benchmarks/results/cpu_xla_flags.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_average, machine_info, print_table, write_json  # noqa: E402

FLAG_SETS = {
    "default": "",
    "no ynn fusions": "--xla_cpu_experimental_ynn_fusion_type=",
    "xnnpack": "--xla_cpu_use_xnnpack=true",
    "xnn conv fusion": "--xla_cpu_experimental_xnn_fusion_type="
                       "LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION",
    "ynn conv only": "--xla_cpu_experimental_ynn_fusion_type="
                     "LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION",
    "ynn all kinds": "--xla_cpu_experimental_ynn_fusion_type="
                     "LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION,LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,"
                     "LIBRARY_FUSION_TYPE_ELTWISE,LIBRARY_FUSION_TYPE_REDUCE",
    "xnn graph greedy": "--xla_cpu_experimental_xnn_graph_fusion_mode="
                        "XNN_GRAPH_FUSION_MODE_GREEDY",
    "fast math": "--xla_cpu_enable_fast_math=true",
    "single-thread eigen": "--xla_cpu_multi_thread_eigen=false",
    # the batch split over two CPU "devices" (the step's mesh takes every device), one
    # executable per device running concurrently: does it keep both cores busier?
    "2 host devices": "--xla_force_host_platform_device_count=2",
    # oneDNN (torch's CPU convolution library) is compiled into jaxlib 0.10.2; asked for
    # convolutions, with YNNPACK's fusions off so that it is not pre-empted
    "onednn conv": "--xla_cpu_experimental_onednn_fusion_type="
                   "LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION "
                   "--xla_cpu_experimental_ynn_fusion_type=",
    # XLA's older oneDNN rewrites (Intel's contribution; tried on an Intel Xeon with AMX)
    "use onednn": "--xla_cpu_use_onednn=true",
    "onednn custom call": "--xla_cpu_experimental_onednn_custom_call=true",
    # XLA:CPU's previous (non-MLIR) elementwise fusion emitters: compile 7.6 -> 4.9 s on a tiny
    # DU-ADMM value-and-gradient program; does the full step gain as well?
    "legacy fusion emitters": "--xla_cpu_use_fusion_emitters=false",
    # XLA:CPU emits 256-bit vectors by default even where AVX-512 is available
    "512-bit vectors": "--xla_cpu_prefer_vector_width=512",
    # the scheduler that orders independent ops for concurrency (admm_jax keeps ~1.7 of 2
    # cores busy where torch keeps 2)
    "concurrency scheduler": "--xla_cpu_enable_concurrency_optimized_scheduler=true",
}


def run_one(flags: str, repeats: int, batch: int) -> dict:
    """One bench_train.py run under ``flags``: its JSON row, or the error."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "row.json"
        env = dict(os.environ, XLA_FLAGS=flags)
        cmd = [sys.executable, str(Path(__file__).parent / "bench_train.py"), "--widths", "0.25",
               "--batch", str(batch), "--remat", "off", "--unroll", "auto", "--dtypes",
               "float32", "--repeats", str(repeats), "--matmul-n", "1024", "--out", str(out)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0 or not out.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            return {"error": f"exit {proc.returncode}: {tail[0][:200]}"}
        row = json.loads(out.read_text())["results"][0]
        return {"median_s": row["median_s"], "compile_s": row["lower_s"] + row["compile_s"],
                "load": load_average()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--only", default=None, help="comma list of flag-set names")
    ap.add_argument("--out", default="benchmarks/results/cpu_xla_flags.json")
    args = ap.parse_args(argv)
    names = list(FLAG_SETS) if args.only is None else args.only.split(",")
    runs: dict[str, list[dict]] = {n: [] for n in names}
    start_load = load_average()
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            res = run_one(FLAG_SETS[name], args.repeats, args.batch)
            runs[name].append(res)
            shown = (f"{res['median_s'] * 1e3:.1f} ms/step, compile {res['compile_s']:.1f} s"
                     if "error" not in res else res["error"])
            print(f"round {r + 1} {name:20s} {shown}", flush=True)
    rows = []
    base = None
    for name in names:
        ok = [x for x in runs[name] if "error" not in x]
        med = statistics.median(x["median_s"] for x in ok) if ok else None
        if name == "default":
            base = med
        rows.append({"flags": name, "XLA_FLAGS": FLAG_SETS[name],
                     "median_ms": round(med * 1e3, 1) if med else None,
                     "per_round_ms": [round(x["median_s"] * 1e3, 1) if "error" not in x
                                      else None for x in runs[name]],
                     "compile_s": round(statistics.median(x["compile_s"] for x in ok), 1)
                     if ok else None,
                     "error": next((x["error"] for x in runs[name] if "error" in x), None)})
    for row in rows:
        row["vs_default"] = (round(row["median_ms"] / (base * 1e3), 3)
                             if row["median_ms"] and base else None)
    print_table(rows, [(k, k) for k in ("flags", "median_ms", "per_round_ms", "vs_default",
                                        "compile_s", "error")])
    write_json(args.out, {"machine": machine_info(), "rounds": args.rounds,
                          "repeats": args.repeats, "batch": args.batch,
                          "step": "paper prior w=0.25, T=8, float32, unroll full, remat off",
                          "load_average_start": start_load, "load_average_end": load_average(),
                          "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
