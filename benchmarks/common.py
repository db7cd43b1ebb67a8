"""Shared helpers of the benchmark scripts: timing, FLOP counting, memory, machine info, JSON.

Conventions (all scripts):

* ``compile_s`` is measured separately from the run: ``lower_s`` (tracing + lowering to
  StableHLO) and ``compile_s`` (XLA compilation of the lowered module), both wall-clock.
* The steady state is the MEDIAN of ``repeats`` calls of the compiled executable, each ended by
  ``jax.block_until_ready``; one untimed warm-up call precedes them.
* FLOPs come from XLA's own ``compiled.cost_analysis()["flops"]`` (None where the backend does
  not report it). XLA counts the body of a ``while`` loop (a rolled ``lax.scan``, CG) ONCE, not
  once per iteration, so for rolled loops it undercounts; the scripts say where this matters.
* Peak memory: on GPU/TPU ``jax.devices()[0].memory_stats()["peak_bytes_in_use"]`` (a
  process-wide high-water mark); on every backend also the compiled executable's
  ``memory_analysis()`` (temp + argument + output − alias bytes), which is per executable and
  is the number to compare between configurations.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np


# --------------------------------------------------------------------------- machine info
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def machine_info() -> dict[str, Any]:
    import flax
    import jaxlib
    import optax

    dev = jax.devices()[0]
    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "backend": jax.default_backend(),
        "device_kind": dev.device_kind,
        "device_count": jax.device_count(),
        "load_average_start": load_average(),
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "xla_flags": os.environ.get("XLA_FLAGS"),
    }


def on_accelerator() -> bool:
    return jax.default_backend() in ("gpu", "cuda", "rocm", "tpu")


# --------------------------------------------------------------------------- compiled stats
def cost_flops(compiled: Any) -> float | None:
    """``flops`` from ``compiled.cost_analysis()`` (dict or list of dicts), else None."""
    try:
        ca = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - backends without cost analysis
        return None
    if isinstance(ca, (list, tuple)):
        ca = ca[0] if ca else None
    if not ca:
        return None
    flops = ca.get("flops")
    return float(flops) if flops is not None and flops >= 0 else None


def compiled_memory(compiled: Any) -> dict[str, Any] | None:
    """Byte counts from ``compiled.memory_analysis()`` (per executable, any backend)."""
    try:
        ma = compiled.memory_analysis()
    except Exception:  # noqa: BLE001
        return None
    if ma is None:
        return None
    get = lambda name: int(getattr(ma, name, 0) or 0)
    out = {
        "temp_bytes": get("temp_size_in_bytes"),
        "argument_bytes": get("argument_size_in_bytes"),
        "output_bytes": get("output_size_in_bytes"),
        "alias_bytes": get("alias_size_in_bytes"),
        "generated_code_bytes": get("generated_code_size_in_bytes"),
    }
    out["total_bytes"] = (out["temp_bytes"] + out["argument_bytes"] + out["output_bytes"]
                          - out["alias_bytes"])
    peak = getattr(ma, "peak_memory_in_bytes", None)
    out["xla_peak_memory_bytes"] = int(peak) if peak else None
    return out


def device_peak_bytes() -> int | None:
    """Process-wide device high-water mark (GPU/TPU), None where unsupported (CPU)."""
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001
        return None
    if not stats:
        return None
    peak = stats.get("peak_bytes_in_use")
    return int(peak) if peak is not None else None


def memory_report(compiled: Any) -> dict[str, Any]:
    """Peak-memory numbers with the method that produced them."""
    mem = compiled_memory(compiled)
    rep: dict[str, Any] = {"compiled": mem}
    dev_peak = device_peak_bytes()
    if dev_peak is not None:
        rep["peak_bytes"] = dev_peak
        rep["method"] = ("device memory_stats()['peak_bytes_in_use'] (process-wide high-water "
                         "mark so far)")
    elif mem is not None:
        rep["peak_bytes"] = mem["total_bytes"]
        rep["method"] = "compiled.memory_analysis(): temp + argument + output - alias bytes"
    else:
        rep["peak_bytes"] = None
        rep["method"] = "unavailable"
    return rep


# --------------------------------------------------------------------------- timing
def _block(x: Any) -> Any:
    return jax.block_until_ready(x)


def time_compiled(fn: Callable, *args: Any, repeats: int = 10, carry: bool = False,
                  warmup: int = 1, **jit_kwargs: Any) -> dict[str, Any]:
    """Compile ``fn`` for ``args`` and time it.

    ``fn`` may be a plain function (it is wrapped in ``jax.jit(fn, **jit_kwargs)``) or an
    already jitted one (anything with ``.lower``). With ``carry=True`` the call is
    ``out = f(*args)`` and ``out[0]`` replaces ``args[0]`` for the next call (a training step
    ``(state, ...) -> (state, metrics)`` whose state buffer is donated).

    ``warmup`` untimed calls precede the ``repeats`` timed ones (``warmup=0``: the first call is
    timed and counted, for steps so slow that one-time costs do not matter); ``repeats=0``
    only compiles (compile times, FLOPs and memory; no execution).

    Returns lower_s, compile_s, first_call_s (first execution after compilation), times_s (all
    steady-state runs), median_s, min_s, flops (cost_analysis, may be None), memory, and the
    load average at the end.
    """
    jitted = fn if hasattr(fn, "lower") else jax.jit(fn, **jit_kwargs)
    t0 = time.perf_counter()
    lowered = jitted.lower(*args)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    args = list(args)

    def call() -> Any:
        out = compiled(*args)
        _block(out)
        if carry:
            args[0] = out[0]
        return out

    flops = cost_flops(compiled)
    base = {"lower_s": t1 - t0, "compile_s": t2 - t1, "flops": flops,
            "memory": memory_report(compiled)}
    if repeats <= 0:  # compile only (memory / FLOPs), nothing executed
        return {**base, "first_call_s": None, "warmup": 0, "repeats": 0, "times_s": [],
                "median_s": None, "min_s": None, "flops_per_s": None,
                "load_average_end": load_average()}
    first = None
    if warmup > 0:
        t3 = time.perf_counter()
        call()
        first = time.perf_counter() - t3
        for _ in range(warmup - 1):
            call()
    times = []
    for _ in range(repeats):
        s = time.perf_counter()
        call()
        times.append(time.perf_counter() - s)
    if first is None:
        first = times[0]
    med = statistics.median(times)
    if on_accelerator():  # the high-water mark after the runs, not after compilation
        base["memory"] = memory_report(compiled)
    return {
        **base,
        "first_call_s": first,
        "warmup": warmup,
        "repeats": len(times),
        "times_s": times,
        "median_s": med,
        "min_s": min(times),
        "flops_per_s": (flops / med) if flops else None,
        "load_average_end": load_average(),
    }


def matmul_reference(n: int | None = None, dtype: Any = jnp.float32,
                     repeats: int = 10) -> dict[str, Any]:
    """Achieved FLOP/s of an ``n×n @ n×n`` matmul (``2n³`` FLOPs), default precision.

    ``n`` defaults to 2048 on CPU and 8192 on an accelerator. On GPUs the default float32
    precision may use TF32 tensor cores (as the design notes' "f32 363 TFLOP/s" ceiling does).
    """
    if n is None:
        n = 8192 if on_accelerator() else 2048
    ka, kb = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(ka, (n, n), jnp.float32).astype(dtype)
    b = jax.random.normal(kb, (n, n), jnp.float32).astype(dtype)
    res = time_compiled(lambda x, y: x @ y, a, b, repeats=repeats)
    flops = 2.0 * n ** 3
    return {"n": n, "dtype": jnp.dtype(dtype).name, "median_s": res["median_s"],
            "min_s": res["min_s"], "flops": flops, "flops_per_s": flops / res["median_s"],
            "cost_analysis_flops": res["flops"], "load_average_end": res["load_average_end"]}


# --------------------------------------------------------------------------- output
def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def fmt_flops(f: float | None) -> str:
    if f is None:
        return "-"
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if f >= scale:
            return f"{f / scale:.2f} {unit}"
    return f"{f:.0f} "


def print_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    """Print (and return) a plain-text table; ``columns`` = [(header, key), ...]."""
    cells = [[h for h, _ in columns]]
    for r in rows:
        cells.append([str(r.get(k, "")) if r.get(k) is not None else "-" for _, k in columns])
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    lines = []
    for j, c in enumerate(cells):
        lines.append("  ".join(s.ljust(w) for s, w in zip(c, widths)))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def default(o: Any) -> Any:
        if isinstance(o, (np.floating, np.integer)):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        return str(o)

    path.write_text(json.dumps(payload, indent=2, default=default) + "\n")
    print(f"wrote {path}", flush=True)
    return path
