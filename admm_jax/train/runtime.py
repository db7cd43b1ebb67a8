"""The training runtime shared by every trainer (DU-ADMM, OneNet pretraining, the denoiser).

A trainer supplies only what is its own: a compiled step ``step(state, batch) -> (state,
metrics)``, its state, how a logged record looks and, optionally, a validation. The runtime
owns everything around the steps, the same way for all of them:

* the progress bar (tqdm) and the logs (``metrics.jsonl`` + ``metrics.csv``, one record every
  ``log_every`` steps, with the throughput);
* the NaN stop: a non-finite loss saves a checkpoint for inspection and raises
  ``FloatingPointError``;
* the checkpoint cadence (every ``checkpoint_every`` steps and at the end; the data position is
  saved with the state, so a resumed run continues exactly), and the save on Ctrl-C;
* periodic validation (every ``val_every`` steps and after the last one; 0 = only at the end);
* a wall-clock budget (``time_budget_s``: stop after the first step that ends past it).

The output folder is prepared before the runtime starts (:func:`prepare_output_dir`, after
every input was validated), and the final parameters are written by the trainer after it
returns (their format is the trainer's).
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import jax

Metrics = dict[str, Any]


@dataclass(frozen=True)
class Schedule:
    """When the runtime logs, checkpoints and validates (all in steps)."""

    total_steps: int  # the run's step count (the progress bar's total)
    log_every: int
    checkpoint_every: int
    val_every: int = 0  # 0: validate only after the last step
    seed: int = 0  # stored with every checkpoint


@dataclass
class RunResult:
    """What :func:`run_steps` hands back to the trainer."""

    state: Any
    end: int  # the step the run stopped at (== total_steps when finished)
    finished: bool  # total_steps reached, or the time budget spent: write final parameters
    out_of_time: bool
    compile_s: float | None  # first step, compilation included
    last_metrics: Metrics | None


class Batches:
    """A resumable batch source seen through a conversion (e.g. uint8 -> float in [0, 1] on
    the mesh): ``next`` converts, ``state()`` is the source's position after the last batch
    consumed, ``close()`` stops the source (e.g. a prefetch thread)."""

    def __init__(self, source: Any, convert: Callable[[Any], Any] = lambda b: b):
        self.source, self.convert = source, convert

    def __iter__(self) -> "Batches":
        return self

    def __next__(self) -> Any:
        return self.convert(next(self.source))

    def state(self) -> Any:
        st = self.source.state
        return st() if callable(st) else st

    def close(self) -> None:
        close = getattr(self.source, "close", None)
        if close is not None:
            close()


def to_float(batch: Any) -> Any:
    """uint8 images -> float32 in [0, 1]; float images -> float32 unchanged."""
    import numpy as np

    batch = np.asarray(batch)
    if batch.dtype == np.uint8:
        return batch.astype(np.float32) / 255.0
    return batch.astype(np.float32, copy=False)


class _SaveOnce:
    """``checkpointer.save`` with the data position and seed, at most once per step: the time
    budget (or Ctrl-C) can end a run right after the periodic save of the same step, and
    orbax refuses to write a step twice."""

    def __init__(self, checkpointer: Any, batches: Batches, seed: int,
                 train_seconds: Callable[[], float]):
        self.checkpointer, self.batches, self.seed = checkpointer, batches, seed
        self.train_seconds = train_seconds
        self.saved: set[int] = set()

    def __call__(self, step: int, state: Any) -> None:
        if step not in self.saved:
            self.checkpointer.save(step, state, {"step": step, "data": self.batches.state(),
                                                 "seed": self.seed,
                                                 "train_seconds": self.train_seconds()})
            self.saved.add(step)


def run_steps(*, out: Path, state: Any, step_fn: Callable[[Any, Any], tuple[Any, Metrics]],
              batches: Batches, checkpointer: Any,
              start: int, schedule: Schedule,
              record: Callable[[int, Metrics, float], Metrics],
              loss_key: str = "loss", postfix: Callable[[Metrics], dict] | None = None,
              validate: Callable[[int, Any], Metrics | None] | None = None,
              stop_after: int | None = None, time_budget_s: float | None = None,
              spent_s: float = 0.0,
              callback: Callable[[int, Any], None] | None = None, desc: str = "train",
              progress: bool = True, log: Callable[[str], None] = print) -> RunResult:
    """Run steps ``start+1 … end`` of a training (see the module docstring).

    ``step_fn(state, batch) -> (state, metrics)``; ``batches`` (:class:`Batches`) is saved
    with every checkpoint (``checkpointer.save(step, state, meta)``) and closed at the end.
    ``record(step, metrics, steps_per_s)`` builds the logged record (the trainer's columns);
    ``metrics[loss_key]`` is checked for NaN. ``validate(step, state)`` returns a record for
    ``validation.jsonl`` (or None). ``stop_after``: steps of this call; ``time_budget_s``:
    wall-clock seconds of training for the whole run, compilation included, of which earlier
    calls of a resumed run spent ``spent_s`` (each checkpoint records the total so far as
    ``train_seconds``); ``callback(step, state)`` after every step.
    """
    sched = schedule
    end = sched.total_steps if stop_after is None else min(sched.total_steps, start + stop_after)
    bar = _progress(start, sched.total_steps, progress, desc)
    call_start = time.perf_counter()
    deadline = (None if time_budget_s is None
                else call_start + float(time_budget_s) - float(spent_s))
    out_of_time, compile_s, metrics, validated = False, None, None, set()

    save = _SaveOnce(checkpointer, batches, sched.seed,
                     lambda: float(spent_s) + time.perf_counter() - call_start)

    def run_validation(step: int) -> None:
        if validate is not None and step not in validated:
            validated.add(step)
            _write_validation(out, bar, step, validate(step, state))

    log_row = _RowLog(out, bar, _Rate(start), record, loss_key, postfix)

    try:
        for step in range(start, end):
            t0 = time.perf_counter()
            state, metrics = step_fn(state, next(batches))
            if compile_s is None:
                jax.block_until_ready(metrics)
                compile_s = time.perf_counter() - t0
            done = step + 1
            if done % sched.log_every == 0 or done == end:
                loss = float(metrics[loss_key])
                if not math.isfinite(loss):
                    save(done, state)
                    raise FloatingPointError(f"loss became {loss} at step {done}; checkpoint "
                                             f"saved for inspection")
                log_row(done, metrics)
            bar.update(1)
            if (sched.val_every > 0 and done % sched.val_every == 0) or done == end:
                run_validation(done)
            if done % sched.checkpoint_every == 0 and done != end:
                save(done, state)
            if callback is not None:
                callback(done, state)
            if deadline is not None and time.perf_counter() >= deadline and done < end:
                out_of_time, end = True, done
                run_validation(done)
                log(f"time budget of {time_budget_s:.0f} s spent after {done} steps")
                break
        save(end, state)
    except KeyboardInterrupt:
        _save_interrupted(state, metrics, start, sched, save, log_row, out, log)
        raise
    finally:
        bar.close()
        checkpointer.close()
        batches.close()
    return RunResult(state=state, end=end, finished=end == sched.total_steps or out_of_time,
                     out_of_time=out_of_time, compile_s=compile_s, last_metrics=metrics)


def _save_interrupted(state: Any, metrics: Metrics | None, start: int, sched: Schedule,
                      save: _SaveOnce, log_row: "_RowLog", out: Path,
                      log: Callable[[str], None]) -> None:
    """On Ctrl-C: checkpoint the last finished step, and write its row if it was due (a Ctrl-C
    while the host waited for a logged step's loss would lose the row: the resumed run starts
    after that step)."""
    done = int(jax.device_get(getattr(state, "step", start)))
    save(done, state)
    if metrics is not None and done > start and done % sched.log_every == 0 \
            and done not in log_row.logged:
        log_row(done, metrics)
    log(f"\ninterrupted: checkpoint saved at step {done} in {out / 'checkpoints'}; "
        f"rerun with --resume to continue")


class _RowLog:
    """Appends a step's record to ``metrics.jsonl`` / ``metrics.csv`` and the progress bar;
    ``logged``: the steps written."""

    def __init__(self, out: Path, bar: Any, rate: "_Rate",
                 record: Callable[[int, Metrics, float], Metrics], loss_key: str,
                 postfix: Callable[[Metrics], dict] | None):
        self.out, self.bar, self.rate, self.record = out, bar, rate, record
        self.loss_key, self.postfix = loss_key, postfix
        self.logged: set[int] = set()

    def __call__(self, done: int, metrics: Metrics) -> None:
        self.logged.add(done)
        steps_per_s = self.rate(done)
        rec = {"step": done, **self.record(done, metrics, steps_per_s)}
        append_jsonl(self.out / "metrics.jsonl", rec)
        append_csv(self.out / "metrics.csv", rec)
        shown = (self.postfix(rec) if self.postfix else
                 {self.loss_key: f"{float(metrics[self.loss_key]):.4f}"})
        self.bar.set_postfix(**shown, it_s=f"{steps_per_s:.2f}")


class _Rate:
    """Steps per second since the previous call."""

    def __init__(self, start: int):
        self.t, self.n = time.perf_counter(), start

    def __call__(self, done: int) -> float:
        now = time.perf_counter()
        rate = (done - self.n) / max(now - self.t, 1e-9)
        self.t, self.n = now, done
        return rate


def _write_validation(out: Path, bar: Any, step: int, rec: Metrics | None) -> None:
    if rec is None:
        return
    append_jsonl(out / "validation.jsonl", {"step": step, **rec})
    bar.write(f"step {step}: validation " + ", ".join(
        f"{k} {v:.2f}" for k, v in rec.items() if isinstance(v, (int, float))))


# --------------------------------------------------------------------------- log files
def append_jsonl(path: Path, rec: dict) -> None:
    """Append one JSON record as a line."""
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")


def append_csv(path: Path, rec: dict) -> None:
    """Append one record to a CSV (header written with the first record)."""
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rec))
        if new:
            w.writeheader()
        w.writerow(rec)


def _progress(start: int, total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, disable=not enabled, desc=desc, unit="step",
                dynamic_ncols=True)
