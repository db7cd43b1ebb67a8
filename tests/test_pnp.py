"""The plug-and-play baseline (issue #12 item 4): the denoise training objective, PnP-ADMM
against a hand-written ADMM loop, the ρ / iteration grid search, config and CLI checks."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from admm_jax.baselines.pnp import grid_edges, pnp_admm, pnp_psnr_trajectory, tune_pnp
from admm_jax.metrics import psnr
from admm_jax.problems import get_problem, measure_indexed
from admm_jax.train.config import DENOISE_SIGMA_MAX, TrainConfig


def _images(n: int, size: int = 8, seed: int = 0) -> jax.Array:
    """Smooth-ish test images in [0.1, 0.9] (N, size, size, 3)."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.2, 0.8, (n, 1, 1, 3))
    ramp = np.linspace(-0.1, 0.1, size)
    img = base + ramp[None, :, None, None] + 0.5 * ramp[None, None, :, None]
    return jnp.asarray(np.clip(img + rng.normal(0, 0.02, (n, size, size, 3)), 0.1, 0.9),
                       jnp.float32)


# --------------------------------------------------------------------------- denoise objective
@pytest.mark.parametrize("loss", ["mse", "psnr"])
def test_denoise_loss_matches_hand_computation(loss):
    from admm_jax.train.step import du_admm_loss, loss_categories

    cfg = TrainConfig(objective="denoise", loss=loss, batch_size=4)
    cfg.validate()
    params = {"a": jnp.float32(0.8), "b": jnp.float32(0.07)}
    prior_fn = lambda p, v: p["a"] * v + p["b"]  # a linear "network"
    x = _images(4)
    key = jax.random.PRNGKey(7)
    got, aux = du_admm_loss(prior_fn, params, x, key, (), cfg)

    # the draw as documented: σ ~ U[0, 0.2] from split(key)[0], ξ ~ N(0, 1) from split(key)[1]
    k_sigma, k_noise = jax.random.split(key)
    sigma = np.asarray(jax.random.uniform(k_sigma, (4,), jnp.float32, 0.0, DENOISE_SIGMA_MAX),
                       np.float64)
    xi = np.asarray(jax.random.normal(k_noise, x.shape, jnp.float32), np.float64)
    assert np.all((sigma >= 0) & (sigma <= 0.2)) and np.ptp(sigma) > 0
    x64 = np.asarray(x, np.float64)
    out = 0.8 * (x64 + sigma[:, None, None, None] * xi) + 0.07
    mse01 = np.mean((out - x64) ** 2, axis=(1, 2, 3))
    want = np.mean(10 * np.log10(mse01 + 1e-12)) if loss == "psnr" else np.mean(4 * mse01)
    np.testing.assert_allclose(float(got), want, rtol=2e-5)
    np.testing.assert_allclose(np.asarray(aux["per_sample"]), 4 * mse01, rtol=2e-5)
    assert loss_categories((), cfg) == ("denoise",)
    np.testing.assert_array_equal(np.asarray(aux["problem"]), 0)


def test_denoise_train_step_reports_one_category():
    import optax

    from admm_jax.train.step import init_train_state, make_train_step

    cfg = TrainConfig(objective="denoise", batch_size=2)
    prior_fn = lambda p, v: p["a"] * v
    tx = optax.sgd(0.1)
    state = init_train_state({"a": jnp.float32(0.5)}, tx)
    step = make_train_step(prior_fn, tx, (), cfg)
    state, metrics = step(state, _images(2), jax.random.PRNGKey(0))
    assert metrics["loss_per_problem"].shape == (1,)
    assert float(metrics["count_per_problem"][0]) == 2.0
    assert float(state.params["a"]) > 0.5  # a denoiser of clean-ish images moves towards 1


# --------------------------------------------------------------------------- PnP-ADMM
def _dense(op_i, shape) -> np.ndarray:
    """The matrix of one operator (rows: measurements, columns: the flattened image), float64."""
    d = int(np.prod(shape))
    basis = jnp.eye(d, dtype=jnp.float32).reshape((d,) + shape)
    cols = jax.vmap(op_i.apply)(basis)
    return np.asarray(cols, np.float64).reshape(d, -1).T


def _hand_pnp(denoise_np, a: np.ndarray, y: np.ndarray, rho: float, iters: int) -> np.ndarray:
    """Hand-written PnP-ADMM for one sample (vectors), float64."""
    d = a.shape[1]
    z = np.linalg.pinv(a) @ y
    u = np.zeros(d)
    inv = np.linalg.inv(a.T @ a + rho * np.eye(d))
    for _ in range(iters):
        x = denoise_np(z + u)
        z = inv @ (a.T @ y + rho * (x - u))
        u = u + z - x
    return z


@pytest.mark.parametrize("name", ["pid", "sr"])
@pytest.mark.parametrize("denoiser", ["clip", "affine"])
def test_pnp_admm_equals_hand_written_loop(name, denoiser):
    if denoiser == "clip":
        den, den_np = (lambda v: jnp.clip(v, 0.0, 1.0)), (lambda v: np.clip(v, 0.0, 1.0))
    else:
        den, den_np = (lambda v: 0.9 * v + 0.05), (lambda v: 0.9 * v + 0.05)
    x = _images(2)
    shape = tuple(x.shape[1:])
    op, y = measure_indexed(get_problem(name), jax.random.PRNGKey(3), jnp.arange(2), x)
    rho, iters = 0.3, 6
    z = np.asarray(pnp_admm(den, op, y, rho, num_iters=iters))
    z_tol = np.asarray(pnp_admm(den, op, y, rho, num_iters=iters, tol=1e-12))
    for i in range(2):
        op_i = jax.tree_util.tree_map(lambda a: a[i], op) if op.is_batched else op
        a = _dense(op_i, shape)
        want = _hand_pnp(den_np, a, np.asarray(y[i], np.float64).reshape(-1), rho, iters)
        np.testing.assert_allclose(z[i].reshape(-1), want, atol=2e-5)
        np.testing.assert_allclose(z_tol[i].reshape(-1), want, atol=2e-5)


def test_tune_pnp_returns_the_argmax_of_its_grid():
    den = lambda v: jnp.clip(0.8 * v + 0.1, 0.0, 1.0)
    x = _images(4)
    rhos, iters = (0.05, 0.3, 2.0), (1, 3, 4)
    res = tune_pnp(den, "pid", x, rhos=rhos, iters=iters, key=jax.random.PRNGKey(1),
                   batch_size=2, progress=False)
    grid = np.asarray(res["grid"]["psnr"])
    assert grid.shape == (3, 3) and np.all(np.isfinite(grid))
    assert res["grid"]["rhos"] == list(rhos) and res["grid"]["iters"] == list(iters)
    i, t = np.unravel_index(np.argmax(grid), grid.shape)
    assert (res["rho"], res["iters"], res["psnr"]) == (rhos[i], iters[t], grid[i, t])
    assert res["kind"] == "problem" and np.isfinite(res["start_psnr"])
    assert res["at_edge"] == grid_edges(rhos, iters, res["rho"], res["iters"])
    # a cell is the mean PSNR of pnp_admm run for that many iterations on the same draw
    op, y = measure_indexed(get_problem("pid"), jax.random.PRNGKey(1), jnp.arange(4), x)
    z = pnp_admm(den, op, y, 0.3, num_iters=3)
    np.testing.assert_allclose(grid[1, 1], float(jnp.mean(psnr(z, x))), atol=1e-4)


def test_grid_edges():
    assert grid_edges((0.1, 1.0, 2.0), (5, 10), 1.0, 10) == ["iters max"]
    assert grid_edges((0.1, 1.0), (5, 10), 0.1, 5) == ["rho min", "iters min"]
    assert grid_edges((0.1,), (5, 10, 20), 0.1, 10) == []


def test_tune_pnp_on_a_family_needs_a_noise_level():
    den = lambda v: jnp.clip(v, 0.0, 1.0)
    x = _images(2)
    res = tune_pnp(den, "demosaic", x, 0.01, rhos=(0.1, 1.0), iters=(2,), progress=False)
    assert res["kind"] == "family" and np.asarray(res["grid"]["psnr"]).shape == (2, 1)
    with pytest.raises(ValueError, match="noise_std"):
        tune_pnp(den, "demosaic", x, rhos=(0.1,), iters=(2,), progress=False)
    with pytest.raises(ValueError, match="rhos"):
        tune_pnp(den, "pid", x, rhos=(0.0,), iters=(2,), progress=False)


def test_an_unknown_name_lists_problems_and_families_and_the_trajectory_checks_its_inputs():
    den = lambda v: jnp.clip(v, 0.0, 1.0)  # noqa: E731
    x = _images(2)
    with pytest.raises(ValueError, match=r"unknown problem or operator family 'pidd'; "
                                         r"problems: \[.*'pid'.*\]; families: \[.*'demosaic'"):
        tune_pnp(den, "pidd", x, 0.01, rhos=(0.1,), iters=(2,), progress=False)
    op, y = measure_indexed(get_problem("pid"), jax.random.PRNGKey(0), jnp.arange(2), x)
    # rho <= 0 gave rows of NaN, a NaN in y NaN PSNRs, both silently
    with pytest.raises(ValueError, match=r"rho must be > 0"):
        pnp_psnr_trajectory(den, op, y, -1.0, x, 2)
    with pytest.raises(ValueError, match=r"y contains 1 non-finite value"):
        pnp_psnr_trajectory(den, op, y.at[0, 0, 0, 0].set(jnp.nan), 0.3, x, 2)
    with pytest.raises(ValueError, match=r"x_true must have the shape of the solution"):
        pnp_psnr_trajectory(den, op, y, 0.3, x[:1], 2)


# --------------------------------------------------------------------------- config and CLI
@pytest.mark.parametrize("kw, fragments", [
    ({"objective": "denoising"}, ["objective", "'denoising'", "unrolled"]),
    ({"objective": "denoise", "rho_rule": "learned"}, ["objective='denoise'", "rho_rule"]),
    ({"objective": "denoise", "operator_mix": "families", "batch_size": 10},
     ["objective='denoise'", "operator_mix"]),
])
def test_config_validation_names_the_argument(kw, fragments):
    with pytest.raises(ValueError) as exc:
        TrainConfig(**kw).validate()
    for f in fragments:
        assert f in str(exc.value), str(exc.value)


def test_cli_refuses_incompatible_objective_before_any_folder(tmp_path, capsys):
    from admm_jax.cli import main

    out = tmp_path / "run"
    assert main(["train", "--objective", "denoise", "--rho-rule", "learned", "--out", str(out),
                 "--no-progress"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and "objective" in err[0], err
    assert not out.exists()
    with pytest.raises(SystemExit):
        main(["train", "--objective", "denoising", "--out", str(out)])


def test_cli_trains_a_denoiser_that_load_prior_reads(tmp_path):
    from admm_jax.baselines.pnp import load_denoiser
    from admm_jax.cli import main

    run = tmp_path / "run"
    assert main(["train", "--objective", "denoise", "--data", "bundled", "--architecture",
                 "unet", "--width", "0.25", "--batch", "2", "--steps", "2", "--val-every", "0",
                 "--cache-dir", str(tmp_path / "cache"), "--out", str(run),
                 "--no-progress"]) == 0
    cfg = TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
    assert cfg.objective == "denoise" and cfg.architecture == "unet"
    x = _images(1, size=16)
    assert load_denoiser(run / "params")(x).shape == x.shape  # load_prior underneath
    recs = [json.loads(line) for line in (run / "validation.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in recs] == ["noisy_input", "denoise"]
    assert {k for k in recs[-1] if k.startswith("denoise_")} == {
        "denoise_0.05", "denoise_0.1", "denoise_0.2"}
    assert "loss_denoise" in (run / "metrics.csv").read_text().splitlines()[0]
