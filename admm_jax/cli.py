"""``admm-jax``: train, pretrain-onenet, evaluate, reproduce, solve.

Every command has ``--help``, prints where it wrote its outputs, refuses to overwrite an existing
output folder unless ``--overwrite`` is given, and long-running ones resume with ``--resume``.

Errors: every failure is ONE line on stderr, ``error: <message>``, with exit code 2 and no
traceback (``--debug``, before or after the command, prints it). :func:`main` is the only place
that turns exceptions into that line (see :data:`USER_ERRORS`), so a command only raises. A
command validates every input before it creates its output folder: a refused command leaves
nothing behind.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path


class CommandError(Exception):
    """A user error found by a command itself (a bad combination of flags, ...): :func:`main`
    prints its message as the one-line error."""


#: What :func:`main` reports as ``error: <message>`` (exit 2): bad values (``ValueError``, incl.
#: ``NoImagesError``; ``TypeError`` from the input checks), paths that are missing, files or
#: taken (``OSError``: ``FileNotFoundError``, ``NotADirectoryError``, ``FileExistsError`` and
#: its ``OutputExistsError``, ``PermissionError``), checkpoints or weights that cannot be read
#: (``CheckpointError``, added in :func:`_user_errors`), a diverged training run
#: (``FloatingPointError``), an optional package that is not installed (``ImportError``, e.g.
#: TensorFlow for ``tfds:``) and :class:`CommandError`. Any other exception is a bug: still one
#: line (exit 2), naming its type and asking for ``--debug``.
USER_ERRORS: tuple[type[BaseException], ...] = (CommandError, ValueError, TypeError, OSError,
                                                FloatingPointError, ImportError)


def _user_errors() -> tuple[type[BaseException], ...]:
    from admm_jax.train.checkpoint import CheckpointError  # orbax: imported only on failure

    return USER_ERRORS + (CheckpointError,)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (exit 2); sub-commands inherit it."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _check_count(flag: str, value: int | None) -> None:
    """A count given on the command line: None (not given) or an integer >= 1."""
    if value is not None:
        from admm_jax import _checks

        _checks.check_int(flag, value, minimum=1)


def _add_data_args(p: argparse.ArgumentParser, default: str = "bundled", *,
                   trains: bool = True) -> None:
    p.add_argument("--data", default=default,
                   help="image source: 'bundled' (offline photos shipped in scikit-image / "
                        "scikit-learn wheels), a folder of images (with train/val/test "
                        "sub-folders or a flat tree), a .npz pack, or 'tfds:celeb_a' "
                        f"(default: {default})")
    p.add_argument("--cache-dir", default=None,
                   help="folder for decoded 64x64 image caches (speeds up reloading a folder)")
    if trains:  # evaluate reads only the test split (--n-images)
        p.add_argument("--max-train-images", type=int, default=None,
                       help="use at most this many training images")


def _load(spec: str, split: str, cache_dir, limit=None, n=None, progress=True):
    from admm_jax.data import load_source

    kwargs = {"cache_dir": cache_dir, "progress": progress}
    if spec == "bundled" and n is not None:
        kwargs["n"] = n
    images = load_source(spec, split, **kwargs)
    if limit is not None:
        images = images[:limit]
    return images


def _train_split(spec: str) -> str:
    p = Path(spec)
    if p.is_dir() and (p / "val").is_dir() and (p / "train").is_dir():
        return "train+val"
    return "train"


# --------------------------------------------------------------------------- train
def _command_line(args: argparse.Namespace) -> list[str]:
    """The command line as typed (set by :func:`main`; ``sys.argv`` when called otherwise)."""
    return getattr(args, "command_line", ["admm-jax", *sys.argv[1:]])


def cmd_train(args: argparse.Namespace) -> int:
    from admm_jax.train import preset, provenance_record, train
    from admm_jax.train.loop import check_output_dir

    if args.distributed:  # multi-host: coordinator etc. from the environment (see JAX docs)
        import jax

        jax.distributed.initialize()

    overrides = {k: v for k, v in {
        "steps": args.steps, "batch_size": args.batch, "width": args.width,
        "num_iters": args.iters, "seed": args.seed, "compute_dtype": args.dtype,
        "checkpoint_every": args.checkpoint_every, "val_every": args.val_every,
        "remat": args.remat or None, "learning_rate": args.lr,
        "residual": (args.residual or args.gated) or None, "gated": args.gated or None,
        "loss": args.loss, "architecture": args.architecture,
        "operator_mix": args.operator_mix, "rho_rule": args.rho_rule,
        "objective": args.objective, "init_weights": args.init_weights,
        "loss_every": args.loss_every, "rho_period": args.rho_period,
        "val_images": args.val_images,
    }.items() if v is not None}
    if args.problems:
        overrides["problems"] = tuple(args.problems.split(","))
    if args.problem_probs:
        try:
            overrides["problem_probs"] = tuple(float(v) for v in args.problem_probs.split(","))
        except ValueError:
            raise ValueError(f"--problem-probs must be comma-separated numbers, got "
                             f"{args.problem_probs!r}") from None
    cfg = preset(args.preset, **overrides)  # validated: bad values stop here
    _check_count("--max-train-images", args.max_train_images)
    check_output_dir(args.out, resume=args.resume, overwrite=args.overwrite)
    train_images = _load(args.data, _train_split(args.data), args.cache_dir,
                         args.max_train_images, progress=not args.no_progress)
    val_images = None  # --val-images 0: no validation, and no test split needed
    if cfg.val_images > 0:
        try:
            val_images = _load(args.data, "test", args.cache_dir, cfg.val_images,
                               progress=not args.no_progress)
        except (FileNotFoundError, ValueError) as exc:
            raise ValueError(f"{exc} Validation reads the test split; train without it with "
                             f"--val-images 0.") from exc
    validating = (f"validating on {len(val_images)} held-out images" if val_images is not None
                  else "no validation (--val-images 0)")
    print(f"training on {len(train_images)} images from {args.data!r}; {validating}; "
          f"width {cfg.width}, batch {cfg.batch_size}, "
          f"{'denoiser objective' if cfg.objective == 'denoise' else f'T {cfg.num_iters}'}, "
          f"{cfg.steps} steps ({cfg.preset} preset)")
    train(cfg, train_images, val_images, args.out, resume=args.resume,
          overwrite=args.overwrite, progress=not args.no_progress,
          provenance=provenance_record(_command_line(args)))
    print(f"outputs: {Path(args.out).absolute()}")
    return 0


# --------------------------------------------------------------------------- onenet
def cmd_pretrain_onenet(args: argparse.Namespace) -> int:
    from admm_jax.baselines.onenet_train import OneNetConfig, pretrain_onenet
    from admm_jax.train.loop import check_output_dir

    cfg = OneNetConfig(width=args.width, steps=args.steps, batch_size=args.batch,
                       seed=args.seed, checkpoint_every=args.checkpoint_every, norm=args.norm)
    cfg.validate()
    _check_count("--max-train-images", args.max_train_images)
    check_output_dir(args.out, resume=args.resume, overwrite=args.overwrite)
    images = _load(args.data, _train_split(args.data), args.cache_dir, args.max_train_images,
                   progress=not args.no_progress)
    print(f"pretraining the OneNet projector on {len(images)} images from {args.data!r}")
    pretrain_onenet(cfg, images, args.out, resume=args.resume, overwrite=args.overwrite,
                    progress=not args.no_progress)
    print(f"outputs: {Path(args.out).absolute()}")
    return 0


# --------------------------------------------------------------------------- evaluate
def cmd_evaluate(args: argparse.Namespace) -> int:
    from admm_jax.evaluate import (
        EvalConfig,
        markdown_table,
        methods_from_weights,
        run_evaluation,
    )
    from admm_jax.train import prepare_output_dir
    from admm_jax.train.loop import check_output_dir

    if args.no_wavelet and not (args.du_admm or args.onenet):
        raise CommandError("nothing to evaluate: give --du-admm and/or --onenet, or drop "
                           "--no-wavelet")
    cfg = EvalConfig(problems=tuple(args.problems.split(",")), preset=args.preset,
                     dataset=args.dataset, batch_size=args.batch, seed=args.seed)
    _check_count("--n-images", args.n_images)
    from admm_jax.pretrained_priors import pretrained_names

    if args.du_admm and not Path(args.du_admm).exists() and args.du_admm in pretrained_names():
        raise CommandError(f"--du-admm {args.du_admm}: evaluate takes a weights folder written "
                           f"by 'admm-jax train'; {args.du_admm!r} is a shipped prior: try it "
                           f"with 'admm-jax solve IMAGES --prior {args.du_admm} --simulate'")
    check_output_dir(args.out, resume=args.resume, overwrite=args.overwrite)
    methods = methods_from_weights(args.du_admm, args.onenet, not args.no_wavelet)  # unreadable
    # weights stop here, before the output folder is prepared
    images = _load(args.data, "test", args.cache_dir, args.n_images,
                   progress=not args.no_progress)
    out = prepare_output_dir(args.out, resume=args.resume, overwrite=args.overwrite)
    fewer = (f" (--n-images {args.n_images}: the test split has only {len(images)})"
             if args.n_images is not None and len(images) < args.n_images else "")
    print(f"evaluating {[m.name for m in methods]} on {len(images)} images{fewer}, problems "
          f"{list(cfg.problems)}, {cfg.preset} preset")
    records = run_evaluation(images, methods, cfg, out, progress=not args.no_progress,
                             resume=args.resume)
    print(markdown_table(records))
    print(f"outputs: {out.absolute()}")
    return 0


# --------------------------------------------------------------------------- reproduce
def cmd_reproduce(args: argparse.Namespace) -> int:
    from admm_jax.reproduce import run_reproduce

    return run_reproduce(args, _command_line(args))


# --------------------------------------------------------------------------- solve
def cmd_solve(args: argparse.Namespace) -> int:
    from admm_jax.pretrained_priors import pretrained
    from admm_jax.restore import Degradation, read_kernel, read_mask, restore_files

    deg = Degradation(
        args.problem, noise_std=args.noise, scale=args.scale, blur_sigma=args.blur_sigma,
        kernel=None if args.kernel is None else read_kernel(args.kernel),
        mask=None if args.mask is None else read_mask(args.mask))
    prior = pretrained(args.prior, ensemble=args.ensemble)
    if args.seed < 0:
        raise CommandError(f"--seed must be >= 0, got {args.seed}")
    if args.noise is not None and not args.simulate and prior.rho_rule is None:
        raise CommandError(f"--noise is used with --simulate (the noise to add) or by a prior "
                           f"with a learned rho rule (the noise in your images); the "
                           f"{prior.name!r} prior has a fixed rho per problem and would ignore "
                           f"it: drop --noise, or use --prior general")
    grey = True if args.grey else None
    records = restore_files(args.inputs, args.out, deg, prior=prior,
                            simulate_first=args.simulate, grey=grey, rho=args.rho,
                            num_iters=args.iters, seed=args.seed, overwrite=args.overwrite,
                            progress=not args.no_progress)
    for r in records:
        if "psnr" in r:
            print(f"{r['file']}: {r['problem']} {r['height']}x{r['width']}x{r['channels']}  "
                  f"PSNR {r['psnr_start']:.2f} -> {r['psnr']:.2f} dB  "
                  f"SSIM {r['ssim_start']:.3f} -> {r['ssim']:.3f}")
    print(f"restored {len(records)} image(s) with the {prior.name!r} prior; outputs written to "
          f"{Path(args.out).absolute()}")
    return 0


def _add_solve_parser(sub) -> None:
    s = sub.add_parser(
        "solve", help="restore your own image files with a pretrained prior",
        description="Restore image files with a pretrained DU-ADMM prior (T unrolled ADMM "
                    "iterations) and write PNGs: <name>_restored.png and <name>_start.png "
                    "(A+y); with --simulate also <name>_clean.png, <name>_measured.png and "
                    "metrics.csv (PSNR, SSIM). Any image size; greyscale files stay greyscale.")
    s.add_argument("inputs", nargs="+", help="image files (PNG, JPEG, ...)")
    s.add_argument("--problem", required=True,
                   choices=["inpaint", "pid", "si", "bi", "sr", "deblur"],
                   help="inpaint/pid/si/bi: missing pixels (a real image needs --mask; "
                        "--simulate draws pid: 50%% of entries + noise 0.1, si: scattered "
                        "boxes, bi: a centre block); sr: super-resolution by --scale; deblur: "
                        "blur by --kernel or a Gaussian of --blur-sigma")
    s.add_argument("--out", required=True, help="output folder (created if missing)")
    s.add_argument("--prior", default="natural",
                   help="pretrained prior by name (natural, faces, general, general_natural; "
                        "see admm_jax.pretrained_names())")
    s.add_argument("--simulate", action="store_true",
                   help="the inputs are clean images: degrade each first, then restore, and "
                        "print PSNR and SSIM against it")
    s.add_argument("--mask", default=None,
                   help="mask image of the inputs' size: white = observed, black = missing")
    s.add_argument("--scale", type=int, default=2, help="super-resolution factor (2)")
    s.add_argument("--kernel", default=None,
                   help="blur kernel: .npy 2-D array or a greyscale image (normalised to sum 1)")
    s.add_argument("--blur-sigma", type=float, default=1.5,
                   help="std in pixels of the Gaussian blur when no --kernel is given (1.5)")
    s.add_argument("--noise", type=float, default=None,
                   help="noise std in [0, 1] units for --simulate (default: 0.1 pid, 0.01 "
                        "deblur, else 0)")
    s.add_argument("--rho", type=float, default=None,
                   help="ADMM penalty (default: the prior's rho for the problem)")
    s.add_argument("--iters", type=int, default=None,
                   help="unrolled iterations (default: the T the prior was trained with; "
                        "the general prior takes multiples of its T = 8, run as blocks of its "
                        "schedule: for operators beyond the paper's problems use the count "
                        "in the prior's metadata, 48 for the shipped general priors)")
    s.add_argument("--ensemble", default="none", choices=["none", "hflip", "dihedral"],
                   help="test-time self-ensemble of the prior: run it on mirrored (hflip, 2x "
                        "the time) or mirrored and rotated (dihedral, 8x) copies and average "
                        "(none)")
    s.add_argument("--grey", action="store_true",
                   help="treat every input as greyscale (greyscale files are detected anyway)")
    s.add_argument("--seed", type=int, default=0, help="seed of the simulated masks and noise")
    s.add_argument("--overwrite", action="store_true", help="replace existing output files")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_solve)


# --------------------------------------------------------------------------- parser
def _add_output_args(p: argparse.ArgumentParser, *, out_default: str | None = None,
                     resume_help: str = "continue an interrupted run in --out") -> None:
    """--out, --resume, --overwrite, --no-progress: the same on every command."""
    if out_default is None:
        p.add_argument("--out", required=True, help="output folder")
    else:
        p.add_argument("--out", default=out_default, help=f"output folder ({out_default})")
    p.add_argument("--resume", action="store_true", help=resume_help)
    p.add_argument("--overwrite", action="store_true",
                   help="delete and replace an existing, non-empty output folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_schedule_args(p: argparse.ArgumentParser, *, steps=None, batch=None, width=None,
                       seed=None, checkpoint_every=None) -> None:
    """--steps, --batch, --width, --seed, --checkpoint-every (train and pretrain-onenet);
    a default of None means "the preset's value"."""
    shown = lambda v: "the preset's" if v is None else f"{v:,}"  # noqa: E731
    p.add_argument("--steps", type=int, default=steps,
                   help=f"training steps (default: {shown(steps)}; paper: 50,000)")
    p.add_argument("--batch", type=int, default=batch,
                   help=f"global batch size (default: {shown(batch)}; paper: 10)")
    p.add_argument("--width", type=float, default=width,
                   help="channel width multiplier of the network (1.0 = the paper's 22.4M "
                        "parameters; 0.0625-0.125 for CPU work)")
    p.add_argument("--seed", type=int, default=seed,
                   help="seed of every random draw: initialisation, batches, operators, noise")
    p.add_argument("--checkpoint-every", type=int, default=checkpoint_every,
                   help="steps between checkpoints")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="admm-jax",
        description="Differentiable unrolled ADMM (DU-ADMM OneNet) and ADMM baselines in JAX.")
    parser.add_argument("--debug", action="store_true",
                        help="print the full traceback of an error (may also follow the "
                             "command)")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train_parser(sub)
    _add_pretrain_onenet_parser(sub)
    _add_evaluate_parser(sub)
    _add_reproduce_parser(sub)
    _add_solve_parser(sub)
    return parser


def _add_train_parser(sub) -> None:
    t = sub.add_parser("train", help="train the DU-ADMM prior end to end",
                       description="Train the DU-ADMM prior (T unrolled ADMM iterations, mixed "
                                   "problems per mini-batch, clipped Adam).")
    t.add_argument("--preset", default="paper", choices=["paper", "released"],
                   help="hyperparameters of the paper (default) or of its released code")
    _add_data_args(t)
    _add_output_args(t, resume_help="continue from the last checkpoint in --out")
    _add_schedule_args(t)
    t.add_argument("--iters", type=int, default=None, help="unrolled iterations T (8)")
    t.add_argument("--problems", default=None, help="comma list, e.g. pid,bi,si,sr,cs,cs_dct,deblur")
    t.add_argument("--problem-probs", default=None,
                   help="sampling probability of each problem, same order as --problems "
                        "(default uniform), e.g. 0.2,0.2,0.2,0.4")
    t.add_argument("--dtype", default=None, choices=["float32", "bfloat16"],
                   help="compute dtype of the prior's convolutions")
    t.add_argument("--lr", type=float, default=None, help="learning rate override")
    t.add_argument("--remat", action="store_true", help="rematerialise each iteration")
    t.add_argument("--architecture", default=None, choices=["paper", "unet"],
                   help="prior network: paper (the paper's 12-layer autoencoder, default) or "
                        "unet (NOT the paper: a small residual U-Net without normalisation, "
                        "64*width channels at the first of 3 levels)")
    t.add_argument("--residual", action="store_true",
                   help="residual prior P(x) = x + net(x) (NOT the paper; learns much faster "
                        "on short budgets)")
    t.add_argument("--gated", action="store_true",
                   help="gated residual prior P(x) = x + sigmoid(g)*r (NOT the paper; implies "
                        "--residual; lets a small prior leave clean regions alone)")
    t.add_argument("--loss", default=None, choices=["mse", "psnr"],
                   help="training loss: mse (the paper: MSE of z_T) or psnr (NOT the paper: "
                        "-mean per-sample PSNR, so easy problems are not traded for hard ones)")
    t.add_argument("--operator-mix", default=None,
                   choices=["problems", "families", "families+paper", "families+paper+zeros",
                            "families+paper+cfa+aniso", "families+paper+bi"],
                   help="'problems' (the paper: a mix of --problems), 'families' (randomised "
                        "operator families, admm_jax.families; batch 10), 'families+paper' "
                        "(the same with the paper's PID/BI/SI masks added to the mask group) "
                        "'families+paper+zeros' (and box and defocus blurs in the blur group), "
                        "'families+paper+cfa+aniso' (random colour filter arrays and "
                        "elliptical blurs instead) or 'families+paper+bi' (the paper's centred "
                        "block twice as often as in 'families+paper')")
    t.add_argument("--objective", default=None, choices=["unrolled", "denoise"],
                   help="'unrolled' (DU-ADMM, the paper) or 'denoise' (NOT the paper: the prior "
                        "alone as a blind Gaussian denoiser, sigma ~ U[0, 0.2], for PnP-ADMM, "
                        "admm_jax.baselines.pnp; validation reports denoising PSNR)")
    t.add_argument("--rho-rule", default=None, choices=["fixed", "learned"],
                   help="'fixed' (each problem's rho) or 'learned' (a per-iteration schedule "
                        "rho_t(sigma) trained with the prior, admm_jax.rho_rules)")
    t.add_argument("--rho-period", type=int, default=None,
                   help="with --rho-rule learned: length P of the schedule, repeated over "
                        "--iters = k*P iterations (default: --iters)")
    t.add_argument("--loss-every", type=int, default=None,
                   help="NOT the paper: average the loss over z_n, z_2n, ..., z_T instead of "
                        "z_T alone (e.g. 8 with --iters 32: a prior good after every block of "
                        "its 8-step learned rho schedule; T must be a multiple)")
    t.add_argument("--init-weights", default=None,
                   help="warm start from a weights folder written by train (<run>/params)")
    t.add_argument("--val-every", type=int, default=None,
                   help="steps between validation PSNR measurements on held-out images")
    t.add_argument("--val-images", type=int, default=None,
                   help="held-out images (from the test split) for the validation PSNR "
                        "(default 50); 0: no validation, for a source without a test split")
    t.add_argument("--distributed", action="store_true",
                   help="call jax.distributed.initialize() first (multi-host data parallel)")
    t.set_defaults(func=cmd_train)


def _add_pretrain_onenet_parser(sub) -> None:
    o = sub.add_parser("pretrain-onenet", help="adversarially pretrain the OneNet projector",
                       description="Pretrain the original OneNet projector (denoising "
                                   "autoencoder + image and latent discriminators).")
    _add_data_args(o)
    _add_output_args(o, resume_help="continue from the last checkpoint in --out")
    _add_schedule_args(o, steps=50_000, batch=10, width=1.0, seed=0, checkpoint_every=2000)
    o.add_argument("--norm", default="instance", choices=["instance", "virtual_batch"],
                   help="projector normalisation: instance (srph25 baseline, default) or "
                        "virtual_batch (original OneNet, with a fixed reference batch)")
    o.set_defaults(func=cmd_pretrain_onenet)


def _add_evaluate_parser(sub) -> None:
    e = sub.add_parser("evaluate", help="Table 1 / Table 2 / convergence plots",
                       description="Evaluate DU-ADMM, OneNet and wavelet-l1 on held-out "
                                   "images; writes table.{md,csv,json}, per_image.csv, "
                                   "table2.png, convergence.png.")
    _add_data_args(e, trains=False)
    e.add_argument("--du-admm", default=None, help="folder of a trained prior (<run>/params)")
    e.add_argument("--onenet", default=None, help="folder of a pretrained projector")
    e.add_argument("--no-wavelet", action="store_true", help="skip the wavelet-l1 baseline")
    e.add_argument("--n-images", type=int, default=500,
                   help="number of held-out test images (the first N, in file-name order)")
    e.add_argument("--problems", default="pid,bi,si,sr",
                   help="comma list of problems (pid, bi, si, sr, cs, cs_dct, deblur)")
    e.add_argument("--preset", default="paper", choices=["paper", "released", "corrected"],
                   help="test protocol (caps, T, SR adjoint), see admm_jax.presets")
    e.add_argument("--dataset", default="faces", choices=["faces", "natural"],
                   help="only sets DU-ADMM's SR test-time T (13 faces / 11 natural)")
    e.add_argument("--batch", type=int, default=50, help="images per compiled batch")
    e.add_argument("--seed", type=int, default=0,
                   help="seed of the operators and noise (drawn from seed, problem, image index)")
    _add_output_args(e, resume_help="continue an interrupted evaluation in --out (finished "
                                     "(problem, method) blocks are kept)")
    e.set_defaults(func=cmd_evaluate)


def _add_reproduce_parser(sub) -> None:
    r = sub.add_parser("reproduce", help="the main job: train, pretrain, evaluate, Table 1",
                       description="Train DU-ADMM and OneNet, evaluate the three methods and "
                                   "print Table 1. --preset quick runs on a 2-core CPU in 10-12 "
                                   "minutes (measured, README) on the bundled offline photos.")
    r.add_argument("--preset", default="quick", choices=["quick", "paper"],
                   help="quick: small networks on a CPU in minutes; paper: the full protocol "
                        "(a GPU is expected)")
    _add_data_args(r)
    r.add_argument("--dataset", default=None, choices=["faces", "natural"],
                   help="sets DU-ADMM's SR test-time T (13 faces / 11 natural); default: natural "
                        "for the bundled photos, faces otherwise")
    _add_output_args(r, out_default="outputs/reproduce",
                     resume_help="skip finished stages, continue the interrupted one")
    r.set_defaults(func=cmd_reproduce)


#: the library's argument names in its error messages -> the commands' flags
_SOLVE_FLAGS = ((r"\bnum_iters\b", "--iters"), (r"\bnoise_std\b", "--noise"),
                (r"\bblur_sigma\b", "--blur-sigma"), (r"^scale\b", "--scale"),
                (r"^rho\b", "--rho"),
                # "give rho=" / "sigma= (...)" (an argument to pass, no value after it)
                (r"\brho=(?=[\s,;)]|$)", "--rho"), (r"\bsigma=(?=[\s,;)]|$)", "--noise"))


_CONFIG_FLAGS = tuple((rf"\b{name}\b", flag) for name, flag in (  # identifiers: anywhere
    ("batch_size", "--batch"), ("num_iters", "--iters"), ("learning_rate", "--lr"),
    ("checkpoint_every", "--checkpoint-every"), ("val_every", "--val-every"),
    ("val_images", "--val-images"),
    ("compute_dtype", "--dtype"), ("loss_every", "--loss-every"), ("rho_period", "--rho-period"),
    ("rho_rule", "--rho-rule"), ("operator_mix", "--operator-mix"),
    ("init_weights", "--init-weights"), ("problem_probs", "--problem-probs"))) + tuple(
    (rf"^{name}\b", f"--{name}") for name in (  # plain words: only as the message's subject
        "problems", "steps", "width", "seed", "architecture", "objective", "loss"))


#: which table each command's errors are read through (the library's messages name its own
#: arguments, ``batch_size``; a command's user typed ``--batch``)
_FLAG_TABLES = {"solve": _SOLVE_FLAGS, "train": _CONFIG_FLAGS, "evaluate": _CONFIG_FLAGS,
                "pretrain-onenet": _CONFIG_FLAGS}


def _in_flag_names(text: str, command: str) -> str:
    """An error message of ``command``, naming its flags instead of the library's arguments."""
    for pattern, flag in _FLAG_TABLES.get(command, ()):
        text = re.sub(pattern, flag, text)
    return text


def main(argv: list[str] | None = None) -> int:
    """Run one command; every error becomes one line on stderr and exit code 2 (see
    :data:`USER_ERRORS`), Ctrl-C exit code 130. ``--debug`` anywhere prints the traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    args = build_parser().parse_args([a for a in argv if a != "--debug"])
    args.command_line = ["admm-jax", *argv]  # recorded by commands that keep provenance
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        out = getattr(args, "out", None)
        resumable = getattr(args, "resume", None) is not None and out and Path(out).is_dir()
        hint = (f"; what was done is kept in {out}: rerun the same command with --resume to "
                f"continue" if resumable else "")
        print(f"interrupted{hint}", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place where errors become messages
        if debug:
            import traceback

            traceback.print_exc()
        print(_one_line(exc, isinstance(exc, _user_errors()), args.command), file=sys.stderr)
        return 2


def _one_line(exc: BaseException, expected: bool, command: str = "") -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if expected:
        return f"error: {_in_flag_names(text, command)}"
    return (f"error: unexpected {type(exc).__name__}: {text} (a bug: rerun with --debug for "
            f"the traceback and report it)")


if __name__ == "__main__":
    sys.exit(main())
