"""The shipped pretrained priors on whole photos: start vs wavelet-l1 vs prior, colour and grey.

    python experiments/restore_photos.py --data ../shared/data/bsds500 --n 50 --size 256 \
        --prior natural --out results/restore_bsds256

For each of the first ``--n`` photos of the test split (sorted by file name), the centred
``size``×``size`` crop at native resolution (no resizing), in RGB and in greyscale (PIL's
ITU-R 601 luma), is degraded with each problem through :func:`admm_jax.restore.simulate`
(operator and noise of image i from ``PRNGKey(i)``; true SR adjoint), then

* start: ``A⁺y``;
* wavelet-l1: converging ADMM with the library's per-problem λ, ρ, tolerance and cap
  (``get_preset("corrected")``: db4, 3 levels, cap 300);
* prior: the pretrained prior, T = 8 unrolled iterations with its own ρ per problem
  (:func:`admm_jax.restore.restore`; greyscale lifted to three equal channels).

Writes ``per_image.csv``, ``table.md`` (mean PSNR / SSIM), ``grid_rgb.png`` and
``grid_grey.png`` (first image: clean, measured, start, wavelet-l1, prior per problem), and
``run.json`` (settings, machine, timings). Refuses an existing ``--out`` unless ``--overwrite``.
"""

import argparse
import csv
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

PROBLEMS = ("pid", "bi", "si", "sr", "deblur")


def load_photos(folder: Path, n: int, size: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    from PIL import Image

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".png"))[:n]
    out = []
    for p in files:
        with Image.open(p) as im:
            w, h = im.size
            box = ((w - size) // 2, (h - size) // 2, (w - size) // 2 + size, (h - size) // 2 + size)
            crop = im.convert("RGB").crop(box)
            rgb = np.asarray(crop, np.float32) / 255.0
            grey = np.asarray(crop.convert("L"), np.float32)[..., None] / 255.0
        out.append((p.name, rgb, grey))
    return out


def wavelet_solve(problem: str, ops, ys):
    import jax

    from admm_jax import converging_admm, wavelet_l1_prox
    from admm_jax.presets import get_preset

    w = get_preset("corrected").settings(problem).wavelet
    op = jax.tree_util.tree_map(lambda *a: np.stack(a), *ops)
    prox = wavelet_l1_prox(w.lam, wavelet=w.wavelet, level=w.level)
    solve = jax.jit(lambda o, y: converging_admm(prox, o, y, w.rho, tol=w.tol,
                                                 max_iters=w.max_iters, validate=False))
    res = solve(op, np.stack(ys))
    return np.asarray(res.z), np.asarray(res.iterations)


def run_block(prior, problem: str, images: list[np.ndarray]) -> dict:
    import jax

    from admm_jax.restore import Degradation, restore, simulate

    ops, ys, xs, starts, zs = [], [], [], [], []
    t0 = time.perf_counter()
    for i, img in enumerate(images):
        op, y, x = simulate(Degradation(problem), jax.random.PRNGKey(i), img)
        z, start = restore(prior, op, y, problem=problem)
        ops.append(op), ys.append(np.asarray(y)), xs.append(x), starts.append(start)
        zs.append(z)
    t_prior = time.perf_counter() - t0
    t0 = time.perf_counter()
    zw, iters = wavelet_solve(problem, ops, ys)
    return {"x": xs, "y": ys, "start": starts, "prior": zs, "wavelet": list(zw),
            "wavelet_iters": iters, "seconds_prior": t_prior,
            "seconds_wavelet": time.perf_counter() - t0}


def metrics(est: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    from admm_jax.metrics import psnr
    from admm_jax.restore import ssim

    return float(psnr(np.asarray(est), ref)), ssim(est, ref)


def write_grid(path: Path, blocks: dict, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = ("x", "y", "start", "wavelet", "prior")
    names = ("clean", "measured y", "start A⁺y", "wavelet-ℓ1", "pretrained prior")
    fig, axes = plt.subplots(len(blocks), len(cols), figsize=(2.4 * len(cols), 2.5 * len(blocks)))
    for r, (problem, b) in enumerate(blocks.items()):
        for c, (key, name) in enumerate(zip(cols, names)):
            img = np.clip(b[key][0], 0, 1)
            ax = axes[r, c]
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            label = name
            if key in ("start", "wavelet", "prior"):
                label += f"\n{metrics(b[key][0], b['x'][0])[0]:.2f} dB"
            ax.set_title(label, fontsize=8)
            if c == 0:
                ax.set_ylabel(problem, fontsize=10)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/bsds500"),
                    help="folder with a test/ sub-folder of photos")
    ap.add_argument("--n", type=int, default=50, help="number of test photos (first, sorted)")
    ap.add_argument("--size", type=int, default=256, help="side of the centred crop (pixels)")
    ap.add_argument("--prior", default="natural", help="pretrained prior name")
    ap.add_argument("--problems", default=",".join(PROBLEMS), help="comma list")
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = ap.parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()) and not args.overwrite:
        print(f"error: {args.out} exists (use --overwrite)", file=sys.stderr)
        return 2
    folder = args.data / "test"
    if not folder.is_dir():
        print(f"error: {folder} is not a folder", file=sys.stderr)
        return 2

    import admm_jax as aj
    from admm_jax.train import prepare_output_dir
    from admm_jax.train.loop import check_output_dir

    try:  # a filled --out only with --overwrite, and only a folder an admm-jax command made
        check_output_dir(args.out, resume=False, overwrite=args.overwrite)
    except (FileExistsError, NotADirectoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    prior = aj.pretrained(args.prior)
    photos = load_photos(folder, args.n, args.size)
    problems = [p for p in args.problems.split(",") if p]
    prepare_output_dir(args.out, resume=False, overwrite=args.overwrite)
    rows, timing = [], {}
    for mode in ("rgb", "grey"):
        images = [rgb if mode == "rgb" else grey for _, rgb, grey in photos]
        blocks = {}
        for problem in problems:
            b = run_block(prior, problem, images)
            blocks[problem] = b
            timing[f"{mode}/{problem}"] = {k: b[k] for k in ("seconds_prior", "seconds_wavelet")}
            for i, (name, *_rest) in enumerate(photos):
                rec = {"image": name, "mode": mode, "problem": problem,
                       "wavelet_iters": int(b["wavelet_iters"][i])}
                for method in ("start", "wavelet", "prior"):
                    rec[f"psnr_{method}"], rec[f"ssim_{method}"] = metrics(b[method][i],
                                                                           b["x"][i])
                rows.append(rec)
            print(f"{mode} {problem}: " + "  ".join(
                f"{m} {np.mean([r[f'psnr_{m}'] for r in rows if r['mode'] == mode and r['problem'] == problem]):.2f}"
                for m in ("start", "wavelet", "prior")), flush=True)
        write_grid(args.out / f"grid_{mode}.png", blocks,
                   f"{photos[0][0]}, {args.size}x{args.size} {mode}, prior {args.prior!r}")
    with open(args.out / "per_image.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = ["| mode | problem | start PSNR | wavelet-ℓ1 PSNR | prior PSNR | start SSIM | "
             "wavelet-ℓ1 SSIM | prior SSIM |", "|---|---|---|---|---|---|---|---|"]
    for mode in ("rgb", "grey"):
        for problem in problems:
            sel = [r for r in rows if r["mode"] == mode and r["problem"] == problem]
            cells = []
            for metric, fmt in (("psnr", "{:.2f}"), ("ssim", "{:.3f}")):
                means = [np.mean([r[f"{metric}_{m}"] for r in sel])
                         for m in ("start", "wavelet", "prior")]
                best = int(np.argmax(means))  # the best of the three in bold
                cells += [("**" + fmt + "**" if j == best else fmt).format(v)
                          for j, v in enumerate(means)]
            lines.append(f"| {mode} | {problem} | " + " | ".join(cells) + " |")
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    (args.out / "run.json").write_text(json.dumps({
        "argv": sys.argv[1:] if argv is None else argv, "n_images": len(photos),
        "machine": platform.processor() or platform.machine(), "date": time.strftime("%Y-%m-%d"),
        "seconds": timing, "prior": dict(prior.metadata)["label"]}, indent=1))
    print("\n".join(lines))
    print(f"outputs written to {args.out.absolute()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
