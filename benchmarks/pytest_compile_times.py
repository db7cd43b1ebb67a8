"""A pytest plugin: where the test suite's time goes, per test, from JAX's own monitoring events.

On a 2-core CPU most of the suite's time is XLA compilation, not running. This plugin sums
JAX's duration events (``/jax/core/compile/backend_compile_duration`` = XLA compile,
``/jax/core/compile/jaxpr_to_mlir_module_duration`` = lowering, ``.../jaxpr_trace_duration``,
and the persistent cache's ``compile_time_saved_sec``) per test, setup and teardown included,
with the number of programs XLA compiled or loaded from the persistent cache (``programs``;
JAX times both as one event), those under 0.1 s (``small_programs``, ``small_compile_s``:
typically one eager operation each, or a cache hit) and the five programs that took longest
(``top_programs``, by jit name),
and writes one JSON line per test to ``$COMPILE_TIMES_DIR/compile_times_<pid>.jsonl`` (one file
per xdist worker; default folder: ``./compile_times``). Subprocesses a test starts are not
counted. Summarise with ``python benchmarks/pytest_compile_times.py [folder]``.

Usage (the README's test command, plus the plugin)::

    PYTHONPATH=benchmarks .venv/bin/python -m pytest -n 2 -q -p pytest_compile_times
    .venv/bin/python benchmarks/pytest_compile_times.py compile_times
"""

from __future__ import annotations

import collections
import json
import os
import sys
from pathlib import Path

EVENTS = {
    "/jax/core/compile/backend_compile_duration": "xla_compile_s",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lowering_s",
    "/jax/core/compile/jaxpr_trace_duration": "trace_s",
    "/jax/compilation_cache/compile_time_saved_sec": "cache_saved_s",
}

#: An XLA compile shorter than this counts as "small" (typically one eager operation).
SMALL_S = 0.1

_totals: dict[str, float] = collections.defaultdict(float)
_programs: dict[str, float] = collections.defaultdict(float)
_out = None


def _listener(event: str, duration: float, **kwargs: object) -> None:
    if event in EVENTS:
        _totals[EVENTS[event]] += duration
    if event == "/jax/core/compile/backend_compile_duration":
        _totals["programs"] += 1
        if duration < SMALL_S:
            _totals["small_programs"] += 1
            _totals["small_compile_s"] += duration
        _programs[str(kwargs.get("fun_name", "?"))] += duration


def pytest_configure(config) -> None:
    global _out
    if not hasattr(config, "workerinput") and getattr(config.option, "numprocesses", None):
        return  # the xdist controller: it runs no test, its workers record them
    from jax import monitoring

    monitoring.register_event_duration_secs_listener(_listener)
    folder = Path(os.environ.get("COMPILE_TIMES_DIR", "compile_times"))
    folder.mkdir(parents=True, exist_ok=True)
    _out = open(folder / f"compile_times_{os.getpid()}.jsonl", "a")  # noqa: SIM115


def pytest_runtest_setup(item) -> None:  # noqa: ARG001
    _totals.clear()
    _programs.clear()


def pytest_runtest_logreport(report) -> None:
    if report.when == "call":
        _totals["call_s"] += report.duration
    if report.when == "teardown" and _out is not None:
        row = {"test": report.nodeid, **{k: round(v, 3) for k, v in _totals.items()}}
        top = sorted(_programs.items(), key=lambda kv: -kv[1])[:5]
        row["top_programs"] = [[name, round(t, 3)] for name, t in top]
        _out.write(json.dumps(row) + "\n")
        _out.flush()


def summarise(folder: Path, top: int = 20) -> str:
    """A text summary of the JSON lines in ``folder``: totals, then the top tests by compile."""
    rows = [json.loads(line) for f in sorted(folder.glob("compile_times_*.jsonl"))
            for line in f.read_text().splitlines() if line.strip()]
    if not rows:
        print(f"error: no compile_times_*.jsonl files in {folder}", file=sys.stderr)
        raise SystemExit(2)
    keys = ["call_s", *EVENTS.values(), "programs", "small_programs", "small_compile_s"]
    total = {k: sum(r.get(k, 0.0) for r in rows) for k in keys}
    lines = [f"{len(rows)} tests; summed over workers: "
             + ", ".join(f"{k} {v:.1f}" for k, v in total.items())]
    rows.sort(key=lambda r: -r.get("xla_compile_s", 0.0))
    lines.append(f"{'xla_compile_s':>13} {'lowering_s':>10} {'call_s':>7} {'programs':>8} "
                 f"{'small_s':>7}  test")
    lines += [f"{r.get('xla_compile_s', 0):13.1f} {r.get('lowering_s', 0):10.1f} "
              f"{r.get('call_s', 0):7.1f} {int(r.get('programs', 0)):8d} "
              f"{r.get('small_compile_s', 0):7.1f}  {r['test']}" for r in rows[:top]]
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(
        description="Summarise the per-test compile times this plugin recorded "
                    "(PYTHONPATH=benchmarks pytest -n 2 -q -p pytest_compile_times first).")
    parser.add_argument("folder", nargs="?", default="compile_times",
                        help="folder of compile_times_*.jsonl files (default: compile_times)")
    parser.add_argument("--top", type=int, default=20, help="tests listed (default 20)")
    args = parser.parse_args()
    print(summarise(Path(args.folder), args.top))
