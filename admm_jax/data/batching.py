"""Infinite, seeded, resumable batches over an in-memory image array, and background prefetch."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from .images import as_float


@dataclass(frozen=True)
class Augment:
    """Batch augmentation: a random crop (each side ``crop_scale`` of its length) resized back to
    the image size with PIL bilinear, then a horizontal flip with probability ½ if ``hflip``."""

    crop_scale: tuple[float, float] = (0.6, 1.0)
    hflip: bool = True

    def __post_init__(self) -> None:
        lo, hi = self.crop_scale
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}.")

    def apply(self, batch_u8: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Augment uint8 ``(B, H, W, 3)``; returns a new uint8 array of the same shape."""
        b, h, w, _ = batch_u8.shape
        out = np.empty_like(batch_u8)
        lo, hi = self.crop_scale
        for i in range(b):
            ch = min(h, max(1, int(round(h * rng.uniform(lo, hi)))))
            cw = min(w, max(1, int(round(w * rng.uniform(lo, hi)))))
            top = int(rng.integers(0, h - ch + 1))
            left = int(rng.integers(0, w - cw + 1))
            crop = Image.fromarray(batch_u8[i]).crop((left, top, left + cw, top + ch))
            img = np.asarray(crop.resize((w, h), Image.BILINEAR))
            if self.hflip and rng.random() < 0.5:
                img = img[:, ::-1]
            out[i] = img
        return out


class BatchIterator:
    """Endless shuffled batches from an image array; its position can be saved and restored.

    ``images``: uint8 ``(N, H, W, 3)`` in 0–255 (or float in [0, 1]). Each ``next()`` returns
    float32 ``(batch_size, H, W, 3)`` in [0, 1] (dtype ``dtype``).

    The data stream is the concatenation of per-epoch permutations; epoch ``e`` uses
    ``np.random.default_rng([seed, e]).permutation(N)``. Batch ``k`` is stream items
    ``[k·B, (k+1)·B)``, so a batch may span an epoch boundary, every image is seen once per epoch
    and ``batch_size > N`` works. With ``augment`` (``True`` for :class:`Augment` defaults, or an
    :class:`Augment`) the randomness of each batch comes from ``default_rng([seed, epoch,
    position, 1])`` at the batch's start, so it too is reproduced on resume.

    ``state()`` gives a small dict of ints; ``BatchIterator.from_state(images, state)`` (or
    ``it.restore(state)``) continues with exactly the batches an uninterrupted iterator would
    have produced.
    """

    def __init__(
        self,
        images: np.ndarray,
        batch_size: int,
        seed: int = 0,
        augment: bool | Augment = False,
        *,
        dtype: Any = np.float32,
    ) -> None:
        arr = np.asarray(images)
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise ValueError(f"images must have shape (N, H, W, 3), got {arr.shape}.")
        if arr.shape[0] == 0:
            raise ValueError("images is empty (N = 0); cannot make batches.")
        if arr.dtype != np.uint8 and arr.dtype.kind != "f":
            raise TypeError(f"images must be uint8 (0-255) or float ([0, 1]), got dtype {arr.dtype}.")
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}.")
        self.images = arr
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.augment: Augment | None = Augment() if augment is True else (augment or None)
        self.dtype = dtype
        self.epoch = 0
        self.position = 0
        self._perm_epoch = -1
        self._perm: np.ndarray | None = None

    @property
    def num_images(self) -> int:
        return int(self.images.shape[0])

    @property
    def batches_per_epoch(self) -> float:
        """``N / batch_size`` (batches may span epochs, so this need not be an integer)."""
        return self.num_images / self.batch_size

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_images)
            self._perm_epoch = epoch
        return self._perm  # type: ignore[return-value]

    def next_indices(self) -> np.ndarray:
        """Advance by one batch and return its image indices (int64 ``(batch_size,)``)."""
        n = self.num_images
        idx = np.empty(self.batch_size, dtype=np.int64)
        filled = 0
        while filled < self.batch_size:
            take = min(self.batch_size - filled, n - self.position)
            idx[filled:filled + take] = self._permutation(self.epoch)[self.position:self.position + take]
            filled += take
            self.position += take
            if self.position == n:
                self.epoch += 1
                self.position = 0
        return idx

    def __iter__(self) -> "BatchIterator":
        return self

    def __next__(self) -> np.ndarray:
        start_epoch, start_pos = self.epoch, self.position
        batch = self.images[self.next_indices()]
        if self.augment is not None:
            if batch.dtype != np.uint8:
                batch = np.clip(np.rint(batch * 255.0), 0, 255).astype(np.uint8)
            rng = np.random.default_rng([self.seed, start_epoch, start_pos, 1])
            batch = self.augment.apply(batch, rng)
        return as_float(batch, self.dtype)

    def state(self) -> dict[str, int]:
        """The position as ``{"seed", "epoch", "position", "batch_size", "num_images"}`` (ints)."""
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "position": self.position,
            "batch_size": self.batch_size,
            "num_images": self.num_images,
        }

    def restore(self, state: dict[str, Any]) -> "BatchIterator":
        """Jump to a position saved by :meth:`state` (same images required); returns ``self``.

        Raises ``ValueError`` if the state's ``num_images`` differs from this iterator's.
        """
        n = int(state.get("num_images", self.num_images))
        if n != self.num_images:
            raise ValueError(
                f"the run was trained on {n} images but this call has {self.num_images}; "
                f"resume with the same training images (--data and --max-train-images as "
                f"when it started)."
            )
        pos, ep = int(state["position"]), int(state["epoch"])
        if not 0 <= pos < self.num_images or ep < 0:
            raise ValueError(f"invalid iterator state {dict(state)}.")
        self.seed = int(state.get("seed", self.seed))
        self.batch_size = int(state.get("batch_size", self.batch_size))
        self.epoch, self.position = ep, pos
        self._perm_epoch = -1
        return self

    @classmethod
    def from_state(
        cls,
        images: np.ndarray,
        state: dict[str, Any],
        augment: bool | Augment = False,
        *,
        dtype: Any = np.float32,
    ) -> "BatchIterator":
        """A new iterator over ``images`` positioned at ``state`` (seed and batch size from it)."""
        it = cls(images, int(state["batch_size"]), int(state["seed"]), augment, dtype=dtype)
        return it.restore(state)


def _put(q: queue.Queue, stop: threading.Event, item: Any) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _produce(source: Iterator, state_fn: Any, place: Any, q: queue.Queue, stop: threading.Event) -> None:
    # A plain function (not a method) so that the thread holds no reference to the Prefetcher,
    # which can then be garbage-collected (its __del__ stops this loop).
    try:
        while not stop.is_set():
            try:
                item = next(source)
            except StopIteration:
                break
            st = state_fn() if state_fn is not None else None
            if place is not None:
                item = place(item)
            if not _put(q, stop, ("item", item, st)):
                return
    except BaseException as err:  # noqa: BLE001 - handed to the consumer
        _put(q, stop, ("error", err, None))
        return
    _put(q, stop, ("end", None, None))


class Prefetcher:
    """Runs an iterator on a background thread, keeping up to ``size`` items ready.

    Iterate over it like the source. If the source has a ``state()`` method (e.g.
    :class:`BatchIterator`), :meth:`state` returns the source's state *after the last item handed
    out* (not after the items waiting in the queue), so saving it and resuming loses nothing.
    ``device_put``: ``None`` (keep NumPy), ``True`` (``jax.device_put`` to the default device), or
    a ``jax.sharding.Sharding`` / device to place each item with. Exceptions in the source are
    re-raised in the consumer. Call :meth:`close` (or use ``with``) to stop the thread early.
    """

    def __init__(self, iterator: Any, size: int = 2, device_put: Any = None) -> None:
        if not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"prefetch size must be a positive int, got {size!r}.")
        state_fn = getattr(iterator, "state", None)
        self._has_state = callable(state_fn)
        self._state: Any = state_fn() if self._has_state else None
        place = None
        if device_put is not None and device_put is not False:
            import jax

            target = None if device_put is True else device_put
            place = lambda x: jax.device_put(x, target)  # noqa: E731
        self._queue: queue.Queue = queue.Queue(maxsize=int(size))
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(
            target=_produce,
            args=(iter(iterator), state_fn if self._has_state else None, place, self._queue, self._stop),
            name="admm_jax-prefetch",
            daemon=True,
        )
        self._thread.start()

    def __iter__(self) -> "Prefetcher":
        return self

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        kind, item, st = self._queue.get()
        if kind == "item":
            self._state = st
            return item
        self._done = True
        self._stop.set()
        if kind == "error":
            raise item
        raise StopIteration

    def state(self) -> Any:
        """The source's ``state()`` after the last item returned by this prefetcher."""
        if not self._has_state:
            raise AttributeError("the prefetched iterator has no state() method.")
        return dict(self._state) if isinstance(self._state, dict) else self._state

    def close(self) -> None:
        """Stop the background thread (items still queued are dropped)."""
        self._stop.set()
        self._done = True
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        self._thread.join(timeout=5.0)

    def __enter__(self) -> "Prefetcher":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._stop.set()
        except Exception:  # noqa: BLE001
            pass


def prefetch(iterator: Any, size: int = 2, device_put: Any = None, *, sharding: Any = None) -> Prefetcher:
    """Prepare items of ``iterator`` on a background thread (see :class:`Prefetcher`).

    ``prefetch(BatchIterator(images, 32, seed=0), size=2, sharding=sharding)`` yields the same
    batches in the same order as the plain iterator, placed with ``jax.device_put(batch,
    sharding)`` ahead of time (``device_put=True``: the default device; neither: NumPy).
    """
    if sharding is not None:
        if device_put not in (None, False, True):
            raise ValueError("give either device_put=<sharding> or sharding=, not both.")
        device_put = sharding
    return Prefetcher(iterator, size=size, device_put=device_put)
