"""Evaluate ADMM methods on held-out images: Table 1, Table 2, convergence curves.

A *method* is a proximal step plus, per problem, the ADMM settings (ρ, tolerance, cap) it runs
with. Every method runs the converging solver (:func:`admm_jax.admm.converging_admm`), batched
and compiled, each sample stopping on its own; DU-ADMM simply has a cap equal to its test-time
T. Operators and noise of image ``i`` depend only on ``(seed, problem, i)``, so every method sees
exactly the same measurements and two runs with the same seed give identical tables.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np

from admm_jax import _checks
from admm_jax.admm import converging_admm, initial_state
from admm_jax.metrics import psnr
from admm_jax.presets import IterativeSettings, Preset, ProblemSettings, get_preset
from admm_jax.problems import PAPER_PROBLEMS, Problem, get_problems, measure_indexed

Array = jax.Array


@dataclass(frozen=True)
class Method:
    """A proximal step and the ADMM settings it uses on each problem.

    Both callables receive the preset's :class:`~admm_jax.presets.ProblemSettings` of the
    problem being solved (``.problem`` is its name). ``make_prox(s)`` returns ``prox(v, rho)``
    mapping (B, H, W, C) → (B, H, W, C) in the [0, 1] domain (most methods ignore ``s``;
    wavelet-ℓ1 takes its λ from it). ``settings(s)`` returns the
    :class:`~admm_jax.presets.IterativeSettings` (ρ, tol, max_iters) the method runs with.
    """

    name: str
    make_prox: Callable[[ProblemSettings], Callable[[Array, Array], Array]]
    settings: Callable[[ProblemSettings], IterativeSettings]
    #: digest of the method's weights (empty: none, or unknown, as for a custom prox); part of
    #: the fingerprint that ``--resume`` checks, so that results of other weights are not reused
    weights_digest: str = ""


def params_digest(params: Any) -> str:
    """SHA-256 of a parameter pytree's structure, shapes, dtypes and values."""
    h = hashlib.sha256(str(jax.tree_util.tree_structure(params)).encode())
    for leaf in jax.tree_util.tree_leaves(params):
        arr = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{arr.shape}{arr.dtype}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def du_admm_method(prior_fn: Callable, params: Any, name: str = "DU-ADMM") -> Method:
    """The learned prior with each problem's DU-ADMM settings (cap = test-time T)."""
    prox = lambda v, rho: prior_fn(params, v)
    return Method(name, lambda p: prox, lambda p: p.du_admm, params_digest(params))


def onenet_method(projector_fn: Callable, params: Any, name: str = "OneNet") -> Method:
    """A pretrained projector with the OneNet settings (ρ, tol and cap of spec §4.3)."""
    prox = lambda v, rho: projector_fn(params, v)
    return Method(name, lambda p: prox, lambda p: p.onenet, params_digest(params))


def wavelet_method(name: str = "wavelet-l1") -> Method:
    """Wavelet-ℓ1 ADMM with λ, α, tol, cap per problem (spec §5)."""
    from admm_jax.wavelets import wavelet_l1_prox

    def make_prox(s: ProblemSettings):
        return wavelet_l1_prox(s.wavelet.lam, wavelet=s.wavelet.wavelet, level=s.wavelet.level)

    return Method(name, make_prox, lambda s: s.wavelet.iterative)


def methods_from_weights(du_admm: str | Path | None = None, onenet: str | Path | None = None,
                         wavelet: bool = True) -> list[Method]:
    """The methods of a Table 1 run from saved weights: DU-ADMM from a trained prior folder
    (``<run>/params``), OneNet from a pretrained projector folder, and wavelet-ℓ1, in that
    order. Reading the weights happens here, so unreadable ones fail before any evaluation."""
    methods = []
    if du_admm:
        from admm_jax.train import load_prior

        prior_fn, params, cfg = load_prior(Path(du_admm))
        methods.append(du_admm_method(prior_fn, params, cfg.method_name))
    if onenet:
        from admm_jax.baselines.onenet_train import load_projector

        proj_fn, params, _ = load_projector(Path(onenet))
        methods.append(onenet_method(proj_fn, params))
    if wavelet:
        methods.append(wavelet_method())
    return methods


def custom_method(name: str, prox: Callable[[Array, Array], Array],
                  settings: IterativeSettings | Callable[[ProblemSettings], IterativeSettings]
                  ) -> Method:
    """Any user prox ``prox(v, rho)``, with fixed settings or settings per problem (a function
    of the preset's :class:`~admm_jax.presets.ProblemSettings`, e.g. keyed on ``s.problem``)."""
    settings_fn = settings if callable(settings) else (lambda p: settings)
    return Method(name, lambda p: prox, settings_fn)


@dataclass(frozen=True)
class EvalConfig:
    """One evaluation (Table 1 protocol): which problems, the settings preset, the data set
    (only changes DU-ADMM's SR test-time T), images per compiled batch, the seed of the
    operators and noise, and how many images the Table 2 picture grid shows. Validated on
    construction."""

    problems: tuple[str, ...] = PAPER_PROBLEMS
    preset: str = "paper"
    dataset: str = "faces"  # "faces" | "natural" (SR test-time T of DU-ADMM)
    batch_size: int = 50
    seed: int = 0
    table2_images: int = 3

    def __post_init__(self) -> None:
        preset = get_preset(self.preset, self.dataset)
        _checks.check_choices("problems", self.problems, preset.problems, what="problem")
        _checks.check_int("batch_size", self.batch_size, minimum=1)
        _checks.check_int("seed", self.seed, minimum=0)
        _checks.check_int("table2_images", self.table2_images, minimum=0)


PARTIAL_DIR = "partial"


def run_evaluation(images: np.ndarray, methods: list[Method], cfg: EvalConfig,
                   out_dir: str | Path, *, progress: bool = True, resume: bool = False,
                   log: Callable[[str], None] = print) -> list[dict]:
    """Evaluate ``methods`` × ``cfg.problems`` on ``images`` (N, H, W, 3) and write outputs.

    Writes to ``out_dir``: ``table.md``, ``table.csv``, ``table.json`` (Table 1),
    ``per_image.csv``, ``history.npz`` (mean curves), ``table2.png``, ``convergence.png``.
    Returns the Table 1 records.

    Every finished (problem, method) block is also saved (atomically) under
    ``out_dir/partial/``; with ``resume=True`` the blocks found there are loaded instead of
    recomputed, so an interrupted evaluation continues where it stopped. A resume refuses blocks
    written for other images, methods or settings (a fingerprint of all three is stored).
    """
    from tqdm.auto import tqdm

    x_all = _checks.as_unit_float32("images", images)  # before anything is written
    if not methods:
        raise ValueError("methods is empty: give at least one Method to evaluate.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = x_all.shape[0]
    problems = get_problems()
    preset = get_preset(cfg.preset, cfg.dataset)
    base_key = jax.random.PRNGKey(cfg.seed)
    bs = min(cfg.batch_size, n)
    n_show = min(cfg.table2_images, n)
    partial = _partial_dir(out, x_all, methods, cfg, resume)

    rows: list[dict] = []
    curves: dict[str, np.ndarray] = {}
    examples: dict[str, dict[str, Any]] = {}
    n_batches = (n + bs - 1) // bs
    bar = tqdm(total=len(methods) * len(cfg.problems) * n_batches, disable=not progress,
               desc="evaluate", unit="batch", dynamic_ncols=True)
    for pname in cfg.problems:
        problem = problems[pname]
        examples[pname] = {"truth": x_all[:n_show]}
        for m_index, method in enumerate(methods):
            block_file = partial / f"{pname}__{m_index}.npz"
            if block_file.exists():
                block = dict(np.load(block_file))
                bar.update(n_batches)
                log(f"  {method.name:>12s} {pname:>6s}: loaded from {block_file}")
            else:
                block = _evaluate_block(method, problem, preset, base_key, x_all, bs, n_show,
                                        bar)
                _save_atomic(block_file, block)
                log(f"  {method.name:>12s} {pname:>6s}: compile {float(block['compile_s']):.1f}s")
            for j in range(n):
                rows.append({"method": method.name, "problem": pname, "image": j,
                             "psnr": float(block["psnr"][j]),
                             "iterations": int(block["iterations"][j]),
                             "pinv_psnr": float(block["pinv_psnr"][j]),
                             "seconds": float(block["seconds"][j])})
            for key in ("psnr", "rms_xz"):
                curves[f"{method.name}|{pname}|{key}"] = block[f"hist_{key}"] / n
            examples[pname][method.name] = {"z": block["ex_z"], "psnr": block["psnr"][:n_show],
                                            "iterations": block["iterations"][:n_show]}
            examples[pname]["input"] = block["ex_input"]
            examples[pname]["input_psnr"] = block["pinv_psnr"][:n_show]
    bar.close()
    return _write_outputs(out, rows, curves, examples, methods, cfg, n, preset)


def _write_outputs(out: Path, rows: list[dict], curves: dict[str, np.ndarray],
                   examples: dict[str, dict[str, Any]], methods: list[Method], cfg: EvalConfig,
                   n: int, preset: Preset) -> list[dict]:
    """Table 1 (md/csv/json), per-image CSV, mean curves, the two figures and the config of
    an evaluation; returns the Table 1 records."""
    from admm_jax.evaluate.report import (
        summarize,
        write_convergence_plot,
        write_table,
        write_table2,
    )

    records = summarize(rows)
    write_table(records, out)
    with open(out / "per_image.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    np.savez(out / "history.npz", **curves)
    write_convergence_plot(curves, [m.name for m in methods], list(cfg.problems),
                           out / "convergence.png")
    write_table2(examples, [m.name for m in methods], list(cfg.problems), out / "table2.png")
    (out / "eval_config.json").write_text(json.dumps(
        {"problems": list(cfg.problems), "preset": cfg.preset, "dataset": cfg.dataset,
         "batch_size": cfg.batch_size, "seed": cfg.seed, "n_images": n,
         "methods": [m.name for m in methods],
         "sr_adjoint_scale": preset.sr_adjoint_scale}, indent=2))
    return records


def _evaluate_block(method: Method, problem: Problem, preset: Preset, base_key,
                    x_all: np.ndarray, bs: int, n_show: int, bar) -> dict[str, np.ndarray]:
    """All N images of one (method, problem): per-image arrays, summed histories, examples."""
    n = x_all.shape[0]
    settings = preset.settings(problem)
    s = method.settings(settings)
    prox = method.make_prox(settings)
    solve = jax.jit(lambda idx, x: _solve_batch(prox, problem, preset, s, base_key, idx, x))
    hist_sum = {k: np.zeros(s.max_iters) for k in ("psnr", "rms_xz")}
    per_image = {k: np.zeros(n, dt) for k, dt in (("psnr", np.float64), ("pinv_psnr", np.float64),
                                                 ("seconds", np.float64),
                                                 ("iterations", np.int64))}
    block: dict[str, np.ndarray] = {}
    examples: dict[str, list[np.ndarray]] = {"z": [], "input": []}
    compile_s = None
    for start in range(0, n, bs):
        stop = min(n, start + bs)
        idx = np.arange(start, stop)
        x = x_all[start:stop]
        if x.shape[0] < bs:  # pad the last batch to keep one compiled shape
            pad = bs - x.shape[0]
            x = np.concatenate([x, np.repeat(x[-1:], pad, 0)])
            idx = np.concatenate([idx, np.repeat(idx[-1:], pad)])
        if compile_s is None:  # compile once, timed apart from the runs
            t0 = time.perf_counter()
            solve = solve.lower(idx, x).compile()
            compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = jax.block_until_ready(solve(idx, x))
        dt = (time.perf_counter() - t0) / len(idx)
        k = stop - start
        per_image["psnr"][start:stop] = np.asarray(res["psnr"])[:k]
        per_image["iterations"][start:stop] = np.asarray(res["iterations"])[:k]
        per_image["pinv_psnr"][start:stop] = np.asarray(res["pinv_psnr"])[:k]
        per_image["seconds"][start:stop] = dt
        for key in hist_sum:
            hist_sum[key] += _forward_fill(np.asarray(res["history"][key])[:, :k]).sum(1)
        if start < n_show:  # the first n_show images: more than one batch when bs < n_show
            take = min(n_show, stop) - start
            examples["z"].append(np.asarray(res["z"])[:take])
            examples["input"].append(np.asarray(res["z0"])[:take])
        bar.update(1)
    none = np.zeros((0,) + x_all.shape[1:], np.float32)  # table2_images = 0
    block["ex_z"] = np.concatenate(examples["z"]) if examples["z"] else none
    block["ex_input"] = np.concatenate(examples["input"]) if examples["input"] else none
    block.update(per_image)
    block.update({f"hist_{k}": v for k, v in hist_sum.items()})
    block["compile_s"] = np.asarray(compile_s)
    return block


def _partial_dir(out: Path, x_all: np.ndarray, methods: list[Method], cfg: EvalConfig,
                 resume: bool) -> Path:
    """``out/partial`` with a fingerprint of (images, methods and their weights, config) checked
    on resume."""
    h = hashlib.sha256(np.ascontiguousarray(x_all).tobytes())
    h.update(json.dumps({"methods": [m.name for m in methods],
                         "weights": [m.weights_digest for m in methods],
                         "problems": list(cfg.problems),
                         "preset": cfg.preset, "dataset": cfg.dataset, "seed": cfg.seed,
                         "batch": cfg.batch_size, "table2": cfg.table2_images}).encode())
    fingerprint = h.hexdigest()
    partial = out / PARTIAL_DIR
    stamp = partial / "fingerprint.txt"
    if resume and stamp.exists() and stamp.read_text().strip() != fingerprint:
        raise ValueError(
            f"cannot resume in {out}: its partial results were computed for other images, methods, "
            "weights or settings; use a new output folder (or --overwrite to start again).")
    if not resume and partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint)
    return partial


def _save_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _solve_batch(prox, problem: Problem, preset: Preset, s: IterativeSettings, base_key, idx,
                 x):
    op, y = measure_indexed(problem, base_key, idx, x)
    op = preset.test_operator(op)  # the legacy SR adjoint of the paper/released presets
    z0 = initial_state(op, y).z
    res = converging_admm(prox, op, y, s.rho, tol=s.tol, max_iters=s.max_iters, x_true=x,
                          validate=False)
    return {"z": res.z, "z0": z0, "psnr": psnr(res.z, x), "pinv_psnr": psnr(z0, x),
            "iterations": res.iterations, "history": res.history}


def _forward_fill(h: np.ndarray) -> np.ndarray:
    """(T, B) history with NaN after a sample stopped -> last value carried forward."""
    out = h.copy()
    for t in range(1, out.shape[0]):
        nan = np.isnan(out[t])
        out[t, nan] = out[t - 1, nan]
    return out
