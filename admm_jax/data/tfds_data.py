"""TensorFlow Datasets sources (optional: ``pip install 'admm_jax[tfds]'``).

``tensorflow_datasets`` is imported only when one of these functions is called, so the rest of
``admm_jax`` works without it. Reading a dataset with ``tf.data`` (the usual way, and the only way
for datasets prepared in the default TFRecord format) also needs TensorFlow
(``pip install tensorflow-cpu``); without TensorFlow, ``backend="data_source"`` reads datasets
prepared in ArrayRecord format with ``tfds.data_source``.

Encoded images are decoded with PIL (``tfds.decode.SkipDecoding``) and then go through the same
pipeline as image files (:func:`~admm_jax.data.images.preprocess`: RGB, whole-image bilinear
resize). Useful datasets: ``celeb_a`` (faces; the public stand-in for MS-Celeb-1M, splits
train/validation/test) and ``imagenet_resized/64x64`` (ImageNet at 64×64; splits train/validation,
so ``split="test"`` in :func:`~admm_jax.data.sources.load_source` means its validation split).
"""

from __future__ import annotations

import importlib.util
import io
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .images import WHITE, NoImagesError, Size, normalize_size, preprocess

INSTALL_HINT = (
    "tfds sources need the optional dependency tensorflow-datasets: pip install 'admm_jax[tfds]' "
    "(plus tensorflow-cpu to read TFRecord-prepared datasets)."
)


def _import_tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as err:
        raise ImportError(f"{INSTALL_HINT} ({err})") from err
    return tfds


def _has_tensorflow() -> bool:
    try:
        return importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):
        return False


def _to_rgb_array(value: Any, hw: tuple[int, int], background: Sequence[int]) -> np.ndarray:
    if isinstance(value, (bytes, bytearray, memoryview)) or (
        isinstance(value, np.ndarray) and value.dtype.kind in "SO" and value.ndim == 0
    ):
        raw = value.item() if isinstance(value, np.ndarray) else bytes(value)
        with Image.open(io.BytesIO(raw)) as im:
            im.load()
            return preprocess(im, hw, background=background)
    return preprocess(np.asarray(value), hw, background=background)


def iter_tfds(
    name: str = "celeb_a",
    split: str = "train",
    *,
    data_dir: str | os.PathLike | None = None,
    size: Size = 64,
    image_key: str = "image",
    download: bool = True,
    backend: str = "auto",
    background: Sequence[int] = WHITE,
) -> Iterator[np.ndarray]:
    """Yield the images of a tfds dataset as uint8 ``(H, W, 3)`` after the paper's preprocessing.

    ``split`` is any tfds split expression (``"train"``, ``"test[:500]"``, ...). ``backend``:
    ``"tf"`` (``tfds.load`` + ``tf.data``; needs TensorFlow), ``"data_source"``
    (``tfds.data_source``; ArrayRecord-prepared data, no TensorFlow) or ``"auto"`` (``"tf"`` if
    TensorFlow is installed). ``download=True`` lets tfds download and prepare the dataset into
    ``data_dir`` the first time. The order is the dataset's own (files not shuffled).
    """
    tfds = _import_tfds()
    hw = normalize_size(size)
    if backend == "auto":
        backend = "tf" if _has_tensorflow() else "data_source"
    if backend == "tf":
        if not _has_tensorflow():
            raise ImportError(
                "backend='tf' needs TensorFlow (pip install tensorflow-cpu); or prepare the dataset "
                "in ArrayRecord format and use backend='data_source'."
            )
        ds = tfds.load(
            name,
            split=split,
            data_dir=None if data_dir is None else str(data_dir),
            download=download,
            shuffle_files=False,
            decoders={image_key: tfds.decode.SkipDecoding()},
        )
        examples = tfds.as_numpy(ds)
    elif backend == "data_source":
        try:
            examples = tfds.data_source(
                name, split=split, data_dir=None if data_dir is None else str(data_dir), download=download
            )
        except ModuleNotFoundError as err:
            raise ImportError(
                f"reading {name!r} without TensorFlow failed ({err}); install tensorflow-cpu "
                f"(backend='tf') or prepare the dataset in ArrayRecord format."
            ) from err
    else:
        raise ValueError(f"backend must be 'auto', 'tf' or 'data_source', got {backend!r}.")
    for ex in examples:
        if image_key not in ex:
            raise KeyError(f"tfds dataset {name!r} has no feature {image_key!r}; features: {sorted(ex)}.")
        yield _to_rgb_array(ex[image_key], hw, background)


def tfds_source(
    name: str = "celeb_a",
    split: str = "train",
    *,
    data_dir: str | os.PathLike | None = None,
    size: Size = 64,
    limit: int | None = None,
    image_key: str = "image",
    download: bool = True,
    backend: str = "auto",
    progress: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> np.ndarray:
    """All (or the first ``limit``) images of a tfds split as uint8 ``(N, H, W, 3)`` in 0–255.

    Same preprocessing and arguments as :func:`iter_tfds`. With ``cache_dir`` the array is saved
    as ``tfds-<name>-<split>-<H>x<W>[-limit].npz`` there and read back on later calls (the key is
    the arguments, not the data: delete the file if the dataset changes). CelebA train is
    162,770 images ≈ 2.0 GB at 64×64; use ``limit`` or a sliced split (``"train[:10%]"``) to
    keep it smaller. Raises ``ImportError`` (with the install command) if tensorflow-datasets is
    missing and :class:`NoImagesError` for an empty split.
    """
    hw = normalize_size(size)
    if limit is not None and (not isinstance(limit, (int, np.integer)) or limit < 1):
        raise ValueError(f"limit must be a positive int or None, got {limit!r}.")
    cache_file = None
    if cache_dir is not None:
        tag = re.sub(r"[^A-Za-z0-9_.+-]+", "_", f"{name}-{split}")
        lim = f"-{limit}" if limit is not None else ""
        cache_file = Path(cache_dir).expanduser() / f"tfds-{tag}-{hw[0]}x{hw[1]}{lim}.npz"
        if cache_file.exists():
            with np.load(cache_file, allow_pickle=False) as z:
                return z["images"]
    from tqdm.auto import tqdm

    chunks: list[np.ndarray] = []
    n = 0
    gen = iter_tfds(name, split, data_dir=data_dir, size=hw, image_key=image_key, download=download, backend=backend)
    with tqdm(desc=f"tfds {name} {split}", unit="img", total=limit, disable=not progress) as bar:
        block = np.empty((1024, *hw, 3), dtype=np.uint8)
        k = 0
        for img in gen:
            block[k] = img
            k += 1
            n += 1
            bar.update(1)
            if k == len(block):
                chunks.append(block)
                block = np.empty_like(block)
                k = 0
            if limit is not None and n >= limit:
                break
        chunks.append(block[:k])
    if n == 0:
        raise NoImagesError(f"tfds dataset {name!r} split {split!r} has no images.")
    images = np.concatenate(chunks) if len(chunks) > 1 else chunks[0].copy()
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_name(cache_file.name + f".tmp{os.getpid()}")
        with open(tmp, "wb") as fh:
            np.savez(fh, images=images)
        os.replace(tmp, cache_file)
    return images
