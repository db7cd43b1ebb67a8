"""Derive 500 64×64 evaluation images from the 200 BSDS500 *test* photos only.

    python experiments/bsds_test_crops.py --bsds ../shared/data/bsds500 --out local_data/bsds_test500.npz

For the photos in sorted file order: (1) every photo whole, resized to 64×64 (the paper's
preprocessing: no crop, bilinear) — 200 images; (2) every photo's centred square crop
(side = the short side), resized — 200 images; (3) for the first 100 photos the top-left square
crop (side = the short side), resized — 100 images. No training photo is touched.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def output_free(out: Path, overwrite: bool) -> bool:
    """False (with a message) if ``out`` exists and may not be replaced."""
    if out.exists() and not overwrite:
        print(f"error: {out} exists (use --overwrite)", file=sys.stderr)
        return False
    return True


def whole_and_centre(path: Path, size: int = 64):
    """``(photo, short side, whole photo resized, centred square crop resized)``."""
    from admm_jax.data import preprocess

    img = Image.open(path).convert("RGB")
    w, h = img.size
    s = min(w, h)
    centre = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
    return img, s, preprocess(img, size), preprocess(img, size, crop_box=centre)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bsds", default="../shared/data/bsds500", help="BSDS500 folder (test/ is used)")
    ap.add_argument("--out", default="local_data/bsds_test500.npz", help=".npz pack to write")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = ap.parse_args(argv)
    from admm_jax.data import list_images, preprocess, save_packed

    out = Path(args.out)
    if not output_free(out, args.overwrite):
        return 2
    files = sorted(list_images(Path(args.bsds) / "test"))
    if len(files) != 200:
        print(f"warning: expected 200 test photos, found {len(files)}")
    whole, centre, corner = [], [], []
    for i, f in enumerate(files):
        img, s, whole_img, centre_img = whole_and_centre(f)
        whole.append(whole_img)
        centre.append(centre_img)
        if i < 100:
            corner.append(preprocess(img, 64, crop_box=(0, 0, s, s)))
    images = np.stack(whole + centre + corner).astype(np.uint8)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_packed(out, {"test": images})
    print(f"{len(images)} images from {len(files)} test photos written to {out.absolute()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
