"""What does test-time self-ensembling give a shipped general prior, and PnP-ADMM (issue #12)?

For every operator of ``experiments/general_prior_eval.py`` (same test images, operator draws,
noise and crops, imported from it), this script solves with

* the shipped general prior (``aj.pretrained(--prior, ensemble=e)``): its learned ρ_t(σ) rule,
  T = 8 on the paper's four problems and deblurring (the issue's T ≤ 8 and the eval table's
  setting), and elsewhere the long-run T and rule its metadata names (``long_runs``, chosen on
  training images by ``general_prior_iterations.py``);
* PnP-ADMM with our Gaussian denoiser (``--denoiser``) at its tuned ρ and iteration count
  (``--pnp-tuning``), its denoiser wrapped by the same ensemble (``aj.self_ensemble``), on the
  operators it was tuned for,

for ``e`` = ``none`` and each of ``--ensembles`` (``hflip``: the image and its mirror; ``dihedral``:
all 8 flips and quarter turns). Nothing is tuned here. The table gives the mean PSNR, the paired
difference of each ensemble against ``none`` (± standard error), and, for the held-out
families, the issue's target (1 dB above the better of wavelet-ℓ1, from ``--baselines``, and
plain PnP) checked against the general prior with and without the ensemble, and the margin over
PnP given the same ensemble.

    python experiments/general_prior_ensemble.py --prior general --data ../shared/data/utkface \\
        --baselines results/general_prior_init_ab/faces_dnspec_long \\
        --out results/general_prior_ensemble/faces

Writes results.json (per-image PSNRs), table.md to ``--out``; ``--resume`` skips the cells a
previous run finished (it saves after each). About 8 min for faces with ``hflip`` on the
project's 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

PAPER = ("pid", "bi", "si", "sr")


def _eval_module():
    """experiments/general_prior_eval.py, imported from this script's folder."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import general_prior_eval

    return general_prior_eval


def _solvers(prior, denoise, tuned: dict, name: str, sigma: float, t_long: int, ens: str):
    """{"general": jit(op, y) -> z, "pnp": ...} for one operator and ensemble."""
    import admm_jax as aj
    from admm_jax.baselines.pnp import pnp_admm

    t = prior.num_iters if name in PAPER or name == "deblur" else t_long
    rho = prior.default_rho_for(None, sigma, t)
    restart = prior.restart_every(t)
    out = {"general": (t, jax.jit(lambda op, y: aj.unrolled_admm(
        prior, op, y, rho, t, restart_every=restart, validate=False)))}
    if name in tuned and name not in PAPER:
        den = aj.self_ensemble(lambda v, _r: denoise(v), ens)
        s = tuned[name]
        out["pnp"] = (int(s["iters"]), jax.jit(lambda op, y: pnp_admm(
            lambda v: den(v, None), op, y, float(s["rho"]), num_iters=int(s["iters"]))))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prior", default="general", help="shipped prior with a learned ρ rule")
    ap.add_argument("--data", default="../shared/data/utkface")
    ap.add_argument("--cache-dir", default="/tmp/cache")
    ap.add_argument("--denoiser", default="results/weights/utkface_denoiser_unet_w0.25")
    ap.add_argument("--pnp-tuning", default="results/pnp_tuning/tuned.json")
    ap.add_argument("--baselines", required=True,
                    help="general_prior_eval.py output of the same data (wavelet-ℓ1 column)")
    ap.add_argument("--ensembles", default="hflip", help="comma list of hflip, dihedral")
    ap.add_argument("--n-images", type=int, default=500, help="test images, paper problems")
    ap.add_argument("--n-heldout", type=int, default=200, help="test images, other operators")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default=None, help="comma list of operators (default: all)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--resume", action="store_true", help="keep the cells --out already has")
    args = ap.parse_args(argv)

    import admm_jax as aj
    from admm_jax.data import load_source
    from admm_jax.priors.ensemble import check_ensemble
    from admm_jax.train.loop import load_prior

    try:  # bad names: one line before anything is read or written
        ensembles = ["none"] + [check_ensemble(e) for e in args.ensembles.split(",") if e]
        first = aj.pretrained(args.prior)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    out = Path(args.out)
    res_path = out / "results.json"
    if res_path.exists() and not args.resume:
        raise SystemExit(f"error: {res_path} exists; pass --resume to continue it or choose "
                         f"another --out")
    gpe = _eval_module()
    base = json.loads((Path(args.baselines) / "results.json").read_text())
    tuned = json.loads(Path(args.pnp_tuning).read_text())
    d_fn, d_params, _ = load_prior(args.denoiser)
    denoise = lambda v: d_fn(d_params, v)  # noqa: E731
    if first.rho_rule is None:
        raise SystemExit(f"error: prior {args.prior!r} has no learned rho rule")
    if "num_iters" not in first.metadata.get("long_runs", {}):
        raise SystemExit(f"error: prior {args.prior!r} names no long-run T (metadata "
                         f"long_runs); export it with --long-runs")
    t_long = int(first.metadata["long_runs"]["num_iters"])
    test = load_source(args.data, "test", cache_dir=args.cache_dir, progress=False)
    test = test[: max(args.n_images, args.n_heldout)].astype(np.float32) / 255
    res = json.loads(res_path.read_text()) if res_path.exists() else {}
    res["args"] = vars(args) | {"long_run_T": t_long, "long_run_rule": first.long_run_rule}
    out.mkdir(parents=True, exist_ok=True)
    key = jax.random.PRNGKey(args.seed)
    names = list(gpe.operators(0))
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    t0 = time.time()
    for name in names:
        measure, sigma, block, crop, _ = gpe.operators(0)[name]
        n = args.n_images if block == "paper" else args.n_heldout
        x = test[:n]
        if crop:
            c0 = (x.shape[1] - crop) // 2
            x = x[:, c0:c0 + crop, c0:c0 + crop]
        row = res.setdefault(name, {"block": block, "n_images": int(n), "psnr": {}})
        for ens in ensembles:
            prior = aj.pretrained(args.prior, ensemble=ens)
            for method, (t, solve) in _solvers(prior, denoise, tuned, name, sigma, t_long,
                                               ens).items():
                cell = f"{method}/{ens}"
                if cell in row["psnr"]:
                    continue
                s0 = time.time()
                p = gpe.run_method(lambda op, y, _s: solve(op, y), measure, x, key, None,
                                   args.batch)
                row["psnr"][cell] = [float(v) for v in p]
                row.setdefault("iters", {})[method] = t
                print(f"{name:13s} {cell:18s} T={t:3d} {np.mean(p):6.2f} dB "
                      f"({time.time() - s0:.0f} s; {time.time() - t0:.0f} s in all)", flush=True)
                res_path.write_text(json.dumps(res, indent=1))
    write_table(res, base, ensembles, out / "table.md")
    print(f"wrote {res_path} and {out / 'table.md'}")
    return 0


def _paired(a, b) -> str:
    d = np.asarray(a) - np.asarray(b)
    return f"{d.mean():+.2f} ± {d.std(ddof=1) / np.sqrt(len(d)):.2f}"


def write_table(res: dict, base: dict, ensembles: list[str], path: Path) -> None:
    a = res["args"]
    extra = [e for e in ensembles if e != "none"]
    lines = [f"# Self-ensembled `{a['prior']}` prior and PnP-ADMM on {a['data']}", "",
             f"General prior: its learned ρ rule, T = 8 on the paper problems and deblurring, "
             f"else T = {a['long_run_T']} (`{a['long_run_rule']}`, from its metadata). PnP: "
             f"tuned ρ and iterations of {a['pnp_tuning']}, the denoiser wrapped by the same "
             f"ensemble. Δ: paired mean difference against `none` (± standard error). Target "
             f"(held-out families): 1 dB above max(wavelet-ℓ1 of {a['baselines']}, plain PnP).",
             "", "| operator | n | wavelet | PnP | " + " | ".join(
                 f"PnP {e} (Δ)" for e in extra) + " | general T | general | " + " | ".join(
                 f"general {e} (Δ)" for e in extra) + " | target | best general − target | "
             + " | ".join(f"general {e} − PnP {e}" for e in extra) + " |"]
    lines.append("|---" * (8 + 3 * len(extra)) + "|")
    for name, r in res.items():
        if name == "args":
            continue
        p = r["psnr"]
        mean = {k: float(np.mean(v)) for k, v in p.items()}
        wav = base.get(name, {}).get("mean", {}).get("wavelet")
        cells = [name, str(r["n_images"]), "–" if wav is None else f"{wav:.2f}"]
        has_pnp = "pnp/none" in p
        cells.append(f"{mean['pnp/none']:.2f}" if has_pnp else "–")
        for e in extra:
            cells.append(f"{mean[f'pnp/{e}']:.2f} ({_paired(p[f'pnp/{e}'], p['pnp/none'])})"
                         if f"pnp/{e}" in p else "–")
        cells += [str(r["iters"]["general"]), f"{mean['general/none']:.2f}"]
        for e in extra:
            cells.append(f"{mean[f'general/{e}']:.2f} "
                         f"({_paired(p[f'general/{e}'], p['general/none'])})")
        if r["block"] == "held-out" and has_pnp and wav is not None:
            target = max(wav, mean["pnp/none"]) + 1.0
            best = max(mean[f"general/{e}"] for e in ensembles)
            cells += [f"{target:.2f}", f"{best - target:+.2f}"]
        else:
            cells += ["–", "–"]
        for e in extra:
            cells.append(_paired(p[f"general/{e}"], p[f"pnp/{e}"]) if f"pnp/{e}" in p else "–")
        lines.append("| " + " | ".join(cells) + " |")
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
