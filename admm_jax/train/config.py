"""Training configuration and the two named presets ("paper" default, "released").

=============  =============================  ===================================
knob           "paper" (default)              "released" (train.py + .sh, spec §6)
=============  =============================  ===================================
optimizer      Adam lr 1e-4, β=(0, 0.9)       Adam lr 2e-4, β=(0.9, 0.999), ε 1e-6
grad clip      element-wise value clip ±10    same
batch          10                             5
steps          50,000                         100,000
sampling       per sample (problem, A, ρ)     one problem + one A per mini-batch
T (unrolled)   8                              8
loss           MSE on z_T in [−1, 1]          same
=============  =============================  ===================================

Beyond both presets (opt-in): ``architecture="unet"`` swaps the paper's bottleneck
autoencoder for a small residual U-Net (:mod:`admm_jax.priors.unet`), and ``loss="psnr"`` minimises −mean per-sample PSNR of z_T instead of
the mean MSE. The MSE of a mixed batch is dominated by the problems with large errors (PID, BI);
the log makes every sample count by its *relative* error, so an easy problem (SR, whose pinv
start is already near 29 dB on faces) is not sacrificed to the hard ones.

``objective="denoise"`` (not in the paper; the plug-and-play baseline of issue #12) trains the
same network as a plain blind Gaussian denoiser instead of inside unrolled ADMM: every sample
draws σ ~ U[0, :data:`DENOISE_SIGMA_MAX`] (images in [0, 1]), the input is ``x + σ ξ`` (not
clipped) and the loss (``loss`` "mse" or "psnr", as above) compares the network's output with
``x``. No operator, ρ or T is involved; the trained network is used as the prox of PnP-ADMM
(:mod:`admm_jax.baselines.pnp`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

PAPER = "paper"
RELEASED = "released"
LOSSES = ("mse", "psnr")
# the networks admm_jax.priors.build_prior_network knows (PRIOR_ARCHITECTURES; a test keeps the
# two equal). Not imported from there: this module stays free of flax, like admm_jax.train.
ARCHITECTURES = ("paper", "unet")
OPERATOR_MIXES = ("problems", "families", "families+paper", "families+paper+zeros",
                  "families+paper+cfa+aniso", "families+paper+bi")
RHO_RULES = ("fixed", "learned")
OBJECTIVES = ("unrolled", "denoise")
#: the denoise objective draws the noise std per sample from U[0, DENOISE_SIGMA_MAX]
DENOISE_SIGMA_MAX = 0.2


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a DU-ADMM training run (saved as ``config.json``)."""

    preset: str = PAPER
    # optimisation
    learning_rate: float = 1e-4
    b1: float = 0.0
    b2: float = 0.9
    eps: float = 1e-8
    grad_clip: float = 10.0
    batch_size: int = 10
    steps: int = 50_000
    # the unrolled solver
    num_iters: int = 8
    loss: str = "mse"  # "mse" (paper) or "psnr" (not in the paper, see module docstring)
    # 0: the loss of z_T (the paper); n: the mean of the losses of z_n, z_2n, ..., z_T (not in
    # the paper; with a learned n-step ρ schedule cycled over T = k·n iterations it trains a
    # prior that is good after every block, for long runs)
    loss_every: int = 0
    problems: tuple[str, ...] = ("pid", "bi", "si", "sr")
    problem_probs: tuple[float, ...] | None = None
    per_sample_problems: bool = True
    # "problems": the mix of ``problems`` above (the paper); "families" / "families+paper" /
    # "families+paper+zeros" / "families+paper+cfa+aniso" / "families+paper+bi": randomised
    # operator families (admm_jax.families.FAMILY_MIXES;
    # batch_size must be their 10 slots). Not in the paper.
    operator_mix: str = "problems"
    # "fixed": each problem's ρ (0.3 for families); "learned": a per-iteration schedule
    # ρ_t(σ) trained with the prior (admm_jax.rho_rules). Not in the paper.
    rho_rule: str = "fixed"
    # with rho_rule="learned": the length P of the schedule, cycled over T = k·P iterations
    # (None: P = T). E.g. 8 for a prior trained at T = 32 that also runs 8-iteration solves.
    rho_period: int | None = None
    # "unrolled": DU-ADMM (the loss of z_T after T unrolled iterations, the paper); "denoise":
    # the prior alone, trained as a blind Gaussian denoiser, σ ~ U[0, 0.2] (module docstring)
    objective: str = "unrolled"
    # warm start: a weights folder written by ``train`` (``<run>/params``) of the same
    # architecture and width; its network parameters replace the random initialisation
    init_weights: str | None = None
    remat: bool = False
    unroll: int | str = "auto"  # admm_jax.admm.default_unroll: rolled on CPU, full elsewhere
    # the prior
    architecture: str = "paper"  # or "unet": not in the paper, see admm_jax.priors.unet
    width: float = 1.0
    residual: bool = False  # not in the paper: P(x) = x + net(x), see ProjectionNetwork
    gated: bool = False  # not in the paper: P(x) = x + sigmoid(g)·r (needs residual)
    compute_dtype: str = "float32"  # or "bfloat16" (convolutions in bf16, params f32)
    # data and bookkeeping
    image_size: int = 64
    augment: bool = False
    seed: int = 0
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    log_every: int = 10
    val_every: int = 500  # steps between validations; 0 = only after the last step
    val_images: int = 50

    @property
    def method_name(self) -> str:
        """Row label of this prior in the evaluation tables (names every non-paper option)."""
        if self.objective == "denoise":
            return "PnP-ADMM (own denoiser)"
        if self.operator_mix != "problems":
            return "general prior (operator families)"
        if self.architecture == "unet":
            return "DU-ADMM (U-Net prior)"
        if self.gated:
            return "DU-ADMM (gated residual)"
        return "DU-ADMM (residual)" if self.residual else "DU-ADMM"

    @property
    def rho_steps(self) -> int:
        """Length of a learned ρ schedule: ``rho_period``, or T."""
        return self.rho_period or self.num_iters

    def replace(self, **kw) -> "TrainConfig":
        return dataclasses.replace(self, **kw)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig keys: {sorted(unknown)}")
        d = dict(d)
        for k in ("problems", "problem_probs"):
            if d.get(k) is not None:
                d[k] = tuple(d[k])
        return cls(**d)

    def validate(self) -> None:
        """Raise ``ValueError``/``TypeError`` naming the first bad field, its value and what is
        allowed. Called before anything is written to disk."""
        from admm_jax import _checks
        from admm_jax.problems import get_problems

        for name, low in (("batch_size", 1), ("steps", 1), ("num_iters", 1), ("image_size", 1),
                          ("checkpoint_every", 1), ("keep_checkpoints", 1), ("log_every", 1),
                          ("val_every", 0), ("val_images", 0), ("seed", 0)):
            _checks.check_int(name, getattr(self, name), minimum=low)
        for name in ("learning_rate", "width", "grad_clip", "eps"):
            _checks.check_positive(name, getattr(self, name))
        for name in ("b1", "b2"):
            _checks.check_in_range(name, getattr(self, name), 0.0, 1.0, high_open=True)
        if self.rho_period is not None:
            _checks.check_int("rho_period", self.rho_period, minimum=1)
            if self.rho_rule != "learned" or self.num_iters % self.rho_period:
                raise ValueError(f"rho_period={self.rho_period} needs rho_rule='learned' and "
                                 f"num_iters a multiple of it; got rho_rule="
                                 f"{self.rho_rule!r}, num_iters={self.num_iters}")
        _checks.check_int("loss_every", self.loss_every, minimum=0)
        if self.loss_every and self.num_iters % self.loss_every:
            raise ValueError(f"loss_every={self.loss_every} must divide num_iters="
                             f"{self.num_iters}")
        if self.gated and not self.residual:
            raise ValueError("gated=True needs residual=True")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got "
                             f"{self.architecture!r}")
        if self.architecture == "unet" and (self.residual or self.gated):
            raise ValueError("residual/gated apply to the paper architecture; the U-Net prior "
                             "is residual already")
        if self.operator_mix not in OPERATOR_MIXES:
            raise ValueError(f"operator_mix must be one of {OPERATOR_MIXES}, got "
                             f"{self.operator_mix!r}")
        if self.rho_rule not in RHO_RULES:
            raise ValueError(f"rho_rule must be one of {RHO_RULES}, got {self.rho_rule!r}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.objective == "denoise" and (self.operator_mix, self.rho_rule) != (
                "problems", "fixed"):
            raise ValueError(f"objective='denoise' trains a plain denoiser (no operator, no ρ): "
                             f"it needs operator_mix='problems' and rho_rule='fixed', got "
                             f"operator_mix={self.operator_mix!r}, rho_rule={self.rho_rule!r}")
        if self.operator_mix != "problems":
            from admm_jax.families import get_family_mix

            mix = get_family_mix(self.operator_mix)
            if self.batch_size != mix.batch_size:
                raise ValueError(f"operator_mix={self.operator_mix!r} lays out {mix.batch_size} "
                                 f"samples per batch ({dict(mix.slots)}); got "
                                 f"batch_size={self.batch_size}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.compute_dtype not in ("float32", "bfloat16"):
            raise ValueError("compute_dtype must be 'float32' or 'bfloat16'")
        _checks.check_choices("problems", self.problems, get_problems(), what="problem")
        if self.problem_probs is not None:
            _checks.check_probabilities("problem_probs", self.problem_probs,
                                        len(self.problems), "problem")


def preset(name: str = PAPER, **overrides) -> TrainConfig:
    """The named preset, with optional overrides (e.g. ``steps=2000, width=0.25``)."""
    if name == PAPER:
        base = TrainConfig()
    elif name == RELEASED:
        base = TrainConfig(preset=RELEASED, learning_rate=2e-4, b1=0.9, b2=0.999, eps=1e-6,
                           batch_size=5, steps=100_000, per_sample_problems=False)
    else:
        raise ValueError(f"unknown training preset {name!r}; choose 'paper' or 'released'")
    cfg = base.replace(**overrides)
    cfg.validate()
    return cfg
