"""Atomic, resumable checkpoints with orbax.

A checkpoint holds the training state (parameters, optimiser state, step) and a JSON record
(step, data-iterator position, RNG seed, config). Orbax writes each checkpoint into a temporary
folder and renames it only once complete, so a run killed mid-write leaves the previous
checkpoint as the latest one; the last ``keep`` checkpoints are kept.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import jax
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
    """A checkpoint could not be read (missing, corrupt, or of another model)."""


def _is_orphaned_read_callback(unraisable: Any) -> bool:
    """An exception from a read that orbax abandoned: when one array of a restore fails (a
    corrupt file), orbax raises and closes its event loop while the other arrays' reads are
    still in flight; as they complete, their callbacks find the loop closed
    (``RuntimeError('Event loop is closed')`` raised in asyncio's ``_check_closed``) and
    Python reports each one as an unraisable exception, a traceback on stderr after our own
    one-line error. They carry no information: the restore has already failed and said why."""
    code = getattr(unraisable.object, "cr_code", None)  # an abandoned orbax coroutine
    if code is not None and "orbax" in code.co_filename:
        return True
    exc = unraisable.exc_value
    if not isinstance(exc, RuntimeError) or str(exc) != "Event loop is closed":
        return False
    tb = unraisable.exc_traceback
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return (tb is not None and tb.tb_frame.f_code.co_name == "_check_closed"
            and "asyncio" in tb.tb_frame.f_code.co_filename)


@contextlib.contextmanager
def _orphaned_reads_silenced() -> Iterator[None]:
    """Around an orbax restore: while it runs, and from then on if it fails, drop the abandoned
    reads' reports (above), passing every other unraisable exception to the hook that was in
    place. On failure the filter stays, because those reads finish later (milliseconds, seen)
    at a time nobody controls; after a successful restore the previous hook is put back."""
    previous = sys.unraisablehook
    if getattr(previous, "_admm_jax_orphaned_reads", False):  # already filtered
        yield
        return

    def hook(unraisable: Any) -> None:
        if not _is_orphaned_read_callback(unraisable):
            previous(unraisable)

    hook._admm_jax_orphaned_reads = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook
    try:
        yield
    except BaseException:  # leave the filter in place, and drop asyncio's log of those reads
        asyncio_log = logging.getLogger("asyncio")
        if not any(isinstance(f, _AbandonedTaskFilter) for f in asyncio_log.filters):
            asyncio_log.addFilter(_AbandonedTaskFilter())
        raise
    if sys.unraisablehook is hook:
        sys.unraisablehook = previous


class _AbandonedTaskFilter(logging.Filter):
    """After a failed restore, asyncio logs each abandoned read whose exception nobody
    retrieved ("Task exception was never retrieved" / "Future exception was never
    retrieved", with the store's spec and a traceback): drop those records."""

    def filter(self, record: logging.LogRecord) -> bool:
        first_line = str(record.msg).split("\n", 1)[0]
        return not first_line.endswith("exception was never retrieved")


class Checkpointer:
    """Save / restore ``(state, meta)`` pairs under ``directory`` (one sub-folder per step)."""

    def __init__(self, directory: str | os.PathLike, keep: int = 3, async_save: bool = False):
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                               enable_async_checkpointing=async_save)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    # ------------------------------------------------------------------ write
    def save(self, step: int, state: Any, meta: dict) -> None:
        """Write checkpoint ``step`` (atomic: visible only once complete)."""
        self._manager.save(
            int(step),
            args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                    meta=ocp.args.JsonSave(meta)),
            force=True,
        )
        self._manager.wait_until_finished()

    # ------------------------------------------------------------------- read
    def latest_step(self) -> int | None:
        self._manager.reload()
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        self._manager.reload()
        return list(self._manager.all_steps())

    def restore(self, state_template: Any, step: int | None = None) -> tuple[Any, dict]:
        """Restore into the structure/shardings of ``state_template`` (arrays or
        ``jax.ShapeDtypeStruct``s). Raises :class:`CheckpointError` with the reason."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no complete checkpoint found in {self.directory}")
        abstract = jax.tree_util.tree_map(
            lambda a: ocp.utils.to_shape_dtype_struct(a) if hasattr(a, "shape") else a,
            state_template)
        try:
            with _orphaned_reads_silenced():
                restored = self._manager.restore(
                    step,
                    args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                            meta=ocp.args.JsonRestore()),
                )
        except Exception as exc:  # orbax raises many types; name the checkpoint and the cause
            raise CheckpointError(
                f"checkpoint {self.directory / str(step)} could not be restored "
                f"({type(exc).__name__}: {_short_reason(exc)}). It may be corrupt or come from a "
                f"model with another width/preset; delete it to fall back to an older one."
            ) from exc
        return restored.state, dict(restored.meta)

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------- saved networks
WEIGHTS_META = "weights.json"


def save_weights(path: str | os.PathLike, params: Any, config_json: str, *,
                 storage_dtype: str | None = None,
                 extra: Callable[[Path], None] | None = None) -> Path:
    """Write final weights (orbax, ``<path>/state``) and the JSON config that rebuilds the
    network (``<path>/config.json``).

    The folder is assembled next to ``path`` and swapped in only when complete, so an
    interrupted save never leaves ``path`` half-written (an older folder of the same name is
    replaced at the very end). ``storage_dtype="bfloat16"`` stores the floating-point leaves in
    bf16 (half the size: the full-width prior takes ~45 MB instead of ~90 MB);
    :func:`restore_weights` casts them back to the template's dtype. ``extra(folder)``, if
    given, writes further files (e.g. normalisation statistics) into the folder before it is
    swapped in, so they appear together with the weights or not at all.
    """
    import json
    import shutil
    import tempfile

    import jax.numpy as jnp

    path = Path(path).absolute()
    if path.exists() and not (path / "state").is_dir():
        # it replaces only weights it wrote: never a folder of other files (e.g. ".")
        raise FileExistsError(f"{path} exists and is not a weights folder (it has no state/); "
                              f"saving weights there would delete it: choose another path")
    path.parent.mkdir(parents=True, exist_ok=True)
    if storage_dtype not in (None, "float32", "bfloat16"):
        raise ValueError(f"storage_dtype must be None, 'float32' or 'bfloat16', got "
                         f"{storage_dtype!r}")
    if storage_dtype is not None:
        dt = jnp.dtype(storage_dtype)
        params = jax.tree_util.tree_map(
            lambda a: a.astype(dt) if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating) else a,
            params)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        with ocp.StandardCheckpointer() as ckptr:
            ckptr.save(tmp / "state", params)
        (tmp / WEIGHTS_META).write_text(json.dumps({"storage_dtype": storage_dtype or "float32"}))
        (tmp / "config.json").write_text(config_json)
        if extra is not None:
            extra(tmp)
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def read_weights_config(path: str | os.PathLike, what: str) -> dict:
    """The config dict of a folder written by :func:`save_weights` (clear error otherwise)."""
    import json

    folder = Path(path).absolute()
    if not folder.exists():
        raise FileNotFoundError(f"{what} folder {folder} does not exist")
    if not folder.is_dir():
        raise NotADirectoryError(f"{what} path {folder} is a file, not a saved {what} folder")
    cfg_file = folder / "config.json"
    if not cfg_file.exists():
        raise CheckpointError(f"{cfg_file.parent} holds no config.json: not a saved {what}")
    try:
        return json.loads(cfg_file.read_text())
    except ValueError as exc:
        raise CheckpointError(f"{cfg_file} is not valid JSON ({exc})") from exc


def restore_weights(path: str | os.PathLike, template: Any, what: str) -> Any:
    """Weights written by :func:`save_weights`, restored into ``template``'s structure."""
    import json

    path = Path(path).absolute()
    meta = path / WEIGHTS_META
    try:
        stored = json.loads(meta.read_text())["storage_dtype"] if meta.exists() else "float32"
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"{meta} is not a valid weights record ({type(exc).__name__}: "
                              f"{exc})") from exc
    state_dir = path / "state"
    with _orphaned_reads_silenced():  # an error below (metadata or arrays) keeps the filter
        _check_stored_shapes(state_dir, template, what)
        if stored == "float32":
            return restore_pytree(state_dir, template, f"{what} weights")
        import jax.numpy as jnp

        # restore as stored, then cast to the template's dtypes
        as_stored = jax.tree_util.tree_map(
            lambda a: jax.ShapeDtypeStruct(a.shape, jnp.dtype(stored)
                                           if jnp.issubdtype(a.dtype, jnp.floating)
                                           else a.dtype), template)
        restored = restore_pytree(state_dir, as_stored, f"{what} weights")
        return jax.tree_util.tree_map(lambda r, t: jnp.asarray(r).astype(t.dtype),
                                      restored, template)


def restore_pytree(directory: str | os.PathLike, template: Any, what: str) -> Any:
    """One pytree saved with ``orbax``'s ``StandardCheckpointer`` (e.g. a projector's stored
    batch statistics), restored into ``template``'s structure; an unreadable or corrupt
    folder raises :class:`CheckpointError` naming ``what`` and the folder."""
    directory = Path(directory).absolute()
    with _orphaned_reads_silenced():  # an error below keeps the filter
        try:
            with ocp.StandardCheckpointer() as ckptr:
                return ckptr.restore(directory, template)
        except Exception as exc:  # orbax raises many types
            raise CheckpointError(f"could not restore the {what} from {directory}: "
                                  f"{type(exc).__name__}: {_short_reason(exc)}") from exc


def _short_reason(exc: BaseException, limit: int = 300) -> str:
    """The part of an orbax / TensorStore error a user can read: before its dump of the
    store's full spec ("See full TensorStore details: <bound method ...>"), one line, capped."""
    text = str(exc).split("See full TensorStore details")[0]
    text = " ".join(text.split()).rstrip(" .;:,")
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _key_path(path: tuple) -> tuple[str, ...]:
    return tuple(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def _check_stored_shapes(state_dir: Path, template: Any, what: str) -> None:
    """Compare the stored arrays' names and shapes with ``template`` before restoring: a
    mismatch (weights of another width, a config.json that does not belong to them) becomes a
    clear :class:`CheckpointError`, and no read is started that would fail half-way (orbax then
    leaves asynchronous reads behind that print tracebacks at exit)."""
    import logging

    absl_log = logging.getLogger("absl")
    level = absl_log.level
    absl_log.setLevel(logging.ERROR)  # orbax only warns about unreadable metadata: we raise
    try:
        with ocp.StandardCheckpointer() as ckptr:
            meta = ckptr.metadata(state_dir)
        stored_tree = getattr(meta, "item_metadata", meta)
        stored = {_key_path(p): tuple(m.shape)
                  for p, m in jax.tree_util.tree_leaves_with_path(stored_tree)}
    except Exception as exc:  # orbax raises many types for unreadable metadata
        raise CheckpointError(f"could not read the {what} weights in {state_dir}: "
                              f"{type(exc).__name__}: {_short_reason(exc)}") from exc
    finally:
        absl_log.setLevel(level)
    if not stored:
        raise CheckpointError(f"{state_dir} holds no readable {what} weights (corrupt, or not "
                              f"written by admm_jax); retrain or copy the folder again.")
    wanted = {_key_path(p): tuple(getattr(a, "shape", ()))
              for p, a in jax.tree_util.tree_leaves_with_path(template)}
    missing = sorted(set(wanted) - set(stored))
    wrong = [(k, stored[k], wanted[k]) for k in sorted(wanted) if k in stored
             and stored[k] != wanted[k]]
    if missing or wrong:
        detail = (f"{len(missing)} array(s) missing, e.g. {'.'.join(missing[0])}" if missing
                  else f"{len(wrong)} array(s) of another shape, e.g. {'.'.join(wrong[0][0])} "
                       f"stored {wrong[0][1]}, expected {wrong[0][2]}")
        raise CheckpointError(
            f"the {what} weights in {state_dir.parent} do not match the network described by "
            f"its config.json ({detail}); the weights may come from another width or "
            f"architecture.")
