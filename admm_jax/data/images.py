"""Image decoding and the paper's preprocessing.

The pixel pipeline of the original code (spec §2), used for training and test alike:

1. read the file with PIL and convert it to 8-bit RGB (palette, greyscale, RGBA, CMYK, 16-bit ...;
   transparent images are composited over a background colour, white by default);
2. resize the **whole** image (no crop, aspect ratio not preserved) to ``size`` with PIL bilinear;
3. divide by 255, giving float32 values in [0, 1].

Like the original, the EXIF orientation tag is ignored (pixels are used as stored) and
multi-frame files (TIFF, WebP) use their first frame.

Arrays that hold many images stay uint8 ``(N, H, W, 3)`` (4× smaller, exact); :func:`as_float`
turns them into float32 in [0, 1]. Optional augmentation takes a random crop of each side
(``crop_scale`` of its length, e.g. 0.6–1.0) before the resize, drawn from an explicit NumPy
``Generator``, an integer seed or a JAX PRNG key.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image

#: File extensions (lower case) recognised as images; matching is case-insensitive.
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

#: Default background for compositing transparent images (opaque white).
WHITE: tuple[int, int, int] = (255, 255, 255)

#: Bumped whenever the pixel pipeline changes, so that on-disk caches are rebuilt.
PIPELINE_VERSION = 1

Size = Union[int, Sequence[int]]


class NoImagesError(ValueError):
    """No usable image was found (empty folder, wrong extensions, or every file unreadable)."""


def normalize_size(size: Size) -> tuple[int, int]:
    """Return ``size`` as ``(height, width)``; an int ``s`` means ``(s, s)``.

    Raises ``ValueError`` unless every entry is a positive integer.
    """
    if isinstance(size, (bool, np.bool_)):
        raise ValueError(f"size must be a positive int or a (height, width) pair, got {size!r}.")
    if isinstance(size, (int, np.integer)):
        hw = (int(size), int(size))
    else:
        try:
            hw = tuple(size)  # type: ignore[arg-type]
        except TypeError:
            raise ValueError(
                f"size must be a positive int or a (height, width) pair, got {size!r}."
            ) from None
        if len(hw) != 2 or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in hw
        ):
            raise ValueError(f"size must be a positive int or a (height, width) pair, got {size!r}.")
        hw = (int(hw[0]), int(hw[1]))
    if hw[0] <= 0 or hw[1] <= 0:
        raise ValueError(f"size must be positive, got {size!r}.")
    return hw


def as_generator(rng: Any) -> np.random.Generator:
    """Turn ``rng`` into a NumPy ``Generator``.

    Accepts a ``np.random.Generator`` (returned as is, so it advances), an int seed (or sequence of
    ints), or a JAX PRNG key (new-style typed key or legacy ``uint32[2]``), whose bits seed a fresh
    generator (the same key always gives the same draws).
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        raise ValueError(
            "an explicit random source is needed for augmentation: pass rng= a numpy Generator, "
            "an int seed or a jax.random key."
        )
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, (bool, np.bool_)):
        return np.random.default_rng(int(rng))
    dtype = getattr(rng, "dtype", None)
    if dtype is not None and type(rng).__module__.startswith(("jax", "jaxlib")):
        import jax

        if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
            rng = jax.random.key_data(rng)
        bits = np.asarray(rng).astype(np.uint32).ravel()
        return np.random.default_rng([int(b) for b in bits])
    if isinstance(rng, (list, tuple, np.ndarray)):
        return np.random.default_rng(np.asarray(rng, dtype=np.uint64).ravel().tolist())
    raise TypeError(f"cannot make a random generator from {type(rng).__name__}: {rng!r}")


def to_rgb(img: Image.Image, background: Sequence[int] = WHITE) -> Image.Image:
    """Convert any PIL image to 8-bit ``"RGB"``.

    * ``L``/``1``/``P``/``CMYK``/``YCbCr``: PIL's own ``convert("RGB")`` (greyscale is replicated);
    * anything with transparency (``RGBA``, ``LA``, ``PA``, palette or RGB with a ``transparency``
      entry): alpha-composited over ``background`` (RGB 0–255, white by default);
    * 16-bit greyscale (``I;16*``): scaled by 255/65535 (PIL's own conversion would clip);
      ``I`` (32-bit int): treated as 16-bit if any value exceeds 255, else as 8-bit;
      ``F`` (float): treated as [0, 1] if its maximum is ≤ 1, else as [0, 255] (clipped).

    Raises ``ValueError`` for a mode PIL cannot convert.
    """
    mode = img.mode
    if mode == "RGB" and "transparency" not in img.info:
        return img
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(img).astype(np.float64)
        if mode.startswith("I;16") or (arr.size and arr.max() > 255):
            arr = np.clip(arr, 0, 65535) * (255.0 / 65535.0)
        grey = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "F":
        arr = np.asarray(img).astype(np.float64)
        arr = np.nan_to_num(arr, nan=0.0, posinf=255.0, neginf=0.0)
        if arr.size and arr.max() <= 1.0:
            arr = arr * 255.0
        grey = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    has_alpha = "A" in img.getbands() or "a" in img.getbands() or "transparency" in img.info
    try:
        if has_alpha:
            rgba = img.convert("RGBA")
            bg = Image.new("RGBA", rgba.size, tuple(int(c) for c in background[:3]) + (255,))
            return Image.alpha_composite(bg, rgba).convert("RGB")
        return img.convert("RGB")
    except (ValueError, OSError) as err:
        raise ValueError(f"cannot convert PIL image mode {mode!r} to RGB: {err}") from err


def random_crop_box(
    width: int, height: int, rng: Any, scale: Sequence[float] = (0.6, 1.0)
) -> tuple[int, int, int, int]:
    """A random crop box ``(left, top, right, bottom)`` inside a ``width × height`` image.

    Each side's length is drawn independently, uniform in ``scale`` (fractions of that side, e.g.
    ``(0.6, 1.0)``), then the position uniformly. ``rng``: see :func:`as_generator`.
    """
    lo, hi = (float(s) for s in scale)
    if not 0.0 < lo <= hi <= 1.0:
        raise ValueError(f"crop scale must satisfy 0 < low <= high <= 1, got {tuple(scale)}.")
    gen = as_generator(rng)
    cw = min(width, max(1, int(round(width * gen.uniform(lo, hi)))))
    ch = min(height, max(1, int(round(height * gen.uniform(lo, hi)))))
    left = int(gen.integers(0, width - cw + 1))
    top = int(gen.integers(0, height - ch + 1))
    return left, top, left + cw, top + ch


def preprocess(
    img: Image.Image | np.ndarray,
    size: Size = 64,
    *,
    crop_box: Sequence[int] | None = None,
    background: Sequence[int] = WHITE,
) -> np.ndarray:
    """Apply the paper's pipeline to one image; return uint8 ``(H, W, 3)`` in 0–255.

    ``img`` is a PIL image or an array (``(h, w)``, ``(h, w, 1|3|4)``; uint8, uint16 or float in
    [0, 1]). It is converted to RGB (:func:`to_rgb`), optionally cropped to ``crop_box``
    ``(left, top, right, bottom)``, and the whole (cropped) image is resized to ``size``
    (int or ``(height, width)``) with PIL bilinear; the aspect ratio is not preserved.
    """
    h, w = normalize_size(size)
    if isinstance(img, np.ndarray):
        img = array_to_pil(img)
    rgb = to_rgb(img, background)
    if crop_box is not None:
        rgb = rgb.crop(tuple(int(v) for v in crop_box))
    out = rgb.resize((w, h), Image.BILINEAR)
    return np.array(out, dtype=np.uint8)


def array_to_pil(arr: np.ndarray) -> Image.Image:
    """Wrap an image array as a PIL image (uint8/uint16/bool/float in [0, 1]; 1, 3 or 4 channels)."""
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise ValueError(f"expected an image array (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {a.shape}.")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype.kind == "f":
        a = np.clip(np.rint(np.nan_to_num(a) * 255.0), 0, 255).astype(np.uint8)
    elif a.dtype == np.uint16 and a.ndim == 2:
        return Image.fromarray(a.astype(np.uint16), "I;16")
    elif a.dtype != np.uint8:
        if a.dtype.kind in "ui" and a.size and a.max() > 255:
            a = np.clip(np.rint(a.astype(np.float64) * (255.0 / 65535.0)), 0, 255)
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(a), "L")
    return Image.fromarray(np.ascontiguousarray(a), "RGB" if a.shape[-1] == 3 else "RGBA")


def load_image(
    path: str | os.PathLike,
    size: Size = 64,
    *,
    crop_scale: Sequence[float] | None = None,
    rng: Any = None,
    background: Sequence[int] = WHITE,
    dtype: Any = np.float32,
) -> np.ndarray:
    """Load one image file with the paper's preprocessing.

    Returns ``(H, W, 3)`` float32 in [0, 1] (``dtype=np.uint8`` gives 0–255 uint8 instead).
    ``crop_scale=(lo, hi)`` takes a random crop first (:func:`random_crop_box`, needs ``rng``: a
    NumPy ``Generator``, int seed or JAX key). Raises ``FileNotFoundError`` for a missing file and
    PIL's ``OSError`` (e.g. ``UnidentifiedImageError``) / ``ValueError`` for unreadable ones.
    """
    with Image.open(path) as im:
        im.load()
        box = None
        if crop_scale is not None:
            box = random_crop_box(im.width, im.height, rng, crop_scale)
        arr = preprocess(im, size, crop_box=box, background=background)
    if np.dtype(dtype) == np.uint8:
        return arr
    return as_float(arr, dtype)


def as_float(images: np.ndarray, dtype: Any = np.float32) -> np.ndarray:
    """uint8 images (any shape) → float (float32 by default) in [0, 1]; float input is cast only."""
    a = np.asarray(images)
    if a.dtype == np.uint8:
        return a.astype(dtype) / np.asarray(255.0, dtype)
    if a.dtype.kind == "f":
        return a.astype(dtype, copy=False)
    raise TypeError(f"expected uint8 (0-255) or float ([0, 1]) images, got dtype {a.dtype}.")


@dataclass
class LoadReport:
    """What happened while decoding a list of files.

    ``n_total`` files were tried, ``n_loaded`` decoded; ``skipped`` holds ``(path, reason)`` for
    each unreadable one (corrupt, truncated, zero bytes, unsupported mode ...).
    """

    n_total: int = 0
    n_loaded: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)


def _decode_one(path: Path, size: tuple[int, int], background: Sequence[int]):
    try:
        if os.path.getsize(path) == 0:
            return None, "zero-byte file"
        return load_image(path, size, background=background, dtype=np.uint8), None
    except Exception as err:  # noqa: BLE001 - any decoder failure means "skip this file"
        return None, f"{type(err).__name__}: {err}"


def decode_files(
    files: Sequence[str | os.PathLike],
    size: Size = 64,
    *,
    num_workers: int | None = None,
    progress: bool = True,
    desc: str = "decoding images",
    background: Sequence[int] = WHITE,
    where: str | None = None,
) -> tuple[np.ndarray, list[int], LoadReport]:
    """Decode many files in parallel (thread pool) with :func:`preprocess`.

    Returns ``(images, kept, report)``: ``images`` uint8 ``(N, H, W, 3)`` for the ``N`` readable
    files in input order, ``kept`` their indices into ``files``, and a :class:`LoadReport`.
    Unreadable files are skipped and counted, with one ``UserWarning``; if no file at all could
    be read, ``NoImagesError`` names ``where`` (e.g. the folder). ``num_workers`` defaults to
    ``min(8, cpu_count)``; ``progress`` shows a tqdm bar.
    """
    hw = normalize_size(size)
    paths = [Path(f) for f in files]
    where = where or (str(Path(os.path.commonpath([str(p.parent) for p in paths]))) if paths else "<no files>")
    if not paths:
        raise NoImagesError(f"no image files given to decode ({where}).")
    workers = num_workers or min(8, os.cpu_count() or 1)
    out = np.empty((len(paths), hw[0], hw[1], 3), dtype=np.uint8)
    ok = np.zeros(len(paths), dtype=bool)
    report = LoadReport(n_total=len(paths))

    from tqdm.auto import tqdm

    with tqdm(total=len(paths), desc=desc, unit="img", disable=not progress) as bar:

        def handle(i: int, res) -> None:
            arr, reason = res
            if arr is None:
                report.skipped.append((str(paths[i]), reason))
            else:
                out[i] = arr
                ok[i] = True
            bar.update(1)

        if workers <= 1 or len(paths) < 4:
            for i, p in enumerate(paths):
                handle(i, _decode_one(p, hw, background))
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                results = pool.map(lambda p: _decode_one(p, hw, background), paths, chunksize=16)
                for i, res in enumerate(results):
                    handle(i, res)

    kept = np.flatnonzero(ok).tolist()
    report.n_loaded = len(kept)
    if not kept:
        first = report.skipped[0]
        raise NoImagesError(
            f"none of the {len(paths)} image file(s) under {where} could be read "
            f"(first: {first[0]}: {first[1]})."
        )
    if report.skipped:
        first = report.skipped[0]
        warnings.warn(
            f"skipped {report.n_skipped} of {len(paths)} image file(s) under {where} that could not "
            f"be read (first: {first[0]}: {first[1]}).",
            UserWarning,
            stacklevel=2,
        )
    images = out if len(kept) == len(paths) else out[ok]
    return images, kept, report
