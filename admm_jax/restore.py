"""Restore a user's own images with a pretrained prior: measurement models at any image size,
the solve, and the file loop behind ``admm-jax solve``.

Two ways to get a measurement ``(A, y)`` for one image of shape ``(H, W, C)``, C = 1 or 3,
float32 in [0, 1]:

* :func:`simulate` degrades a *clean* image with a built-in problem generated at the image's own
  size (``pid``: 50 % of the entries dropped, σ = 0.1 noise by default; ``si``: ten boxes of
  10 % of the height; ``bi``: a centre block of 30 % of the height; ``sr``: ``scale``×``scale``
  box averaging; ``deblur``: circular Gaussian blur of ``blur_sigma`` pixels or a user kernel).
  For ``sr`` the image is first cropped (bottom/right) to a multiple of ``scale``.
* :func:`observe` wraps a *real* measurement: an image with missing pixels plus a mask
  (``inpaint``/``pid``/``si``/``bi``), a low-resolution image (``sr``: the result is ``scale``
  times larger), or a blurred image (``deblur``).

:func:`restore` then runs the prior's T unrolled ADMM iterations (``prior.solve``); the result
is clipped to [0, 1] only when written to a PNG.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from admm_jax.metrics import psnr
from admm_jax.operators import (
    BoxDownsample,
    CircularConvolution,
    LinearOperator,
    Mask,
    block_mask,
    circular_kernel,
    gaussian_blur,
    pixelwise_mask,
    scattered_mask,
)
from admm_jax.operators.convolution import BLUR_RCOND

__all__ = ["Degradation", "RESTORE_PROBLEMS", "simulate", "observe", "restore", "lift_to_rgb",
           "read_image",
           "read_mask", "read_kernel", "write_png", "restore_files", "solve_settings", "ssim"]

Array = jax.Array
RESTORE_PROBLEMS = ("pid", "si", "bi", "inpaint", "sr", "deblur")
_MASKED = ("pid", "si", "bi", "inpaint")
_DEFAULT_NOISE = {"pid": 0.1, "deblur": 0.01}  # the library's problem definitions


@dataclass(frozen=True)
class Degradation:
    """A measurement model for :func:`simulate` / :func:`observe`.

    problem: one of :data:`RESTORE_PROBLEMS`.
    noise_std: σ of the Gaussian noise in the [0, 1] domain; ``None`` = the problem's default
      (0.1 for pid, 0.01 for deblur, else 0). In :func:`observe` it is only recorded.
    scale: super-resolution factor (integer ≥ 2).
    blur_sigma: std in pixels of the Gaussian blur (deblur) when no ``kernel`` is given.
    kernel: optional (kh, kw) point-spread function (deblur), normalised to sum 1.
    mask: optional (H, W) or (H, W, C) array, nonzero = observed (needed by :func:`observe` for
      the masked problems; in :func:`simulate` it replaces the generated mask).
    """

    problem: str
    noise_std: float | None = None
    scale: int = 2
    blur_sigma: float = 1.5
    kernel: np.ndarray | None = None
    mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.problem not in RESTORE_PROBLEMS:
            raise ValueError(f"problem {self.problem!r} is unknown; choose one of "
                             f"{', '.join(RESTORE_PROBLEMS)}")
        if self.noise_std is not None and not (np.isfinite(self.noise_std)
                                               and 0 <= self.noise_std <= 1):
            raise ValueError(f"noise_std must be in [0, 1] (std in the [0, 1] image range), "
                             f"got {self.noise_std}")
        if isinstance(self.scale, bool) or int(self.scale) != self.scale or self.scale < 2:
            raise ValueError(f"scale must be an integer >= 2, got {self.scale}")
        if not (np.isfinite(self.blur_sigma) and self.blur_sigma > 0):
            raise ValueError(f"blur_sigma must be > 0, got {self.blur_sigma}")
        if self.kernel is not None:
            k = np.asarray(self.kernel, np.float64)
            if k.ndim != 2 or not np.all(np.isfinite(k)) or k.sum() <= 0:
                raise ValueError(f"kernel must be a finite 2-D array with a positive sum, got "
                                 f"shape {k.shape}")

    @property
    def sigma(self) -> float:
        return float(_DEFAULT_NOISE.get(self.problem, 0.0) if self.noise_std is None
                     else self.noise_std)


def _check_image(name: str, image: np.ndarray) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[-1] not in (1, 3):
        raise ValueError(f"{name} must be (H, W, 1) or (H, W, 3), got shape {a.shape}")
    if a.dtype.kind != "f":
        raise TypeError(f"{name} must be float in [0, 1], got dtype {a.dtype} (divide uint8 "
                        f"images by 255)")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or Inf")
    return a.astype(np.float32, copy=False)


def _mask_operator(mask: np.ndarray, shape: tuple[int, int, int], where: str) -> Mask:
    m = np.asarray(mask)
    if m.ndim == 2:
        m = m[..., None]
    if m.shape[:2] != shape[:2] or m.shape[-1] not in (1, shape[2]):
        raise ValueError(f"{where}: mask of size {m.shape[0]}x{m.shape[1]} does not match the "
                         f"image of size {shape[0]}x{shape[1]}")
    m = np.broadcast_to((m != 0).astype(np.float32), shape)
    return Mask(mask=jnp.asarray(m), in_shape=tuple(shape))


def _blur_operator(deg: Degradation, shape: tuple[int, int, int]) -> CircularConvolution:
    if deg.kernel is None:
        return gaussian_blur(shape, sigma=deg.blur_sigma, rcond=BLUR_RCOND)
    k = np.asarray(deg.kernel, np.float32)
    k = k / k.sum()
    return CircularConvolution(kernel=circular_kernel(jnp.asarray(k), shape[:2]),
                               in_shape=tuple(shape), rcond=BLUR_RCOND)


def _generated_operator(deg: Degradation, key: Array, shape: tuple[int, int, int]
                        ) -> LinearOperator:
    h = shape[0]
    if deg.mask is not None and deg.problem in _MASKED:
        return _mask_operator(deg.mask, shape, "simulate")
    if deg.problem == "pid":
        return pixelwise_mask(key, shape, drop_prob=0.5)
    if deg.problem == "si":
        return scattered_mask(key, shape, box_size=max(1, int(0.1 * h)), num_boxes=10)
    if deg.problem == "bi":
        return block_mask(shape, box_size=int(0.3 * h))
    if deg.problem == "sr":
        return BoxDownsample(in_shape=tuple(shape), factor=int(deg.scale))
    if deg.problem == "deblur":
        return _blur_operator(deg, shape)
    raise ValueError("simulate: problem 'inpaint' needs a mask (Degradation.mask)")


def simulate(deg: Degradation, key: Array, image: np.ndarray
             ) -> tuple[LinearOperator, Array, np.ndarray]:
    """Degrade a clean ``image`` (H, W, C) in [0, 1]: returns ``(A, y, x)`` where ``x`` is the
    image actually measured (cropped to a multiple of ``scale`` for ``sr``, else ``image``) and
    ``y = A x + σ ξ`` with ξ from ``key``."""
    x = _check_image("image", image)
    if deg.problem == "sr":
        s = int(deg.scale)
        h, w = (x.shape[0] // s) * s, (x.shape[1] // s) * s
        if min(h, w) == 0:
            raise ValueError(f"image of size {x.shape[0]}x{x.shape[1]} is smaller than the "
                             f"scale {s}")
        x = x[:h, :w]
    k_op, k_noise = jax.random.split(key)
    op = _generated_operator(deg, k_op, tuple(x.shape))
    y = op.apply(jnp.asarray(x))
    if deg.sigma > 0:
        y = y + deg.sigma * jax.random.normal(k_noise, y.shape, y.dtype)
    return op, y, x


def observe(deg: Degradation, observed: np.ndarray) -> tuple[LinearOperator, Array]:
    """A real measurement ``observed`` (H, W, C) in [0, 1] as ``(A, y)``: masked problems need
    ``deg.mask`` (size H×W, nonzero = observed); ``sr`` restores a ``scale``-times larger
    image; ``deblur`` uses ``deg.kernel`` or a Gaussian of ``deg.blur_sigma``."""
    y = _check_image("observed image", observed)
    shape = tuple(y.shape)
    if deg.problem in _MASKED:
        if deg.mask is None:
            raise ValueError(f"problem {deg.problem!r} on a real image needs a mask (which "
                             f"pixels were observed); pass --mask FILE")
        op = _mask_operator(deg.mask, shape, "observe")
        return op, op.apply(jnp.asarray(y))
    if deg.problem == "sr":
        s = int(deg.scale)
        return BoxDownsample(in_shape=(shape[0] * s, shape[1] * s, shape[2]), factor=s), \
            jnp.asarray(y)
    return _blur_operator(deg, shape), jnp.asarray(y)


def lift_to_rgb(op: LinearOperator) -> LinearOperator:
    """The operator of a greyscale image (H, W, 1) applied to each of three channels.

    Supported for the operators this module builds (masks, box downsampling, circular
    blurs); a mask is replicated across the channels, the others only change ``in_shape``."""
    import dataclasses

    shape = tuple(op.in_shape[:-1]) + (3,)
    if isinstance(op, Mask):
        return dataclasses.replace(op, mask=jnp.repeat(op.mask, 3, axis=-1), in_shape=shape)
    if isinstance(op, (BoxDownsample, CircularConvolution)):
        return dataclasses.replace(op, in_shape=shape)
    raise TypeError(f"cannot lift {type(op).__name__} to three channels")


def restore(prior: Any, op: LinearOperator, y: Array, *, problem: str | None = None,
            rho: float | None = None, num_iters: int | None = None,
            sigma: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Solve one measurement with a :class:`~admm_jax.pretrained_priors.PretrainedPrior`.

    Returns ``(z, start)``: the restored image after T (default: the prior's) unrolled ADMM
    iterations and the start ``A⁺y``, both of the operator's input shape (H, W, C) float32,
    not clipped. ``rho`` defaults to ``prior.rho_for(problem)`` (``inpaint`` uses the
    scattered-inpainting ρ); for a prior with a learned ρ rule (``general``) to its schedule
    ρ_t(σ) at the noise level ``sigma`` (default: the problem's), run ``num_iters`` = k·T
    iterations as k blocks of the schedule (:meth:`~admm_jax.pretrained_priors.PretrainedPrior.
    solve`, with the prior's ``long_run_rule``; 32 is the recommendation for operators beyond
    the paper's problems).

    Greyscale (C = 1): the measurement is solved as an RGB image whose three channels carry
    the same measurement (:func:`lift_to_rgb`, ``y`` replicated), and the three channels of the
    result are averaged. The priors were trained on colour images; run channel-replicated
    inside a one-channel ADMM instead, they lose 0.8–4.8 dB on inpainting (RESULTS.md §6).
    """
    t, rho, restart = solve_settings(prior, problem=problem, rho=rho, num_iters=num_iters,
                                     sigma=sigma)
    grey = op.in_shape[-1] == 1
    if grey:
        op, y = lift_to_rgb(op), jnp.repeat(jnp.asarray(y), 3, axis=-1)
    z, start = _compiled_solve(prior, int(t), restart)(op, jnp.asarray(y)[None],
                                                       jnp.asarray(rho))
    z, start = np.asarray(z[0]), np.asarray(start[0])
    if grey:
        z, start = z.mean(axis=-1, keepdims=True), start.mean(axis=-1, keepdims=True)
    return z, start


def solve_settings(prior: Any, *, problem: str | None = None, rho: float | None = None,
                   num_iters: int | None = None, sigma: float | None = None
                   ) -> tuple[int, np.ndarray | np.float32, int | None]:
    """What :func:`restore` runs: ``(T, ρ, restart_every)``, validated without solving.

    T: ``num_iters`` or the prior's. ρ: given (> 0), or the prior's per-problem ρ, or, for a
    prior with a learned rule, its schedule at ``sigma`` (default: the problem's noise level;
    0 without a problem) tiled to T, shape (T, 1). restart_every: per the prior's long-run
    rule. Raises ``ValueError`` naming the bad value (e.g. a T that is not a multiple of the
    learned schedule's length).
    """
    t = prior.num_iters if num_iters is None else num_iters
    if isinstance(t, bool) or int(t) != t or t < 1:
        raise ValueError(f"num_iters must be an integer >= 1, got {t}")
    named = "si" if problem == "inpaint" else problem
    if rho is None and getattr(prior, "rho_rule", None) is not None:
        sched = np.asarray(prior.default_rho_for(named, sigma if sigma is not None else (
            0.0 if named is None else None), t), np.float32)  # (T, 1) schedule
        return int(t), sched, prior.restart_every(int(t))
    rho = prior.rho_for(named) if rho is None else rho
    if not (np.isfinite(rho) and rho > 0):
        raise ValueError(f"rho must be > 0, got {rho}")
    return int(t), np.float32(rho), None


_SOLVERS: dict[tuple[int, int, int | None], Callable] = {}


def _compiled_solve(prior: Any, num_iters: int, restart_every: int | None = None
                    ) -> Callable:
    key = (id(prior), num_iters, restart_every)
    if key not in _SOLVERS:
        from admm_jax.admm import initial_state, unrolled_admm

        def solve(op, y, rho):
            return (unrolled_admm(prior, op, y, rho, num_iters, restart_every=restart_every,
                                  validate=False),
                    initial_state(op, y).z)

        _SOLVERS[key] = jax.jit(solve)
    return _SOLVERS[key]


#: SSIM's Gaussian window (scikit-image truncates it at 3.5σ: 11 px at σ = 1.5)
SSIM_SIGMA, _SSIM_TRUNCATE = 1.5, 3.5


def ssim(x: np.ndarray, ref: np.ndarray) -> float:
    """SSIM of ``x`` against ``ref`` (H, W, C) in [0, 1] (scikit-image, Gaussian window of
    σ = 1.5, 11 px). On images smaller than the window, σ shrinks until it fits; below 7 px
    (scikit-image's smallest window) the SSIM is NaN."""
    from skimage.metrics import structural_similarity

    x, ref = np.clip(np.asarray(x, np.float64), 0, 1), np.asarray(ref, np.float64)
    side = min(ref.shape[0], ref.shape[1])
    side -= 1 - side % 2  # the window is odd
    if side < 7:
        return float("nan")
    sigma = SSIM_SIGMA
    while 2 * int(_SSIM_TRUNCATE * sigma + 0.5) + 1 > side:
        sigma *= 0.9
    return float(structural_similarity(ref, x, data_range=1.0, channel_axis=-1,
                                       gaussian_weights=True, sigma=sigma,
                                       use_sample_covariance=False))


# ----------------------------------------------------------------------------- files
def _check_file(path: Path, what: str) -> None:
    """FileNotFoundError / IsADirectoryError naming ``what`` the path was given as."""
    if path.is_dir():
        raise IsADirectoryError(f"{what} {path} is a folder; give image files (e.g. "
                                f"{path}/*.png)")
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")


def read_image(path: str | Path, grey: bool | None = None, what: str = "input image"
               ) -> np.ndarray:
    """An image file as float32 (H, W, C) in [0, 1]: C = 1 for greyscale files (or ``grey=True``),
    3 otherwise (alpha composited over white). Raises FileNotFoundError / ValueError."""
    from PIL import Image, UnidentifiedImageError

    from admm_jax.data.images import to_rgb

    path = Path(path)
    _check_file(path, what)
    try:
        with Image.open(path) as im:
            im.load()
            is_grey = im.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
            rgb = np.asarray(to_rgb(im), np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from exc
    want_grey = is_grey if grey is None else grey
    if not want_grey:
        return rgb  # a greyscale file asked for as RGB: its channel replicated (to_rgb)
    # greyscale files have three equal channels after to_rgb; a colour file is averaged
    return rgb[..., :1] if is_grey else rgb.mean(axis=-1, keepdims=True)


def read_mask(path: str | Path) -> np.ndarray:
    """A mask image as a bool (H, W) array: pixels brighter than half = observed."""
    return read_image(path, grey=True, what="mask")[..., 0] > 0.5


def read_kernel(path: str | Path) -> np.ndarray:
    """A blur kernel from ``.npy`` (2-D array) or an image file (greyscale), sum-normalised."""
    path = Path(path)
    _check_file(path, "kernel file")
    if path.suffix.lower() == ".npy":
        try:
            k = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read kernel {path}: {exc}") from exc
    else:
        k = read_image(path, grey=True)[..., 0]
    k = np.asarray(k, np.float64)
    if k.ndim != 2 or not np.all(np.isfinite(k)) or k.sum() <= 0:
        raise ValueError(f"kernel {path} must be a finite 2-D array with a positive sum, got "
                         f"shape {k.shape}")
    return (k / k.sum()).astype(np.float32)


def write_png(path: Path, image: np.ndarray) -> None:
    """Write (H, W, 1|3) float [0, 1] (clipped) as an 8-bit PNG."""
    from PIL import Image

    a = np.clip(np.rint(np.asarray(image, np.float64) * 255.0), 0, 255).astype(np.uint8)
    Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a).save(path)


def _outputs(out_dir: Path, stem: str, simulated: bool) -> dict[str, Path]:
    names = {"restored": f"{stem}_restored.png", "start": f"{stem}_start.png"}
    if simulated:
        names.update(clean=f"{stem}_clean.png", measured=f"{stem}_measured.png")
    return {k: out_dir / v for k, v in names.items()}


def _plan(inputs: Sequence[str | Path], out_dir: Path, deg: Degradation, simulate_: bool,
          overwrite: bool) -> list[tuple[Path, dict[str, Path]]]:
    """Every check that can fail, before anything is written."""
    if not inputs:
        raise ValueError("no input images given")
    if deg.mask is None and deg.problem in _MASKED and not (simulate_ and deg.problem != "inpaint"):
        raise ValueError(f"problem {deg.problem!r} {'on a real image ' if not simulate_ else ''}"
                         f"needs a mask (which pixels were observed); pass --mask FILE")
    paths = [Path(p) for p in inputs]
    for p in paths:
        _check_file(p, "input image")
    stems = [p.stem for p in paths]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:
        raise ValueError(f"several inputs share the file name stem(s) {dup}: their outputs "
                         f"would collide; restore them into separate --out folders")
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} exists and is not a folder")
    plan = [(p, _outputs(out_dir, p.stem, simulate_)) for p in paths]
    if not overwrite:
        taken = [str(f) for _, outs in plan for f in outs.values() if f.exists()]
        if simulate_ and (out_dir / "metrics.csv").exists():
            taken.append(str(out_dir / "metrics.csv"))
        if taken:
            raise FileExistsError(f"output {taken[0]} already exists ({len(taken)} in all); "
                                  f"pass --overwrite to replace, or choose another --out")
    if deg.mask is not None:
        mh, mw = np.shape(deg.mask)[:2]
        for p in paths:
            from PIL import Image

            with Image.open(p) as im:
                w, h = im.size
            if (h, w) != (mh, mw):
                raise ValueError(f"mask of size {mh}x{mw} does not match image {p} of size "
                                 f"{h}x{w}")
    return plan


def restore_files(inputs: Sequence[str | Path], out_dir: str | Path, deg: Degradation, *,
                  prior: Any, simulate_first: bool = False, grey: bool | None = None,
                  rho: float | None = None, num_iters: int | None = None, seed: int = 0,
                  overwrite: bool = False, progress: bool = True,
                  log: Callable[[str], None] = print) -> list[dict]:
    """Restore image files and write PNGs into ``out_dir`` (the function behind ``solve``).

    For each input ``name.ext`` it writes ``name_restored.png`` and ``name_start.png`` (A⁺y);
    with ``simulate_first`` the input is a clean image that is degraded first (noise from
    ``jax.random.PRNGKey(seed)`` folded with the file's position), and it also writes
    ``name_clean.png`` (the image measured), ``name_measured.png`` (y) and one row per image
    in ``metrics.csv`` (PSNR and SSIM of the start and of the result). All inputs, the mask
    size and the output names are checked before anything is written; existing outputs are
    never replaced unless ``overwrite``. Returns one record per image.
    """
    from tqdm.auto import tqdm

    out = Path(out_dir)
    plan = _plan(inputs, out, deg, simulate_first, overwrite)
    images = [read_image(p, grey) for p, _ in plan]  # unreadable files fail before writing
    solve_settings(prior, problem=deg.problem, rho=rho, num_iters=num_iters, sigma=deg.sigma)
    measured = []  # (op, y, x, seconds): an image its operator cannot measure (too small)
    for i, ((path, _), image) in enumerate(zip(plan, images)):  # fails before any writing
        t0 = time.perf_counter()
        try:
            if simulate_first:
                op, y, x = simulate(deg, jax.random.fold_in(jax.random.PRNGKey(seed), i), image)
            else:
                (op, y), x = observe(deg, image), None
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc
        measured.append((op, y, x, time.perf_counter() - t0))
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for (path, outs), (op, y, x, measure_s) in tqdm(list(zip(plan, measured)), desc="solve",
                                                     unit="image", disable=not progress):
        t0 = time.perf_counter()
        z, start = restore(prior, op, y, problem=deg.problem, rho=rho, num_iters=num_iters,
                           sigma=deg.sigma)
        rec = {"file": path.name, "problem": deg.problem, "height": z.shape[0],
               "width": z.shape[1], "channels": z.shape[2],
               "seconds": measure_s + time.perf_counter() - t0}
        write_png(outs["restored"], z)
        write_png(outs["start"], start)
        if x is not None:
            write_png(outs["clean"], x)
            write_png(outs["measured"], np.asarray(y))  # masked, low-res or blurred image
            rec.update(psnr_start=float(psnr(jnp.asarray(start), x)),
                       psnr=float(psnr(jnp.clip(jnp.asarray(z), 0, 1), x)),
                       ssim_start=ssim(start, x), ssim=ssim(z, x))
        records.append(rec)
    if simulate_first:
        with open(out / "metrics.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(records[0]))
            w.writeheader()
            w.writerows(records)
    return records
