"""Data for admm_jax: image files, image folders, bundled offline photos, tfds, batching.

Every source gives RGB images after the paper's preprocessing (spec §2): PIL read, conversion to
RGB, whole-image bilinear resize to ``size`` (default 64×64, aspect ratio not preserved). Arrays
of many images are uint8 ``(N, H, W, 3)`` in 0–255; :func:`as_float` and :class:`BatchIterator`
turn them into float32 in [0, 1] (NHWC).

Quick start::

    from admm_jax.data import load_source, BatchIterator, prefetch

    train = load_source("bundled", "train")            # offline; or a folder, or "tfds:celeb_a"
    it = prefetch(BatchIterator(train, batch_size=32, seed=0))
    x = next(it)                                       # float32 (32, 64, 64, 3) in [0, 1]
    state = it.state()                                 # save with the checkpoint; resume with
    it = BatchIterator.from_state(train, state)        # ... exactly the same next batches

Optional dependency: ``tensorflow-datasets`` (``pip install 'admm_jax[tfds]'``, plus
``tensorflow-cpu`` to read TFRecord datasets) for :func:`tfds_source`; imported lazily.
"""

from .batching import Augment, BatchIterator, Prefetcher, prefetch
from .bundled import (
    BUNDLED_PHOTOS,
    DEFAULT_PHOTOS,
    DEFAULT_TEST_PHOTOS,
    BundledPhoto,
    bundled_dataset,
    bundled_photo,
    bundled_split_photos,
)
from .folder import ImageFolder, list_images, split_files
from .images import (
    IMAGE_EXTENSIONS,
    LoadReport,
    NoImagesError,
    array_to_pil,
    as_float,
    as_generator,
    decode_files,
    load_image,
    normalize_size,
    preprocess,
    random_crop_box,
    to_rgb,
)
from .sources import FALLBACK_FRACTIONS, load_source, pack_source, save_packed
from .tfds_data import iter_tfds, tfds_source

__all__ = [
    "Augment",
    "BatchIterator",
    "BUNDLED_PHOTOS",
    "BundledPhoto",
    "DEFAULT_PHOTOS",
    "DEFAULT_TEST_PHOTOS",
    "FALLBACK_FRACTIONS",
    "IMAGE_EXTENSIONS",
    "ImageFolder",
    "LoadReport",
    "NoImagesError",
    "Prefetcher",
    "array_to_pil",
    "as_float",
    "as_generator",
    "bundled_dataset",
    "bundled_photo",
    "bundled_split_photos",
    "decode_files",
    "iter_tfds",
    "list_images",
    "load_image",
    "load_source",
    "normalize_size",
    "pack_source",
    "prefetch",
    "preprocess",
    "random_crop_box",
    "save_packed",
    "split_files",
    "tfds_source",
    "to_rgb",
]
