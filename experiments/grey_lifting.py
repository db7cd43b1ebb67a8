"""Greyscale with an RGB prior: one-channel ADMM (prior replicated and averaged inside each
iteration) against the grey measurement solved as three equal colour channels
(``admm_jax.restore.lift_to_rgb``, what ``restore`` and ``admm-jax solve`` do).

    python experiments/grey_lifting.py            # chelsea, 256x256, natural prior

Prints the PSNR of both ways per problem (RESULTS.md §6).
"""

import argparse
import sys

import jax
import numpy as np
from PIL import Image

import admm_jax as aj
from admm_jax.data.bundled import bundled_photo
from admm_jax.restore import Degradation, lift_to_rgb, simulate


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photo", default="chelsea", help="bundled photo name")
    ap.add_argument("--size", type=int, default=256, help="resize to size x size (bicubic)")
    ap.add_argument("--prior", default="natural", help="pretrained prior name")
    ap.add_argument("--problems", default="pid,si,bi,sr,deblur", help="comma list")
    args = ap.parse_args(argv)
    prior = aj.pretrained(args.prior)
    im = Image.fromarray(bundled_photo(args.photo)).resize((args.size, args.size),
                                                           Image.BICUBIC)
    grey = np.asarray(im.convert("L"), np.float32)[..., None] / 255.0
    for problem in args.problems.split(","):
        op, y, x = simulate(Degradation(problem), jax.random.PRNGKey(0), grey)
        rho, t = prior.rho_for(problem), prior.num_iters
        one = aj.unrolled_admm(prior, op, y[None], rho, t)[0]
        three = aj.unrolled_admm(prior, lift_to_rgb(op), np.repeat(np.asarray(y), 3, -1)[None],
                                 rho, t)[0].mean(-1, keepdims=True)
        print(f"{problem}: one-channel ADMM {float(aj.psnr(one, x)):.2f} dB, "
              f"lifted to three channels {float(aj.psnr(three, x)):.2f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
