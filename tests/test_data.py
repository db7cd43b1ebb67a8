"""Tests for admm_jax.data: preprocessing, folders, splits, bundled photos, batching, tfds.

All data is generated in tmp_path or comes from the installed wheels; nothing needs the network
or the shared data folders.
"""

from __future__ import annotations

import gc
import io
import os
import socket
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from admm_jax import data as D
from admm_jax.data import bundled as bundled_mod

RNG = np.random.default_rng(1234)


def _smooth_rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth colourful uint8 (h, w, 3) test picture (compresses well, resizes meaningfully)."""
    r = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    chans = []
    for _ in range(3):
        fx, fy, ph = r.uniform(0.02, 0.2), r.uniform(0.02, 0.2), r.uniform(0, 6.28)
        chans.append(127.5 + 120 * np.sin(fx * x + ph) * np.cos(fy * y))
    return np.clip(np.rint(np.stack(chans, -1)), 0, 255).astype(np.uint8)


def _pil_reference(img_rgb: Image.Image, size=(64, 64)) -> np.ndarray:
    """PIL's own bilinear resize of an RGB image, /255 (the paper's pipeline)."""
    return np.asarray(img_rgb.resize((size[1], size[0]), Image.BILINEAR), dtype=np.float32) / 255.0


def _write_images(folder: Path, n: int, *, start: int = 0, ext: str = ".png", hw=(40, 56)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + n):
        p = folder / f"img_{i:03d}{ext}"
        Image.fromarray(_smooth_rgb(*hw, seed=i)).save(p)
        paths.append(p)
    return paths


# ----------------------------------------------------------------------------------------------
# Single images: modes and preprocessing
# ----------------------------------------------------------------------------------------------


def _check_image(x: np.ndarray, size=(64, 64)) -> None:
    assert x.shape == (*size, 3)
    assert x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0


def test_rgb_whole_image_resize_matches_pil(tmp_path):
    arr = _smooth_rgb(50, 80)  # non-square: whole image squeezed, not cropped
    p = tmp_path / "rgb.PNG"
    Image.fromarray(arr).save(p)
    x = D.load_image(p)
    _check_image(x)
    np.testing.assert_array_equal(x, _pil_reference(Image.fromarray(arr)))
    # configurable size, (height, width)
    y = D.load_image(p, size=(32, 48))
    _check_image(y, (32, 48))
    np.testing.assert_array_equal(y, _pil_reference(Image.fromarray(arr), (32, 48)))
    assert D.load_image(p, dtype=np.uint8).dtype == np.uint8


@pytest.mark.parametrize(
    "mode, ext",
    [("L", ".png"), ("1", ".bmp"), ("P", ".png"), ("P", ".bmp"), ("CMYK", ".jpg"), ("CMYK", ".tif"),
     ("RGB", ".jpeg"), ("RGB", ".webp")],
)
def test_modes_convert_like_pil(tmp_path, mode, ext):
    base = Image.fromarray(_smooth_rgb(70, 90, seed=3))
    if mode == "P":
        img = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    else:
        img = base.convert(mode)
    p = tmp_path / f"img{ext}"
    img.save(p)
    with Image.open(p) as im:
        assert im.mode == mode
        expected = _pil_reference(im.convert("RGB"))
    x = D.load_image(p)
    _check_image(x)
    np.testing.assert_array_equal(x, expected)
    if mode in ("L", "1"):
        np.testing.assert_array_equal(x[..., 0], x[..., 1])
        np.testing.assert_array_equal(x[..., 0], x[..., 2])


def test_rgba_composited_over_white(tmp_path):
    rgb = _smooth_rgb(60, 60, seed=5).astype(np.float64)
    alpha = np.full((60, 60), 255.0)
    alpha[:, :30] = 0.0  # left half fully transparent
    alpha[:10, 30:] = 128.0  # a half-transparent band
    rgba = np.concatenate([rgb, alpha[..., None]], -1).astype(np.uint8)
    p = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(p)

    a = alpha[..., None] / 255.0
    comp = np.clip(np.rint(rgb * a + 255.0 * (1 - a)), 0, 255).astype(np.uint8)
    expected = _pil_reference(Image.fromarray(comp))
    x = D.load_image(p)
    _check_image(x)
    np.testing.assert_allclose(x, expected, atol=1.01 / 255)
    # a fully transparent corner comes out white
    np.testing.assert_array_equal(x[:, :20], 1.0)
    # another background colour
    xb = D.load_image(p, background=(0, 0, 0))
    np.testing.assert_array_equal(xb[:, :20], 0.0)


def test_palette_with_transparency_and_la(tmp_path):
    pal = Image.new("P", (20, 20), 0)
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    pal.paste(1, (10, 0, 20, 20))
    pal.info["transparency"] = 0  # index 0 (red) is transparent
    p = tmp_path / "pt.png"
    pal.save(p, transparency=0)
    x = D.load_image(p, size=20)
    np.testing.assert_array_equal(x[:, :9], 1.0)  # transparent red -> white
    np.testing.assert_allclose(x[:, 11:], np.broadcast_to([0, 0, 1.0], x[:, 11:].shape))

    la = Image.fromarray(np.stack([np.full((16, 16), 100, np.uint8), np.full((16, 16), 255, np.uint8)], -1), "LA")
    p2 = tmp_path / "la.png"
    la.save(p2)
    np.testing.assert_allclose(D.load_image(p2, size=16), 100 / 255, atol=1e-6)


def test_16bit_png_scaled_not_clipped(tmp_path):
    g16 = (np.linspace(0, 65535, 48 * 72).reshape(48, 72)).astype(np.uint16)
    p = tmp_path / "g16.png"
    Image.fromarray(g16).save(p)
    with Image.open(p) as im:
        assert im.mode.startswith("I")
    g8 = np.clip(np.rint(g16 / 257.0), 0, 255).astype(np.uint8)
    expected = _pil_reference(Image.fromarray(g8, "L").convert("RGB"))
    x = D.load_image(p)
    _check_image(x)
    np.testing.assert_allclose(x, expected, atol=1.01 / 255)
    assert x.max() > 0.95 and x.min() < 0.05  # full range kept (PIL's own convert would clip)


def test_random_crop_augmentation_deterministic(tmp_path):
    p = tmp_path / "a.png"
    Image.fromarray(_smooth_rgb(100, 120)).save(p)
    a = D.load_image(p, crop_scale=(0.6, 1.0), rng=np.random.default_rng(7))
    b = D.load_image(p, crop_scale=(0.6, 1.0), rng=np.random.default_rng(7))
    c = D.load_image(p, crop_scale=(0.6, 1.0), rng=np.random.default_rng(8))
    _check_image(a)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    box = D.random_crop_box(120, 100, np.random.default_rng(0), (0.6, 1.0))
    assert 0 <= box[0] < box[2] <= 120 and 0 <= box[1] < box[3] <= 100
    assert 0.6 * 120 - 1 <= box[2] - box[0] <= 120 and 0.6 * 100 - 1 <= box[3] - box[1] <= 100
    with pytest.raises(ValueError, match="rng"):
        D.load_image(p, crop_scale=(0.6, 1.0))
    with pytest.raises(ValueError, match="crop scale"):
        D.random_crop_box(10, 10, 0, (0.0, 1.0))


def test_random_crop_accepts_jax_key(tmp_path):
    jax = pytest.importorskip("jax")
    p = tmp_path / "a.png"
    Image.fromarray(_smooth_rgb(100, 120)).save(p)
    k = jax.random.key(3)
    a = D.load_image(p, crop_scale=(0.6, 0.9), rng=k)
    b = D.load_image(p, crop_scale=(0.6, 0.9), rng=k)
    c = D.load_image(p, crop_scale=(0.6, 0.9), rng=jax.random.PRNGKey(4))
    np.testing.assert_array_equal(a, b)
    _check_image(c)


@pytest.mark.parametrize("bad", [0, -3, (64,), (64, 0), 2.5, "64", True])
def test_bad_size_raises(bad):
    with pytest.raises(ValueError, match="size"):
        D.normalize_size(bad)


# ----------------------------------------------------------------------------------------------
# Folders: listing, unreadable files, caching
# ----------------------------------------------------------------------------------------------


def test_list_images_sorted_case_insensitive(tmp_path):
    _write_images(tmp_path / "b", 2, ext=".PNG")
    _write_images(tmp_path / "a", 2, start=5, ext=".jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden.png").write_bytes(b"")
    files = D.list_images(tmp_path)
    rel = [f.relative_to(tmp_path).as_posix() for f in files]
    assert rel == ["a/img_005.jpg", "a/img_006.jpg", "b/img_000.PNG", "b/img_001.PNG"]


def test_missing_and_empty_folders_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        D.ImageFolder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(D.NoImagesError, match="no image files"):
        D.ImageFolder(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="sub-folder 'train' not found"):
        D.ImageFolder(tmp_path, subdirs=["train"])


def test_corrupt_and_zero_byte_files_skipped(tmp_path):
    good = _write_images(tmp_path, 4, ext=".jpg")
    (tmp_path / "zero.png").write_bytes(b"")
    (tmp_path / "garbage.jpg").write_bytes(os.urandom(500))
    truncated = good[0].read_bytes()[: len(good[0].read_bytes()) // 3]
    (tmp_path / "truncated.jpg").write_bytes(truncated)
    folder = D.ImageFolder(tmp_path)
    assert len(folder) == 7
    with pytest.warns(UserWarning, match="skipped 3 of 7"):
        imgs = folder.load(progress=False)
    assert imgs.shape == (4, 64, 64, 3) and imgs.dtype == np.uint8
    assert folder.report.n_skipped == 3 and folder.report.n_loaded == 4
    assert sorted(Path(p).name for p, _ in folder.report.skipped) == ["garbage.jpg", "truncated.jpg", "zero.png"]
    assert [p.name for p in folder.loaded_files] == [p.name for p in good]
    for row, p in zip(imgs, good):
        np.testing.assert_array_equal(row, D.load_image(p, dtype=np.uint8))


def test_all_unreadable_folder_raises_naming_it(tmp_path):
    bad = tmp_path / "all_bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"")
    (bad / "b.png").write_bytes(b"not a png at all")
    with pytest.raises(D.NoImagesError, match="all_bad"):
        D.ImageFolder(bad).load(progress=False)


def test_parallel_decoding_matches_serial(tmp_path):
    _write_images(tmp_path, 12, ext=".png")
    a = D.ImageFolder(tmp_path).load(num_workers=1, progress=False)
    b = D.ImageFolder(tmp_path).load(num_workers=4, progress=False)
    np.testing.assert_array_equal(a, b)


def test_disk_cache_roundtrip_and_invalidation(tmp_path, monkeypatch):
    src = tmp_path / "imgs"
    files = _write_images(src, 5)
    cache = tmp_path / "cache"
    first = D.ImageFolder(src, size=32).load(cache_dir=cache, progress=False)
    assert first.shape == (5, 32, 32, 3)
    assert len(list(cache.glob("*.npz"))) == 1

    from admm_jax.data import folder as folder_mod

    def boom(*a, **k):
        raise AssertionError("should have come from the cache")

    monkeypatch.setattr(folder_mod, "decode_files", boom)
    again = D.ImageFolder(src, size=32)
    np.testing.assert_array_equal(again.load(cache_dir=cache, progress=False), first)
    assert [p.name for p in again.loaded_files] == [p.name for p in files]
    monkeypatch.undo()

    # a changed file (size/mtime) or another size gives another cache file
    Image.fromarray(_smooth_rgb(30, 30, seed=99)).save(files[0])
    os.utime(files[0], ns=(1, 1))
    changed = D.ImageFolder(src, size=32).load(cache_dir=cache, progress=False)
    assert not np.array_equal(changed[0], first[0])
    assert len(list(cache.glob("*.npz"))) == 2


# ----------------------------------------------------------------------------------------------
# Splits
# ----------------------------------------------------------------------------------------------


def _fake_tree(tmp_path: Path, n_groups: int = 12) -> list[Path]:
    files = []
    for g in range(n_groups):
        d = tmp_path / f"person_{g:02d}"
        d.mkdir(parents=True)
        for i in range(1 + (g * 7) % 5):
            p = d / f"{i}.jpg"
            p.write_bytes(b"x")  # contents do not matter for splitting
            files.append(p)
    return files


@pytest.mark.parametrize("method", ["permutation", "hash"])
@pytest.mark.parametrize("group_by", ["file", "parent"])
def test_split_deterministic_disjoint_covering(tmp_path, method, group_by):
    files = _fake_tree(tmp_path)
    fr = (0.6, 0.2, 0.2)
    a = D.split_files(files, fr, seed=3, group_by=group_by, method=method)
    b = D.split_files(list(reversed(files)), fr, seed=3, group_by=group_by, method=method)
    assert a == b  # independent of input order
    flat = [f for part in a for f in part]
    assert len(flat) == len(set(flat)) == len(files)  # disjoint
    assert set(flat) == set(files)  # covering
    for part in a:
        assert part == sorted(part, key=lambda p: p.relative_to(tmp_path).as_posix())
    if group_by == "parent":
        side = {}
        for k, part in enumerate(a):
            for f in part:
                assert side.setdefault(f.parent, k) == k  # a whole folder on one side
    # the split does not depend on where the tree lives
    c = D.split_files(files, fr, seed=3, group_by=group_by, method=method, root=tmp_path)
    assert c == a
    d = D.split_files(files, fr, seed=4, group_by=group_by, method=method)
    assert d != a


def test_permutation_split_exact_counts(tmp_path):
    files = [tmp_path / f"{i:03d}.png" for i in range(100)]
    parts = D.split_files(files, [0.7, 0.1, 0.2], seed=0)
    assert [len(p) for p in parts] == [70, 10, 20]
    tr, te = D.split_files(files, [0.9, 0.1], seed=0, method="hash")
    assert 0 < len(te) < 30


def test_hash_split_stable_when_files_added(tmp_path):
    files = [tmp_path / f"{i:03d}.png" for i in range(200)]
    tr1, te1 = D.split_files(files, [0.8, 0.2], seed=0, method="hash", root=tmp_path)
    more = files + [tmp_path / f"new_{i}.png" for i in range(50)]
    tr2, te2 = D.split_files(more, [0.8, 0.2], seed=0, method="hash", root=tmp_path)
    assert set(te1) <= set(te2) and set(tr1) <= set(tr2)


def test_split_bad_fractions(tmp_path):
    with pytest.raises(ValueError, match="sum to 1"):
        D.split_files([tmp_path / "a.png"], [0.5, 0.2])
    with pytest.raises(ValueError, match="non-negative"):
        D.split_files([tmp_path / "a.png"], [1.5, -0.5])
    with pytest.raises(ValueError, match="group_by"):
        D.split_files([tmp_path / "a.png"], [1.0], group_by="identity")


def test_imagefolder_split_and_layout(tmp_path):
    _write_images(tmp_path / "train" / "p1", 3)
    _write_images(tmp_path / "train" / "p2", 2, start=10)
    _write_images(tmp_path / "val", 2, start=20)
    _write_images(tmp_path / "test", 2, start=30)
    assert len(D.ImageFolder(tmp_path, subdirs=["train"])) == 5
    assert len(D.ImageFolder(tmp_path, subdirs=["train", "val"])) == 7
    assert len(D.ImageFolder(tmp_path)) == 9
    parts = D.ImageFolder(tmp_path, subdirs=["train"]).split([0.5, 0.5], seed=1, group_by="parent")
    assert sorted(len(p) for p in parts) == [2, 3]
    imgs = parts[0].load(progress=False)
    assert imgs.shape == (len(parts[0]), 64, 64, 3)


# ----------------------------------------------------------------------------------------------
# load_source and packing
# ----------------------------------------------------------------------------------------------


def test_load_source_split_layout(tmp_path):
    _write_images(tmp_path / "train", 4)
    _write_images(tmp_path / "val", 2, start=10)
    _write_images(tmp_path / "test", 3, start=20)
    tr = D.load_source(tmp_path, "train", progress=False)
    trv = D.load_source(tmp_path, "train+val", progress=False)
    te = D.load_source(str(tmp_path), "test", size=32, progress=False)
    assert tr.shape == (4, 64, 64, 3) and tr.dtype == np.uint8
    assert trv.shape[0] == 6
    np.testing.assert_array_equal(trv[:4], tr)
    assert te.shape == (3, 32, 32, 3)
    with pytest.raises(FileNotFoundError, match="split 'holdout' not found"):
        D.load_source(tmp_path, "holdout", progress=False)


def test_load_source_flat_folder_hashed_split(tmp_path):
    _write_images(tmp_path / "flat", 40, hw=(8, 8))
    got = {s: D.load_source(tmp_path / "flat", s, size=8, progress=False) for s in ("train", "val", "test")}
    assert sum(len(v) for v in got.values()) == 40
    rows = {s: {v.tobytes() for v in arr} for s, arr in got.items()}
    assert not (rows["train"] & rows["test"]) and not (rows["train"] & rows["val"])
    again = D.load_source(tmp_path / "flat", "test", size=8, progress=False)
    np.testing.assert_array_equal(again, got["test"])
    with pytest.raises(ValueError, match="unknown split part"):
        D.load_source(tmp_path / "flat", "holdout", size=8, progress=False)


def test_pack_roundtrip_and_bad_specs(tmp_path):
    tr = D.bundled_dataset("train", 8, size=16)
    te = D.bundled_dataset("test", 4, size=16)
    path = D.save_packed(tmp_path / "packs" / "mini.npz", {"train": tr, "test": te})
    np.testing.assert_array_equal(D.load_source(path, "train", size=16), tr)
    np.testing.assert_array_equal(D.load_source(path, "train+test", size=16), np.concatenate([tr, te]))
    with pytest.raises(ValueError, match="holds"):
        D.load_source(path, "val", size=16)
    for codec in ("webp", "png"):  # lossless encodings: bit-exact round trip
        enc = D.save_packed(tmp_path / f"mini_{codec}.npz", {"train": tr, "test": te}, codec=codec)
        np.testing.assert_array_equal(D.load_source(enc, "test", size=16), te)
        np.testing.assert_array_equal(D.load_source(enc, "train+test", size=16), np.concatenate([tr, te]))
        with pytest.raises(ValueError, match="16x16"):
            D.load_source(enc, "train", size=64)
    with pytest.raises(ValueError, match="16x16"):
        D.load_source(path, "train", size=64)
    with pytest.raises(FileNotFoundError, match="not 'bundled'"):
        D.load_source(tmp_path / "missing", "train")
    with pytest.raises(ValueError, match="size"):
        D.load_source("bundled", "train", size=0)


# ----------------------------------------------------------------------------------------------
# Bundled offline photos
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    bundled_mod._read_photo.cache_clear()
    yield
    bundled_mod._read_photo.cache_clear()


def test_bundled_photos_all_offline(no_network):
    for name, info in D.BUNDLED_PHOTOS.items():
        arr = D.bundled_photo(name)
        assert arr.ndim == 3 and arr.shape[-1] == 3 and arr.dtype == np.uint8, name
        assert min(arr.shape[:2]) >= 256, name
        assert info.licence


def test_bundled_dataset_deterministic_offline(no_network):
    tr = D.bundled_dataset("train", 40)
    te = D.bundled_dataset("test", 12)
    assert tr.shape == (40, 64, 64, 3) and tr.dtype == np.uint8
    assert te.shape == (12, 64, 64, 3)
    bundled_mod._read_photo.cache_clear()
    np.testing.assert_array_equal(D.bundled_dataset("train", 40), tr)
    np.testing.assert_array_equal(D.bundled_dataset("train", 20), tr[:20])  # prefix-stable
    assert not np.array_equal(D.bundled_dataset("train", 40, seed=1), tr)
    np.testing.assert_array_equal(D.load_source("bundled", "test", n=12), te)
    assert len({x.tobytes() for x in tr}) == 40  # crops differ
    assert D.bundled_dataset("train", 4, size=(32, 48)).shape == (4, 32, 48, 3)
    fl = D.as_float(te)
    assert fl.dtype == np.float32 and 0.0 <= fl.min() and fl.max() <= 1.0


def test_bundled_train_test_from_different_photos(no_network):
    train_names = set(D.bundled_split_photos("train"))
    test_names = set(D.bundled_split_photos("test"))
    assert train_names and test_names and not (train_names & test_names)
    assert train_names | test_names == set(D.DEFAULT_PHOTOS)
    tr = D.bundled_dataset("train", 64)
    te = D.bundled_dataset("test", 32)
    assert not ({x.tobytes() for x in tr} & {x.tobytes() for x in te})
    # crops go round-robin over the split's photos and depend only on the photo: the default
    # test set interleaves the crops of its photos, the train set those of the other photos
    for split, names, arr in (("test", D.DEFAULT_TEST_PHOTOS, te), ("train", D.bundled_split_photos("train"), tr)):
        for j, name in enumerate(names):
            if split == "test":
                alone = D.bundled_dataset("test", 4, test_photos=(name,))
            else:
                alone = D.bundled_dataset("train", 4, photos=(name,), test_photos=D.DEFAULT_TEST_PHOTOS)
            np.testing.assert_array_equal(arr[j::len(names)][:4], alone)
    with pytest.raises(ValueError, match="'train' and 'test'"):
        D.bundled_dataset("val")
    with pytest.raises(ValueError, match="unknown bundled photo"):
        D.bundled_dataset("train", photos=("lena",))


# ----------------------------------------------------------------------------------------------
# Batching and prefetch
# ----------------------------------------------------------------------------------------------


def _toy_images(n: int = 10, hw: int = 8) -> np.ndarray:
    return RNG.integers(0, 256, size=(n, hw, hw, 3), dtype=np.uint8)


@pytest.mark.parametrize("augment", [False, True])
@pytest.mark.parametrize("k", [0, 1, 3, 7])
def test_batch_iterator_resume_exact(k, augment):
    imgs = _toy_images(10)
    ref = D.BatchIterator(imgs, 4, seed=5, augment=augment)
    expected = [next(ref) for _ in range(k + 6)]

    it = D.BatchIterator(imgs, 4, seed=5, augment=augment)
    got = [next(it) for _ in range(k)]
    state = it.state()
    assert set(state) >= {"seed", "epoch", "position"} and all(type(v) is int for v in state.values())
    del it
    resumed = D.BatchIterator.from_state(imgs, dict(state), augment=augment)
    got += [next(resumed) for _ in range(6)]
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)
    # restore() on an existing iterator does the same
    other = D.BatchIterator(imgs, 4, seed=5, augment=augment)
    next(other)
    other.restore(state)
    np.testing.assert_array_equal(next(other), expected[k])


def test_batch_iterator_epochs_and_shapes():
    imgs = _toy_images(10)
    it = D.BatchIterator(imgs, 4, seed=0)
    b = next(it)
    assert b.shape == (4, 8, 8, 3) and b.dtype == np.float32 and 0 <= b.min() and b.max() <= 1
    it = D.BatchIterator(imgs, 4, seed=0)
    idx = np.concatenate([it.next_indices() for _ in range(5)])  # 20 items = 2 epochs
    assert sorted(idx[:10]) == list(range(10)) and sorted(idx[10:]) == list(range(10))
    assert not np.array_equal(idx[:10], idx[10:])  # reshuffled per epoch
    np.testing.assert_array_equal(idx[:10], np.random.default_rng([0, 0]).permutation(10))
    assert it.state()["epoch"] == 2 and it.state()["position"] == 0
    big = D.BatchIterator(imgs, 25, seed=1)  # batch larger than the data set
    assert next(big).shape == (25, 8, 8, 3)
    a = next(D.BatchIterator(imgs, 4, seed=1))
    assert not np.array_equal(a, next(D.BatchIterator(imgs, 4, seed=2)))
    with pytest.raises(ValueError, match="trained on 10 images but this call has 9"):
        D.BatchIterator.from_state(imgs[:9], it.state())
    with pytest.raises(ValueError, match="batch_size"):
        D.BatchIterator(imgs, 0)
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        D.BatchIterator(imgs[..., 0], 2)


def test_augment_changes_images_but_keeps_shape():
    imgs = D.bundled_dataset("train", 8, size=16)
    plain = next(D.BatchIterator(imgs, 8, seed=0))
    aug = next(D.BatchIterator(imgs, 8, seed=0, augment=D.Augment(crop_scale=(0.6, 0.8), hflip=True)))
    assert aug.shape == plain.shape and aug.dtype == np.float32
    assert not np.array_equal(aug, plain)


@pytest.mark.parametrize("size", [1, 3])
def test_prefetch_same_sequence_and_state(size):
    imgs = _toy_images(10)
    plain = D.BatchIterator(imgs, 3, seed=9)
    expected = [next(plain) for _ in range(8)]
    src = D.BatchIterator(imgs, 3, seed=9)
    with D.prefetch(src, size=size) as pf:
        got = [next(pf) for _ in range(5)]
        state = pf.state()  # state after the 5 consumed batches, not after the queued ones
    ref = D.BatchIterator(imgs, 3, seed=9)
    for _ in range(5):
        next(ref)
    assert state == ref.state()
    resumed = D.BatchIterator.from_state(imgs, state)
    got += [next(resumed) for _ in range(3)]
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


def test_prefetch_finite_source_errors_and_device_put():
    assert list(D.prefetch(iter(range(5)), size=2)) == [0, 1, 2, 3, 4]

    def bad():
        yield 1
        raise RuntimeError("decoder exploded")

    pf = D.prefetch(bad())
    assert next(pf) == 1
    with pytest.raises(RuntimeError, match="decoder exploded"):
        next(pf)
    with pytest.raises(AttributeError, match="state"):
        D.prefetch(iter([1])).state()

    # closing, or dropping, a prefetcher over an endless source stops its thread
    pf = D.prefetch(D.BatchIterator(_toy_images(6), 2, seed=0), size=1)
    next(pf)
    thread = pf._thread
    pf.close()
    assert not thread.is_alive()
    pf = D.prefetch(D.BatchIterator(_toy_images(6), 2, seed=0), size=1)
    next(pf)
    thread = pf._thread
    del pf
    gc.collect()
    thread.join(timeout=5)
    assert not thread.is_alive()

    jax = pytest.importorskip("jax")
    imgs = _toy_images(6)
    with D.prefetch(D.BatchIterator(imgs, 2, seed=0), size=2, device_put=True) as pf:
        x = next(pf)
    assert isinstance(x, jax.Array) and x.shape == (2, 8, 8, 3)
    np.testing.assert_array_equal(np.asarray(x), next(D.BatchIterator(imgs, 2, seed=0)))
    dev = jax.devices()[0]
    sharding = jax.sharding.SingleDeviceSharding(dev)
    with D.prefetch(D.BatchIterator(imgs, 2, seed=0), device_put=sharding) as pf:
        assert next(pf).sharding == sharding
    with D.prefetch(D.BatchIterator(imgs, 2, seed=0), sharding=sharding) as pf:
        assert next(pf).sharding == sharding


# ----------------------------------------------------------------------------------------------
# tfds (optional)
# ----------------------------------------------------------------------------------------------


def _pil_bilinear(img: np.ndarray, size: int) -> np.ndarray:
    """The paper's preprocessing done independently: PIL bilinear resize of the whole image."""
    return np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR))


def test_tfds_missing_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"admm_jax\[tfds\]"):
        D.tfds_source("celeb_a", "train")
    with pytest.raises(ImportError, match=r"admm_jax\[tfds\]"):
        D.load_source("tfds:celeb_a", "test")


def test_tfds_source_path_with_fake_module(tmp_path, monkeypatch):
    """The data_source backend (no TensorFlow) with a stand-in tfds module: decoding, limit, cache."""
    from admm_jax.data import tfds_data as tmod

    pics = [_smooth_rgb(40, 30, seed=i) for i in range(5)]
    jpeg = io.BytesIO()
    Image.fromarray(pics[1]).save(jpeg, format="PNG")
    examples = [{"image": pics[0]}, {"image": jpeg.getvalue()}] + [{"image": p} for p in pics[2:]]
    calls = []

    def data_source(name, split, data_dir=None, download=True):
        calls.append((name, split))
        return examples

    fake = types.SimpleNamespace(data_source=data_source)
    monkeypatch.setattr(tmod, "_import_tfds", lambda: fake)
    monkeypatch.setattr(tmod, "_has_tensorflow", lambda: False)
    out = D.tfds_source("celeb_a", "train", limit=4, progress=False, cache_dir=tmp_path)
    assert out.shape == (4, 64, 64, 3) and out.dtype == np.uint8
    for row, p in zip(out, pics):
        np.testing.assert_array_equal(row, _pil_bilinear(p, 64))
    assert list(tmp_path.glob("tfds-*.npz"))
    np.testing.assert_array_equal(D.tfds_source("celeb_a", "train", limit=4, cache_dir=tmp_path), out)
    assert len(calls) == 1  # second call came from the cache
    D.load_source("tfds:imagenet_resized/64x64", "test", progress=False)
    assert calls[-1] == ("imagenet_resized/64x64", "validation")
    D.load_source("tfds:celeb_a", "train+val", progress=False)
    assert calls[-1] == ("celeb_a", "train+validation")


def test_tfds_mock_data_without_tensorflow():
    """``tfds.testing.mock_data`` through the TensorFlow-free ``data_source`` backend.

    The mocked examples are random images of the datasets' real feature specs (CelebA: 218x178,
    imagenet_resized: 64x64); each must come out as the bilinear resize of that same example.
    """
    tfds = pytest.importorskip("tensorflow_datasets", reason="tensorflow-datasets not installed (optional extra)")
    with tfds.testing.mock_data(num_examples=6):
        raw = [np.asarray(ex["image"]) for ex in tfds.data_source("celeb_a", split="train")]
        assert raw[0].shape == (218, 178, 3)
        imgs = D.tfds_source("celeb_a", "train", progress=False, backend="data_source")
        assert imgs.shape == (6, 64, 64, 3) and imgs.dtype == np.uint8
        for got, src in zip(imgs, raw):
            np.testing.assert_array_equal(got, _pil_bilinear(src, 64))
        small = D.tfds_source(
            "imagenet_resized/64x64", "validation", size=32, limit=3, progress=False, backend="data_source"
        )
        assert small.shape == (3, 32, 32, 3)
        raw_in = np.asarray(tfds.data_source("imagenet_resized/64x64", split="validation")[2]["image"])
        np.testing.assert_array_equal(small[2], _pil_bilinear(raw_in, 32))


def test_tfds_mock_data_tf_backend():
    tfds = pytest.importorskip("tensorflow_datasets", reason="tensorflow-datasets not installed (optional extra)")
    pytest.importorskip(
        "tensorflow",
        reason="the tf.data backend needs TensorFlow, which is not installed; install tensorflow-cpu to run it "
        "(the TensorFlow-free data_source backend is tested above)",
    )
    with tfds.testing.mock_data(num_examples=6):
        imgs = D.tfds_source("celeb_a", "train", progress=False, backend="tf")
        assert imgs.shape == (6, 64, 64, 3) and imgs.dtype == np.uint8
        ds = D.load_source("tfds:celeb_a", "test", size=16, progress=False)
        assert ds.shape == (6, 16, 16, 3)


# ----------------------------------------------------------------------------------------------
# Shared data (only when present beside the checkout; never required)
# ----------------------------------------------------------------------------------------------

from conftest import SHARED_DATA as _SHARED  # noqa: E402


@pytest.mark.skipif(not (_SHARED / "bsds500" / "val").is_dir(), reason="shared BSDS500 copy not present")
def test_shared_bsds500_layout_if_present():
    folder = D.ImageFolder(_SHARED / "bsds500", subdirs=["val"])
    assert len(folder) == 100
    part = D.ImageFolder(folder.root, files=folder.files[:3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        imgs = part.load(progress=False)
    assert imgs.shape == (3, 64, 64, 3)
