"""Copy trained weights into a folder for committing, optionally stored in bfloat16.

    python experiments/export_weights.py runs/faces/params results/weights/faces_w1 --dtype bfloat16

Works for a DU-ADMM prior (``admm-jax train`` → ``<run>/params``) and a OneNet projector
(``admm-jax pretrain-onenet`` → ``<run>/params``); the result loads with ``admm-jax evaluate
--du-admm`` / ``--onenet`` like the original. bf16 storage halves the size (the full-width
prior: ~45 MB instead of ~90 MB); the weights are cast back to float32 when loaded. The run's
``metrics.csv``, ``validation.jsonl`` and ``provenance.jsonl`` (training log, PSNR against steps,
the command that trained it) are copied along when found next to ``params/``. Refuses to
replace an existing destination unless ``--overwrite``.
"""

import argparse
import json
import shutil
import sys
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", help="a params/ folder, or a DU-ADMM run folder (unfinished runs: "
                                "the latest checkpoint)")
    ap.add_argument("dst", help="destination folder")
    ap.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"],
                    help="storage dtype (default bfloat16, half the size; float32 keeps the "
                         "weights bit-exact, so tables computed from the run stay reproducible)")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing destination")
    args = ap.parse_args(argv)

    from admm_jax.train.checkpoint import save_weights

    src, dst = Path(args.src), Path(args.dst)
    if dst.exists() and not args.overwrite:
        print(f"error: {dst} exists (use --overwrite)", file=sys.stderr)
        return 2
    cfg = json.loads((src / "config.json").read_text())
    if "residual" in cfg:  # a DU-ADMM prior
        from admm_jax.train import load_prior

        _, params, tcfg = load_prior(src)
        config_json = tcfg.to_json()
        extra = []
    else:
        from admm_jax.baselines import load_projector

        _, params, _ = load_projector(src)
        config_json = (src / "config.json").read_text()
        extra = [p for p in src.iterdir() if p.name not in ("state", "config.json",
                                                            "weights.json")]
    run_dir = src if (src / "checkpoints").is_dir() else src.parent
    extra += [run_dir / name for name in ("metrics.csv", "validation.jsonl", "provenance.jsonl")
              if (run_dir / name).exists()]

    def copy_extra(folder: Path) -> None:  # VBN statistics, reference batch, training logs
        for p in extra:
            (shutil.copytree if p.is_dir() else shutil.copy2)(p, folder / p.name)

    try:
        out = save_weights(dst, params, config_json, storage_dtype=args.dtype, extra=copy_extra)
    except FileExistsError as exc:  # an existing dst that is not a weights folder
        print(f"error: {exc}", file=sys.stderr)
        return 2
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"weights ({args.dtype}) written to {out} ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
