"""An offline default data set from photos shipped inside the scikit-image and scikit-learn wheels.

Nothing is downloaded: the files are read straight from the installed packages (scikit-image's
``skimage/data/*.png|jpg`` that are part of the wheel, not the ones fetched with ``pooch``, and
scikit-learn's ``sklearn/datasets/images/*.jpg``). Whole photos are held out for test, and each
photo gives many deterministic square crops (random position, log-uniform side between
``min_crop`` pixels and the photo's short side), resized to ``size`` with PIL bilinear.

Enough for tests, demos and smoke training, not for a serious benchmark (a handful of photos).

Licences
--------
* scikit-image photos: ``astronaut`` (NASA, public domain), ``chelsea`` (Stefan van der Walt, CC0),
  ``coffee`` (Rachel Michetti, CC0), ``rocket`` (SpaceX, public domain); optional extras
  ``hubble_deep_field`` (NASA, public domain), ``immunohistochemistry`` (CMMI, no known copyright
  restrictions), ``retina`` (Mikael Häggström, CC0) — as stated in the ``skimage.data`` docstrings.
* scikit-learn sample images (``load_sample_images``): ``china`` (Flickr user danielbuechele) and
  ``flower`` (Flickr user vultilion), both CC BY 2.0 (https://creativecommons.org/licenses/by/2.0/):
  if you publish images derived from them, credit the photographers as above.
"""

from __future__ import annotations

import functools
import importlib.util
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .images import Size, normalize_size, to_rgb


@dataclass(frozen=True)
class BundledPhoto:
    """One photo shipped inside a wheel: where it lives and under which terms."""

    name: str
    package: str  # importable top-level package ("skimage" / "sklearn")
    relpath: str  # path inside that package
    licence: str
    credit: str


BUNDLED_PHOTOS: dict[str, BundledPhoto] = {
    p.name: p
    for p in [
        BundledPhoto("astronaut", "skimage", "data/astronaut.png", "public domain",
                     "Eileen Collins, NASA Great Images database"),
        BundledPhoto("chelsea", "skimage", "data/chelsea.png", "CC0", "Stefan van der Walt"),
        BundledPhoto("coffee", "skimage", "data/coffee.png", "CC0",
                     "Rachel Michetti, courtesy of Pikolo Espresso Bar"),
        BundledPhoto("rocket", "skimage", "data/rocket.jpg", "public domain",
                     "SpaceX, DSCOVR launch on Falcon 9"),
        BundledPhoto("china", "sklearn", "datasets/images/china.jpg", "CC BY 2.0",
                     "danielbuechele (Flickr), via scikit-learn load_sample_images"),
        BundledPhoto("flower", "sklearn", "datasets/images/flower.jpg", "CC BY 2.0",
                     "vultilion (Flickr), via scikit-learn load_sample_images"),
        # Extras, not in the default set (not everyday natural photos):
        BundledPhoto("hubble_deep_field", "skimage", "data/hubble_deep_field.jpg", "public domain",
                     "NASA, Hubble eXtreme Deep Field"),
        BundledPhoto("immunohistochemistry", "skimage", "data/ihc.png",
                     "no known copyright restrictions",
                     "Center for Microscopy And Molecular Imaging (CMMI)"),
        BundledPhoto("retina", "skimage", "data/retina.jpg", "CC0", "Mikael Häggström"),
    ]
}

#: The natural photos used by default (test photos included).
DEFAULT_PHOTOS: tuple[str, ...] = ("astronaut", "chelsea", "coffee", "rocket", "china", "flower")
#: Whole photos held out for ``split="test"``; the rest of ``photos`` is ``split="train"``.
DEFAULT_TEST_PHOTOS: tuple[str, ...] = ("chelsea", "coffee")
#: Number of crops when ``n`` is not given.
DEFAULT_N = {"train": 1024, "test": 256}


def _photo_path(photo: BundledPhoto) -> Path:
    spec = importlib.util.find_spec(photo.package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"bundled photo {photo.name!r} needs the package {photo.package!r}, which is not installed."
        )
    return Path(list(spec.submodule_search_locations)[0]) / photo.relpath


@functools.lru_cache(maxsize=None)
def _read_photo(name: str) -> np.ndarray:
    photo = BUNDLED_PHOTOS[name]
    path = _photo_path(photo)
    if not path.is_file():
        raise FileNotFoundError(
            f"bundled photo {name!r} is not in the installed {photo.package} package (expected "
            f"{path}); this version may fetch it from the network, which the offline data set "
            f"does not do. Choose other photos (photos=...) or another data source."
        )
    with Image.open(path) as im:
        im.load()
        arr = np.array(to_rgb(im), dtype=np.uint8)
    arr.setflags(write=False)
    return arr


def bundled_photo(name: str) -> np.ndarray:
    """The full-resolution bundled photo ``name`` as uint8 ``(H, W, 3)`` RGB (read-only array)."""
    if name not in BUNDLED_PHOTOS:
        raise ValueError(f"unknown bundled photo {name!r}; available: {sorted(BUNDLED_PHOTOS)}.")
    return _read_photo(name)


def bundled_split_photos(
    split: str,
    photos: Sequence[str] = DEFAULT_PHOTOS,
    test_photos: Sequence[str] = DEFAULT_TEST_PHOTOS,
) -> tuple[str, ...]:
    """The photo names that make up ``split`` (``"train"`` or ``"test"``)."""
    for name in (*photos, *test_photos):
        if name not in BUNDLED_PHOTOS:
            raise ValueError(f"unknown bundled photo {name!r}; available: {sorted(BUNDLED_PHOTOS)}.")
    if split == "test":
        chosen = tuple(test_photos)
    elif split == "train":
        chosen = tuple(p for p in photos if p not in set(test_photos))
    else:
        raise ValueError(f"the bundled data set has splits 'train' and 'test', got {split!r}.")
    if not chosen:
        raise ValueError(f"no photos left for split {split!r} (photos={list(photos)}, test_photos={list(test_photos)}).")
    return chosen


def _crops(photo: np.ndarray, k: int, rng: np.random.Generator, hw: tuple[int, int], min_crop: int) -> np.ndarray:
    H, W = photo.shape[:2]
    h, w = hw
    img = Image.fromarray(photo)
    # Largest crop with the output's aspect ratio that fits; smallest: min_crop pixels high.
    max_ch = min(H, int(W * h / w))
    lo = float(min(max(1, min_crop), max_ch))
    out = np.empty((k, h, w, 3), dtype=np.uint8)
    for i in range(k):
        ch = int(round(np.exp(rng.uniform(np.log(lo), np.log(max_ch)))))
        ch = min(max(ch, 1), max_ch)
        cw = min(W, max(1, int(round(ch * w / h))))
        top = int(rng.integers(0, H - ch + 1))
        left = int(rng.integers(0, W - cw + 1))
        out[i] = np.asarray(img.crop((left, top, left + cw, top + ch)).resize((w, h), Image.BILINEAR))
    return out


def bundled_dataset(
    split: str = "train",
    n: int | None = None,
    *,
    size: Size = 64,
    seed: int = 0,
    photos: Sequence[str] = DEFAULT_PHOTOS,
    test_photos: Sequence[str] = DEFAULT_TEST_PHOTOS,
    min_crop: int = 64,
) -> np.ndarray:
    """Deterministic crops of the bundled photos, uint8 ``(n, H, W, 3)`` in 0–255. Works offline.

    ``split="test"`` uses only ``test_photos`` (default ``chelsea``, ``coffee``), ``split="train"``
    the other ``photos`` (default ``astronaut``, ``rocket``, ``china``, ``flower``), so no photo is
    on both sides. Crops go round-robin over the split's photos; each photo's crops come from
    ``np.random.default_rng([seed, crc32(name)])``, so the result depends only on
    ``(split, size, seed, photos, test_photos, min_crop)`` and a larger ``n`` extends a smaller
    one (same first rows). Each crop has the output's aspect ratio, a log-uniform height between
    ``min_crop`` pixels (default 64: no upsampling) and the largest that fits, a uniform position,
    and is resized to ``size`` (int or ``(height, width)``) with PIL bilinear.
    ``n`` defaults to 1024 (train) / 256 (test). Use :func:`~admm_jax.data.images.as_float` for
    float32 in [0, 1].
    """
    hw = normalize_size(size)
    names = bundled_split_photos(split, photos, test_photos)
    if n is None:
        n = DEFAULT_N[split]
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}.")
    n = int(n)
    per_photo = [len(range(j, n, len(names))) for j in range(len(names))]
    out = np.empty((n, *hw, 3), dtype=np.uint8)
    for j, name in enumerate(names):
        rng = np.random.default_rng([int(seed), zlib.crc32(name.encode())])
        out[j::len(names)] = _crops(bundled_photo(name), per_photo[j], rng, hw, int(min_crop))
    return out
