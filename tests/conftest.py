"""Shared fixtures and helpers for the operator / ADMM / problem tests."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

# The dense NumPy references (192x192 .. 768x768) are far too small for multithreaded BLAS: on a
# busy 2-core machine OpenBLAS threads made an SVD ~30x slower. One thread, unless the user says
# otherwise (only effective if NumPy was not imported yet; threadpoolctl below covers the rest).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

# Compiled XLA programs are shared through JAX's persistent compilation cache: between the two
# xdist workers, the subprocesses some tests start (multi-device, multi-process, kill/resume)
# and successive runs. The programs and results are the same; only repeated compilations of an
# identical program are skipped (keys include the HLO, the jax version and the backend). A user
# setting wins; JAX_COMPILATION_CACHE_DIR="" would not disable it, so use
# ADMM_JAX_TEST_NO_XLA_CACHE=1 for that.
if not os.environ.get("ADMM_JAX_TEST_NO_XLA_CACHE"):
    import tempfile

    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                          os.path.join(tempfile.gettempdir(), "admm_jax_test_xla_cache"))
    # Every program, however small: most of the ~7,000 programs the suite compiles are single
    # eager operations (20-50 ms each), and the two workers and the subprocesses compile many
    # of the same ones. On a 2-core Zen 4 machine this took the suite (with -O0 below) from
    # 508 s to 445 s (BENCHMARKS.md, "The test suite's time").
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

# LLVM's optimisation level for the code XLA:CPU generates. The suite is compile-bound (on a
# 2-core machine about two thirds of its time is XLA compilation, mostly LLVM), and most of its
# programs run once or a few times, so the tests ask XLA for -O0 code: the same HLO passes and
# fusions, unoptimised machine code for the fused loops; convolutions and matrix products still
# run in XLA's library kernels. Results differ from the default level's only by rounding (LLVM
# vectorises reductions, i.e. sums in another order): the two priors' float32 losses, outputs
# and gradients agreed to 1.1e-6 of their scale (benchmarks/compare_opt_levels.py), which the
# tests' tolerances allow anyway, as they must on any CPU. Measured on a 2-core Zen 4 machine,
# cold cache: 641-659 s at the default level, 573 s at -O1, 508 s at -O0 (BENCHMARKS.md, "The
# test suite's time"). Benchmarks and users get XLA's default. ADMM_JAX_TEST_XLA_OPT_LEVEL=default keeps XLA's default here too (or sets
# another level, 0-3); an optimisation level already in XLA_FLAGS is left alone.
_OPT_LEVEL = os.environ.get("ADMM_JAX_TEST_XLA_OPT_LEVEL", "0")
if _OPT_LEVEL != "default" and "xla_backend_optimization_level" not in os.environ.get(
        "XLA_FLAGS", ""):
    if _OPT_LEVEL not in ("0", "1", "2", "3"):
        raise ValueError(f"ADMM_JAX_TEST_XLA_OPT_LEVEL must be 0, 1, 2, 3 or 'default', got "
                         f"{_OPT_LEVEL!r}")
    os.environ["XLA_FLAGS"] = " ".join(
        [*os.environ.get("XLA_FLAGS", "").split(),
         f"--xla_backend_optimization_level={_OPT_LEVEL}"])

import jax
import jax.numpy as jnp
import numpy as np
import pytest

try:  # NumPy may have been imported before this file (by a plugin): limit its BLAS pool too
    from threadpoolctl import threadpool_limits

    if os.environ.get("OPENBLAS_NUM_THREADS") == "1":
        threadpool_limits(limits=1, user_api="blas")
except ImportError:  # pragma: no cover - optional
    pass

# Make ``admm_jax`` importable when the package is not installed in the virtualenv
# (``.venv/bin/pytest`` does not put the repository root on sys.path by itself).
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

#: The project's shared real-image copies (UTKFace, BSDS500); absent on a fresh machine, so the
#: tests that read them are skipped there.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@contextlib.contextmanager
def no_late_tracebacks(wait_s: float = 0.5):
    """Asserts that nothing reaches Python's unraisable hook inside the block or ``wait_s``
    after it. Why: when one array of an orbax restore fails (a corrupt file), orbax abandons the
    other reads, and their late callbacks used to print 'RuntimeError: Event loop is closed'
    tracebacks after the CLI's one-line error; those reads end within milliseconds (seen: 89
    reports in 15 ms)."""
    late = []
    hook = sys.unraisablehook
    sys.unraisablehook = late.append
    try:
        yield
        time.sleep(wait_s)
    finally:
        sys.unraisablehook = hook
    assert not late, [f"{u.exc_type.__name__}: {u.exc_value}" for u in late[:3]]


@pytest.fixture
def x64():
    """Enable float64 for one test and restore the previous setting afterwards."""
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", old)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def flat_output(out) -> np.ndarray:
    """Concatenate every leaf of an operator output (array or tuple of arrays) into a vector."""
    leaves = jax.tree_util.tree_leaves(out)
    return np.concatenate([np.asarray(leaf).reshape(-1) for leaf in leaves])


def dense_matrix(op) -> np.ndarray:
    """The matrix of ``op.apply`` (rows: flattened output, columns: flattened HWC input),
    built from the images of the basis vectors."""
    d = int(np.prod(op.in_shape))
    basis = jnp.eye(d).reshape((d,) + tuple(op.in_shape))
    out = jax.vmap(op.apply)(basis)
    leaves = jax.tree_util.tree_leaves(out)
    return np.concatenate([np.asarray(leaf).reshape(d, -1) for leaf in leaves], axis=1).T


def jitted(fn, **jit_kwargs):
    """``jax.jit(fn)`` memoised per (function, options): tests that share a compiled program."""
    key = (fn, tuple(sorted((k, v if not isinstance(v, list) else tuple(v))
                            for k, v in jit_kwargs.items())))
    if key not in _JITTED:
        _JITTED[key] = jax.jit(fn, **jit_kwargs)
    return _JITTED[key]


_JITTED: dict = {}


def measure_mixed_jit():
    """``problems.measure_mixed`` compiled (problems tuple static), shared by the test files
    (call it with the same problems, shapes and an explicit ``probs`` to share the program)."""
    from admm_jax import problems

    return jitted(problems.measure_mixed, static_argnums=0, static_argnames=("per_sample",))


def take(tree, i):
    """Sample ``i`` of a batched pytree (e.g. one operator of a batch), sliced on the host so
    that no small XLA program is compiled for the indexing."""
    return jax.tree_util.tree_map(lambda leaf: jnp.asarray(np.asarray(leaf)[i]), tree)


def smooth_images(n: int, seed: int = 0) -> np.ndarray:
    """Smooth random colour fields (learnable structure), uint8 (n, 64, 64, 3)."""
    rng = np.random.default_rng(seed)
    low = rng.random((n, 4, 4, 3))
    up = np.asarray(jax.image.resize(jnp.asarray(low), (n, 64, 64, 3), "cubic"))
    return (np.clip(up, 0, 1) * 255).astype(np.uint8)


# The longest tests run first: pytest-xdist hands tests out in collection order, and a long test
# collected late (test_reproduce.py sorts near the end) would run alone while the other worker
# idles. Starting with the longest ones balances the two workers (longest-processing-time first).
_LONGEST_FIRST = (
    "test_reproduce.py::test_run_gives_each_learned_method_the_same_time",
    "test_onenet_train.py::test_pretrain_two_steps_clamps_and_saves",
    "test_onenet_train.py::test_vbn",
    "test_train.py::test_tiny_training_improves_validation_psnr",
    "test_train.py::test_two_processes_match_one_process",
    "test_train.py::test_data_parallel_step_equals_single_device",
    "test_pretrained.py::test_non_editable_install_loads_the_shipped_priors",
    "test_train.py::test_sigkill_between_checkpoints",
    "test_train.py::test_mixed_batch_matches_each_sample_alone",
)


def pytest_collection_modifyitems(config, items):
    def rank(item):
        for i, key in enumerate(_LONGEST_FIRST):
            if key in item.nodeid:
                return i
        return len(_LONGEST_FIRST)

    items.sort(key=rank)  # stable: everything else keeps its order
