"""Tune PnP-ADMM (issue #12 item 4): ρ and the iteration count per operator, on TRAINING faces.

The denoiser is the prior's architecture trained as a plain blind Gaussian denoiser
(``experiments/train_denoiser.sh``). For every operator, ``admm_jax.baselines.pnp.tune_pnp``
measures the first ``--n-images`` sorted files of ``<data>/train`` (the library's preprocessing:
whole-image bilinear resize to 64×64) once (``PRNGKey(--seed)``, one operator and noise draw per
image) and runs PnP-ADMM for every ρ in ``--rhos`` up to the largest count in ``--iters``; the
cell (ρ, T) is the mean PSNR of ``z`` after T iterations. The best cell is kept.

Operators and noise (images in [0, 1]):

* the paper's problems with their own σ and the true SR adjoint: pid (σ = 0.1), bi, si, sr ×2
  (σ = 0); deblur (Gaussian 1.5 px, σ = 0.01);
* compressive sensing at 10 %, σ = 0: ``cs_dct`` (random-sign subsampled DCT, as
  ``experiments/general_prior_eval.py``'s default CS block) on all images, and the Gaussian-matrix
  problem ``cs`` (a dense 1229 × 12288 matrix per image) on the first ``--cs-images`` images
  (default all 32; about 3.5 minutes on the shared 2-core CPU, 0 skips it);
* the held-out families, σ = 0.01: demosaic, fourier_rows, sr3, motion_blur. ``sr3`` runs on the
  48×48 centre crops (48 is divisible by 3 and by the U-Net's 2²; a 63×63 crop is not, and
  ``general_prior_eval.py`` evaluates SR ×3 on the same 48×48 centre crops).

    python experiments/tune_pnp.py --denoiser results/weights/utkface_denoiser_unet_w0.25 \\
        --data ../shared/data/utkface --out results/pnp_tuning

Writes ``<out>/tuned.json`` ({operator: {"rho", "iters", "psnr_train", "grid", ...}}, plus
``"_about"``) and ``<out>/tuned.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

OPERATORS = ("pid", "bi", "si", "sr", "deblur", "cs_dct", "cs", "demosaic", "fourier_rows",
             "sr3", "motion_blur")
HELD_OUT_SIGMA = 0.01
SR3_CROP = 48


def cs_dct_family():
    """10 % random-sign subsampled DCT as a one-member 'family' (σ = 0)."""
    from admm_jax.families import Family
    from admm_jax.operators import subsampled_dct

    return Family("cs_dct", "cs", lambda key, shape: subsampled_dct(key, shape, ratio=0.1),
                  "compressive sensing 10 % (random-sign subsampled DCT)")


def setting(name: str):
    """(family_or_problem, noise_std or None for the problem's own, crop side or None, note)."""
    if name in ("pid", "bi", "si", "sr", "deblur", "cs"):
        from admm_jax.problems import get_problem

        sigma = get_problem(name).noise_std
        return name, None, None, f"sigma {sigma:g}" + (" (true adjoint)" if name == "sr" else "")
    if name == "cs_dct":
        return cs_dct_family(), 0.0, None, "sigma 0"
    if name == "sr3":
        note = f"sigma {HELD_OUT_SIGMA}, {SR3_CROP}x{SR3_CROP} centre crops"
        return name, HELD_OUT_SIGMA, SR3_CROP, note
    return name, HELD_OUT_SIGMA, None, f"sigma {HELD_OUT_SIGMA}"


def load_train_images(data: str, n: int) -> tuple[np.ndarray, list[str]]:
    from admm_jax.data import decode_files, list_images

    files = list_images(Path(data) / "train")[:n]
    if len(files) < n:
        raise SystemExit(f"error: {data}/train holds {len(files)} images, --n-images is {n}")
    images, kept, _ = decode_files(files, 64, progress=False)
    if len(kept) != n:
        raise SystemExit(f"error: {n - len(kept)} of the first {n} training files are unreadable")
    return images.astype(np.float32) / 255.0, [f.name for f in files]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--denoiser", default="results/weights/utkface_denoiser_unet_w0.25",
                    help="weights folder of the denoiser (written by train --objective denoise)")
    ap.add_argument("--data", default="../shared/data/utkface",
                    help="dataset folder with train/ (only the first --n-images files are read)")
    ap.add_argument("--out", default="results/pnp_tuning", help="output folder")
    ap.add_argument("--n-images", type=int, default=32, help="training images to tune on")
    ap.add_argument("--cs-images", type=int, default=32,
                    help="images for the slow Gaussian-matrix CS problem (0: skip it)")
    ap.add_argument("--operators", default=",".join(OPERATORS),
                    help=f"comma list out of {','.join(OPERATORS)}")
    ap.add_argument("--rhos", default="0.01,0.02,0.05,0.1,0.2,0.5,1,2", help="rho grid")
    ap.add_argument("--iters", default="5,10,20,40", help="iteration-count grid")
    ap.add_argument("--seed", type=int, default=0, help="measurement key PRNGKey(seed)")
    ap.add_argument("--merge", action="store_true",
                    help="keep the other operators of an existing <out>/tuned.json (rerun some)")
    ap.add_argument("--best-of", default=None, metavar="DIR,DIR,...",
                    help="tune nothing: write <out>/tuned.json and .md with, per operator, the "
                         "best entry of the tuned.json files in these folders (a union grid on "
                         "the same images and draws)")
    ap.add_argument("--batch", type=int, default=None,
                    help="images per compiled call (default: all at once)")
    args = ap.parse_args(argv)

    from admm_jax.baselines.pnp import load_denoiser, tune_pnp

    if args.best_of:
        return best_of(args.best_of.split(","), Path(args.out))
    names = [n for n in args.operators.split(",") if n]
    unknown = sorted(set(names) - set(OPERATORS))
    if unknown:
        raise SystemExit(f"error: unknown operator(s) {unknown}; choose from {OPERATORS}")
    rhos = [float(v) for v in args.rhos.split(",")]
    iters = [int(v) for v in args.iters.split(",")]
    denoise = load_denoiser(args.denoiser)
    images, files = load_train_images(args.data, args.n_images)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    key = jax.random.PRNGKey(args.seed)
    about = {
        "what": "PnP-ADMM (our denoiser as the prox, fixed iteration count, estimate z) tuned "
                "per operator by mean PSNR on training images",
        "denoiser": args.denoiser, "data": f"{args.data}/train", "n_images": args.n_images,
        "first_file": files[0], "last_file": files[-1], "seed": args.seed,
        "rhos": rhos, "iters": iters,
        "sr3": f"{SR3_CROP}x{SR3_CROP} centre crops (63x63 is not divisible by the U-Net's 4)",
        "cs": f"Gaussian-matrix CS on the first {args.cs_images} images (--cs-images; a dense "
              f"matrix per image is slow)",
        "command": " ".join([Path(sys.argv[0]).name] + (argv or sys.argv[1:])),
    }
    results = {"_about": about}
    if args.merge and (out / "tuned.json").exists():  # entries keep their own grid/images
        old = json.loads((out / "tuned.json").read_text())
        prev = old["_about"]
        about["commands"] = prev.get("commands", [prev.get("command")]) + [about.pop("command")]
        if "cs" not in names:
            about["cs"] = prev["cs"]
        results = {**old, "_about": about}
    for name in names:
        target, sigma, crop, note = setting(name)
        x = images
        if name == "cs":
            if args.cs_images <= 0:
                print("cs: skipped (--cs-images 0)")
                continue
            x = images[: args.cs_images]
        if crop:
            c0 = (x.shape[1] - crop) // 2
            x = x[:, c0:c0 + crop, c0:c0 + crop]
        t0 = time.perf_counter()
        res = tune_pnp(denoise, target, x, sigma, rhos=rhos, iters=iters, key=key,
                       batch_size=args.batch)
        secs = time.perf_counter() - t0
        results[name] = {"rho": res["rho"], "iters": res["iters"], "psnr_train": res["psnr"],
                         "start_psnr": res["start_psnr"], "n_images": int(x.shape[0]),
                         "image_size": int(x.shape[1]), "noise": note, "seconds": round(secs, 1),
                         "grid": res["grid"]}
        print(f"{name}: rho {res['rho']:g}, {res['iters']} iterations, {res['psnr']:.2f} dB "
              f"(start {res['start_psnr']:.2f} dB; {secs:.0f} s)", flush=True)
        (out / "tuned.json").write_text(json.dumps(results, indent=1))  # after every operator
    (out / "tuned.md").write_text(markdown(results))
    print(f"wrote {out / 'tuned.json'} and {out / 'tuned.md'}")
    return 0


def best_of(folders: list[str], out: Path) -> int:
    """Per operator, the entry with the highest training PSNR over several tuned.json files."""
    runs = [(f, json.loads((Path(f) / "tuned.json").read_text())) for f in folders]
    merged = {"_about": {**runs[0][1]["_about"], "best_of": folders,
                         "rhos": "per entry (see its grid)", "iters": "per entry (see its grid)",
                         "commands": [c for _, r in runs
                                      for c in r["_about"].get("commands",
                                                               [r["_about"].get("command")])]}}
    merged["_about"].pop("command", None)
    union: dict[str, tuple[set, set]] = {}
    for folder, r in runs:
        for name, entry in r.items():
            if name.startswith("_"):
                continue
            rs, ts = union.setdefault(name, (set(), set()))
            rs.update(entry["grid"]["rhos"])
            ts.update(entry["grid"]["iters"])
            if name not in merged or entry["psnr_train"] > merged[name]["psnr_train"]:
                merged[name] = {**entry, "source": folder}
    for name, (rs, ts) in union.items():  # the values tried over all files, for the edge test
        merged[name]["tried"] = {"rhos": sorted(rs), "iters": sorted(ts)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "tuned.json").write_text(json.dumps(merged, indent=1))
    (out / "tuned.md").write_text(markdown(merged))
    print(f"wrote {out / 'tuned.json'} and {out / 'tuned.md'}")
    return 0


def markdown(results: dict) -> str:
    from admm_jax.baselines.pnp import grid_edges

    about = results["_about"]
    lines = [
        "# PnP-ADMM with our denoiser: rho and iterations tuned on training faces", "",
        f"Denoiser `{about['denoiser']}`; the first {about['n_images']} sorted files of "
        f"`{about['data']}` ({about['first_file']} ... {about['last_file']}), 64x64; grid "
        f"rho in {about['rhos']}, iterations in {about['iters']}; mean PSNR of z (dB). "
        f"SR x3: {about['sr3']}. CS: {about['cs']}.", "",
        "| operator | noise | images | rho | iterations | PSNR train | start (A⁺y) "
        "| best on grid edge |" + (" from |" if "best_of" in about else ""),
        "|---|---|---|---|---|---|---|---|" + ("---|" if "best_of" in about else ""),
    ]
    for name, r in results.items():
        if name.startswith("_"):
            continue
        g = r.get("tried", r["grid"])
        edges = grid_edges(g["rhos"], g["iters"], r["rho"], r["iters"])
        lines.append(f"| {name} | {r['noise']} | {r['n_images']} ({r['image_size']}²) | "
                     f"{r['rho']:g} | {r['iters']} | {r['psnr_train']:.2f} | "
                     f"{r['start_psnr']:.2f} | {', '.join(edges) or '-'} |"
                     + (f" {r['source']} |" if "best_of" in about else ""))
    cmds = about.get("commands", [about.get("command")])
    lines += [""] + [f"Command: `{c}`" for c in cmds] + [""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
