"""The DU-ADMM training loop: progress bar, logs, validation, checkpoints, resume.

Output folder layout (``out_dir``)::

    config.json          the TrainConfig of the run
    metrics.jsonl        one JSON record per logged step (loss, per-problem loss, throughput)
    metrics.csv          the same, flat
    validation.jsonl     periodic validation PSNR per problem (T unrolled iterations), or
                         denoising PSNR at σ = 0.05, 0.1, 0.2 for ``objective="denoise"``
    provenance.jsonl     one record per call that trained in this folder (first call and each
                         resume): the step it started at and how it was invoked (``admm-jax
                         train`` records its command line and the calling script, if any)
    checkpoints/<step>/  orbax checkpoints (last ``keep_checkpoints``)
    params/              final parameters (orbax, loadable by ``load_prior``)

Interrupting (Ctrl-C) saves a checkpoint first; ``resume=True`` continues exactly where the last
checkpoint stopped (same parameters, optimiser state, data order and operator draws).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from admm_jax import _checks
from admm_jax.admm import initial_state, unrolled_admm
from admm_jax.metrics import psnr
from admm_jax.presets import training_rho
from admm_jax.problems import Problem, get_problems, measure_indexed
from admm_jax.train.checkpoint import (
    CheckpointError,
    Checkpointer,
    read_weights_config,
    restore_weights,
    save_weights,
)
from admm_jax.train.config import TrainConfig
from admm_jax.train.runtime import Batches, Schedule, append_jsonl, run_steps, to_float
from admm_jax.train.optim import make_optimizer
from admm_jax.train.step import (
    TrainState,
    check_batch_divides,
    init_train_state,
    loss_categories,
    make_mesh,
    make_train_step,
    shard_batch,
)


class OutputExistsError(FileExistsError):
    """The output folder already holds a run and neither resume nor overwrite was asked."""


#: the file :func:`prepare_output_dir` leaves in every output folder it makes: ``--overwrite``
#: deletes only a folder that holds it, never a folder of the user's own files
OUTPUT_MARKER = ".admm_jax_output"


def check_output_dir(out_dir: str | Path, *, resume: bool, overwrite: bool = False) -> Path:
    """Raise what :func:`prepare_output_dir` would raise, touching nothing: call it before
    slow work (loading data) so a refused run fails at once."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output folder {out} exists and is a file; choose a folder.")
    if out.exists() and any(out.iterdir()):
        if not (resume or overwrite):
            raise OutputExistsError(
                f"output folder {out} already exists and is not empty; pass --resume to "
                f"continue that run, --overwrite to replace it, or choose another folder.")
        if resume:
            _check_resumable(out)
        else:
            _check_replaceable(out)
    return out


#: what an admm-jax run leaves in its folder besides :data:`OUTPUT_MARKER` (folders made
#: before the marker existed): training checkpoints, evaluation partial results, the
#: training provenance log, reproduce's DU-ADMM stage
_RUN_FOOTPRINTS = ("checkpoints", "partial", "provenance.jsonl", "du_admm")


def _check_resumable(out: Path) -> None:
    """``--resume`` appends to the logs of ``out`` and reads its checkpoints: only in the
    folder of an admm-jax run, never in a folder of the user's own files."""
    if (out / OUTPUT_MARKER).exists() or any((out / n).exists() for n in _RUN_FOOTPRINTS):
        return
    names = sorted(p.name for p in out.iterdir())
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    raise OutputExistsError(
        f"--resume: output folder {out} holds {shown} but no admm-jax run (no {OUTPUT_MARKER} "
        f"or checkpoints); give the folder of the run to continue, or another folder.")


def _check_replaceable(out: Path) -> None:
    """``--overwrite`` deletes ``out`` with everything in it: only an admm-jax output folder,
    and never the working directory, a folder above it, or the home folder."""
    target, here = out.resolve(), Path.cwd().resolve()
    try:
        home = Path.home().resolve()
    except RuntimeError:  # no home folder known (HOME unset and no password entry)
        home = None
    if target == here or target in here.parents or target == home:
        raise OutputExistsError(
            f"--overwrite would delete {out} ({target}), which is the current folder, a folder "
            f"above it or your home folder; choose a folder of its own for the outputs.")
    if not (out / OUTPUT_MARKER).exists():
        names = sorted(p.name for p in out.iterdir())
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise OutputExistsError(
            f"output folder {out} holds {shown} but no {OUTPUT_MARKER}, the file every admm-jax "
            f"command leaves in a folder it makes; --overwrite deletes only such folders: "
            f"delete it yourself if it is yours to replace, or choose another folder.")


def prepare_output_dir(out_dir: str | Path, *, resume: bool, overwrite: bool = False) -> Path:
    """Create ``out_dir``; refuse to reuse a non-empty one unless ``resume`` or ``overwrite``
    (which deletes it first, and only if it is an admm-jax output folder: :data:`OUTPUT_MARKER`).

    Call it only after every input was validated, so a refused run leaves no folder behind."""
    out = check_output_dir(out_dir, resume=resume, overwrite=overwrite)
    if out.exists() and any(out.iterdir()):
        if resume:
            return out
        import shutil

        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / OUTPUT_MARKER).write_text(
        "This folder was made by an admm-jax command. Rerunning it with --overwrite deletes the "
        "folder and everything in it; without this file --overwrite refuses to.\n")
    return out


def build_prior(cfg: TrainConfig, seed: int | None = None, *, abstract: bool = False):
    """The DU-ADMM prior of ``cfg`` as (apply_fn, params).

    ``abstract=True``: ``params`` is a template of ``jax.ShapeDtypeStruct`` leaves, built
    without running (and compiling) the random initializers, for restoring saved weights into.
    """
    from admm_jax.priors import build_prior_network

    net_fn, net_params = build_prior_network(
        cfg.architecture, width=cfg.width, seed=cfg.seed if seed is None else seed,
        abstract=abstract, residual=cfg.residual, gated=cfg.gated,
        compute_dtype=jnp.bfloat16 if cfg.compute_dtype == "bfloat16" else jnp.float32)
    if cfg.rho_rule != "learned":
        return net_fn, net_params
    # the learned ρ schedule travels with the network: params = {"prior": ..., "rho": ...}
    from admm_jax.rho_rules import init_rho_rule

    rho = init_rho_rule(cfg.rho_steps)
    if abstract:
        rho = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), rho)
    return (lambda p, v: net_fn(p["prior"], v)), {"prior": net_params, "rho": rho}


def rho_rule_params(params: Any, cfg: TrainConfig) -> Any | None:
    """The learned ρ-schedule parameters of a prior (None for a fixed-ρ prior)."""
    return params["rho"] if cfg.rho_rule == "learned" else None


def warm_start(params: Any, cfg: TrainConfig) -> Any:
    """``params`` with the network part replaced by the weights in ``cfg.init_weights``."""
    if not cfg.init_weights:
        return params
    _, loaded, src = load_prior(cfg.init_weights)
    if (src.architecture, src.width, src.residual, src.gated) != (
            cfg.architecture, cfg.width, cfg.residual, cfg.gated):
        raise ValueError(
            f"init_weights {cfg.init_weights}: architecture/width {src.architecture} "
            f"{src.width} do not match the run's {cfg.architecture} {cfg.width}")
    net = loaded["prior"] if src.rho_rule == "learned" else loaded
    if cfg.rho_rule == "learned":
        rho = loaded["rho"] if src.rho_rule == "learned" else params["rho"]
        period = int(rho["log_rho"].shape[0])
        if period != cfg.rho_steps:
            raise ValueError(f"init_weights {cfg.init_weights}: its learned rho schedule has "
                             f"{period} steps, this run's has {cfg.rho_steps}; to repeat it "
                             f"over num_iters={cfg.num_iters} set rho_period={period} "
                             f"(--rho-period), with num_iters a multiple of it")
        return {"prior": net, "rho": rho}
    return net


class Validator:
    """Fixed held-out images and one fixed operator per image and problem; reports the mean
    PSNR of z after T unrolled iterations (and, once, of the pinv start z⁰)."""

    start_kind, kind = "pinv_start", "du_admm"  # the "kind" of its validation.jsonl records

    def __init__(self, images: np.ndarray, problems: tuple[Problem, ...], num_iters: int,
                 prior_fn: Callable, seed: int = 12345, learned_rho: bool = False):
        self.images = jnp.asarray(to_float(np.asarray(images)))
        idx = jnp.arange(self.images.shape[0])
        key = jax.random.PRNGKey(seed)
        self.problems = problems
        self._measured, self.start_psnr, self._solvers = {}, {}, {}
        for p in problems:
            op, y = measure_indexed(p, key, idx, self.images)
            self._measured[p.name] = (op, y)
            self.start_psnr[p.name] = float(jnp.mean(psnr(initial_state(op, y).z, self.images)))
            self._solvers[p.name] = jax.jit(
                lambda prm, o, yy, p=p: unrolled_admm(
                    lambda v, r: prior_fn(prm, v), o, yy,
                    _validation_rho(prm, p, jax.tree_util.tree_leaves(yy)[0].shape[0],
                                    learned_rho, num_iters), num_iters, validate=False))

    def __call__(self, params: Any) -> dict[str, float]:
        out = {}
        for p in self.problems:
            op, y = self._measured[p.name]
            z = self._solvers[p.name](params, op, y)
            out[p.name] = float(jnp.mean(psnr(z, self.images)))
        return out


class DenoiseValidator:
    """For ``objective="denoise"``: fixed held-out images with fixed Gaussian noise at each σ
    in :attr:`SIGMAS`; reports the mean PSNR of the denoised images (keys ``"denoise_<σ>"``,
    e.g. ``"denoise_0.1"``) and, once, of the noisy inputs."""

    SIGMAS = (0.05, 0.1, 0.2)
    start_kind, kind = "noisy_input", "denoise"

    def __init__(self, images: np.ndarray, prior_fn: Callable, seed: int = 12345):
        self.images = jnp.asarray(to_float(np.asarray(images)))
        noise = jax.random.normal(jax.random.PRNGKey(seed), self.images.shape,
                                  self.images.dtype)
        self._noisy = {f"denoise_{s:g}": self.images + s * noise for s in self.SIGMAS}
        self.start_psnr = {k: float(jnp.mean(psnr(v, self.images)))
                           for k, v in self._noisy.items()}
        self._denoise = jax.jit(prior_fn)

    def __call__(self, params: Any) -> dict[str, float]:
        return {k: float(jnp.mean(psnr(self._denoise(params, v), self.images)))
                for k, v in self._noisy.items()}


def make_validator(val_images: np.ndarray, problems: tuple[Problem, ...], prior_fn: Callable,
                   cfg: TrainConfig) -> "Validator | DenoiseValidator":
    """The periodic validation of a run: DU-ADMM PSNR per problem, or denoising PSNR."""
    if cfg.objective == "denoise":
        return DenoiseValidator(val_images, prior_fn)
    return Validator(val_images, problems, cfg.num_iters, prior_fn,
                     learned_rho=cfg.rho_rule == "learned")


def _validation_rho(params: Any, problem: Problem, batch: int, learned: bool,
                    num_iters: int) -> Any:
    if not learned:
        return training_rho(problem)
    from admm_jax.rho_rules import rho_for_batch

    return rho_for_batch(params["rho"], problem.noise_std, batch, num_iters)


def provenance_record(command_line: list[str]) -> dict[str, Any]:
    """How a training run was invoked, for its ``provenance.jsonl`` (see :func:`train`): the UTC
    date, the command line, and the recipe a script in ``experiments/`` names in the environment
    variable ``ADMM_JAX_RECIPE`` (the script with the variables that choose its arms, data and
    starting weights; None when unset)."""
    import datetime
    import os

    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "argv": list(command_line),
            "recipe": os.environ.get("ADMM_JAX_RECIPE") or None}


def train(cfg: TrainConfig, train_images: np.ndarray, val_images: np.ndarray | None,
          out_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
          progress: bool = True, stop_after: int | None = None,
          time_budget_s: float | None = None,
          callback: Callable[[int, TrainState], None] | None = None,
          provenance: dict[str, Any] | None = None,
          log: Callable[[str], None] = print) -> dict:
    """Train DU-ADMM and return a summary dict.

    Args:
      cfg: the run's configuration (see :mod:`admm_jax.train.config`).
      train_images: (N, H, W, 3) uint8 or float in [0, 1].
      val_images: held-out images for the periodic validation PSNR (or None).
      out_dir: output folder (see module docstring).
      resume: continue from the latest checkpoint in ``out_dir``.
      stop_after: stop (with a checkpoint) after this many steps of *this* call — for tests
        and for chunking long runs across sessions.
      time_budget_s: finish (final parameters written, like reaching ``cfg.steps``) after the
        first step that ends when the run has trained this many wall-clock seconds
        (compilation included), counting the earlier calls of a resumed run up to its
        checkpoint — to give several methods the same training time.
      callback: called as ``callback(step, state)`` after every step (after any checkpoint).
      provenance: how this run was invoked (JSON-serialisable; e.g. the command line), appended
        to ``out_dir/provenance.jsonl`` with the step this call starts at, so that a committed
        run names the command that made it (a resumed run gets one record per call).
    """
    from admm_jax.data import BatchIterator, prefetch

    # every check before the output folder is created: a refused run leaves nothing behind
    cfg.validate()
    _checks.check_image_array("train_images", train_images)
    if val_images is not None and len(val_images):
        _checks.check_image_array("val_images", val_images)
    mesh = make_mesh()
    check_batch_divides(cfg.batch_size, mesh)
    # the warm start is read (and checked) before anything is written; a resumed run then
    # replaces these parameters with its checkpoint's (built once: each eager initialisation
    # compiles one small program per layer shape)
    prior_fn, params = build_prior(cfg)
    params = warm_start(params, cfg)
    if resume:  # refuse a resume that cannot continue before anything is written
        _check_resume_settings(check_output_dir(out_dir, resume=True), cfg)
    out = prepare_output_dir(out_dir, resume=resume, overwrite=overwrite)
    problems = tuple(get_problems()[n] for n in cfg.problems)
    tx = make_optimizer(cfg)
    state = init_train_state(params, tx, mesh)
    step_fn = make_train_step(prior_fn, tx, problems, cfg, mesh)
    data = BatchIterator(train_images, cfg.batch_size, seed=cfg.seed, augment=cfg.augment)
    base_key = jax.random.PRNGKey(cfg.seed)
    ckpt = Checkpointer(out / "checkpoints", keep=cfg.keep_checkpoints)
    state, data, start, spent_s = (_resume_point(ckpt, state, data, train_images, cfg, log)
                                   if resume else (state, data, 0, 0.0))
    _write_config(out, cfg, resume, log)
    if provenance is not None:
        append_jsonl(out / "provenance.jsonl", {"start_step": start, **provenance})

    validator = (make_validator(val_images[: cfg.val_images], problems, prior_fn, cfg)
                 if val_images is not None and len(val_images) else None)
    if validator is not None and start == 0:
        append_jsonl(out / "validation.jsonl",
                     {"step": 0, "kind": validator.start_kind, **validator.start_psnr})
    # batches are prepared on a background thread; its state() is the position after the
    # last batch actually consumed, so checkpoints stay exact
    run = run_steps(
        out=out, state=state, batches=Batches(prefetch(data, size=2),
                                              lambda b: shard_batch(to_float(b), mesh)),
        step_fn=lambda st, images: step_fn(st, images, base_key), checkpointer=ckpt,
        start=start, schedule=Schedule(cfg.steps, cfg.log_every, cfg.checkpoint_every,
                                       cfg.val_every, cfg.seed),
        record=_train_record(loss_categories(problems, cfg), cfg.batch_size),
        validate=None if validator is None else (
            lambda step, st: {"kind": validator.kind, **validator(st.params)}),
        stop_after=stop_after, time_budget_s=time_budget_s, spent_s=spent_s, callback=callback,
        desc="train DU-ADMM", progress=progress, log=log)
    if run.finished:
        save_params(out / "params", run.state.params, cfg)
    log(f"training outputs written to {out}")
    return {"out_dir": str(out), "step": run.end, "compile_s": run.compile_s,
            "final_loss": float(run.last_metrics["loss"]) if run.end > start else None,
            "params": run.state.params}


def _resume_point(ckpt: Checkpointer, state: TrainState, data, train_images: np.ndarray,
                  cfg: TrainConfig, log: Callable[[str], None]
                  ) -> tuple[TrainState, Any, int, float]:
    """(state, batch iterator, step, training seconds spent) to continue from: the latest
    checkpoint's, or the fresh ones at step 0 when the folder has no checkpoint yet."""
    from admm_jax.data import BatchIterator

    if ckpt.latest_step() is None:
        log(f"--resume: no checkpoint in {ckpt.directory}; starting from step 0")
        return state, data, 0, 0.0
    state, meta = ckpt.restore(state)
    start = int(meta["step"])
    log(f"resumed from step {start} ({ckpt.directory / str(start)})")
    data = BatchIterator.from_state(train_images, meta["data"], augment=cfg.augment)
    return state, data, start, float(meta.get("train_seconds", 0.0))


def _check_resume_settings(out: Path, cfg: TrainConfig) -> None:
    """The DU-ADMM form of :func:`check_resume_settings`."""
    check_resume_settings(out, json.loads(cfg.to_json()), cfg.steps,
                          ("architecture", "width", "compute_dtype", "batch_size", "objective"),
                          f"e.g. the command in {out / 'provenance.jsonl'}")


def check_resume_settings(out: Path, requested: dict, steps: int, keys: tuple[str, ...],
                          hint: str = "") -> None:
    """Refuse, before anything is written, a resume of the run in ``out`` whose ``keys`` (what
    its checkpoints' arrays depend on) differ from ``requested`` (this call's config as a
    dict), or that asks for fewer ``steps`` than the run has done. Reads only: a refused
    resume changes nothing. A run without config.json (never started) passes."""
    cfg_path = out / "config.json"
    if not cfg_path.exists():
        return
    saved = json.loads(cfg_path.read_text())
    differ = [k for k in keys if k in saved and saved[k] != requested.get(k)]
    if differ:
        was = ", ".join(f"{k}={saved[k]!r}" for k in differ)
        asked = ", ".join(f"{k}={requested.get(k)!r}" for k in differ)
        raise ValueError(f"--resume: the run in {out} was trained with {was}, this call asks "
                         f"for {asked}; its checkpoints need the same {', '.join(keys)} "
                         f"(give the run's settings again{', ' + hint if hint else ''})")
    done = sorted(int(p.name) for p in (out / "checkpoints").glob("*") if p.name.isdigit())
    if done and done[-1] > steps:
        raise ValueError(f"--resume: the run in {out} is already at step {done[-1]}, beyond "
                         f"steps={steps}; ask for at least {done[-1]} steps")


def _write_config(out: Path, cfg: TrainConfig, resume: bool,
                  log: Callable[[str], None]) -> None:
    """``config.json`` of the run, written once a resume point was found; on resume, say
    which settings this call changes (they apply from its first step on)."""
    cfg_path = out / "config.json"
    if resume and cfg_path.exists():
        saved, now = json.loads(cfg_path.read_text()), json.loads(cfg.to_json())
        changed = [f"{k} {saved.get(k)!r} -> {v!r}" for k, v in now.items()
                   if saved.get(k) != v]
        if changed:
            log(f"--resume: this call changes {', '.join(changed)} (from the resumed step on; "
                f"the previous settings stay in {out / 'provenance.jsonl'})")
    cfg_path.write_text(cfg.to_json())


def _train_record(categories: tuple[str, ...], batch_size: int) -> Callable:
    """The logged record of a training step: loss, throughput, gradient norm, loss per
    problem (or family) of the batch (None where the batch had none)."""
    def record(step: int, metrics: dict, rate: float) -> dict:
        rec = {"loss": float(metrics["loss"]), "steps_per_s": rate,
               "images_per_s": rate * batch_size, "grad_norm": float(metrics["grad_norm"])}
        for name, l, c in zip(categories, np.asarray(metrics["loss_per_problem"]),
                              np.asarray(metrics["count_per_problem"])):
            rec[f"loss_{name}"] = float(l) if c > 0 else None
        return rec
    return record


def save_params(path: Path, params: Any, cfg: TrainConfig) -> None:
    """Final parameters alone (orbax) plus the config needed to rebuild the prior."""
    save_weights(path, params, cfg.to_json())


def _prior_config(path: Path, what: str) -> TrainConfig:
    """The TrainConfig of a saved prior or run; a OneNet projector's folder (its config has
    ``clamp`` and ``norm``, no ``num_iters``) is named as such instead of failing on its keys."""
    saved = read_weights_config(path, what)
    if {"clamp", "norm"} <= saved.keys() and "num_iters" not in saved:
        raise CheckpointError(f"{Path(path).absolute()} holds a OneNet projector, not a {what}; "
                              f"give it as --onenet (evaluate) or to load_projector")
    return TrainConfig.from_dict(saved)


def load_prior(path: str | Path):
    """Rebuild (apply_fn, params, cfg) from a ``params/`` folder written by :func:`train`, or
    from a training run folder that has no ``params/`` yet (an unfinished run): then the
    parameters of its latest checkpoint are loaded."""
    path = Path(path)
    if not (path / "state").exists() and (path / "checkpoints").is_dir():
        if (path / "params").is_dir():
            return load_prior(path / "params")
        cfg = _prior_config(path, "DU-ADMM training run")
        prior_fn, params = build_prior(cfg)
        tx = make_optimizer(cfg)
        template = TrainState(jnp.asarray(0, jnp.int32), params, tx.init(params))
        with Checkpointer(path / "checkpoints", keep=cfg.keep_checkpoints) as ckpt:
            state, _ = ckpt.restore(template)
        return prior_fn, state.params, cfg
    cfg = _prior_config(path, "DU-ADMM prior")
    prior_fn, template = build_prior(cfg, abstract=True)
    return prior_fn, restore_weights(path, template, "DU-ADMM prior"), cfg
