"""Derive 64×64 training images from the 300 BSDS500 *train* and *val* photos, and pack them with
the 500 test images into one file for ``admm-jax train/evaluate --data``.

    python experiments/bsds_test_crops.py                     # first: local_data/bsds_test500.npz
    python experiments/bsds_train_crops.py --bsds ../shared/data/bsds500 \
        --test local_data/bsds_test500.npz --out local_data/bsds.npz

300 photos resized whole would be too few to train a prior, so every photo gives
``2 + --random-crops`` images: (1) the whole photo resized to 64×64 (the paper's
preprocessing), (2) its centred square crop, and (3) random square crops whose side is a
uniform fraction in [0.25, 1] of the short side, at a uniform position (NumPy generator seeded
with ``--seed``), each resized with PIL bilinear. The output has the splits ``train`` (these
crops) and ``test`` (the 500 images derived from the 200 test photos only), so no test photo is
ever trained on.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from bsds_test_crops import output_free, whole_and_centre  # same folder: shared crop rules


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bsds", default="../shared/data/bsds500", help="BSDS500 folder (train/ and val/ are used)")
    ap.add_argument("--test", default="local_data/bsds_test500.npz",
                    help="the 500 test images (from experiments/bsds_test_crops.py)")
    ap.add_argument("--out", default="local_data/bsds.npz", help=".npz pack to write (train + test)")
    ap.add_argument("--random-crops", type=int, default=18, help="random crops per photo")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random crops")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = ap.parse_args(argv)
    from admm_jax.data import list_images, load_source, preprocess, save_packed

    out = Path(args.out)
    if not output_free(out, args.overwrite):
        return 2
    test = load_source(args.test, "test")
    files = sorted(list_images(Path(args.bsds) / "train")) + sorted(
        list_images(Path(args.bsds) / "val"))
    if len(files) != 300:
        print(f"warning: expected 300 train+val photos, found {len(files)}")
    rng = np.random.default_rng(args.seed)
    crops = []
    for f in files:
        img, s, whole_img, centre_img = whole_and_centre(f)
        w, h = img.size
        crops += [whole_img, centre_img]
        for _ in range(args.random_crops):
            side = max(16, int(round(s * rng.uniform(0.25, 1.0))))
            left = int(rng.integers(0, w - side + 1))
            top = int(rng.integers(0, h - side + 1))
            crops.append(preprocess(img, 64, crop_box=(left, top, left + side, top + side)))
    train = np.stack(crops).astype(np.uint8)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_packed(out, {"train": train, "test": np.asarray(test, np.uint8)})
    print(f"{len(train)} training images from {len(files)} train+val photos and {len(test)} "
          f"test images written to {out.absolute()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
