"""Package a trained DU-ADMM prior as a pretrained prior shipped inside ``admm_jax``.

    python experiments/export_pretrained.py results/weights/bsds_du_admm_unet_w0.25 natural
    python experiments/export_pretrained.py results/weights/utkface_du_admm_unet_w0.25 faces

Writes ``admm_jax/pretrained_priors/weights/<name>.npz`` (float32 parameters) and ``<name>.json``
(architecture, training data and licence, training command and log, per-problem ρ, T, and
reference results), loadable with ``admm_jax.pretrained(name)``. Steps:

1. load the weights folder (``admm-jax train`` output, exported by ``export_weights.py``);
2. write the ``.npz`` and check that the prior loaded back from it gives bit-identical outputs
   to the original on a batch of bundled photos;
3. calibrate ρ for Gaussian deblurring (σ_blur = 1.5 px, noise 0.01; the prior never saw blur
   in training) on 16 bundled *training* crops over a fixed grid, T = the trained T;
4. record reference results: PSNR per image on 4 bundled *test* crops (64×64; chelsea and
   coffee, never trained on) for pid/bi/si/sr/deblur, with operators and noise from fixed keys.
   ``tests/test_pretrained.py`` reproduces them from the installed package.

Refuses to replace an existing prior unless ``--overwrite``.
"""

import argparse
import datetime
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATASETS = {
    "natural": {
        "name": "BSDS500 train+val",
        "detail": "300 Berkeley Segmentation Data Set 500 photos (train 200 + val 100, none of "
                  "the 200 test photos), each giving the whole photo, its centre square and "
                  "random square crops, resized to 64x64 (experiments/bsds_train_crops.py)",
        "licence": "BSDS500: non-commercial research and education use (Berkeley); cite "
                   "Arbelaez et al., TPAMI 33(5), 2011",
    },
    "general": {
        "name": "UTKFace part 1 (train split): a denoiser, the paper's problems, then operator "
                "families",
        "detail": "the U-Net Gaussian denoiser of the PnP baseline (8,175 UTKFace faces, "
                  "64x64, experiments/train_denoiser.sh) trained on the same faces in three "
                  "stages (experiments/train_general_prior_dnspec.sh): 1,500 steps as a DU-ADMM "
                  "prior on the paper's PID/BI/SI/SR mix (fixed per-problem rho), then, "
                  "learning a rho_t(sigma) rule with noise sigma ~ U[0, 0.1], 1,800 steps on "
                  "nine randomised operator families plus the paper's PID/BI/SI masks (mix "
                  "'families+paper'), then 800 steps on that mix at T = 32, the 8-step "
                  "schedule cycled, loss over every block end "
                  "(experiments/train_general_prior_long.sh); admm_jax.families.FAMILY_MIXES",
        "licence": "UTKFace: non-commercial research use only, copyright stays with the image "
                   "owners; cite Zhang, Song, Qi, CVPR 2017",
    },
    "general_natural": {
        "name": "BSDS500 train+val, then operator families (started from a UTKFace denoiser)",
        "detail": "the U-Net Gaussian denoiser of the PnP baseline (8,175 UTKFace faces, "
                  "experiments/train_denoiser.sh) fine-tuned as an unrolled prior on 64x64 "
                  "crops of the 300 BSDS500 train+val photos, learning a rho_t(sigma) rule, "
                  "noise sigma ~ U[0, 0.1]: 1,800 steps on nine randomised operator families "
                  "plus the paper's PID/BI/SI masks (mix 'families+paper', "
                  "ARMS=denoiser STEPS=1800 experiments/train_general_prior_init_ab.sh), then "
                  "800 steps on that mix at T = 32, the 8-step schedule cycled, loss over every "
                  "block end (experiments/train_general_prior_long.sh with "
                  "DATA=local_data/bsds.npz); admm_jax.families.FAMILY_MIXES",
        "licence": "BSDS500: non-commercial research and education use (Berkeley); cite "
                   "Arbelaez et al., TPAMI 33(5), 2011. The starting weights were trained on "
                   "UTKFace: non-commercial research use only; cite Zhang, Song, Qi, CVPR 2017",
    },
    "faces": {
        "name": "UTKFace part 1 (train split)",
        "detail": "8,175 aligned and cropped face photos (UTKFace crop_part1, exact duplicates "
                  "removed, hashed split; the 1,000 test faces held out), resized to 64x64",
        "licence": "UTKFace: non-commercial research use only, copyright stays with the image "
                   "owners; cite Zhang, Song, Qi, CVPR 2017",
    },
}
RHO_GRID = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
REF_PROBLEMS = ("pid", "bi", "si", "sr", "deblur")


def training_record(src: Path, cfg) -> dict:
    val = [json.loads(line) for line in open(src / "validation.jsonl")] \
        if (src / "validation.jsonl").exists() else []
    return {
        "config": json.loads(cfg.to_json()),
        "steps": _last_step(src),
        "final_validation_psnr": next((v for v in reversed(val) if v["kind"] == "du_admm"), None),
        "pinv_start_validation_psnr": next((v for v in val if v["kind"] == "pinv_start"), None),
        "log": str(src.relative_to(ROOT) / "metrics.csv") if src.is_relative_to(ROOT) else None,
        "command": _recorded_command(src) or (  # runs committed before provenance.jsonl
            "experiments/results_cpu.sh (admm-jax train --architecture unet --width 0.25 "
            "--loss psnr --lr 5e-4 --batch 8 --steps 3000 ...)"),
    }


def _recorded_command(src: Path) -> str | None:
    """The command that trained the run in ``src``, from the ``provenance.jsonl`` that ``admm-jax
    train`` writes (its first record: a resumed run continues that command): the calling
    script's recipe and the full ``admm-jax train`` command line. None for runs that predate the
    record."""
    log = src / "provenance.jsonl"
    lines = log.read_text().splitlines() if log.exists() else []
    if not lines:
        return None
    first = json.loads(lines[0])
    argv = " ".join(first["argv"])
    return f"{first['recipe']} ({argv})" if first.get("recipe") else argv


def _family_command(cfg, src: Path) -> str:
    """The command that ran a family-trained stage: the recorded one (see
    :func:`_recorded_command`) or, for the runs committed before runs recorded it, the script
    in experiments/ guessed from the config: a run at more iterations than its schedule's
    length is the long-run stage; a first stage started from the BSDS500 prior is the
    natural-image one, one started from the denoiser the init A/B script's."""
    recorded = _recorded_command(src)
    if recorded is not None:
        return recorded
    init = cfg.init_weights or ""
    if cfg.num_iters > cfg.rho_steps:
        script = (f"INIT={init} experiments/train_general_prior_long.sh"
                  + (" with DATA=local_data/bsds.npz" if "bsds" in init else ""))
    elif "bsds_du_admm" in init:
        script = "experiments/train_general_prior_natural.sh"
    elif "denoiser" in init:  # the general_natural recipe since RESULTS.md section 7.0d
        script = f"ARMS=denoiser STEPS={cfg.steps} experiments/train_general_prior_init_ab.sh"
    else:
        script = {"families": "experiments/train_general_prior.sh",
                  "families+paper": "experiments/train_general_prior_stage2.sh"}[cfg.operator_mix]
    return (f"{script} (admm-jax train --operator-mix {cfg.operator_mix} --rho-rule learned "
            f"--iters {cfg.num_iters} ...)")


def _last_step(src: Path) -> int | None:
    """The last logged training step of the run in ``src`` (its ``metrics.csv``), or None."""
    rows = list(open(src / "metrics.csv")) if (src / "metrics.csv").exists() else []
    return int(rows[-1].split(",")[0]) if len(rows) > 1 else None


def _lineage(src: Path, cfg) -> tuple[list[dict], dict | None]:
    """The chain of fine-tuning runs behind a family-trained prior, first stage first (each
    run's mix, steps and log), followed through ``init_weights`` while it points at another
    family-trained run; and the weights that chain started from (a DU-ADMM prior trained on
    the paper's problems, or the PnP denoiser: folder, objective, mix, steps, its own start
    and command), or None where the first stage names no committed start."""
    from admm_jax.train.config import TrainConfig

    chain = []
    while True:
        chain.append({"weights": str(src.relative_to(ROOT) if src.is_relative_to(ROOT) else src),
                      "operator_mix": cfg.operator_mix, "learning_rate": cfg.learning_rate,
                      "unrolled_iters": cfg.num_iters, "rho_period": cfg.rho_steps,
                      "loss_every": cfg.loss_every,
                      "steps": _last_step(src), "command": _family_command(cfg, src)})
        nxt = ROOT / cfg.init_weights if cfg.init_weights else None
        if nxt is None or not (nxt / "config.json").exists():
            return chain[::-1], None
        prev = TrainConfig.from_dict(json.loads((nxt / "config.json").read_text()))
        if prev.operator_mix == "problems":
            break
        src, cfg = nxt, prev
    start = {"weights": cfg.init_weights, "objective": prev.objective,
             "operator_mix": prev.operator_mix, "steps": _last_step(nxt),
             "init_weights": prev.init_weights,
             "command": _recorded_command(nxt) or (  # the denoiser predates provenance.jsonl
                 "experiments/train_denoiser.sh (admm-jax train --objective denoise ...)"
                 if prev.objective == "denoise" else None)}
    return chain[::-1], start


def calibrate_deblur_rho(prior) -> dict:
    import jax
    import numpy as np

    from admm_jax.data import bundled_dataset
    from admm_jax.restore import Degradation, restore, simulate

    x = bundled_dataset("train", n=16).astype(np.float32) / 255.0
    deg = Degradation("deblur")
    scores = {}
    for rho in RHO_GRID:
        vals = []
        for i, img in enumerate(x):
            op, y, xi = simulate(deg, jax.random.PRNGKey(1000 + i), img)
            z, _ = restore(prior, op, y, rho=rho)
            vals.append(float(-10 * np.log10(np.mean((np.clip(z, 0, 1) - xi) ** 2))))
        scores[str(rho)] = float(np.mean(vals))
    best = max(scores, key=scores.get)
    return {"best": float(best), "mean_psnr_by_rho": scores,
            "images": "16 bundled training crops (64x64), Gaussian blur 1.5 px, noise 0.01",
            "num_iters": prior.num_iters}


def reference_results(prior) -> dict:
    import jax
    import numpy as np

    from admm_jax.data import bundled_dataset
    from admm_jax.metrics import psnr
    from admm_jax.restore import Degradation, restore, simulate

    x = bundled_dataset("test", n=4).astype(np.float32) / 255.0
    out = {"images": "admm_jax.data.bundled_dataset('test', n=4) / 255 (64x64)",
           "keys": "jax.random.PRNGKey(i) for image i", "psnr": {}, "psnr_start": {}}
    for name in REF_PROBLEMS:
        zs, starts = [], []
        for i, img in enumerate(x):
            op, y, xi = simulate(Degradation(name), jax.random.PRNGKey(i), img)
            z, start = restore(prior, op, y, problem=name)
            zs.append(float(psnr(z, xi)))
            starts.append(float(psnr(start, xi)))
        out["psnr"][name], out["psnr_start"][name] = zs, starts
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path, help="weights folder (config.json + state/), e.g. "
                                           "results/weights/bsds_du_admm_unet_w0.25")
    ap.add_argument("name", choices=sorted(DATASETS), help="name to ship the prior under")
    ap.add_argument("--curves", default=None, help="committed PSNR-against-steps plot to cite")
    ap.add_argument("--results", default=None, help="committed evaluation folder to cite")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing prior")
    ap.add_argument("--long-runs", default=None, metavar="RESULTS_JSON",
                    help="a learned-rule prior: experiments/general_prior_iterations.py's "
                         "results.json, whose choice on training faces (rule, T) becomes the "
                         "prior's long_runs (how solve(num_iters=k*T) runs)")
    args = ap.parse_args(argv)

    import jax
    import numpy as np

    from admm_jax.pretrained_priors import load_pretrained_files, params_to_arrays, trained_prior
    from admm_jax.train import TrainConfig

    dst = ROOT / "admm_jax" / "pretrained_priors" / "weights"
    targets = [dst / f"{args.name}.npz", dst / f"{args.name}.json"]
    if any(t.exists() for t in targets) and not args.overwrite:
        print(f"error: {targets[0]} exists (use --overwrite)", file=sys.stderr)
        return 2
    args.src = args.src.resolve()
    # the network, its rho (learned schedule: network and schedule split) and T of one block,
    # as the library loads a training folder
    trained = trained_prior(args.src)
    apply_fn, params = trained.apply_fn, trained.params
    cfg = TrainConfig.from_dict(trained.metadata["training"]["config"])
    if cfg.architecture != "unet":
        print("error: only U-Net priors work at any image size; this is "
              f"{cfg.architecture!r}", file=sys.stderr)
        return 2
    problems = ("pid", "bi", "si", "sr")
    rule = None
    if trained.rho_rule is not None:  # the schedule goes to the JSON, the network to the .npz
        from admm_jax.rho_rules import PARAM_SCALE, SIGMA_FLOOR, SIGMA_REF

        rule = {k: np.asarray(v, np.float32).tolist() for k, v in trained.rho_rule.items()}
        rule["formula"] = (f"rho_t(sigma) = exp({PARAM_SCALE:g}*log_rho[t] + {PARAM_SCALE:g}*"
                           f"slope[t]*log((sigma+{SIGMA_FLOOR})/({SIGMA_REF}+{SIGMA_FLOOR})))")
    meta = {
        "name": args.name, "architecture": "unet", "width": cfg.width, "levels": 3, "blocks": 1,
        "num_params": int(sum(np.size(a) for a in jax.tree_util.tree_leaves(params))),
        # T of one block: a learned schedule's length (a prior trained at k*P iterations with a
        # P-step schedule runs P-iteration blocks; solve(num_iters=k*P) repeats them)
        "num_iters": trained.num_iters,
        "rho": {p: trained.rho[p] for p in problems}, "default_rho": trained.default_rho,
        "label": f"{cfg.method_name}, {DATASETS[args.name]['name']}",
        "training_data": DATASETS[args.name],
        "training": training_record(args.src, cfg) | {"problems": list(problems),
                                                       "curves": args.curves,
                                                       "evaluation": args.results},
        "exported": {"date": datetime.date.today().isoformat(),
                     "command": "python experiments/export_pretrained.py "
                                + " ".join(sys.argv[1:] if argv is None else argv),
                     "from": str(args.src.relative_to(ROOT) if args.src.is_relative_to(ROOT)
                                 else args.src)},
    }
    if rule is not None:
        meta["rho_rule"] = rule
        if args.long_runs:
            choice = json.loads(Path(args.long_runs).read_text())["choice"]
            meta["long_runs"] = {"rule": choice["rule"], "num_iters": int(choice["T"]),
                                 "chosen_on": choice["on"], "from": args.long_runs}
        meta["training"]["problems"] = "operator families (admm_jax.families)"
        meta["training"]["command"] = _family_command(cfg, args.src)
        meta["training"]["stages"], meta["training"]["start"] = _lineage(args.src, cfg)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        np.savez(tmp / "w.npz", **params_to_arrays(params))
        (tmp / "w.json").write_text(json.dumps(meta))
        prior = load_pretrained_files(tmp / "w.npz", tmp / "w.json", args.name)
        from admm_jax.data import bundled_dataset

        xb = bundled_dataset("test", n=4).astype(np.float32) / 255.0
        if not np.array_equal(np.asarray(prior(xb)), np.asarray(apply_fn(params, xb))):
            print("error: the packaged prior differs from the original", file=sys.stderr)
            return 1
        if rule is None:  # a learned rule needs no calibration: it takes sigma
            meta["rho_calibration"] = {"deblur": calibrate_deblur_rho(prior)}
            meta["rho"]["deblur"] = meta["rho_calibration"]["deblur"]["best"]
        prior = load_pretrained_files(tmp / "w.npz", _write(tmp / "w.json", meta), args.name)
        meta["reference"] = reference_results(prior)
        dst.mkdir(parents=True, exist_ok=True)
        shutil.move(tmp / "w.npz", targets[0])
        _write(targets[1], meta)
    print(f"pretrained prior {args.name!r} written to {targets[0]} and {targets[1]}")
    print(json.dumps({"rho": meta["rho"], "reference_mean_psnr": {
        k: round(float(np.mean(v)), 2) for k, v in meta["reference"]["psnr"].items()}}))
    return 0


def _write(path: Path, meta: dict) -> Path:
    path.write_text(json.dumps(meta, indent=1) + "\n")
    return path


if __name__ == "__main__":
    sys.exit(main())
