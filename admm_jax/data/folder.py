"""Image folders: listing, deterministic splits, decoding into a uint8 cache (in memory / on disk)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .images import (
    IMAGE_EXTENSIONS,
    PIPELINE_VERSION,
    WHITE,
    LoadReport,
    NoImagesError,
    Size,
    decode_files,
    normalize_size,
)


def _check_dir(root: Path, what: str = "image folder") -> None:
    if not root.exists():
        raise FileNotFoundError(f"{what} {str(root)!r} does not exist.")
    if not root.is_dir():
        raise NotADirectoryError(f"{what} {str(root)!r} is not a directory.")


def _rel_key(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
    return path.as_posix()


def list_images(
    root: str | os.PathLike,
    subdirs: Sequence[str] | None = None,
    *,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    recursive: bool = True,
) -> list[Path]:
    """All image files under ``root`` (or under ``root/<s>`` for each ``s`` in ``subdirs``).

    Extensions match case-insensitively (``.JPG`` counts); hidden files and folders (names
    starting with ``.``) are ignored. The list is sorted by the path relative to ``root`` (POSIX
    form), so it is the same on every machine and file system.

    Raises ``FileNotFoundError`` for a missing ``root`` or sub-folder (naming the ones that exist)
    and :class:`NoImagesError` if nothing matches.
    """
    root = Path(root).expanduser()
    _check_dir(root)
    exts = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
    if subdirs is not None and isinstance(subdirs, (str, os.PathLike)):
        subdirs = [subdirs]  # type: ignore[list-item]
    tops = [root] if not subdirs else []
    for s in subdirs or []:
        d = root / s
        if not d.is_dir():
            avail = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
            raise FileNotFoundError(
                f"sub-folder {str(s)!r} not found in {str(root)!r}; sub-folders there: {avail}."
            )
        tops.append(d)
    found: set[Path] = set()
    for top in tops:
        if recursive:
            seen: set[str] = set()
            for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
                real = os.path.realpath(dirpath)
                if real in seen:  # a symlink loop or a second link to the same folder
                    dirnames[:] = []
                    continue
                seen.add(real)
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                for name in filenames:
                    if not name.startswith(".") and os.path.splitext(name)[1].lower() in exts:
                        found.add(Path(dirpath) / name)
        else:
            for p in top.iterdir():
                if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in exts:
                    found.add(p)
    files = sorted(found, key=lambda p: _rel_key(p, root))
    if not files:
        where = str(root) if not subdirs else f"{[str(root / s) for s in subdirs]}"
        raise NoImagesError(f"no image files ({', '.join(sorted(exts))}) found under {where}.")
    return files


def _group_key(path: Path, group_by: "str | Callable[[Path], str]", root: Path | None) -> str:
    if callable(group_by):
        return str(group_by(path))
    if group_by == "file":
        return _rel_key(path, root)
    if group_by == "parent":
        return _rel_key(path.parent, root)
    raise ValueError(f"group_by must be 'file', 'parent' or a callable, got {group_by!r}.")


def _unit_hash(seed: int, key: str) -> float:
    digest = hashlib.sha256(f"{int(seed)}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_files(
    files: Sequence[str | os.PathLike],
    fractions: Sequence[float],
    *,
    seed: int = 0,
    group_by: "str | Callable[[Path], str]" = "file",
    method: str = "permutation",
    root: str | os.PathLike | None = None,
) -> list[list[Path]]:
    """Split ``files`` into ``len(fractions)`` disjoint, sorted lists that together cover them.

    ``fractions`` (non-negative, summing to 1) give the share of *files* for each part.
    ``group_by`` keeps whole groups on one side: ``"file"`` (every file its own group),
    ``"parent"`` (the containing folder, e.g. one identity per folder) or a callable
    ``Path -> str``. Group keys use paths relative to ``root`` (default: the common folder of the
    files), so the split does not depend on where the data lives.

    ``method``:

    * ``"permutation"`` — sorted groups permuted with ``np.random.default_rng(seed)``, then cut so
      the file counts match the fractions as closely as whole groups allow (exact for
      ``group_by="file"``). Changes if files are added or removed.
    * ``"hash"`` — each group goes where ``sha256(seed, key)`` falls in [0, 1); stable when files
      are added or removed (nothing moves between sides), but the fractions are only met on
      average, so a tiny file list can leave a part empty.
    """
    fr = np.asarray([float(f) for f in fractions], dtype=np.float64)
    if fr.ndim != 1 or fr.size == 0 or np.any(fr < 0) or not np.isfinite(fr).all():
        raise ValueError(f"fractions must be a non-empty list of non-negative numbers, got {fractions!r}.")
    if abs(fr.sum() - 1.0) > 1e-6:
        raise ValueError(f"fractions must sum to 1, got {list(fractions)} (sum {fr.sum():.6g}).")
    if method not in ("permutation", "hash"):
        raise ValueError(f"method must be 'permutation' or 'hash', got {method!r}.")
    paths = [Path(f) for f in files]
    parts: list[list[Path]] = [[] for _ in fr]
    if not paths:
        return parts
    base = Path(root) if root is not None else Path(os.path.commonpath([str(p.parent) for p in paths]))
    groups: dict[str, list[Path]] = {}
    for p in paths:
        groups.setdefault(_group_key(p, group_by, base), []).append(p)
    keys = sorted(groups)
    cum = np.cumsum(fr)
    cum[-1] = 1.0
    if method == "hash":
        for k in keys:
            idx = int(np.searchsorted(cum, _unit_hash(seed, k), side="right"))
            parts[min(idx, len(fr) - 1)].extend(groups[k])
    else:
        order = np.random.default_rng(int(seed)).permutation(len(keys))
        total = len(paths)
        done = 0
        for j in order:
            g = groups[keys[int(j)]]
            mid = (done + len(g) / 2.0) / total
            idx = int(np.searchsorted(cum, mid, side="right"))
            parts[min(idx, len(fr) - 1)].extend(g)
            done += len(g)
    for part in parts:
        part.sort(key=lambda p: _rel_key(p, base))
    return parts


class ImageFolder:
    """A sorted list of image files under a folder, decoded on demand into a uint8 array.

    ``ImageFolder(root)`` takes every image below ``root``; ``ImageFolder(root, subdirs=["train",
    "val"])`` uses an existing split layout (e.g. ``bsds500/{train,val,test}``). ``size`` (int or
    ``(height, width)``, default 64) is the output size of the paper's whole-image bilinear
    resize. :meth:`split` gives deterministic, group-preserving subsets; :meth:`load` decodes
    (threads, tqdm bar) into uint8 ``(N, H, W, 3)``, optionally cached as ``.npz`` in
    ``cache_dir``.

    After :meth:`load`: ``loaded_files`` lists the ``N`` files that decoded (the array's row
    order) and ``report`` is a :class:`LoadReport` counting the skipped ones.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        subdirs: Sequence[str] | None = None,
        *,
        size: Size = 64,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        recursive: bool = True,
        files: Sequence[str | os.PathLike] | None = None,
    ) -> None:
        self.root = Path(root).expanduser()
        if isinstance(subdirs, (str, os.PathLike)):
            subdirs = [str(subdirs)]
        self.subdirs = tuple(str(s) for s in subdirs) if subdirs else None
        self.size = normalize_size(size)
        if files is None:
            self.files = list_images(self.root, self.subdirs, extensions=extensions, recursive=recursive)
        else:
            self.files = [Path(f) for f in files]
        self.loaded_files: list[Path] | None = None
        self.report: LoadReport | None = None
        self._images: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        sub = f", subdirs={list(self.subdirs)}" if self.subdirs else ""
        return f"ImageFolder({str(self.root)!r}{sub}, size={self.size}, files={len(self.files)})"

    def relative_files(self) -> list[str]:
        """File paths relative to ``root`` (POSIX form), in list order."""
        return [_rel_key(p, self.root) for p in self.files]

    def split(
        self,
        fractions: Sequence[float],
        *,
        seed: int = 0,
        group_by: "str | Callable[[Path], str]" = "file",
        method: str = "permutation",
    ) -> list["ImageFolder"]:
        """Deterministic disjoint subsets (see :func:`split_files`), as ``ImageFolder`` objects."""
        parts = split_files(self.files, fractions, seed=seed, group_by=group_by, method=method, root=self.root)
        out = []
        for part in parts:
            sub = ImageFolder.__new__(ImageFolder)
            sub.root, sub.subdirs, sub.size = self.root, self.subdirs, self.size
            sub.files, sub.loaded_files, sub.report, sub._images = part, None, None, None
            out.append(sub)
        return out

    def _manifest_digest(self, background: Sequence[int]) -> str:
        h = hashlib.sha256()
        h.update(json.dumps({"v": PIPELINE_VERSION, "size": self.size, "bg": list(background)[:3]}).encode())
        for p, rel in zip(self.files, self.relative_files()):
            try:
                st = os.stat(p)
                sig = f"{st.st_size}:{st.st_mtime_ns}"
            except OSError:
                sig = "missing"
            h.update(f"\n{rel}\t{sig}".encode())
        return h.hexdigest()

    def cache_path(self, cache_dir: str | os.PathLike, background: Sequence[int] = WHITE) -> Path:
        """The ``.npz`` cache file for this file list, size and pipeline version in ``cache_dir``.

        The name holds a hash of the relative paths, byte sizes and modification times, so a
        changed folder gets a new cache file.
        """
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.root.name or "root")
        sub = "+".join(self.subdirs) if self.subdirs else "all"
        sub = re.sub(r"[^A-Za-z0-9_.+-]+", "_", sub)
        h, w = self.size
        return Path(cache_dir).expanduser() / f"{name}-{sub}-{h}x{w}-{self._manifest_digest(background)[:16]}.npz"

    def load(
        self,
        *,
        cache_dir: str | os.PathLike | None = None,
        num_workers: int | None = None,
        progress: bool = True,
        background: Sequence[int] = WHITE,
    ) -> np.ndarray:
        """Decode all files; return uint8 ``(N, H, W, 3)`` (0–255), ``N`` = readable files.

        The result is kept in memory (a second call returns it at once). With ``cache_dir`` it is
        also read from / written to an ``.npz`` there (see :meth:`cache_path`). Unreadable files
        are skipped with a ``UserWarning`` and counted in ``self.report``; if none can be read,
        :class:`NoImagesError` names the folder.
        """
        if self._images is not None:
            return self._images
        if not self.files:
            raise NoImagesError(f"no image files to load in {self!r}.")
        cache_file = self.cache_path(cache_dir, background) if cache_dir is not None else None
        if cache_file is not None and cache_file.exists():
            try:
                with np.load(cache_file, allow_pickle=False) as z:
                    images = z["images"]
                    rel = [str(s) for s in z["files"]]
                    skipped = [tuple(str(x) for x in row) for row in z["skipped"]]
                if images.dtype != np.uint8 or images.shape[1:] != (*self.size, 3) or len(rel) != len(images):
                    raise ValueError("unexpected contents")
                self._images = images
                self.loaded_files = [self.root / r for r in rel]
                self.report = LoadReport(len(self.files), len(images), skipped)  # type: ignore[arg-type]
                if skipped:
                    warnings.warn(
                        f"skipped {len(skipped)} of {len(self.files)} image file(s) under {self.root} "
                        f"that could not be read (cached; first: {skipped[0][0]}: {skipped[0][1]}).",
                        UserWarning,
                        stacklevel=2,
                    )
                return images
            except Exception as err:  # noqa: BLE001 - a bad cache is rebuilt, not fatal
                warnings.warn(f"ignoring unreadable cache {cache_file}: {err}; rebuilding it.", stacklevel=2)
        where = str(self.root) if not self.subdirs else ", ".join(str(self.root / s) for s in self.subdirs)
        images, kept, report = decode_files(
            self.files,
            self.size,
            num_workers=num_workers,
            progress=progress,
            desc=f"{self.root.name or self.root}: decoding",
            background=background,
            where=where,
        )
        self._images = images
        self.loaded_files = [self.files[i] for i in kept]
        self.report = report
        if cache_file is not None:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            rel = np.array([_rel_key(p, self.root) for p in self.loaded_files], dtype=str)
            skipped = np.array(
                [[_rel_key(Path(p), self.root), r] for p, r in report.skipped], dtype=str
            ).reshape(-1, 2)
            tmp = cache_file.with_name(cache_file.name + f".tmp{os.getpid()}")
            with open(tmp, "wb") as fh:
                np.savez(fh, images=images, files=rel, skipped=skipped)
            os.replace(tmp, cache_file)
        return images
