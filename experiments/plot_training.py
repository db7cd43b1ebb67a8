"""Plot validation PSNR per problem against training steps from a run's validation.jsonl.

    python experiments/plot_training.py runs/utk_du_res --out results/utkface_du_admm_psnr_vs_steps.png
"""

import argparse
import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="training output folder (holds validation.jsonl)")
    ap.add_argument("--out", required=True, help="PNG path")
    args = ap.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = Path(args.run)
    log = run / "validation.jsonl"
    if not log.is_file():
        print(f"error: run: {str(run)!r} has no validation.jsonl (pass an 'admm-jax train' "
              "output folder or a weights folder that carries its log)", file=sys.stderr)
        return 2
    recs = [json.loads(l) for l in log.read_text().splitlines()]
    # the validation runs the trained T (config.json's num_iters: 32 for the long-run stages)
    config = run / "config.json"
    num_iters = json.loads(config.read_text()).get("num_iters", 8) if config.is_file() else 8
    start = next((r for r in recs if r.get("kind") == "pinv_start"), None)
    runs = [r for r in recs if r.get("kind") == "du_admm"]
    if not runs:
        kinds = sorted({str(r.get("kind")) for r in recs})
        print(f"error: run: {str(run)!r} holds no DU-ADMM validation records (kinds found: "
              f"{kinds}); this plot is for 'admm-jax train' runs of the unrolled objective",
              file=sys.stderr)
        return 2
    problems = [k for k in runs[0] if k not in ("step", "kind")]
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, p in enumerate(problems):
        line, = ax.plot([r["step"] for r in runs], [r[p] for r in runs], "o-", label=p.upper())
        if start:
            ax.axhline(start[p], color=line.get_color(), ls=":", lw=1)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"validation PSNR (dB), T = {num_iters}")
    ax.set_title("DU-ADMM validation PSNR (dotted: pinv start)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {Path(args.out).absolute()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
