"""One entry point for every data source: :func:`load_source`, plus packing to a single ``.npz``."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from .bundled import bundled_dataset
from .folder import ImageFolder, split_files
from .images import NoImagesError, Size, normalize_size

#: Sub-folder names that mark an existing split layout (``root/train``, ``root/test`` ...).
SPLIT_FOLDERS: tuple[str, ...] = ("train", "val", "validation", "test")
#: Hashed split of a folder without split sub-folders: file shares for train / val / test.
FALLBACK_FRACTIONS: dict[str, float] = {"train": 0.8, "val": 0.1, "test": 0.1}
_ALIASES = {"val": ("val", "validation", "valid"), "validation": ("validation", "val", "valid")}
# tfds datasets with no "test" split: "test" means this split instead.
_TFDS_TEST_FALLBACK = {"imagenet_resized": "validation", "imagenet2012": "validation",
                       "imagenet2012_subset": "validation", "imagenet_v2": "test"}


def _split_parts(split: str) -> list[str]:
    if not isinstance(split, str) or not split.strip():
        raise ValueError(f"split must be a non-empty string such as 'train', 'test' or 'train+val', got {split!r}.")
    parts = [p.strip() for p in split.split("+")]
    if any(not p for p in parts):
        raise ValueError(f"malformed split {split!r}: empty part.")
    return parts


def _tfds_split(name: str, part: str) -> str:
    if part in ("val", "valid"):
        return "validation"
    if part == "test":
        return _TFDS_TEST_FALLBACK.get(name.split("/")[0], "test")
    return part


def _has_split_layout(root: Path) -> bool:
    return any((root / s).is_dir() for s in SPLIT_FOLDERS)


def _find_subdir(root: Path, part: str) -> str:
    for cand in _ALIASES.get(part, (part,)):
        if (root / cand).is_dir():
            return cand
    avail = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    raise FileNotFoundError(f"split {part!r} not found in {str(root)!r}: no sub-folder {part!r}; sub-folders there: {avail}.")


def load_source(
    spec: str | os.PathLike,
    split: str = "train",
    size: Size = 64,
    cache_dir: str | os.PathLike | None = None,
    *,
    seed: int = 0,
    group_by: str | Callable[[Path], str] = "file",
    fractions: Mapping[str, float] | None = None,
    n: int | None = None,
    limit: int | None = None,
    data_dir: str | os.PathLike | None = None,
    num_workers: int | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Load a split of a data source as uint8 ``(N, H, W, 3)`` in 0–255 (``size``: int or (H, W)).

    ``spec``:

    * ``"bundled"`` — the offline photo crops of :func:`~admm_jax.data.bundled.bundled_dataset`
      (splits ``train``/``test``; ``n`` crops, ``seed``);
    * ``"tfds:<name>"`` — e.g. ``"tfds:celeb_a"``, ``"tfds:imagenet_resized/64x64"``
      (:func:`~admm_jax.data.tfds_data.tfds_source`; optional extra; ``val`` means tfds
      ``validation``, and ``test`` means ``validation`` for ImageNet sets, which have no test
      split; ``limit``, ``data_dir``);
    * a ``.npz`` file written by :func:`save_packed` / :func:`pack_source` (one array per split);
    * a folder. If it has split sub-folders (``train``, ``val``/``validation``, ``test``), each
      part of ``split`` names one: ``"train"`` → ``train/`` only, ``"train+val"`` → both,
      ``"test"`` → ``test/``. Otherwise its files are split by a stable hash
      (:func:`~admm_jax.data.folder.split_files`, ``method="hash"``, ``seed``, ``group_by``)
      with ``fractions`` (default 0.8 train / 0.1 val / 0.1 test).

    ``split`` may join parts with ``+`` (concatenated in that order). Folders are decoded with
    threads (``num_workers``) and cached as ``.npz`` in ``cache_dir`` if given.
    """
    hw = normalize_size(size)
    parts = _split_parts(split)
    spec_str = os.fspath(spec)

    if spec_str == "bundled":
        return _concat([bundled_dataset(p, n, size=hw, seed=seed) for p in parts])

    if spec_str.startswith("tfds:"):
        return _load_tfds(spec_str, parts, hw, limit=limit, data_dir=data_dir,
                          progress=progress, cache_dir=cache_dir)

    path = Path(spec_str).expanduser()
    if path.suffix.lower() == ".npz":
        return _load_packed(path, parts, hw)
    if not path.exists():
        raise FileNotFoundError(
            f"data source {spec_str!r} is not 'bundled', 'tfds:<name>', an .npz file or an "
            f"existing folder (no such path)."
        )
    if not path.is_dir():
        raise NotADirectoryError(f"data source {spec_str!r} is a file, not a folder or an .npz pack.")

    if _has_split_layout(path):
        subdirs = [_find_subdir(path, p) for p in parts]
        folder = ImageFolder(path, subdirs=subdirs, size=hw)
        return folder.load(cache_dir=cache_dir, num_workers=num_workers, progress=progress)
    folder = _hashed_split_folder(path, split, parts, hw, fractions, seed, group_by)
    return folder.load(cache_dir=cache_dir, num_workers=num_workers, progress=progress)


def _load_tfds(spec: str, parts: Sequence[str], hw: tuple[int, int], **kwargs) -> np.ndarray:
    """``"tfds:<name>"``: the parts of the split mapped to tfds split names, concatenated."""
    from .tfds_data import tfds_source

    name = spec[len("tfds:"):].strip()
    if not name:
        raise ValueError("tfds spec needs a dataset name, e.g. 'tfds:celeb_a'.")
    tsplit = "+".join(_tfds_split(name, p) for p in parts)
    return tfds_source(name, tsplit, size=hw, **kwargs)


def _hashed_split_folder(path: Path, split: str, parts: Sequence[str], hw: tuple[int, int],
                         fractions: Mapping[str, float] | None, seed: int,
                         group_by: str | Callable[[Path], str]) -> ImageFolder:
    """A flat folder's files of ``split``, chosen by a stable hash of each file (group)."""
    fr = dict(FALLBACK_FRACTIONS if fractions is None else fractions)
    for p in parts:
        if p not in fr:
            raise ValueError(
                f"folder {str(path)!r} has no split sub-folders, so it is split by hash into "
                f"{list(fr)}; unknown split part {p!r}."
            )
    everything = ImageFolder(path, size=hw)
    names = list(fr)
    pieces = split_files(everything.files, [fr[k] for k in names], seed=seed, group_by=group_by,
                         method="hash", root=path)
    chosen = sorted(
        {f for p in parts for f in pieces[names.index(p)]}, key=lambda f: f.relative_to(path).as_posix()
    )
    if not chosen:
        raise NoImagesError(_empty_hashed_split_message(path, split, parts, fr,
                                                        len(everything.files)))
    return ImageFolder(path, size=hw, files=chosen)


def _empty_hashed_split_message(path: Path, split: str, parts: Sequence[str],
                                fractions: Mapping[str, float], n_files: int) -> str:
    """Why a flat folder gave no images for ``split``, how to lay it out, and how many images
    make every share non-empty: a share ``f`` of a hashed split is empty with probability
    ``(1 − f)^n``, below 1 % from ``n = log(0.01) / log(1 − f)`` images on."""
    import math

    f = sum(fractions[p] for p in parts)
    n_min = math.ceil(math.log(0.01) / math.log1p(-f)) if 0 < f < 1 else 1
    shares = ", ".join(f"{k} {v:.0%}" for k, v in fractions.items())
    return (f"{str(path)!r} has no train/val/test sub-folders, so its {n_files} image(s) are "
            f"split by a hash of their file names ({shares}) and split {split!r} got none. "
            f"Put the images of each split in sub-folders ({str(path / parts[0])!r}, e.g. "
            f"test/ for evaluate and train/ for train), or give a flat folder of at least about "
            f"{n_min} images (then the {f:.0%} share is empty with under 1% probability).")


def _concat(arrays: Sequence[np.ndarray]) -> np.ndarray:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)


def _packed_splits(keys: Sequence[str]) -> list[str]:
    names = []
    for k in keys:
        name = k.split("@", 1)[0]
        if name not in names:
            names.append(name)
    return names


def _decode_encoded(blob: np.ndarray, offsets: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    import io
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    out = np.empty(tuple(int(v) for v in shape), dtype=np.uint8)
    raw = blob.tobytes()

    def dec(i: int) -> None:
        with Image.open(io.BytesIO(raw[offsets[i]:offsets[i + 1]])) as im:
            out[i] = np.asarray(im.convert("RGB"))

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(dec, range(out.shape[0]), chunksize=64))
    return out


def _load_packed(path: Path, parts: Sequence[str], hw: tuple[int, int]) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"packed data file {str(path)!r} does not exist.")
    with np.load(path, allow_pickle=False) as z:
        keys = list(z.files)
        names = _packed_splits(keys)
        out = []
        for p in parts:
            key = next((k for k in _ALIASES.get(p, (p,)) if k in names), None)
            if key is None:
                raise ValueError(f"split {p!r} not in packed file {str(path)!r}; it holds {names}.")
            if key in keys:
                arr = z[key]
            else:
                shape = z[f"{key}@shape"]
                if shape.shape != (4,) or tuple(shape[1:3]) != hw:
                    raise ValueError(
                        f"{str(path)!r}[{key!r}] holds {int(shape[1])}x{int(shape[2])} images, but size "
                        f"{hw[0]}x{hw[1]} was asked for; repack it at that size."
                    )
                arr = _decode_encoded(z[f"{key}@bytes"], z[f"{key}@offsets"], shape)
            if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
                raise ValueError(f"{str(path)!r}[{key!r}] is {arr.dtype} {arr.shape}, expected uint8 (N, H, W, 3).")
            if arr.shape[1:3] != hw:
                raise ValueError(
                    f"{str(path)!r}[{key!r}] holds {arr.shape[1]}x{arr.shape[2]} images, but size "
                    f"{hw[0]}x{hw[1]} was asked for; repack it at that size."
                )
            out.append(arr)
    return _concat(out)


def _encode(images: np.ndarray, codec: str) -> tuple[np.ndarray, np.ndarray]:
    import io
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    fmt, kw = {"webp": ("WEBP", {"lossless": True, "method": 4}),
               "png": ("PNG", {"optimize": True})}[codec]

    def enc(x: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(x).save(buf, format=fmt, **kw)
        return buf.getvalue()

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        blobs = list(pool.map(enc, images, chunksize=64))
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    return np.frombuffer(b"".join(blobs), dtype=np.uint8), offsets


def save_packed(
    path: str | os.PathLike,
    splits: Mapping[str, np.ndarray],
    *,
    codec: str = "raw",
    compress: bool = True,
) -> Path:
    """Write uint8 ``(N, H, W, 3)`` arrays, one per split name, into one ``.npz`` (atomically).

    ``load_source(path, split)`` reads them back, bit-exact. ``codec``: ``"raw"`` (the arrays;
    zlib-compressed if ``compress``, which saves little on photos), or ``"webp"`` / ``"png"``
    (each image stored losslessly encoded: about 45 % / 60 % of the raw size for 64×64 faces;
    decoding takes a few seconds per 10,000 images). Split names may not contain ``@``.
    """
    path = Path(path).expanduser()
    if path.suffix.lower() != ".npz":
        raise ValueError(f"packed data file must end in .npz, got {str(path)!r}.")
    if not splits:
        raise ValueError("nothing to pack: splits is empty.")
    if codec not in ("raw", "webp", "png"):
        raise ValueError(f"codec must be 'raw', 'webp' or 'png', got {codec!r}.")
    arrays = {}
    for k, v in splits.items():
        a = np.asarray(v)
        if a.dtype != np.uint8 or a.ndim != 4 or a.shape[-1] != 3:
            raise ValueError(f"split {k!r} is {a.dtype} {a.shape}; expected uint8 (N, H, W, 3).")
        if "@" in str(k) or not str(k):
            raise ValueError(f"bad split name {k!r} (empty or containing '@').")
        if codec == "raw":
            arrays[str(k)] = a
        else:
            blob, offsets = _encode(a, codec)
            arrays[f"{k}@bytes"] = blob
            arrays[f"{k}@offsets"] = offsets
            arrays[f"{k}@shape"] = np.asarray(a.shape, dtype=np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        (np.savez_compressed if compress and codec == "raw" else np.savez)(fh, **arrays)
    os.replace(tmp, path)
    return path


def pack_source(
    spec: str | os.PathLike,
    path: str | os.PathLike,
    splits: Sequence[str] = ("train", "test"),
    size: Size = 64,
    cache_dir: str | os.PathLike | None = None,
    *,
    codec: str = "webp",
    progress: bool = True,
) -> Path:
    """``load_source(spec, s, size)`` for each split ``s``, saved in one ``.npz`` at ``path``.

    Handy for taking a decoded data set to another machine: e.g.
    ``pack_source("../shared/data/utkface", "local_data/utkface64.npz")`` (lossless WebP by
    default: about 48 MiB for UTKFace's 9,175 faces at 64×64, vs 108 MiB raw) and later
    ``load_source("local_data/utkface64.npz", "train")``. See :func:`save_packed`.
    """
    data = {s: load_source(spec, s, size, cache_dir, progress=progress) for s in splits}
    return save_packed(path, data, codec=codec)
