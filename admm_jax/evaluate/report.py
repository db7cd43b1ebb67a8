"""Tables and figures of an evaluation (Table 1, Table 2 grid, convergence curves)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

TABLE_KEYS = ("method", "problem", "psnr_mean", "psnr_std", "iters_mean", "iters_std",
              "n_images")
PROBLEM_LABELS = {"pid": "PID", "bi": "BI", "si": "SI", "sr": "SR", "cs": "CS",
                  "cs_dct": "CS-DCT", "deblur": "Deblur"}


def summarize(rows: list[dict]) -> list[dict]:
    """Per (method, problem): PSNR and iteration mean ± population std (ddof = 0)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["problem"]), []).append(r)
    records = []
    for (method, problem), rs in groups.items():
        p = np.array([r["psnr"] for r in rs], np.float64)
        it = np.array([r["iterations"] for r in rs], np.float64)
        records.append({"method": method, "problem": problem,
                        "psnr_mean": float(p.mean()), "psnr_std": float(p.std()),
                        "iters_mean": float(it.mean()), "iters_std": float(it.std()),
                        "n_images": len(rs),
                        "seconds_per_image": float(np.mean([r["seconds"] for r in rs]))})
    return records


def markdown_table(records: list[dict]) -> str:
    """Table 1 layout: one row per method, PSNR and Iter columns per problem."""
    methods = list(dict.fromkeys(r["method"] for r in records))
    problems = list(dict.fromkeys(r["problem"] for r in records))
    by = {(r["method"], r["problem"]): r for r in records}
    head = "| method | " + " | ".join(
        f"{PROBLEM_LABELS.get(p, p)} PSNR | {PROBLEM_LABELS.get(p, p)} Iter" for p in problems)
    sep = "|---|" + "---|---|" * len(problems)
    lines = [head + " |", sep]
    for m in methods:
        cells = []
        for p in problems:
            r = by.get((m, p))
            if r is None:
                cells += ["–", "–"]
            else:
                cells += [f"{r['psnr_mean']:.2f} (±{r['psnr_std']:.1f})",
                          f"{r['iters_mean']:.2f} (±{r['iters_std']:.1f})"]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    n = {r["n_images"] for r in records}
    lines.append("")
    lines.append(f"PSNR in dB (mean ± population std over {', '.join(map(str, sorted(n)))} "
                 f"images); Iter = ADMM iterations executed.")
    return "\n".join(lines)


def write_table(records: list[dict], out: Path) -> None:
    (out / "table.md").write_text(markdown_table(records) + "\n")
    with open(out / "table.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(records[0]))
        w.writeheader()
        w.writerows(records)
    (out / "table.json").write_text(json.dumps(records, indent=2))


def write_convergence_plot(curves: dict[str, np.ndarray], methods: list[str],
                           problems: list[str], path: Path) -> None:
    """PSNR and RMS(x − z) against iteration, per problem (columns) and method (lines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(problems), figsize=(3.6 * len(problems), 6.4),
                             squeeze=False)
    for j, p in enumerate(problems):
        for m in methods:
            for i, key in enumerate(("psnr", "rms_xz")):
                c = curves.get(f"{m}|{p}|{key}")
                if c is None:
                    continue
                axes[i, j].plot(np.arange(1, len(c) + 1), c, label=m)
        axes[0, j].set_title(PROBLEM_LABELS.get(p, p))
        axes[0, j].set_xlabel("iteration")
        axes[1, j].set_xlabel("iteration")
        axes[1, j].set_yscale("log")
        for ax in axes[:, j]:
            ax.set_xscale("log")
            ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("mean PSNR of z (dB)")
    axes[1, 0].set_ylabel("mean RMS(x − z)")
    axes[0, -1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_table2(examples: dict[str, dict[str, Any]], methods: list[str], problems: list[str],
                 path: Path) -> None:
    """A picture grid like the paper's Table 2.

    Columns: for each problem, the first few test images. Rows: ground truth, the input
    (A⁺y, the ADMM start), then each method's z with its PSNR (bottom right) and iteration count
    (top right).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_img = len(examples[problems[0]]["truth"])
    rows = ["truth", "input"] + methods
    cols = [(p, k) for p in problems for k in range(n_img)]
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(1.25 * len(cols), 1.3 * len(rows)),
                             squeeze=False)
    for c, (p, k) in enumerate(cols):
        ex = examples[p]
        for r, name in enumerate(rows):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if name == "truth":
                img, ps, it = ex["truth"][k], None, None
            elif name == "input":
                img, ps, it = ex["input"][k], ex["input_psnr"][k], None
            elif name in ex:
                img, ps, it = ex[name]["z"][k], ex[name]["psnr"][k], ex[name]["iterations"][k]
            else:
                ax.axis("off")
                continue
            ax.imshow(np.clip(img, 0, 1), interpolation="nearest")
            if ps is not None:
                ax.text(0.98, 0.02, f"{ps:.2f}", color="yellow", fontsize=6.5, ha="right",
                        va="bottom", transform=ax.transAxes,
                        bbox=dict(facecolor="black", alpha=0.5, pad=0.5, lw=0))
            if it is not None:
                ax.text(0.98, 0.98, f"{int(it)}", color="white", fontsize=6.5, ha="right",
                        va="top", transform=ax.transAxes,
                        bbox=dict(facecolor="black", alpha=0.5, pad=0.5, lw=0))
            if r == 0:
                ax.set_title(PROBLEM_LABELS.get(p, p), fontsize=8)
            if c == 0:
                ax.set_ylabel(name if name != "input" else "input A⁺y", fontsize=7)
    fig.tight_layout(pad=0.2)
    fig.savefig(path, dpi=130)
    plt.close(fig)


def read_per_image_csv(path: Path) -> list[dict]:
    """Per-image rows back from ``per_image.csv`` (numbers converted)."""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["psnr"] = float(r["psnr"])
        r["iterations"] = int(r["iterations"])
        r["seconds"] = float(r["seconds"])
        r["image"] = int(r["image"])
    return rows
