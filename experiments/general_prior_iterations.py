"""Does running the general prior (issue #12) for more test-time iterations close its gaps?

The general prior was trained with T = 8 unrolled ADMM iterations and a learned schedule
ρ_t(σ), t = 1..8. This script runs it for T_test up to ``--t-max`` iterations and extends the
schedule after step 8 by one of these rules:

* ``hold``: steps 9.. use ρ_8(σ);
* ``cycle``: the whole 8-step schedule repeated, the state (x, z, u) carried on unchanged
  (identical to running the 8-step block k times, each warm-started from the previous state);
* ``restart``: as ``cycle``, but the scaled dual u is reset to 0 at the start of every block
  (identical to ``unrolled_admm(..., z0=z of the previous block)`` per block);
* ``const<c>``: a constant ρ = c after step 8, c from ``--const-grid``.

ADMM is causal, so one compiled run per (operator, rule) to ``--t-max`` gives the PSNR of
T-iteration ADMM for every T ≤ t-max: the z after iteration T is exactly what a T-iteration run
returns (the rolled scan here and ``unrolled_admm``'s unrolled one differ only by float
rounding). The schedule is an argument of the compiled function, so all rules share one
compilation per operator.

Operators, draws, seed and crops are those of ``experiments/general_prior_eval.py`` (imported
from it), so the T = 8 numbers match its table on the same test images.

Protocol (no tuning on test images):

1. sweep every rule on ``--n-tune`` TRAINING faces (key ``PRNGKey(seed + 1000)``, as the eval
   script's tuning) for the non-paper operators; choose ONE rule and ONE T from ``--t-grid``
   maximising the mean PSNR over those operators (the tuning-free global choice), and, for the
   chosen rule, a per-operator T (second row);
2. the same sweep on the first ``--n-sweep`` TEST faces of every operator (paper problems
   included for reference; there the issue keeps T ≤ 8) — reported, never used for choices;
3. the chosen rule on ``--n-final`` test faces of the non-paper operators (the n of
   ``results/general_prior/table.md`` for those blocks), compared with its wavelet and PnP
   columns, paired per image through ``results/general_prior/per_image.json``.

    .venv/bin/python experiments/general_prior_iterations.py --data ../shared/data/utkface \\
        --general results/weights/utkface_general_unet_w0.25 \\
        --out results/general_prior/iterations

Writes results.json, table.md and psnr_vs_T.png to ``--out`` (about 29 min on the 2-core CPU
with the defaults, shared with other jobs). ``--replot results.json`` redraws the table and the
figure from an earlier run without computing anything.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from admm_jax.admm import admm_step, initial_state
from admm_jax.metrics import psnr
from admm_jax.operators.base import vmap_over_batch
from admm_jax.rho_rules import rho_schedule

T_TRAIN = 8
PAPER = ("pid", "bi", "si", "sr")


def _eval_module():
    path = Path(__file__).resolve().parent / "general_prior_eval.py"
    spec = importlib.util.spec_from_file_location("general_prior_eval", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# --------------------------------------------------------------------------- schedules
def extension(rule: str, sched8: np.ndarray, t_max: int) -> tuple[np.ndarray, np.ndarray]:
    """(T_max, 1) schedule and (T_max,) u-reset mask for ``rule``; sched8: (8, 1)."""
    n_extra = t_max - T_TRAIN
    reset = np.zeros(t_max, bool)
    if rule == "hold":
        tail = np.repeat(sched8[-1:], n_extra, axis=0)
    elif rule in ("cycle", "restart"):
        tail = np.tile(sched8, (int(np.ceil(n_extra / T_TRAIN)), 1))[:n_extra]
        if rule == "restart":
            reset[T_TRAIN::T_TRAIN] = True
    elif rule.startswith("const"):
        tail = np.full((n_extra, 1), float(rule[5:]), np.float32)
    else:
        raise ValueError(f"unknown rule {rule!r}")
    return np.concatenate([sched8, tail]).astype(np.float32), reset


def make_trajectory_solver(gen_fn, gen_params):
    """jit(op, y, x, sched (T, 1), reset (T,)) -> PSNR of clip(z_t) after each step, (T, B)."""
    prox = lambda v, r: gen_fn(gen_params, v)  # noqa: E731

    def run(op, y, x, sched, reset):
        state = initial_state(op, y)
        batch = state.z.shape[0]
        aty = vmap_over_batch(lambda o, yy: o.adjoint(yy), op, y)

        def body(s, inp):
            rho_t, r = inp
            s = s._replace(u=jnp.where(r, jnp.zeros_like(s.u), s.u))
            s = admm_step(prox, op, aty, jnp.broadcast_to(rho_t, (batch,)), s)
            return s, psnr(jnp.clip(s.z, 0, 1), x)

        _, ps = jax.lax.scan(body, state, (sched, reset))
        return ps
    return jax.jit(run)


def curves(solver, measure, images, key, sched, reset, batch) -> np.ndarray:
    """(T_max, N) per-image PSNR after every iteration (batches as run_method draws them)."""
    out = []
    for s in range(0, len(images), batch):
        x = jnp.asarray(images[s:s + batch])
        op, y = measure(key, jnp.arange(s, s + len(x)), x)
        out.append(np.asarray(solver(op, y, x, jnp.asarray(sched), jnp.asarray(reset))))
    return np.concatenate(out, axis=1)


# --------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/utkface")
    ap.add_argument("--cache-dir", default="/tmp/cache")
    ap.add_argument("--general", default="results/weights/utkface_general_unet_w0.25")
    ap.add_argument("--baselines", default="results/general_prior",
                    help="folder with general_prior_eval.py's results.json / per_image.json")
    ap.add_argument("--n-tune", type=int, default=32, help="training images for the choice")
    ap.add_argument("--n-sweep", type=int, default=50, help="test faces for the full sweep")
    ap.add_argument("--n-final", type=int, default=200,
                    help="test faces for the chosen rule (non-paper operators)")
    ap.add_argument("--t-max", type=int, default=48)
    ap.add_argument("--t-grid", default="8,12,16,24,32,48")
    ap.add_argument("--rules", default="hold,cycle,restart")
    ap.add_argument("--const-grid", default="0.01,0.02,0.05,0.1,0.2,0.5")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default=None, help="comma list of operators (default: all)")
    ap.add_argument("--skip-final", action="store_true")
    ap.add_argument("--out", default="results/general_prior/iterations")
    ap.add_argument("--replot", default=None, metavar="RESULTS_JSON",
                    help="only rewrite table.md and psnr_vs_T.png in --out from a results.json "
                         "written by an earlier run (no computation)")
    args = ap.parse_args(argv)
    if args.replot:
        res = json.loads(Path(args.replot).read_text())
        base = json.loads((Path(res["args"]["baselines"]) / "results.json").read_text())
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        write_table(res, base, out / "table.md")
        plot(res, base, out / "psnr_vs_T.png")
        print(f"outputs written to {out.absolute()}")
        return 0

    from admm_jax.data import load_source
    from admm_jax.train.loop import load_prior

    ev = _eval_module()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_grid = [int(t) for t in args.t_grid.split(",")]
    if max(t_grid) > args.t_max or min(t_grid) < 1:
        raise SystemExit("error: --t-grid must lie in 1..--t-max")
    rules = args.rules.split(",") + [f"const{c}" for c in args.const_grid.split(",") if c]
    n_test = max(args.n_sweep, args.n_final)
    test = load_source(args.data, "test", cache_dir=args.cache_dir, progress=False)
    train = load_source(args.data, "train", cache_dir=args.cache_dir, progress=False)
    test = test[:n_test].astype(np.float32) / 255
    tune = train[:args.n_tune].astype(np.float32) / 255
    gen_fn, gen_params, gen_cfg = load_prior(args.general)
    if gen_cfg.rho_rule != "learned":
        raise SystemExit(f"error: {args.general} has no learned rho rule")
    solver = make_trajectory_solver(gen_fn, gen_params)
    key = jax.random.PRNGKey(args.seed)
    tune_key = jax.random.PRNGKey(args.seed + 1000)

    ops = ev.operators(0)
    names = [n for n in ops if not args.only or n in args.only.split(",")]
    res = {"args": vars(args), "rules": rules, "t_grid": t_grid, "train": {}, "sweep": {},
           "final": {}, "timing_s": {}}
    t0 = time.time()

    def crop_of(imgs, crop):
        if not crop:
            return imgs
        c0 = (imgs.shape[1] - crop) // 2
        return imgs[:, c0:c0 + crop, c0:c0 + crop]

    def sweep(name, imgs, k):
        measure, sigma, _, crop, _ = ops[name]
        sched8 = np.asarray(rho_schedule(gen_params["rho"], jnp.float32(sigma)))  # (8, 1)
        per_rule = {}
        for rule in rules:
            sched, reset = extension(rule, sched8, args.t_max)
            per_rule[rule] = curves(solver, measure, crop_of(imgs, crop), k, sched, reset,
                                    args.batch)
        return per_rule

    def save():
        (out / "results.json").write_text(json.dumps(res, indent=1))

    # 1. the choice, on training faces (non-paper operators only)
    for name in names:
        if name in PAPER:
            continue
        ts = time.time()
        c = sweep(name, tune, tune_key)
        res["train"][name] = {r: v.mean(axis=1).tolist() for r, v in c.items()}
        res["timing_s"][f"train_{name}"] = time.time() - ts
        best = max(((r, t) for r in rules for t in t_grid),
                   key=lambda rt: res["train"][name][rt[0]][rt[1] - 1])
        print(f"[{time.time() - t0:6.0f} s] train {name:12s} T=8 "
              f"{res['train'][name][rules[0]][T_TRAIN - 1]:.2f}  best {best[0]} T={best[1]} "
              f"{res['train'][name][best[0]][best[1] - 1]:.2f}", flush=True)
        save()
    choice_ops = list(res["train"])
    if choice_ops:
        score = {(r, t): float(np.mean([res["train"][n][r][t - 1] for n in choice_ops]))
                 for r in rules for t in t_grid}
        rule, t_best = max(score, key=score.get)
        per_op_t = {n: max(t_grid, key=lambda t: res["train"][n][rule][t - 1])
                    for n in choice_ops}
        res["choice"] = {"rule": rule, "T": t_best, "per_operator_T": per_op_t,
                         "train_mean_psnr": {f"{r}@{t}": v for (r, t), v in score.items()},
                         "on": f"{args.n_tune} training images of {args.data}, operators "
                               f"{choice_ops}"}
        print(f"choice on training images: rule {rule}, T = {t_best}; per-operator T {per_op_t}",
              flush=True)
        save()

    # 2. the sweep on test faces (reported, not used for any choice)
    for name in names:
        ts = time.time()
        c = sweep(name, test[:args.n_sweep], key)
        res["sweep"][name] = {r: v.mean(axis=1).tolist() for r, v in c.items()}
        res["timing_s"][f"sweep_{name}"] = time.time() - ts
        print(f"[{time.time() - t0:6.0f} s] test  {name:12s} " + "  ".join(
            f"{r} " + "/".join(f"{res['sweep'][name][r][t - 1]:.2f}" for t in t_grid)
            for r in rules[:3]), flush=True)
        save()

    # 3. the chosen rule on n-final test faces, non-paper operators
    base_path = Path(args.baselines)
    base = json.loads((base_path / "results.json").read_text())
    base_img = json.loads((base_path / "per_image.json").read_text())
    if "choice" in res and not args.skip_final:
        rule = res["choice"]["rule"]
        for name in choice_ops:
            measure, sigma, _, crop, _ = ops[name]
            ts = time.time()
            sched8 = np.asarray(rho_schedule(gen_params["rho"], jnp.float32(sigma)))
            sched, reset = extension(rule, sched8, args.t_max)
            c = curves(solver, measure, crop_of(test[:args.n_final], crop), key, sched, reset,
                       args.batch)  # (T_max, N)
            entry = {"n": int(c.shape[1]), "mean": c.mean(axis=1).tolist(),
                     "std": c.std(axis=1).tolist(), "paired": {}}
            n_b = len(base_img.get(name, {}).get("general", []))
            if n_b >= c.shape[1]:  # paired differences with the eval script's columns
                for m in ("general", "wavelet", "pnp"):
                    if m not in base_img[name]:
                        continue
                    b = np.asarray(base_img[name][m][:c.shape[1]])
                    for t in sorted({T_TRAIN, res["choice"]["T"],
                                     res["choice"]["per_operator_T"][name]}):
                        d = c[t - 1] - b
                        entry["paired"][f"T{t}_minus_{m}"] = {
                            "mean": float(d.mean()),
                            "se": float(d.std(ddof=1) / np.sqrt(len(d))),
                            "wins": int((d > 0).sum())}
            res["final"][name] = entry
            res["timing_s"][f"final_{name}"] = time.time() - ts
            print(f"[{time.time() - t0:6.0f} s] final {name:12s} n={entry['n']} T=8 "
                  f"{entry['mean'][T_TRAIN - 1]:.2f} (table {base[name]['mean']['general']:.2f}) "
                  f"T={res['choice']['T']} {entry['mean'][res['choice']['T'] - 1]:.2f}  "
                  f"pnp {base[name]['mean'].get('pnp', float('nan')):.2f}", flush=True)
            save()
    res["timing_s"]["total"] = time.time() - t0
    save()
    write_table(res, base, out / "table.md")
    plot(res, base, out / "psnr_vs_T.png")
    print(f"outputs written to {out.absolute()}")
    return 0


# --------------------------------------------------------------------------- outputs
def write_table(res: dict, base: dict, path: Path) -> None:
    a, t_grid, rules = res["args"], res["t_grid"], res["rules"]
    L = ["# General prior: more test-time iterations (trained with T = 8)", ""]
    ch = res.get("choice")
    if ch:
        L += [f"Choice made on {ch['on']} (key PRNGKey(seed + 1000)), by the mean PSNR over "
              f"those operators: **rule `{ch['rule']}`, T = {ch['T']}** (global, tuning-free "
              f"at test time). Per-operator T for that rule (also chosen on the training images): "
              + ", ".join(f"{n} {t}" for n, t in ch["per_operator_T"].items()) + ".", ""]
    if res["final"]:
        L += [f"## Chosen rule on test images vs the baselines of {a['baselines']}/table.md",
              "", "Mean PSNR (dB, ±std). wavelet / PnP / general T=8 are that table's columns "
              "(same images, same operator draws); Δ = paired mean difference vs PnP "
              "(± standard error) and the number of images where the general prior wins.", "",
              "| operator | n | wavelet | pnp | general T=8 (table) | general T=8 (here) | "
              f"`{ch['rule']}` T={ch['T']} | Δ vs pnp (wins) | per-op T | at per-op T | "
              "Δ vs pnp (wins) |", "|---" * 11 + "|"]
        for n, e in res["final"].items():
            b = base[n]["mean"]
            t1, t2 = ch["T"], ch["per_operator_T"][n]

            def d(t):
                p = e["paired"].get(f"T{t}_minus_pnp")
                return f"{p['mean']:+.2f} ± {p['se']:.2f} ({p['wins']}/{e['n']})" if p else "–"
            L.append(f"| {n} | {e['n']} | {b.get('wavelet', float('nan')):.2f} | "
                     f"{b.get('pnp', float('nan')):.2f} | {b['general']:.2f} | "
                     f"{e['mean'][T_TRAIN - 1]:.2f} | {e['mean'][t1 - 1]:.2f} "
                     f"(±{e['std'][t1 - 1]:.1f}) | {d(t1)} | {t2} | {e['mean'][t2 - 1]:.2f} | "
                     f"{d(t2)} |")
        L.append("")
    for title, key, n in (("Training images (the choice is made here)", "train", a["n_tune"]),
                          ("Test images (sweep; reported only, no choice made here)", "sweep",
                           a["n_sweep"])):
        if not res[key]:
            continue
        L += [f"## {title}: mean PSNR vs T, n = {n} per operator", ""]
        for name, per in res[key].items():
            note = " (paper problem: the issue keeps T ≤ 8; reference only)" if name in PAPER \
                else ""
            L += [f"**{name}**{note}", "", "| rule | " + " | ".join(f"T={t}" for t in t_grid)
                  + " |", "|---" * (len(t_grid) + 1) + "|"]
            for r in rules:
                L.append(f"| {r} | " + " | ".join(f"{per[r][t - 1]:.2f}" for t in t_grid) + " |")
            L.append("")
    if ch:
        L += ["## Mean over the non-paper operators on training images (the selection score)", "",
              "| rule | " + " | ".join(f"T={t}" for t in t_grid) + " |",
              "|---" * (len(t_grid) + 1) + "|"]
        for r in rules:
            L.append(f"| {r} | " + " | ".join(
                f"{ch['train_mean_psnr'][f'{r}@{t}']:.2f}" for t in t_grid) + " |")
        L.append("")
    tm = res["timing_s"]
    L += [f"Wall time: {tm.get('total', 0) / 60:.1f} min on the 2-core CPU "
          f"(batch {a['batch']}, T_max {a['t_max']}, {len(rules)} rules).", ""]
    path.write_text("\n".join(L))


def plot(res: dict, base: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(res["sweep"]) or list(res["train"])
    cols = 5 if len(names) > 6 else 3
    rows = int(np.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    t = np.arange(1, res["args"]["t_max"] + 1)
    ch = res.get("choice", {})
    grid = np.asarray(res["t_grid"])
    for ax, name in zip(axes.flat, names):
        vals = []
        for i, (r, c) in enumerate(res["sweep"].get(name, {}).items()):
            v = np.asarray(c)[grid - 1]
            vals.append(v)
            ax.plot(grid, v, "o-", ms=3, lw=1, alpha=0.8, color=f"C{i}",
                    label=f"{r} (test n={res['args']['n_sweep']})")
        if name in res["final"]:
            e = res["final"][name]
            m = np.asarray(e["mean"])
            ax.plot(t, m, "-", color="k", lw=0.6, alpha=0.35,
                    label=f"{ch['rule']}, every T (test n={e['n']})")
            ax.plot(grid, m[grid - 1], "ks-", ms=4, lw=2,
                    label=f"{ch['rule']} (test n={e['n']})")
            vals.append(m[grid - 1])
        b = base.get(name, {}).get("mean", {})
        for m_, st in (("pnp", "--"), ("wavelet", ":")):
            if m_ in b:
                ax.axhline(b[m_], color="k", ls=st, lw=1.2,
                           label=f"{m_} (table, n={base[name]['n_images']})")
        ax.axvline(8, color="grey", ls=":", lw=0.8)
        if ch.get("T"):
            ax.axvline(ch["T"], color="red", ls=":", lw=0.8)
        ax.set_title(name + (" (paper, T≤8 in the issue)" if name in PAPER else ""), fontsize=9)
        ax.set_xlabel("test-time iterations T")
        ax.set_ylabel("PSNR (dB)")
        hi = max([float(np.max(v)) for v in vals] + [b.get("pnp", 0.0)])
        lo = min([float(v[0]) for v in vals] + [b[m_] for m_ in ("pnp", "wavelet")
                                                 if m_ in b and b[m_] > hi - 12])
        ax.set_ylim(lo - 3, hi + 1)  # collapsing rules leave the panel at the bottom
        ax.set_xticks(grid)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    h, lab = axes.flat[0].get_legend_handles_labels()
    for ax in axes.flat:
        for hh, ll in zip(*ax.get_legend_handles_labels()):
            if ll not in lab:
                h.append(hh)
                lab.append(ll)
    fig.legend(h, lab, loc="lower center", ncol=min(6, len(lab)), fontsize=7)
    fig.suptitle("General prior (trained T=8): PSNR vs test-time T, per extension rule of the "
                 "learned ρ schedule (markers: the T grid); red: T chosen on training images", fontsize=10)
    fig.tight_layout(rect=(0, 0.07 + 0.02 * (len(lab) > 6), 1, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
