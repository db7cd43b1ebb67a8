"""Pretrained DU-ADMM priors shipped inside the package, loaded by name.

>>> import admm_jax as aj
>>> prior = aj.pretrained("natural")            # or "faces"; aj.pretrained_names() lists them
>>> z = aj.unrolled_admm(prior, op, y, prior.rho_for("pid"), prior.num_iters)

A :class:`PretrainedPrior` *is* a prox: ``prior(v, rho)`` maps images ``v`` of shape
``(B, H, W, C)`` (or one ``(H, W, C)``), float32 in [0, 1], to the prior's output of the same
shape, so it plugs into :func:`admm_jax.unrolled_admm` and :func:`admm_jax.converging_admm`
like any prox (the learned prior ignores ``rho``; ρ only enters the data step).

Any image size and greyscale. The shipped priors are fully convolutional residual U-Nets whose
two stride-2 levels need sides divisible by 4: an image of another size is padded on its
bottom/right edge by mirror reflection up to the next multiple of 4 *inside the prox*, run
through the network and cropped back, so the ADMM iterates keep the image's own size. A
greyscale image (C = 1) is replicated to three channels for the network and the three outputs
are averaged back to one. Sides must be at least 8 pixels.

Test-time self-ensemble: ``aj.pretrained(name, ensemble="hflip")`` runs the network on the
image and its mirror and averages the two outputs (mirrored back) in every prox call, at twice
the cost; ``"dihedral"`` uses all eight flips and quarter turns (:mod:`admm_jax.priors.ensemble`).

The network works in the [−1, 1] domain; the mapping ``2x − 1`` in and ``o/2 + 0.5`` out happens
inside :func:`admm_jax.priors.make_prior_fn`, as everywhere in the library.

Files. Each prior is two package-data files in ``admm_jax/pretrained_priors/weights/``:
``<name>.npz`` (float32 parameters, one array per parameter, keyed by its path in the NNX
state) and ``<name>.json`` (architecture, training data and licence, training command and
schedule, per-problem ρ, the T it was trained with, and reference results on bundled photos).
They are written by ``experiments/export_pretrained.py`` from a committed training run; loading
needs no network and works from a non-editable install.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from admm_jax import _checks
from admm_jax.priors.build import build_prior_network, image_size_multiple
from admm_jax.priors.ensemble import check_ensemble, ensemble_average

__all__ = ["PretrainedPrior", "pretrained", "pretrained_names", "load_pretrained_files",
           "params_to_arrays", "MIN_SIDE"]

Array = jax.Array
MIN_SIDE = 8  # smallest image side the shipped U-Nets accept (two stride-2 levels + padding)


def _weights_dir():
    return resources.files("admm_jax.pretrained_priors") / "weights"


def pretrained_names() -> tuple[str, ...]:
    """Names of the priors shipped with this installation, e.g. ``("faces", "natural")``."""
    return tuple(sorted(p.name[:-5] for p in _weights_dir().iterdir()
                        if p.name.endswith(".json")))


@dataclass(frozen=True, eq=False)
class PretrainedPrior:
    """A trained DU-ADMM prior, usable directly as the ADMM prox ``prior(v, rho)``.

    Attributes:
      name: the name it was loaded by ("natural", "faces", ...).
      apply_fn: ``apply_fn(params, x01)``, the raw network on ``(B, H, W, 3)`` images in [0, 1]
        whose sides are divisible by ``size_multiple`` (use the prior itself for any size).
      params: the parameter pytree (float32).
      rho: ρ per problem name, as trained ("pid", "bi", "si", "sr") or calibrated on training
        images after training (e.g. "deblur"; see ``metadata["rho_calibration"]``).
      default_rho: ρ for an operator with no entry in ``rho``.
      num_iters: T, the number of unrolled ADMM iterations it was trained with.
      metadata: everything else in ``<name>.json`` (architecture, parameter count, training data
        and licence, training command, date, reference results).
      rho_rule: for a prior trained with a learned ρ schedule (the ``general`` prior), its
        parameters (:mod:`admm_jax.rho_rules`): :meth:`solve` then needs only (A, y, σ) and uses
        ρ_t(σ) per iteration; ``None`` for priors with per-problem ρ.
      ensemble: test-time self-ensemble of the prox (:mod:`admm_jax.priors.ensemble`):
        ``"none"`` (default), ``"hflip"`` (the network on the image and its mirror, outputs
        averaged: 2× the cost) or ``"dihedral"`` (all 8 flips and quarter turns: 8×).
    """

    name: str
    apply_fn: Callable[[Any, Array], Array]
    params: Any
    rho: Mapping[str, float]
    default_rho: float
    num_iters: int
    metadata: Mapping[str, Any] = field(default_factory=dict)
    size_multiple: int = 4
    rho_rule: Mapping[str, Any] | None = None
    ensemble: str = "none"

    def __post_init__(self) -> None:
        check_ensemble(self.ensemble)

    # ------------------------------------------------------------------ the prox
    def __call__(self, v: Array, rho: Array | float | None = None) -> Array:
        """The prox: ``v`` (B, H, W, C) or (H, W, C), C ∈ {1, 3}, [0, 1] → same shape, float32.

        ``rho`` is accepted for the prox signature and ignored (a learned prior has no ρ).
        With an :attr:`ensemble` other than ``"none"`` the network runs on each mirrored or
        rotated copy of ``v`` and the outputs, transformed back, are averaged."""
        del rho
        v = jnp.asarray(v)
        if v.ndim == 3:
            return self(v[None])[0]
        if v.ndim != 4 or v.shape[-1] not in (1, 3):
            raise ValueError(f"prior {self.name!r}: v must be (B, H, W, C) or (H, W, C) with "
                             f"C = 1 (greyscale) or 3 (RGB), got shape {tuple(v.shape)}")
        if not jnp.issubdtype(v.dtype, jnp.floating):
            raise TypeError(f"prior {self.name!r}: v must be a float image in [0, 1], got "
                            f"dtype {v.dtype}")
        h, w = v.shape[1:3]
        if min(h, w) < MIN_SIDE:
            raise ValueError(f"prior {self.name!r}: image sides must be >= {MIN_SIDE} pixels, "
                             f"got {h}x{w}")
        return ensemble_average(self._network_any_size, v.astype(jnp.float32), self.ensemble)

    def _network_any_size(self, x: Array) -> Array:
        """The network on (B, H, W, C) float32 images of any size ≥ MIN_SIDE, C ∈ {1, 3}:
        mirror-padded to the size multiple and cropped back; greyscale through RGB."""
        h, w = x.shape[1:3]
        m = self.size_multiple
        ph, pw = -h % m, -w % m
        if ph or pw:  # mirror the bottom/right edge up to the next multiple (cropped below)
            x = jnp.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="reflect")
        grey = x.shape[-1] == 1
        if grey:
            x = jnp.repeat(x, 3, axis=-1)
        out = self.apply_fn(self.params, x)
        if grey:
            out = jnp.mean(out, axis=-1, keepdims=True)
        return out[:, :h, :w, :]

    # ------------------------------------------------------------------ settings
    def rho_for(self, problem: str | None = None) -> float:
        """ρ for a named problem ("pid", "bi", "si", "sr", "deblur", ...); ``default_rho`` for
        ``None`` or a library problem the prior has no ρ for. A name that is neither raises
        ``ValueError`` listing the known ones (a typo must not silently get the default)."""
        if problem is None:
            return self.default_rho
        self._check_problem(problem)
        return float(self.rho.get(problem, self.default_rho))

    def _check_problem(self, problem: str) -> None:
        from admm_jax.problems import get_problems

        known = sorted(set(get_problems()) | set(self.rho))
        if problem not in known:
            instead = "rho= or sigma=" if self.rho_rule is not None else "rho="
            raise ValueError(f"prior {self.name!r}: unknown problem {problem!r}; known problems: "
                             f"{known} (or give {instead} instead of a problem)")

    def rho_schedule(self, sigma: float | Array) -> Array:
        """The learned ρ_t(σ) for noise std ``sigma`` ([0, 1] image range): (T,) for a scalar,
        (T, B) for (B,) noise levels. Only for priors with a ``rho_rule``."""
        if self.rho_rule is None:
            raise ValueError(f"prior {self.name!r} has no learned rho rule; use rho_for(problem)")
        from admm_jax.rho_rules import rho_schedule

        sched = rho_schedule(self.rho_rule, sigma)  # checks sigma: (B,) or scalar, in [0, 1]
        return sched[:, 0] if jnp.ndim(sigma) == 0 else sched

    def solve(self, op: Any, y: Any, *, rho: Array | float | None = None,
              problem: str | None = None, sigma: float | Array | None = None,
              num_iters: int | None = None) -> Array:
        """``num_iters`` (default T) unrolled ADMM iterations with this prior: ``z`` of the
        operator's input shape (batched like ``y``).

        ρ: ``rho`` if given; else, for a prior with a learned rule, ρ_t(σ) with ``sigma`` (the
        noise std in the [0, 1] image range: one for the batch, or one per sample, shape (B,);
        default: the named problem's noise level); else :meth:`rho_for` ``(problem)``. ``sigma``
        with ``rho``, or with a prior that has no learned rule, is refused: it would be ignored.

        A prior with a learned rule runs ``num_iters`` = k·T (k = 1, 2, ...) iterations as k
        blocks of its T-step schedule, each block continuing from the previous one; whether
        the scaled dual u restarts from 0 at each block is the prior's :attr:`long_run_rule`
        (:meth:`restart_every`), chosen with the iteration count on training faces. On
        operators beyond the paper's problems k = 6 (48 iterations, metadata ``long_runs``) was
        that choice for the shipped general prior (RESULTS.md §7.0f)."""
        from admm_jax.admm import unrolled_admm

        t = self.num_iters if num_iters is None else num_iters
        restart = None
        if sigma is not None and rho is not None:
            raise ValueError("give rho= or sigma=, not both: sigma only chooses rho (from the "
                             "prior's learned rule)")
        if sigma is not None and self.rho_rule is None:
            raise ValueError(f"prior {self.name!r} has a fixed rho per problem and does not "
                             f"use sigma; give problem= (one of {sorted(self.rho)}) or rho=, "
                             f"or use a prior with a learned rule (aj.pretrained('general'))")
        leaves = jax.tree_util.tree_leaves(y)
        if sigma is not None and jnp.ndim(sigma) == 1 and leaves and jnp.ndim(leaves[0]) \
                and jnp.shape(sigma)[0] != jnp.shape(leaves[0])[0]:
            raise ValueError(f"sigma holds {jnp.shape(sigma)[0]} noise levels but y a batch of "
                             f"{jnp.shape(leaves[0])[0]}; give one level, or one per sample")
        if rho is None:
            rho = self.default_rho_for(problem, sigma, t)
            restart = self.restart_every(t)
        return unrolled_admm(self, op, y, rho, t, restart_every=restart)

    @property
    def long_run_rule(self) -> str:
        """How a prior with a learned rule runs k·T > T iterations: ``"restart"`` (the scaled
        dual u back to 0 at every block of T) or ``"cycle"`` (the schedule repeated, u kept).
        From the metadata's ``long_runs`` (the rule chosen on training faces); ``"restart"``
        where the metadata does not say."""
        rule = self.metadata.get("long_runs", {}).get("rule", "restart")
        if rule not in ("restart", "cycle"):
            raise ValueError(f"prior {self.name!r}: long_runs rule must be 'restart' or "
                             f"'cycle', got {rule!r}")
        return rule

    def _long_run_hint(self) -> str:
        n = self.metadata.get("long_runs", {}).get("num_iters")
        return f" (e.g. {n}, chosen for operators beyond the paper's problems)" if n else ""

    def restart_every(self, num_iters: int) -> int | None:
        """T for a prior with a learned rule run for k·T > T iterations with its own schedule
        and the ``"restart"`` :attr:`long_run_rule`; else None (u never restarts)."""
        if self.rho_rule is None or num_iters <= self.num_iters:
            return None
        return self.num_iters if self.long_run_rule == "restart" else None

    def default_rho_for(self, problem: str | None, sigma: float | Array | None,
                        num_iters: int | None = None) -> Array | float:
        """What :meth:`solve` uses when no ρ is given: for a prior with a learned rule its
        schedule at σ (given, or the named problem's noise level) tiled to ``num_iters``
        = k·T iterations, shape (k·T, 1), or (k·T, B) for B noise levels; else the per-problem
        ρ."""
        t = self.num_iters if num_iters is None else num_iters
        if self.rho_rule is None:
            return self.rho_for(problem)
        if isinstance(t, bool) or int(t) != t or t < 1 or t % self.num_iters:
            raise ValueError(
                f"prior {self.name!r} runs its learned {self.num_iters}-step rho schedule in "
                f"blocks: num_iters must be a multiple of {self.num_iters}{self._long_run_hint()}"
                f", got {t}; or give rho=")
        if problem is not None:
            self._check_problem(problem)
        if sigma is None and problem is not None:
            from admm_jax.problems import get_problems

            known = get_problems()
            sigma = known[problem].noise_std if problem in known else None
        if sigma is None:
            raise ValueError(f"prior {self.name!r} chooses rho from the noise level: give "
                             f"sigma= (noise std in the [0, 1] image range) or rho=")
        if jnp.ndim(sigma) > 1:
            raise ValueError(f"sigma must be one noise level, or one per sample (B,), got "
                             f"shape {jnp.shape(sigma)}")
        if jnp.ndim(sigma) == 0 and _checks.is_concrete(sigma):
            sigma = float(sigma)
        sched = self.rho_schedule(sigma)  # (T,) or (T, B)
        sched = sched[:, None] if sched.ndim == 1 else sched
        return jnp.tile(sched, (int(t) // self.num_iters, 1))

    @property
    def num_params(self) -> int:
        return int(sum(np.size(a) for a in jax.tree_util.tree_leaves(self.params)))

    def __repr__(self) -> str:
        md = self.metadata
        rho = "learned rho_t(sigma)" if self.rho_rule is not None else dict(self.rho)
        ens = "" if self.ensemble == "none" else f", ensemble={self.ensemble!r}"
        return (f"PretrainedPrior(name={self.name!r}, architecture={md.get('architecture')!r}, "
                f"params={self.num_params:,}, T={self.num_iters}, rho={rho}, "
                f"trained_on={md.get('training_data', {}).get('name')!r}{ens})")


# ---------------------------------------------------------------------- (de)serialisation
def params_to_arrays(params: Any) -> dict[str, np.ndarray]:
    """Flatten a parameter pytree to ``{path: float32 array}`` (the ``.npz`` layout)."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    return {jax.tree_util.keystr(path): np.asarray(leaf, np.float32) for path, leaf in leaves}


def _fill_template(template: Any, arrays: Mapping[str, np.ndarray], where: str) -> Any:
    paths, treedef = jax.tree_util.tree_flatten_with_path(template)
    want = {jax.tree_util.keystr(p): leaf for p, leaf in paths}
    missing, extra = sorted(set(want) - set(arrays)), sorted(set(arrays) - set(want))
    if missing or extra:
        raise ValueError(f"{where}: parameters do not match the architecture "
                         f"(missing {missing[:3]}, unexpected {extra[:3]})")
    leaves = []
    for key, leaf in want.items():
        a = np.asarray(arrays[key])
        if a.shape != tuple(np.shape(leaf)):
            raise ValueError(f"{where}: parameter {key} has shape {a.shape}, the architecture "
                             f"needs {tuple(np.shape(leaf))}")
        leaves.append(jnp.asarray(a, jnp.float32))
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _build_network(meta: Mapping[str, Any]) -> tuple[Callable, Any, int]:
    """The network of ``meta`` as (apply_fn, template params, size multiple).

    Built abstractly (``nnx.eval_shape``): the template has shapes and dtypes only, since the
    weights come from the file. Running the random initializers instead would compile one
    program per parameter shape only to overwrite the result (10 s of a 10.4 s load on a slow
    2-core CPU; BENCHMARKS.md, "Loading a prior and compiling the OneNet step")."""
    arch = meta.get("architecture")
    levels = int(meta.get("levels", 3))
    try:  # each architecture's options; absent keys are the defaults of older files
        apply_fn, template = build_prior_network(
            arch, width=float(meta["width"]), abstract=True,
            levels=levels, blocks=int(meta.get("blocks", 1)),
            residual=bool(meta.get("residual", False)), gated=bool(meta.get("gated", False)))
    except ValueError as exc:
        raise ValueError(f"pretrained metadata: {exc}") from exc
    return apply_fn, template, image_size_multiple(arch, levels)


def load_pretrained_files(npz_path: Any, json_path: Any, name: str | None = None
                          ) -> PretrainedPrior:
    """A :class:`PretrainedPrior` from a ``.npz`` + ``.json`` pair (paths or resources)."""
    where = f"pretrained prior {name or npz_path}"
    try:
        meta = json.loads(json_path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{where}: unreadable metadata {json_path} ({exc})") from exc
    apply_fn, template, multiple = _build_network(meta)
    try:
        with npz_path.open("rb") as f, np.load(f) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise ValueError(f"{where}: unreadable weights {npz_path} ({exc})") from exc
    params = _fill_template(template, arrays, where)
    rule = meta.get("rho_rule")
    if rule is not None:
        rule = {k: jnp.asarray(rule[k], jnp.float32) for k in ("log_rho", "slope")}
        if any(v.shape != (int(meta["num_iters"]),) for v in rule.values()):
            raise ValueError(f"{where}: rho_rule must hold num_iters values per parameter")
    return PretrainedPrior(rho_rule=rule,
        name=name or str(meta.get("name")), apply_fn=apply_fn, params=params,
        rho={k: float(v) for k, v in meta["rho"].items()},
        default_rho=float(meta["default_rho"]), num_iters=int(meta["num_iters"]),
        metadata=meta, size_multiple=multiple)


@functools.lru_cache(maxsize=None)
def _load_shipped(name: str, ensemble: str) -> PretrainedPrior:
    if ensemble != "none":  # the same weights, read once
        return replace(_load_shipped(name, "none"), ensemble=ensemble)
    d = _weights_dir()
    return load_pretrained_files(d / f"{name}.npz", d / f"{name}.json", name)


def pretrained(name: str = "natural", *, ensemble: str = "none") -> PretrainedPrior:
    """Load a prior shipped with the package by name (offline; cached per process).

    ``"natural"``: residual U-Net trained end to end as DU-ADMM on BSDS500 natural photos;
    ``"faces"``: the same architecture trained on UTKFace faces; ``"general"`` and
    ``"general_natural"`` (where installed): priors trained as unrolled ADMM on randomised
    operator families with a learned ρ_t(σ) rule, for operators of your own
    (``prior.solve(op, y, sigma=...)``): ``general`` is the PnP Gaussian denoiser trained on
    faces (first on the paper's four problems, then on the families), ``general_natural`` the
    same denoiser fine-tuned on BSDS500 photos.
    :func:`pretrained_names` lists what this installation has.

    ``ensemble``: ``"none"`` (default), ``"hflip"`` or ``"dihedral"``: the prox averaged over
    mirrored (and rotated) copies of its input (:attr:`PretrainedPrior.ensemble`; 2× or 8× the
    network's cost per iteration; with the general priors +0.05–0.45 dB on most operators:
    ``"hflip"`` for faces, ``"dihedral"`` for photos, RESULTS.md §7.0g).

    Raises ``ValueError`` naming the available priors for an unknown name, and the allowed
    groups for an unknown ``ensemble``. Loaded once per process (cached).
    """
    names = pretrained_names()
    if not isinstance(name, str) or name not in names:
        raise ValueError(f"unknown pretrained prior {name!r}; available: "
                         f"{', '.join(names) or '(none installed)'}")
    return _load_shipped(name, check_ensemble(ensemble))


def trained_prior(path: Any, *, long_run_rule: str = "restart", name: str | None = None,
                  ensemble: str = "none") -> PretrainedPrior:
    """A prior you trained with ``admm-jax train``, as a :class:`PretrainedPrior` (with
    ``solve``), straight from its folder: the run folder, its ``params/``, or a copy made by
    ``experiments/export_weights.py``. An unfinished run gives its latest checkpoint.

    A run trained with ``--rho-rule learned`` keeps its learned ρ_t(σ) schedule: ``solve(op, y,
    sigma=...)`` needs no ρ, and runs k·P iterations as k blocks of the P-step schedule
    (``--rho-period``) in the way ``long_run_rule`` says: ``"restart"`` (the scaled dual back to
    0 at each block; the default where nothing was chosen) or ``"cycle"`` (kept), the rule that
    ``experiments/general_prior_iterations.py`` chooses for the shipped priors. A fixed-ρ run
    uses its problems' training ρ (``admm_jax.training_rho``) and, for any other operator, the
    fixed ρ of family-mix training (0.3).

    ``ensemble`` as in :func:`pretrained`.

    Raises ``ValueError`` naming the folder for a folder that holds no trained prior, and for
    an unknown ``long_run_rule`` or ``ensemble``.
    """
    from pathlib import Path

    from admm_jax.presets import training_rho
    from admm_jax.train import CheckpointError, load_prior
    from admm_jax.train.step import FAMILY_MIX_RHO

    if long_run_rule not in ("restart", "cycle"):
        raise ValueError(f"long_run_rule must be 'restart' or 'cycle', got {long_run_rule!r}")
    check_ensemble(ensemble)
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"trained prior {str(folder)!r}: not a folder (give an 'admm-jax "
                         f"train' output folder or its params/)")
    try:
        apply_fn, params, cfg = load_prior(folder)
    except (CheckpointError, ValueError) as exc:  # not a DU-ADMM run (e.g. a OneNet projector)
        raise ValueError(f"trained prior {str(folder)!r}: {exc}") from exc
    rule, t = None, cfg.num_iters
    if cfg.rho_rule == "learned":  # params = {"prior": network, "rho": schedule}
        rule = {k: jnp.asarray(v, jnp.float32) for k, v in params["rho"].items()}
        net_fn, params, t = apply_fn, params["prior"], cfg.rho_steps
        apply_fn = lambda p, x: net_fn({"prior": p}, x)  # noqa: E731
    default_name = folder.parent.name if folder.name == "params" else folder.name
    meta = {"name": name or default_name, "architecture": cfg.architecture, "width": cfg.width,
            "num_iters": t, "training": {"config": json.loads(cfg.to_json()),
                                         "from": str(folder)},
            "long_runs": {"rule": long_run_rule}}
    return PretrainedPrior(
        name=meta["name"], apply_fn=apply_fn, params=params,
        rho={p: float(training_rho(p)) for p in cfg.problems}, default_rho=FAMILY_MIX_RHO,
        num_iters=t, metadata=meta, size_multiple=image_size_multiple(cfg.architecture),
        rho_rule=rule, ensemble=ensemble)
