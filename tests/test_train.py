"""DU-ADMM training: mixed batches, data parallelism, checkpoints, kill/resume, learning."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from admm_jax.admm import unrolled_admm
from admm_jax.problems import PAPER_PROBLEMS, get_problems, measure_mixed
from admm_jax.train import (
    Checkpointer,
    CheckpointError,
    OutputExistsError,
    du_admm_loss,
    make_mesh,
    preset,
    prepare_output_dir,
    train,
)
from admm_jax.train.loop import build_prior
from conftest import smooth_images as _smooth_images

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(width=1 / 16, num_iters=2, batch_size=4)


def _env(tmp_path: Path, **extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["JAX_PLATFORMS"] = "cpu"
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def tiny_prior():
    cfg = preset("paper", **TINY)
    prior_fn, params = build_prior(cfg)
    return cfg, prior_fn, params


def test_mixed_batch_matches_each_sample_alone(tiny_prior):
    """Loss and gradients of one mixed batch = mean over samples solved alone, each with its
    own plain operator (no SelectOperator)."""
    cfg, prior_fn, params = tiny_prior
    problems = tuple(get_problems()[n] for n in PAPER_PROBLEMS)
    x = jnp.asarray(_smooth_images(4), jnp.float32) / 255.0
    key = jax.random.PRNGKey(3)
    op, y, rho, index = measure_mixed(problems, key, x)
    assert len(set(np.asarray(index).tolist())) >= 2, "want a batch that really mixes problems"

    loss_fn = lambda p: du_admm_loss(prior_fn, p, x, key, problems, cfg)[0]
    loss, grads = jax.value_and_grad(loss_fn)(params)

    def alone(p, i):
        k = int(index[i])
        plain = jax.tree_util.tree_map(lambda a: a[i:i + 1], op.branches[k])
        z = unrolled_admm(lambda v, r: prior_fn(p, v), plain, y[k][i:i + 1],
                          problems[k].rho, cfg.num_iters)
        return 4.0 * jnp.mean(jnp.square(z - x[i:i + 1]))

    losses, grad_list = zip(*[jax.value_and_grad(alone)(params, i) for i in range(4)])
    np.testing.assert_allclose(loss, np.mean(losses), rtol=1e-5)
    mean_grads = jax.tree_util.tree_map(lambda *g: sum(g) / 4, *grad_list)
    for a, b in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(mean_grads)):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-7)


# One training step of a width-1/16 prior (T = 2) on a fixed batch of 4, shared by the scripts below.
_ONE_STEP = textwrap.dedent("""
    from admm_jax.train import preset, make_optimizer, make_mesh, make_train_step
    from admm_jax.train import init_train_state, shard_batch
    from admm_jax.train.loop import build_prior
    from admm_jax.problems import get_problems
    cfg = preset("paper", width=1/16, num_iters=2, batch_size=4)
    problems = tuple(get_problems()[n] for n in cfg.problems)
    x = np.random.default_rng(0).random((4, 64, 64, 3)).astype(np.float32)  # same on every host

    def one_step(mesh):
        prior_fn, params = build_prior(cfg)
        tx = make_optimizer(cfg)
        step = make_train_step(prior_fn, tx, problems, cfg, mesh)
        batch = shard_batch(x, mesh)
        state, metrics = step(init_train_state(params, tx, mesh), batch, jax.random.PRNGKey(0))
        return state, metrics, batch
""")

DP_SCRIPT = "import jax, numpy as np, json\n" + _ONE_STEP + textwrap.dedent("""
    assert jax.device_count() == 2, jax.devices()
    out = []
    for devices in (jax.devices()[:1], jax.devices()):
        state, m, _ = one_step(make_mesh(devices))
        out.append((float(m["loss"]), [np.asarray(l) for l in jax.tree_util.tree_leaves(state.params)]))
    (l1, p1), (l2, p2) = out
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(p1, p2))
    # an uneven batch must be refused with a clear error
    try:
        prior_fn, _ = build_prior(cfg)
        make_train_step(prior_fn, make_optimizer(cfg), problems, cfg.replace(batch_size=3), make_mesh())
        uneven = "no error"
    except ValueError as e:
        uneven = str(e)
    print(json.dumps({"loss1": l1, "loss2": l2, "max_param_diff": diff, "uneven": uneven}))
""")


def test_data_parallel_step_equals_single_device(tmp_path):
    env = _env(tmp_path, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    res = subprocess.run([sys.executable, "-c", DP_SCRIPT], env=env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert abs(out["loss1"] - out["loss2"]) < 1e-5
    assert out["max_param_diff"] < 1e-5
    assert "does not divide evenly across 2 devices" in out["uneven"]


MULTIHOST_SCRIPT = textwrap.dedent("""
    import sys, json, jax, numpy as np
    n_proc, rank, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    if n_proc > 1:  # CPU processes talk through gloo, as hosts would through their network
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=f"localhost:{port}",
                                   num_processes=n_proc, process_id=rank)
""") + _ONE_STEP + textwrap.dedent("""
    assert jax.process_count() == n_proc and jax.device_count() == n_proc
    state, m, batch = one_step(make_mesh())
    assert len(batch.addressable_shards) == 1 and batch.addressable_shards[0].data.shape[0] == 4 // n_proc
    leaves = [np.asarray(l.addressable_data(0)) for l in jax.tree_util.tree_leaves(state.params)]
    np.savez(f"{out}_{n_proc}_{rank}.npz", *leaves)
    print(json.dumps({"loss": float(m["loss"].addressable_data(0))}))
""")


def test_two_processes_match_one_process(tmp_path):
    """Multi-host data parallel, simulated by two CPU processes (jax.distributed + gloo): each
    contributes its half of the global batch; the updated parameters equal one process's."""
    import socket

    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        port = str(sock.getsockname()[1])
    env = _env(tmp_path)
    stem = str(tmp_path / "params")
    args = lambda n, r: [sys.executable, "-c", MULTIHOST_SCRIPT, str(n), str(r), port, stem]  # noqa: E731
    procs = [subprocess.Popen(args(2, r), env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    single = subprocess.run(args(1, 0), env=env, capture_output=True, text=True, timeout=600)
    outs = [p.communicate(timeout=600) for p in procs]
    assert single.returncode == 0, single.stderr[-3000:]
    for p, (o, e) in zip(procs, outs):
        assert p.returncode == 0, e[-3000:]
    losses = [json.loads(o.strip().splitlines()[-1])["loss"] for o, _ in outs]
    ref_loss = json.loads(single.stdout.strip().splitlines()[-1])["loss"]
    np.testing.assert_allclose(losses, [ref_loss] * 2, rtol=1e-5)
    ref = np.load(f"{stem}_1_0.npz")
    for rank in (0, 1):
        got = np.load(f"{stem}_2_{rank}.npz")
        assert len(got.files) == len(ref.files)
        for k in ref.files:
            np.testing.assert_allclose(got[k], ref[k], atol=1e-5, rtol=0)
    assert any(np.abs(ref[k]).max() > 0 for k in ref.files)


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys, numpy as np
    from admm_jax.train import preset, train
    images = np.load(sys.argv[1])
    cfg = preset("paper", width=1/16, num_iters=2, batch_size=4, steps=6,
                 checkpoint_every=2, val_every=1000, log_every=1, learning_rate=1e-3)
    def kill_at_5(step, state):
        if step == 5 and os.environ.get("KILL_AT_5") == "1":
            os.kill(os.getpid(), signal.SIGKILL)
    train(cfg, images, None, sys.argv[2], resume=len(sys.argv) > 3, progress=False,
          callback=kill_at_5)
""")


def test_sigkill_between_checkpoints_then_resume_matches_uninterrupted(tmp_path):
    images = _smooth_images(24)
    np.save(tmp_path / "images.npy", images)
    run = tmp_path / "run"
    env = _env(tmp_path, KILL_AT_5="1")
    script = [sys.executable, "-c", KILL_SCRIPT, str(tmp_path / "images.npy"), str(run)]
    killed = subprocess.run(script, env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert Checkpointer(run / "checkpoints").latest_step() == 4  # step 5 was lost
    from admm_jax.train.loop import load_prior

    assert not (run / "params").exists()
    _, params_at_4, _ = load_prior(run)  # an unfinished run: its latest checkpoint

    env["KILL_AT_5"] = "0"
    resumed = subprocess.run(script + ["--resume"], env=env, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from step 4" in resumed.stdout

    cfg = preset("paper", width=1 / 16, num_iters=2, batch_size=4, steps=6,
                 checkpoint_every=2, val_every=1000, log_every=1, learning_rate=1e-3)
    seen = {}

    def keep_step_4(step, state):
        if step == 4:
            seen["params"] = jax.tree_util.tree_map(np.array, state.params)

    straight = train(cfg, images, None, tmp_path / "straight", progress=False,
                     callback=keep_step_4)
    for a, b in zip(jax.tree_util.tree_leaves(seen["params"]),
                    jax.tree_util.tree_leaves(params_at_4)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)

    _, resumed_params, _ = load_prior(run / "params")
    for a, b in zip(jax.tree_util.tree_leaves(straight["params"]),
                    jax.tree_util.tree_leaves(resumed_params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    # the logs of the resumed run continue at step 5
    steps = [json.loads(l)["step"] for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps[-2:] == [5, 6]


SAVE_SCRIPT = textwrap.dedent("""
    import sys, numpy as np, jax.numpy as jnp
    from admm_jax.train import Checkpointer
    ck = Checkpointer(sys.argv[1], keep=5)
    ck.save(1, {"w": jnp.full((1000,), 1.0)}, {"step": 1})
    print("saving", flush=True)
    ck.save(2, {"w": jnp.full((60_000_000,), 2.0)}, {"step": 2})
    print("saved", flush=True)
""")


def test_checkpoint_cut_short_never_replaces_last_good_one(tmp_path):
    """SIGKILL a process while it writes a large checkpoint, at several moments: the previous
    complete checkpoint stays the latest and restores intact, and a finished write is whole."""
    outcomes = []
    for i, delay in enumerate((0.0, 0.05, 0.2)):
        ckdir = tmp_path / f"ck{i}"
        proc = subprocess.Popen([sys.executable, "-c", SAVE_SCRIPT, str(ckdir)],
                                env=_env(tmp_path), stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "saving"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        ck = Checkpointer(ckdir)
        latest = ck.latest_step()
        size = 60_000_000 if latest == 2 else 1000
        state, meta = ck.restore({"w": jnp.zeros((size,))})
        assert meta["step"] == latest
        assert float(state["w"][0]) == float(latest) and float(state["w"][-1]) == float(latest)
        outcomes.append(latest)
    assert 1 in outcomes, f"every write finished before the kill: {outcomes}"


def test_corrupt_checkpoint_gives_clear_error(tmp_path):
    ck = Checkpointer(tmp_path / "ck")
    ck.save(3, {"w": jnp.ones((10,))}, {"step": 3})
    for f in (tmp_path / "ck" / "3").rglob("*"):
        if f.is_file() and f.stat().st_size > 0 and "meta" not in str(f):
            f.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="could not be restored"):
        Checkpointer(tmp_path / "ck").restore({"w": jnp.zeros((10,))})
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        Checkpointer(tmp_path / "empty").restore({"w": jnp.zeros((10,))})


def test_output_folder_is_not_overwritten_silently(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match="already exists"):
        prepare_output_dir(out, resume=False)
    assert prepare_output_dir(out, resume=True) == out
    assert (out / "precious.txt").exists()


def test_tiny_training_improves_validation_psnr(tmp_path):
    """A few dozen steps already lift the blockwise-inpainting PSNR above its pinv start and
    reduce the training loss."""
    images = _smooth_images(64, seed=1)
    val = _smooth_images(8, seed=2)
    cfg = preset("paper", width=1 / 16, num_iters=2, batch_size=4, steps=40,
                 learning_rate=2e-3, val_every=40, log_every=5, checkpoint_every=1000,
                 val_images=8, problems=("bi", "pid"))
    train(cfg, images, val, tmp_path / "run", progress=False)
    recs = [json.loads(l) for l in (tmp_path / "run" / "validation.jsonl").read_text().splitlines()]
    start = next(r for r in recs if r["kind"] == "pinv_start")
    last = [r for r in recs if r["kind"] == "du_admm"][-1]
    assert last["bi"] > start["bi"] + 1.0, (start, last)
    assert last["pid"] > start["pid"] + 1.0, (start, last)
    losses = [json.loads(l)["loss"] for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert np.mean(losses[-2:]) < np.mean(losses[:2])


def test_batch_not_divisible_by_devices_error():
    from admm_jax.train import check_batch_divides

    mesh = make_mesh()
    check_batch_divides(mesh.devices.size * 3, mesh)
    if mesh.devices.size > 1:
        with pytest.raises(ValueError, match="does not divide evenly"):
            check_batch_divides(mesh.devices.size * 3 + 1, mesh)


def test_presets_differ_as_documented():
    p, r = preset("paper"), preset("released")
    assert (p.learning_rate, p.b1, p.b2, p.batch_size, p.steps, p.per_sample_problems) == (
        1e-4, 0.0, 0.9, 10, 50_000, True)
    assert (r.learning_rate, r.b1, r.b2, r.eps, r.batch_size, r.per_sample_problems) == (
        2e-4, 0.9, 0.999, 1e-6, 5, False)
    with pytest.raises(ValueError, match="unknown training preset"):
        preset("nope")


def test_psnr_loss_is_minus_mean_psnr():
    """loss="psnr" (not in the paper) = -mean per-sample PSNR of z_T (unclipped, float64)."""
    cfg = preset("paper", width=1 / 16, num_iters=2, batch_size=4, loss="psnr")
    problems = tuple(get_problems()[n] for n in PAPER_PROBLEMS)
    x = jnp.asarray(_smooth_images(4), jnp.float32) / 255.0
    key = jax.random.PRNGKey(5)
    blur = lambda p, v: 0.5 * v + 0.25 * (jnp.roll(v, 1, 1) + jnp.roll(v, -1, 2))  # noqa: E731
    loss, aux = du_admm_loss(blur, None, x, key, problems, cfg)
    op, y, rho, _ = measure_mixed(problems, key, x)
    z = unrolled_admm(lambda v, r: blur(None, v), op, y, rho, 2)
    mse = np.mean((np.asarray(z, np.float64) - np.asarray(x, np.float64)) ** 2, axis=(1, 2, 3))
    np.testing.assert_allclose(float(loss), np.mean(10 * np.log10(mse)), rtol=1e-5)
    np.testing.assert_allclose(aux["per_sample"], 4 * mse, rtol=1e-4)
    with pytest.raises(ValueError, match="loss"):
        preset("paper", loss="l1")


def test_save_weights_bf16_roundtrip_and_atomic_replace(tmp_path, tiny_prior, monkeypatch):
    """bf16 storage restores to float32 equal to the bf16-rounded parameters, at about half the
    size; a save that fails midway leaves the previously saved folder untouched."""
    import ml_dtypes

    from admm_jax.train.checkpoint import restore_weights, save_weights

    cfg, _, params = tiny_prior
    f32 = save_weights(tmp_path / "f32", params, cfg.to_json())
    b16 = save_weights(tmp_path / "b16", params, cfg.to_json(), storage_dtype="bfloat16")
    size = lambda p: sum(f.stat().st_size for f in p.rglob("*") if f.is_file())  # noqa: E731
    assert size(b16) < 0.7 * size(f32)
    back = restore_weights(b16, params, "test prior")
    for a, b in zip(jax.tree_util.tree_leaves(back), jax.tree_util.tree_leaves(params)):
        assert a.dtype == np.float32
        want = np.asarray(b).astype(ml_dtypes.bfloat16).astype(np.float32)
        np.testing.assert_array_equal(np.asarray(a), want)
    exact = restore_weights(f32, params, "test prior")
    for a, b in zip(jax.tree_util.tree_leaves(exact), jax.tree_util.tree_leaves(params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    # an interrupted replacement keeps the old weights
    import orbax.checkpoint as ocp

    def broken_save(self, *a, **k):
        raise KeyboardInterrupt("simulated interruption")

    monkeypatch.setattr(ocp.StandardCheckpointer, "save", broken_save)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    with pytest.raises(KeyboardInterrupt):
        save_weights(f32, zeros, cfg.to_json())
    still = restore_weights(f32, params, "test prior")
    for a, b in zip(jax.tree_util.tree_leaves(still), jax.tree_util.tree_leaves(params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers


def test_problem_probs_validated_and_used():
    with pytest.raises(ValueError, match="problem_probs"):
        preset("paper", problem_probs=(-1.0, 1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="one entry per problem"):
        preset("paper", problem_probs=(1.0, 1.0))
    problems = tuple(get_problems()[n] for n in PAPER_PROBLEMS)
    x = jnp.asarray(_smooth_images(8), jnp.float32) / 255.0
    _, _, rho, index = measure_mixed(problems, jax.random.PRNGKey(0), x,
                                     probs=(0.0, 0.0, 0.0, 1.0))
    assert np.all(np.asarray(index) == 3)  # only SR can be drawn
    np.testing.assert_allclose(rho, problems[3].rho)


def test_unet_architecture_trains_saves_and_reloads(tmp_path):
    """architecture="unet" (not in the paper): the config is validated, the run's saved
    parameters rebuild the same prior through load_prior, and resuming with another
    architecture is refused."""
    from admm_jax.train.loop import load_prior

    with pytest.raises(ValueError, match="architecture must be one of"):
        preset("paper", architecture="resnet")
    with pytest.raises(ValueError, match="residual already"):
        preset("paper", architecture="unet", residual=True)
    cfg = preset("paper", architecture="unet", width=1 / 16, num_iters=2, batch_size=2,
                 steps=3, val_every=0, checkpoint_every=1000, learning_rate=1e-3)
    images = _smooth_images(8, seed=4)
    train(cfg, images, None, tmp_path / "run", progress=False)
    prior_fn, params, loaded = load_prior(tmp_path / "run" / "params")
    assert loaded.architecture == "unet"
    ref_fn, ref_params = build_prior(cfg)
    x = jnp.asarray(images[:2], jnp.float32) / 255.0
    out = np.asarray(prior_fn(params, x))
    # trained for 3 steps: no longer the identity, and not the untrained prior either
    assert np.abs(out - np.asarray(ref_fn(ref_params, x))).max() > 1e-4
    with pytest.raises(ValueError, match="differs in architecture"):
        train(cfg.replace(architecture="paper", steps=4), images, None, tmp_path / "run",
              resume=True, progress=False)
