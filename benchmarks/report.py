"""Render the JSON results of bench_core.py / bench_train.py as Markdown tables.

Usage::

    .venv/bin/python benchmarks/report.py benchmarks/results/cpu_core.json \\
        benchmarks/results/cpu_train.json

Every number printed comes from the JSON files given (BENCHMARKS.md is built from this output).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import fmt_bytes, fmt_flops  # noqa: E402


def md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join("-" if c is None else str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def machine_line(d: dict) -> str:
    m = d["machine"]
    return (f"{m['date']} · {m['backend']} ({m['device_kind']}) · {m['cpu_model']}, "
            f"{m['cpu_count']} cores · {m['platform']} · jax {m['jax']} / flax {m['flax']} · "
            f"load average (1/5/15 min) at start {m['load_average_start']}, at end "
            f"{d.get('load_average_end')} · `{m['command']}`")


def core(d: dict) -> str:
    ref = d["matmul_reference"]
    lines = [f"Machine: {machine_line(d)}", "",
             f"Matmul reference ({ref['n']}² {ref['dtype']}, same run): "
             f"{ref['median_s'] * 1e3:.1f} ms = {fmt_flops(ref['flops_per_s'])}FLOP/s.", ""]
    rows = []
    for r in d["results"]:
        name = r["name"] + (f", unroll={r['unroll']}" if "unroll" in r else "")
        rows.append([r["group"], name, f"{r['lower_s'] + r['compile_s']:.2f}",
                     f"{r['median_s'] * 1e3:.3f}", f"{r['min_s'] * 1e3:.3f}",
                     fmt_flops(r["flops"]), fmt_flops(r["flops_per_s"]),
                     fmt_bytes(r["memory"]["peak_bytes"]),
                     fmt_bytes(r["operator_bytes"]) if "operator_bytes" in r else None])
    lines.append(md_table(["benchmark", "case (batch {})".format(d["settings"]["batch"]),
                           "compile s", "median ms", "min ms", "FLOPs (XLA)", "FLOP/s",
                           "memory", "operator arrays"], rows))
    lines.append("")
    lines.append("Rolled (`unroll=1`) / unrolled (`unroll=T`) median time: " + ", ".join(
        f"{k} **{v:.2f}×**" for k, v in d["rolled_over_unrolled"].items()) + ".")
    return "\n".join(lines)


def train(d: dict) -> str:
    lines = [f"Machine: {machine_line(d)}", ""]
    for dt, ref in d["matmul_reference"].items():
        lines.append(f"Matmul reference ({ref['n']}² {dt}, same run): "
                     f"{ref['median_s'] * 1e3:.1f} ms = {fmt_flops(ref['flops_per_s'])}FLOP/s.")
    lines.append("")
    rows = []
    for r in d["results"]:
        ms = f"{r['median_s'] * 1e3:.1f}" if r["median_s"] else "compile only"
        frac = (f"{100 * r['fraction_of_matmul_ref']:.0f}%"
                if r.get("fraction_of_matmul_ref") else None)
        src = "XLA" if r["flops_source"] == "xla_cost_analysis" else "analytic"
        load = r["load_average_end"][0] if r.get("load_average_end") else None
        rows.append([r["width"], f"{r['params']:,}", r["dtype"], "on" if r["remat"] else "off",
                     r["unroll"], f"{r['lower_s'] + r['compile_s']:.1f}", ms,
                     r["repeats"], fmt_flops(r["flops"]), src,
                     fmt_flops(r["flops_per_s"]), frac,
                     fmt_bytes(r["memory"]["peak_bytes"]), load])
    lines.append(md_table(["width", "params", "dtype", "remat", "unroll", "compile s",
                           "median ms/step", "steps", "FLOPs/step", "FLOPs from",
                           "FLOP/s", "of matmul ref", "peak memory", "load 1m"], rows))
    if d.get("remat_memory"):
        lines += ["", "Remat (per-iteration `jax.checkpoint`) memory, same width/dtype/unroll:",
                  ""]
        rows = [[c["width"], c["dtype"], c["unroll"], fmt_bytes(c["peak_bytes_remat_off"]),
                 fmt_bytes(c["peak_bytes_remat_on"]),
                 f"{c['ratio_on_over_off']:.2f}" if c["ratio_on_over_off"] else None,
                 f"{c['time_ratio_on_over_off']:.2f}" if c["time_ratio_on_over_off"] else None]
                for c in d["remat_memory"]]
        lines.append(md_table(["width", "dtype", "unroll", "remat off", "remat on",
                               "memory on/off", "time on/off"], rows))
    if d.get("unroll_comparison"):
        lines += ["", "Rolled vs fully unrolled scan (same width/dtype/remat):", ""]
        rows = [[c["width"], c["dtype"], "on" if c["remat"] else "off", c["unroll"],
                 f"{c['median_s_unroll'] * 1e3:.0f}", f"{c['median_s_auto'] * 1e3:.0f}",
                 f"**{c['ratio_unroll_over_auto']:.1f}×**",
                 f"{c['compile_s_unroll']:.1f} / {c['compile_s_auto']:.1f}"]
                for c in d["unroll_comparison"]]
        lines.append(md_table(["width", "dtype", "remat", "unroll", "ms/step (unroll)",
                               "ms/step (auto = T)", "slowdown", "compile s (unroll / auto)"],
                              rows))
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", help="JSON files written by bench_core / bench_train")
    args = ap.parse_args(argv)
    for f in args.files:
        d = json.loads(Path(f).read_text())
        print(f"### `{f}`\n")
        print(core(d) if d["benchmark"] == "bench_core" else train(d))
        print()


if __name__ == "__main__":
    main()
