"""What a new process pays to get a shipped prior: ``aj.pretrained(name)`` and its first call.

    python benchmarks/bench_load.py [--names general natural] [--repeats 3] [--out FILE]

Each measurement is a fresh Python process (so nothing is cached in memory; JAX's persistent
compilation cache is off unless the environment turns it on) that times ``import admm_jax``,
``aj.pretrained(name)`` and the first prior call on one 64×64 image (its compilation included).
Medians over ``repeats`` processes. Run it in a worktree of an older commit (with that
worktree first on ``PYTHONPATH``) for a "before" number (BENCHMARKS.md, "Loading a prior").
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info, print_table, write_json  # noqa: E402

_CHILD = """
import json, time
t0 = time.perf_counter()
import jax, jax.numpy as jnp
import admm_jax as aj
t1 = time.perf_counter()
prior = aj.pretrained({name!r})
t2 = time.perf_counter()
jax.block_until_ready(prior(jnp.full((1, 64, 64, 3), 0.5, jnp.float32), 0.1))
t3 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "load_s": t2 - t1, "first_call_s": t3 - t2}}))
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--names", nargs="+", default=["general", "natural"],
                    help="shipped priors to load (default: general natural)")
    ap.add_argument("--repeats", type=int, default=3, help="fresh processes per prior")
    ap.add_argument("--out", default=None, help="JSON file for the results")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error(f"--repeats must be >= 1, got {args.repeats}")
    rows = []
    for name in args.names:
        runs = []
        for _ in range(args.repeats):
            proc = subprocess.run([sys.executable, "-c", _CHILD.format(name=name)],
                                  capture_output=True, text=True, timeout=600)
            if proc.returncode != 0:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
                print(f"error: {name}: {tail[0]}", file=sys.stderr)
                return 2
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        row = {"prior": name, **{k: round(statistics.median(r[k] for r in runs), 2)
                                 for k in ("import_s", "load_s", "first_call_s")},
               "runs": runs}
        rows.append(row)
    print_table(rows, [("prior", "prior"), ("import s", "import_s"),
                       ("aj.pretrained s", "load_s"), ("first call s", "first_call_s")])
    if args.out:
        write_json(args.out, {"machine": machine_info(), "command": " ".join(sys.argv),
                              "results": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
