"""The main job: train DU-ADMM, pretrain OneNet, evaluate them with wavelet-ℓ1 and the shipped
pretrained prior, print Table 1.

``admm-jax reproduce --preset quick`` runs on a 2-core CPU with no network in about a quarter of
an hour: small-width networks, each trained for the same 4 minutes of wall-clock time on the
offline bundled photos, and a Table 1 over a few dozen held-out crops. ``--preset paper`` runs the paper's protocol (full
width, 50,000 steps each, 500 test images) and expects a GPU. ``--data DIR`` uses any folder.

Output folder::

    du_admm/       training run of the DU-ADMM prior (see admm_jax.train.loop)
    onenet/        pretraining run of the OneNet projector
    evaluation/    table.{md,csv,json}, per_image.csv, table2.png, convergence.png
    summary.json   settings, steps reached, timings, the table caption and the records

Python: ``admm_jax.reproduce.run(preset="quick", data="bundled", out="outputs/reproduce")``.

Each stage that already finished is skipped on ``--resume``; an interrupted training stage
continues from its last checkpoint, and an interrupted evaluation keeps its finished
(problem, method) blocks.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

from admm_jax.problems import PAPER_PROBLEMS


@dataclass(frozen=True)
class ReproducePreset:
    """Settings of the main job. ``train_budget_s``: wall-clock seconds of training given to
    EACH learned method (DU-ADMM and OneNet), compilation and validation included; their step
    counts are then caps. An interrupted stage resumed with ``--resume`` gets what is left of
    its budget (the seconds recorded with its last checkpoint), not the whole budget again.
    ``None``: train for the step counts."""

    du_architecture: str  # "paper" or "unet" (see admm_jax.train.config)
    du_width: float
    du_loss: str  # "mse" (paper) or "psnr"
    du_steps: int
    du_batch: int
    du_lr: float
    onenet_width: float
    onenet_steps: int
    onenet_batch: int
    n_train: int | None
    n_test: int
    eval_batch: int
    eval_preset: str
    checkpoint_every: int
    val_every: int
    train_budget_s: float | None = None


PRESETS = {
    # CPU-sized: every number here is chosen to fit ~15 minutes on 2 cores (see README).
    # The paper's bottleneck prior needs tens of thousands of steps before it passes its input
    # through faithfully, and at CPU widths it stays below its own start on super-resolution
    # (RESULTS.md §4). The quick preset therefore trains a small residual U-Net prior
    # (167k parameters, not the paper's network) with the per-sample PSNR loss (not the paper's
    # MSE) and the paper's Adam betas; the unrolled training on mixed problems is the paper's.
    # The method is labelled "DU-ADMM (U-Net prior)" in the table. Both learned methods get
    # the same 4 minutes of training; the step counts are caps that the budget ends first.
    "quick": ReproducePreset(du_architecture="unet", du_width=0.25, du_loss="psnr",
                             du_steps=20_000, du_batch=4, du_lr=5e-4, onenet_width=0.0625,
                             onenet_steps=20_000, onenet_batch=4, n_train=1024, n_test=24,
                             eval_batch=24, eval_preset="paper", checkpoint_every=100,
                             val_every=100, train_budget_s=240.0),
    # The paper's protocol (GPU): full-size networks, 50k steps, 500 test images.
    "paper": ReproducePreset(du_architecture="paper", du_width=1.0, du_loss="mse",
                             du_steps=50_000, du_batch=10, du_lr=1e-4, onenet_width=1.0,
                             onenet_steps=50_000, onenet_batch=10, n_train=None, n_test=500,
                             eval_batch=50, eval_preset="paper", checkpoint_every=2000,
                             val_every=2000),
}


def _load_images(data: str, split: str, n: int | None, cache_dir: str | None,
                 progress: bool):
    from admm_jax.data import load_source

    kw = {"cache_dir": cache_dir, "progress": progress}
    if data == "bundled" and n is not None:
        kw["n"] = n
    images = load_source(data, split, **kw)
    return images if n is None else images[:n]


def _train_du_admm(p: ReproducePreset, train_images, val_images, out: Path,
                   progress: bool, provenance: dict | None) -> dict:
    from admm_jax.train import preset, train

    if (out / "params" / "config.json").exists():
        print("[1/3] DU-ADMM already trained, skipping")
        return {}
    cfg = preset("paper", architecture=p.du_architecture, width=p.du_width, loss=p.du_loss,
                 steps=p.du_steps, batch_size=p.du_batch, learning_rate=p.du_lr,
                 checkpoint_every=p.checkpoint_every, val_every=p.val_every,
                 val_images=min(16, len(val_images)))
    budget = f"{p.train_budget_s:.0f} s" if p.train_budget_s else f"{p.du_steps} steps"
    print(f"[1/3] training {cfg.method_name} (width {p.du_width}, {budget}, batch "
          f"{p.du_batch}, T=8, per-sample mixed PID/BI/SI/SR, {p.du_loss} loss)")
    return train(cfg, train_images, val_images[: cfg.val_images], out, resume=out.exists(),
                 progress=progress, time_budget_s=p.train_budget_s, provenance=provenance)


def _train_onenet(p: ReproducePreset, train_images, out: Path, progress: bool) -> dict:
    from admm_jax.baselines.onenet_train import OneNetConfig, pretrain_onenet

    if (out / "params" / "config.json").exists():
        print("[2/3] OneNet already pretrained, skipping")
        return {}
    ocfg = OneNetConfig(width=p.onenet_width, steps=p.onenet_steps, batch_size=p.onenet_batch,
                        checkpoint_every=p.checkpoint_every)
    budget = f"{p.train_budget_s:.0f} s" if p.train_budget_s else f"{p.onenet_steps} steps"
    print(f"[2/3] pretraining the OneNet projector (width {p.onenet_width}, {budget}, "
          f"adversarial, noise family of the original)")
    return pretrain_onenet(ocfg, train_images, out, resume=out.exists(), progress=progress,
                           time_budget_s=p.train_budget_s)


def _steps_done(run: Path) -> int | None:
    """The step of a training run's last checkpoint (every run ends with one)."""
    from admm_jax.train import Checkpointer

    if not (run / "checkpoints").is_dir():
        return None
    with Checkpointer(run / "checkpoints") as ckpt:
        return ckpt.latest_step()


def run(preset: str = "quick", data: str = "bundled", out: str | Path = "outputs/reproduce", *,
        dataset: str | None = None, cache_dir: str | None = None,
        max_train_images: int | None = None, problems: tuple[str, ...] = PAPER_PROBLEMS,
        resume: bool = False, overwrite: bool = False, progress: bool = True,
        command_line: list[str] | None = None) -> dict:
    """The main job: train DU-ADMM and OneNet, evaluate them, wavelet-ℓ1 and the shipped
    pretrained prior on the same held-out images, write everything to ``out`` and return the
    summary (also ``out/summary.json``).

    ``preset``: "quick" (CPU minutes) or "paper" (GPU). ``data``: "bundled", an image folder,
    an ``.npz`` or a ``tfds:`` name. ``dataset``: "faces" or "natural" (SR test-time T and
    which shipped prior is evaluated; default natural for the bundled photos, faces
    otherwise). ``problems``: the problems of the table (training always mixes the paper's
    four). ``resume``: skip finished stages, continue the interrupted one. ``command_line``:
    recorded in ``out/du_admm/provenance.jsonl`` (see :func:`admm_jax.train.train`); the CLI
    passes the command as typed.
    """
    from admm_jax.evaluate import EvalConfig, markdown_table, run_evaluation
    from admm_jax.pretrained_priors import pretrained
    from admm_jax.train import prepare_output_dir, provenance_record

    if preset not in PRESETS:
        raise ValueError(f"unknown reproduce preset {preset!r}; choose one of {sorted(PRESETS)}")
    if dataset not in (None, "faces", "natural"):
        raise ValueError(f"dataset must be 'faces' or 'natural', got {dataset!r}")
    p = PRESETS[preset]
    dataset = dataset or ("natural" if data == "bundled" else "faces")
    shipped = pretrained("natural" if dataset == "natural" else "faces")
    ecfg = EvalConfig(problems=tuple(problems), preset=p.eval_preset, dataset=dataset,
                      batch_size=p.eval_batch)  # validated before anything is written
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    root = Path(data)
    train_split = "train+val" if root.is_dir() and (root / "val").is_dir() else "train"
    n_train = p.n_train if max_train_images is None else max_train_images
    train_images = _load_images(data, "train" if data == "bundled" else train_split, n_train,
                                cache_dir, progress)
    test_images = _load_images(data, "test", p.n_test, cache_dir, progress)
    outp = prepare_output_dir(out, resume=resume, overwrite=overwrite)  # inputs are good now
    print(f"[reproduce/{preset}] {len(train_images)} training images, {len(test_images)} test "
          f"images from {data!r}; output folder {outp.absolute()}")

    t0 = time.perf_counter()
    _train_du_admm(p, train_images, test_images, outp / "du_admm", progress,
                   None if command_line is None else provenance_record(command_line))
    timings["du_admm_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    _train_onenet(p, train_images, outp / "onenet", progress)
    timings["onenet_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    methods = _table_methods(outp, shipped)
    print(f"[3/3] evaluating on {len(test_images)} held-out images ({ecfg.preset} protocol, "
          f"{dataset} SR setting)")
    records = run_evaluation(test_images, methods, ecfg, outp / "evaluation",
                             progress=progress, resume=resume)
    timings["evaluation_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - t_start

    steps = {"du_admm": _steps_done(outp / "du_admm"), "onenet": _steps_done(outp / "onenet")}
    caption = _caption(p, steps, shipped)
    summary = {"preset": preset, "data": data, "dataset": dataset, "settings": p.__dict__,
               "steps": steps, "caption": caption, "timings": timings, "table": records}
    (outp / "summary.json").write_text(json.dumps(summary, indent=2))
    table = markdown_table(records)
    (outp / "evaluation" / "table.md").write_text(table + "\n\n" + caption + "\n")
    print(f"\nTable 1 ({preset} preset)\n")
    print(table)
    print("\n" + caption)
    print(f"\ntotal {timings['total_s'] / 60:.1f} min; outputs written to {outp.absolute()}")
    return summary


def _table_methods(outp: Path, shipped) -> list:
    """The four methods of the main job's table: the DU-ADMM prior and the OneNet projector
    trained in ``outp``, the shipped pretrained prior, and wavelet-ℓ1."""
    from admm_jax.evaluate import du_admm_method, methods_from_weights, wavelet_method

    shipped_name = f"shipped pretrained '{shipped.name}' prior (not trained here)"
    return [*methods_from_weights(outp / "du_admm" / "params", outp / "onenet" / "params",
                                  wavelet=False),
            du_admm_method(shipped.apply_fn, shipped.params, shipped_name),
            wavelet_method()]


def _caption(p: ReproducePreset, steps: dict, shipped) -> str:
    if p.train_budget_s:
        budget = (f"Training budget: the same {p.train_budget_s:.0f} s of wall-clock time for "
                  f"each learned method (compilation and validation included): DU-ADMM "
                  f"reached {steps['du_admm']} steps (batch {p.du_batch}), OneNet "
                  f"{steps['onenet']} steps (batch {p.onenet_batch}).")
    else:
        budget = (f"Training: DU-ADMM {steps['du_admm']} steps, OneNet {steps['onenet']} "
                  f"steps.")
    tr = shipped.metadata.get("training", {})
    return (budget + f" The shipped '{shipped.name}' prior was trained beforehand "
            f"({shipped.metadata.get('label')}, {tr.get('steps')} steps; see README) and is "
            f"evaluated here on the same images with the same protocol.")


def run_reproduce(args: argparse.Namespace, command_line: list[str] | None = None) -> int:
    """CLI adapter: ``admm-jax reproduce`` arguments (and the command as typed, recorded with
    the DU-ADMM run) → :func:`run`."""
    run(args.preset, args.data, args.out, dataset=args.dataset, cache_dir=args.cache_dir,
        max_train_images=args.max_train_images, resume=args.resume, overwrite=args.overwrite,
        progress=not args.no_progress, command_line=command_line)
    return 0
