"""Evaluate the general prior (issue #12) against the specialised prior, wavelet-ℓ1 and PnP-ADMM.

Three blocks, every operator drawn per image from ``fold_in(PRNGKey(seed), ...)`` (the paper
problems exactly as ``admm-jax evaluate`` draws them, with the true SR adjoint):

1. the paper's four problems (PID σ = 0.1, BI, SI, SR ×2) on ``--n-images`` test faces:
   start, the specialised UTKFace U-Net prior (its per-problem ρ, T = 8), the general prior
   (its learned ρ_t(σ) rule, T = 8);
2. deblurring (Gaussian 1.5 px, σ = 0.01) and compressive sensing (random-sign DCT, 10 %,
   σ = 0; Gaussian-matrix CS at 10 % only with ``--n-cs`` > 0: a dense matrix per image makes
   it slow) — in training's distribution or near it;
3. held-out operator families never used in training (σ = 0.01): Bayer demosaicing, Cartesian
   k-space rows (4×), SR ×3 (on 48×48 centre crops: 48 is divisible by 3 and by the wavelet's
   2³), motion blur 9 px.

Blocks 2 and 3 add wavelet-ℓ1 ADMM (λ tuned per operator on ``--n-tune`` training faces, α =
0.3, tol 1e-4, cap 300) and PnP-ADMM with our denoiser (ρ and iteration count from
``--pnp-tuning``, tuned on training faces). The specialised prior gets its ρ tuned on the same
training faces for operators it has no ρ for. Finally the general prior's rule is compared with
the best constant ρ chosen on the test images themselves (an oracle no user has).

    python experiments/general_prior_eval.py --data ../shared/data/utkface \\
        --general results/weights/utkface_general_unet_w0.25 --out results/general_prior
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from admm_jax.admm import converging_admm, initial_state, unrolled_admm
from admm_jax.families import get_family, measure_family
from admm_jax.metrics import psnr
from admm_jax.presets import training_rho
from admm_jax.problems import get_problem, measure_indexed
from admm_jax.rho_rules import rho_for_batch
from admm_jax.wavelets import wavelet_l1_prox

RHO_GRID = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
LAM_GRID = (0.001, 0.003, 0.01, 0.03, 0.1)
T = 8


# --------------------------------------------------------------------------- operators
def _problem_measure(name):
    problem = get_problem(name)  # the true SR adjoint

    def measure(key, idx, x):
        return measure_indexed(problem, key, idx, x)
    return measure, problem.noise_std


def _family_measure(name, sigma):
    fam = get_family(name)

    def measure(key, idx, x):
        k = jax.random.fold_in(key, zlib.crc32(name.encode()) & 0x7FFFFFFF)
        return jax.vmap(lambda i, xx: _one(fam, jax.random.fold_in(k, i), xx, sigma))(idx, x)
    return measure, sigma


def _one(fam, key, x, sigma):
    op = fam.make(jax.random.fold_in(key, 0), tuple(x.shape))
    y = op.apply(x)
    return op, y + sigma * jax.random.normal(jax.random.fold_in(key, 1), y.shape, y.dtype)


def operators(n_cs: int) -> dict:
    """name -> (measure(key, idx, x) -> (op, y), noise σ, block, crop side or None, max images)"""
    from admm_jax.operators import subsampled_dct

    def cs_dct(key, idx, x):
        def one(i, xx):
            k = jax.random.fold_in(key, i)
            op = subsampled_dct(jax.random.fold_in(k, 0), tuple(xx.shape), ratio=0.1)
            return op, op.apply(xx)
        return jax.vmap(one)(idx, x)

    ops = {n: (*_problem_measure(n), "paper", None, None) for n in ("pid", "bi", "si", "sr")}
    ops["deblur"] = (*_problem_measure("deblur"), "near", None, None)
    ops["cs_dct"] = (cs_dct, 0.0, "near", None, None)
    if n_cs > 0:  # a dense 1229 x 12288 matrix per image: slow, off by default
        ops["cs_gauss"] = (*_problem_measure("cs"), "near", None, n_cs)
    for name, crop in (("demosaic", None), ("fourier_rows", None), ("sr3", 48),
                       ("motion_blur", None)):
        ops[name] = (*_family_measure(name, 0.01), "held-out", crop, None)
    return ops


# --------------------------------------------------------------------------- methods
def make_solvers(spec_fn, spec_params, gen_fn, gen_params, denoise):
    """Compiled solvers: each takes (op, y, setting) and returns z (B, H, W, C)."""
    def spec(op, y, rho):
        return unrolled_admm(lambda v, r: spec_fn(spec_params, v), op, y, rho, T,
                             validate=False)

    def general(op, y, sigma):
        batch = jax.tree_util.tree_leaves(y)[0].shape[0]
        rho = rho_for_batch(gen_params["rho"], sigma, batch)
        return unrolled_admm(lambda v, r: gen_fn(gen_params, v), op, y, rho, T, validate=False)

    def general_const(op, y, rho):
        return unrolled_admm(lambda v, r: gen_fn(gen_params, v), op, y, rho, T, validate=False)

    def wavelet(op, y, lam):
        return converging_admm(wavelet_l1_prox(lam), op, y, 0.3, tol=1e-4, max_iters=300,
                               validate=False).z

    def start(op, y, _):
        return initial_state(op, y).z

    solvers = {"start": start, "specialised": spec, "general": general,
               "general_const": general_const, "wavelet": wavelet}
    if denoise is not None:
        from admm_jax.baselines.pnp import pnp_admm

        def pnp(op, y, setting):
            rho, iters = setting
            return pnp_admm(denoise, op, y, rho, num_iters=iters)
        solvers["pnp"] = pnp
    jitted = {}
    for name, fn in solvers.items():
        static = (2,) if name in ("wavelet", "pnp") else ()
        jitted[name] = jax.jit(fn, static_argnums=static)
    return jitted


def run_method(solver, measure, images, key, setting, batch):
    out = []
    for s in range(0, len(images), batch):
        x = jnp.asarray(images[s:s + batch])
        idx = jnp.arange(s, s + len(x))
        op, y = measure(key, idx, x)
        z = solver(op, y, setting)
        out.append(np.asarray(psnr(jnp.clip(z, 0, 1), x)))
    return np.concatenate(out)


# --------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/utkface")
    ap.add_argument("--cache-dir", default="/tmp/cache")
    ap.add_argument("--general", default="results/weights/utkface_general_unet_w0.25")
    ap.add_argument("--specialised", default="results/weights/utkface_du_admm_unet_w0.25")
    ap.add_argument("--denoiser", default="results/weights/utkface_denoiser_unet_w0.25")
    ap.add_argument("--pnp-tuning", default="results/pnp_tuning/tuned.json")
    ap.add_argument("--n-images", type=int, default=500, help="test images per operator")
    ap.add_argument("--n-cs", type=int, default=0,
                    help="test images for Gaussian-matrix CS (0: skip; ~3 min per image "
                         "with tuning on the 2-core CPU)")
    ap.add_argument("--n-heldout", type=int, default=200, help="test images, blocks 2 and 3")
    ap.add_argument("--n-tune", type=int, default=16, help="training images for tuning")
    ap.add_argument("--n-oracle", type=int, default=50, help="test images for the oracle ρ")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default=None, help="comma list of operators (default: all)")
    ap.add_argument("--out", default="results/general_prior")
    args = ap.parse_args(argv)

    from admm_jax.data import load_source
    from admm_jax.train.loop import load_prior

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    test = load_source(args.data, "test", cache_dir=args.cache_dir, progress=False)
    train = load_source(args.data, "train", cache_dir=args.cache_dir, progress=False)
    test = test[: max(args.n_images, args.n_heldout, args.n_cs)].astype(np.float32) / 255
    tune = train[: args.n_tune].astype(np.float32) / 255
    spec_fn, spec_params, _ = load_prior(args.specialised)
    gen_fn, gen_params, gen_cfg = load_prior(args.general)
    if gen_cfg.rho_rule != "learned":
        raise SystemExit(f"error: {args.general} has no learned rho rule")
    denoise, pnp_tuned = None, {}
    if Path(args.denoiser).exists() and Path(args.pnp_tuning).exists():
        d_fn, d_params, _ = load_prior(args.denoiser)
        denoise = lambda v: d_fn(d_params, v)  # noqa: E731
        pnp_tuned = json.loads(Path(args.pnp_tuning).read_text())
    else:
        print(f"no denoiser/tuning at {args.denoiser} / {args.pnp_tuning}: PnP skipped")
    solvers = make_solvers(spec_fn, spec_params, gen_fn, gen_params, denoise)
    key = jax.random.PRNGKey(args.seed)
    tune_key = jax.random.PRNGKey(args.seed + 1000)
    spec_rho = {p: training_rho(p) for p in ("pid", "bi", "si", "sr")}
    spec_rho["deblur"] = 0.1

    results, per_image, t0 = {}, {}, time.time()
    names = list(operators(args.n_cs))
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    for name in names:
        measure, sigma, block, crop, cap = operators(args.n_cs)[name]
        n = args.n_images if block == "paper" else args.n_heldout
        n = min(n, cap) if cap else n
        x_test, x_tune = test[:n], tune
        if crop:
            c0 = (x_test.shape[1] - crop) // 2
            x_test = x_test[:, c0:c0 + crop, c0:c0 + crop]
            x_tune = x_tune[:, c0:c0 + crop, c0:c0 + crop]
        bs = min(args.batch, 10 if name == "cs_gauss" else args.batch)
        row, settings = {}, {}

        def run(method, setting, imgs=x_test, k=key):
            return run_method(solvers[method], measure, imgs, k, setting, bs)

        row["start"] = run("start", None)
        if name not in spec_rho:  # tune the specialised prior's ρ on training faces
            scores = {r: float(run("specialised", r, x_tune, tune_key).mean()) for r in RHO_GRID}
            spec_rho[name] = max(scores, key=scores.get)
        settings["specialised_rho"] = spec_rho[name]
        row["specialised"] = run("specialised", spec_rho[name])
        row["general"] = run("general", jnp.float32(sigma))
        if block != "paper":
            scores = {lam: float(run("wavelet", lam, x_tune, tune_key).mean())
                      for lam in LAM_GRID}
            settings["wavelet_lam"] = max(scores, key=scores.get)
            row["wavelet"] = run("wavelet", settings["wavelet_lam"])
            tuned = pnp_tuned.get(name) or pnp_tuned.get({"cs_dct": "cs", "cs_gauss": "cs"}
                                                          .get(name, name))
            if denoise is not None and tuned:
                settings["pnp"] = {"rho": tuned["rho"], "iters": tuned["iters"]}
                row["pnp"] = run("pnp", (float(tuned["rho"]), int(tuned["iters"])))
        # the oracle: best constant ρ for the general prior, chosen on test images
        n_or = min(args.n_oracle, len(x_test))
        oracle = {r: float(run("general_const", r, x_test[:n_or]).mean()) for r in RHO_GRID}
        best = max(oracle, key=oracle.get)
        settings["oracle_rho"] = best
        settings["oracle_psnr"] = oracle[best]
        settings["rule_psnr_same_images"] = float(row["general"][:n_or].mean())
        settings["n_images"] = int(len(x_test))
        settings["block"] = block
        settings["noise_std"] = sigma
        results[name] = {"mean": {m: float(v.mean()) for m, v in row.items()},
                         "std": {m: float(v.std()) for m, v in row.items()}, **settings}
        per_image[name] = {m: v.tolist() for m, v in row.items()}
        print(f"[{time.time() - t0:6.0f} s] {name:12s} " + "  ".join(
            f"{m} {v.mean():.2f}" for m, v in row.items()) +
            f"  | oracle rho {best} {oracle[best]:.2f} vs rule {settings['rule_psnr_same_images']:.2f}",
            flush=True)
        (out / "results.json").write_text(json.dumps(results, indent=1))
        (out / "per_image.json").write_text(json.dumps(per_image))
    write_table(results, out / "table.md", gen_params)
    print(f"outputs written to {out.absolute()}")
    return 0


def write_table(results: dict, path: Path, gen_params) -> None:
    from admm_jax.rho_rules import rho_schedule

    cols = ("start", "wavelet", "pnp", "specialised", "general")
    lines = ["| operator | block | n | " + " | ".join(cols) + " | oracle const ρ (test) |",
             "|---" * (len(cols) + 4) + "|"]
    for name, r in results.items():
        cells = []
        best = max(r["mean"][c] for c in cols if c in r["mean"] and c != "start")
        for c in cols:
            if c not in r["mean"]:
                cells.append("–")
                continue
            v = f"{r['mean'][c]:.2f} (±{r['std'][c]:.1f})"
            cells.append(f"**{v}**" if r["mean"][c] == best else v)
        lines.append(f"| {name} | {r['block']} | {r['n_images']} | " + " | ".join(cells) +
                     f" | ρ={r['oracle_rho']}: {r['oracle_psnr']:.2f} vs rule "
                     f"{r['rule_psnr_same_images']:.2f} |")
    sched = np.asarray(rho_schedule(gen_params["rho"], jnp.asarray([0.0, 0.01, 0.05, 0.1])))
    lines += ["", "Learned ρ_t(σ) of the general prior (rows t = 1..T; columns σ = 0, 0.01, "
              "0.05, 0.1):", "", "| t | σ=0 | σ=0.01 | σ=0.05 | σ=0.1 |", "|---|---|---|---|---|"]
    for t, r in enumerate(sched, 1):
        lines.append(f"| {t} | " + " | ".join(f"{v:.3f}" for v in r) + " |")
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
