"""The PyTorch peer (benchmarks/torch_peer.py) computes the same training step as admm_jax.

From the same initial parameters and the same mixed batch (PID, BI, SI and SR samples, drawn by
admm_jax), the peer's loss, gradients and first Adam update must agree with admm_jax's
``du_admm_loss`` / ``make_train_step`` to float32 accuracy, for the paper's prior (MSE loss) and
the residual U-Net prior (PSNR loss, as in the quick preset). A float64 run of the peer is the
exact reference both float32 computations are measured against.

Tolerances (measured on this project's 2-core CPU, width 1/16, T = 2, batch 4; float32
ε = 6e-8): the two float32 losses differ from the float64 one by ≤ 6e-8 relative, so
``LOSS_RTOL = 1e-5`` leaves > 100× margin for other summation orders (vector widths, thread
counts); per-parameter gradient errors ‖Δg‖/‖g‖ were ≤ 4e-6, so ``GRAD_RTOL = 1e-4`` leaves
25×, while a real difference in the computation (a padding side, an index map, the instance-norm
ε, a data step) changes gradients by 1e-3 or more. The conv biases directly before instance norm
have an exact gradient of 0 (the norm removes any per-channel constant); their float32 values
are rounding noise, so every leaf also gets ``GRAD_ATOL_FRAC × ‖g‖`` of the whole gradient
(the noise measured there is < 1e-7 × ‖g‖).

Skipped when torch is not installed (CI does not install it).
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

torch = pytest.importorskip(
    "torch", reason="the PyTorch peer needs torch: pip install -e '.[bench]' (CPU build: "
                    "pip install torch==2.13.0); CI does not install it")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import torch_peer as tp  # noqa: E402

from admm_jax.admm import data_step as jax_data_step  # noqa: E402
from admm_jax.admm import initial_state  # noqa: E402
from admm_jax.operators.base import vmap_over_batch  # noqa: E402
from admm_jax.presets import training_rho  # noqa: E402
from admm_jax.problems import get_problems, measure_mixed  # noqa: E402
from admm_jax.train.config import preset  # noqa: E402
from admm_jax.train.loop import build_prior  # noqa: E402
from admm_jax.train.optim import make_optimizer  # noqa: E402
from admm_jax.train.step import (  # noqa: E402
    du_admm_loss, init_train_state, make_mesh, make_train_step,
)

LOSS_RTOL = 1e-5
GRAD_RTOL = 1e-4
GRAD_ATOL_FRAC = 1e-5
WIDTH, ITERS, BATCH = 1 / 16, 2, 4
CASES = {"paper": dict(architecture="paper", loss="mse", learning_rate=1e-4),
         "unet": dict(architecture="unet", loss="psnr", learning_rate=5e-4)}


def _cfg(name: str):
    return preset("paper", width=WIDTH, num_iters=ITERS, batch_size=BATCH, **CASES[name])


def _problems(cfg):
    table = get_problems()
    return tuple(table[n] for n in cfg.problems)


def _base_key_with_all_problems(problems, images) -> jax.Array:
    """The first PRNGKey(s) whose step-0 draw gives every problem at least one sample, so that
    all four data steps take part in the comparison."""
    draw = jax.jit(lambda k: measure_mixed(problems, jax.random.fold_in(k, 0), images)[2])
    for seed in range(200):
        key = jax.random.PRNGKey(seed)
        if len(set(np.asarray(draw(key)).tolist())) == len(problems):
            return key
    raise AssertionError("no key among 200 draws covers every problem")


def _initial_params(cfg):
    prior_fn, params = build_prior(cfg)
    if cfg.architecture == "unet":
        # The U-Net's zero-initialised tail blocks every gradient but its own; give it values so
        # that all layers are compared.
        tail = params["tail"]["kernel"]
        tail[...] = 0.05 * jax.random.normal(jax.random.PRNGKey(7), tail[...].shape)
    return prior_fn, params


def _jax_side(cfg, prior_fn, params, images, base_key, problems):
    old = tp.flatten_jax_params(params)  # numpy copies: the step donates its state
    key = jax.random.fold_in(base_key, 0)
    (loss, _), grads = jax.jit(jax.value_and_grad(
        lambda p: du_admm_loss(prior_fn, p, images, key, problems, cfg), has_aux=True))(params)
    grads = tp.flatten_jax_params(grads)
    tx = make_optimizer(cfg)
    mesh = make_mesh(jax.devices()[:1])
    step = make_train_step(prior_fn, tx, problems, cfg, mesh)
    state, metrics = step(init_train_state(params, tx, mesh), images, base_key)
    new = tp.flatten_jax_params(state.params)
    return {"loss": float(loss), "step_loss": float(metrics["loss"]), "grads": grads,
            "update": {k: new[k] - old[k] for k in old}, "old": old}


def _torch_side(cfg, params, batch, dtype):
    net = tp.peer_prior(cfg).to(dtype)
    tp.load_jax_params(net, params)
    loss, grads = tp.loss_and_grads(net, batch.to(dtype=dtype), cfg)
    out = {"loss": loss, "grads": tp.torch_tensors_in_jax_layout(grads)}
    if dtype == torch.float32:
        old = {k: p.detach().clone() for k, p in net.named_parameters()}
        step = tp.make_train_step(net, cfg)
        out["step_loss"] = float(step(batch))
        out["update"] = tp.torch_tensors_in_jax_layout(
            {k: p.detach() - old[k] for k, p in net.named_parameters()})
    return out


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    cfg = _cfg(request.param)
    problems = _problems(cfg)
    images = jax.random.uniform(jax.random.PRNGKey(1), (BATCH, 64, 64, 3), jnp.float32)
    base_key = _base_key_with_all_problems(problems, images)
    prior_fn, params = _initial_params(cfg)
    op, y, index = measure_mixed(problems, jax.random.fold_in(base_key, 0), images)
    rho = jnp.asarray([training_rho(p) for p in problems], jnp.float32)[index]
    batch = tp.peer_batch_from_jax(op, y, rho, index, images)
    torch32 = _torch_side(cfg, params, batch, torch.float32)
    torch64 = _torch_side(cfg, params, batch, torch.float64)
    jax32 = _jax_side(cfg, prior_fn, params, images, base_key, problems)
    return dict(cfg=cfg, prior_fn=prior_fn, params=params, images=images, op=op, y=y, rho=rho,
                batch=batch, jax=jax32, torch=torch32, torch64=torch64)


def _global_norm(tree: dict[str, np.ndarray]) -> float:
    return float(np.sqrt(sum(np.sum(np.square(v, dtype=np.float64)) for v in tree.values())))


def _assert_grads_close(got: dict, ref: dict, what: str) -> None:
    assert set(got) == set(ref)
    atol = GRAD_ATOL_FRAC * _global_norm(ref)
    for k in sorted(ref):
        assert got[k].shape == ref[k].shape, k
        err = float(np.linalg.norm((got[k] - ref[k]).ravel()))
        bound = GRAD_RTOL * float(np.linalg.norm(ref[k].ravel())) + atol
        assert err <= bound, f"{what}: gradient of {k} differs by {err:.3e} > {bound:.3e}"


def test_batch_conversion_reproduces_admm_jax_operators(case):
    """The peer's z⁰ = A⁺y, Aᵀy and (AᵀA + ρI)⁻¹ on admm_jax's batch equal admm_jax's own."""
    op, y, rho, batch = case["op"], case["y"], case["rho"], case["batch"]
    nhwc = lambda t: t.detach().numpy().transpose(0, 2, 3, 1)  # noqa: E731
    z0_peer, aty_peer = tp.admm_start(batch)
    z0 = np.asarray(initial_state(op, y).z)
    aty = np.asarray(vmap_over_batch(lambda o, yy: o.adjoint(yy), op, y))
    np.testing.assert_allclose(nhwc(z0_peer), z0, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(nhwc(aty_peer), aty, rtol=1e-6, atol=1e-7)
    v = jax.random.normal(jax.random.PRNGKey(3), z0.shape, jnp.float32)
    want = np.asarray(jax_data_step(op, jnp.asarray(aty), v, rho))
    rhs = torch.from_numpy(np.asarray(aty + np.asarray(rho)[:, None, None, None] * np.asarray(v))
                           .transpose(0, 3, 1, 2).copy())
    np.testing.assert_allclose(nhwc(tp.data_step(batch, rhs)), want, rtol=1e-5, atol=1e-6)
    assert set(np.asarray(batch.is_sr).ravel().tolist()) == {False, True}


def test_prior_output_matches(case):
    net = tp.peer_prior(case["cfg"])
    tp.load_jax_params(net, case["params"])
    x = np.asarray(case["images"])
    want = np.asarray(case["prior_fn"](case["params"], case["images"]))
    with torch.no_grad():
        got = net(2.0 * torch.from_numpy(x.transpose(0, 3, 1, 2).copy()) - 1.0) / 2.0 + 0.5
    # output of O(1); measured max difference 1.2e-7
    np.testing.assert_allclose(got.numpy().transpose(0, 2, 3, 1), want, rtol=0, atol=1e-5)


def test_loss_matches(case):
    ref = case["torch64"]["loss"]
    for name, value in (("admm_jax", case["jax"]["loss"]), ("admm_jax step", case["jax"]["step_loss"]),
                        ("torch", case["torch"]["loss"]), ("torch step", case["torch"]["step_loss"])):
        assert abs(value - ref) <= LOSS_RTOL * abs(ref), f"{name} loss {value} vs float64 {ref}"


def test_gradients_match(case):
    _assert_grads_close(case["jax"]["grads"], case["torch64"]["grads"], "admm_jax vs float64")
    _assert_grads_close(case["torch"]["grads"], case["torch64"]["grads"], "torch vs float64")
    _assert_grads_close(case["torch"]["grads"], case["jax"]["grads"], "torch vs admm_jax")


def test_first_update_matches(case):
    """Adam with β₁ = 0 makes the first update −lr·g/(|g| + ε) ≈ −lr·sign(g) (after clipping).
    Being a sign, it is compared only at entries where the float64 gradient is more than 100×
    both float32 gradients' errors there and above 100 ε_Adam: both signs are then certain, and
    the updates must agree to lr/1000 plus the float32 spacing of the parameter (the update is
    read back as p_new − p_old). Elsewhere both must stay within ±lr."""
    lr = case["cfg"].learning_rate
    g64, gj, gt = case["torch64"]["grads"], case["jax"]["grads"], case["torch"]["grads"]
    uj, ut = case["jax"]["update"], case["torch"]["update"]
    compared = total = 0
    for k in sorted(g64):
        err = np.maximum(np.abs(gj[k] - g64[k]), np.abs(gt[k] - g64[k]))
        sure = (np.abs(g64[k]) > 100 * err) & (np.abs(g64[k]) > 100 * case["cfg"].eps)
        tol = 1e-3 * lr + 2 * np.spacing(np.abs(case["jax"]["old"][k]) + lr)
        bad = sure & (np.abs(uj[k] - ut[k]) > tol)
        assert not bad.any(), f"{k}: updates differ at {int(bad.sum())} entries"
        np.testing.assert_array_less(np.abs(uj[k]), lr + tol)
        np.testing.assert_array_less(np.abs(ut[k]), lr + tol)
        compared += int(sure.sum())
        total += sure.size
    assert compared >= 0.9 * total, f"only {compared} of {total} entries compared"


def test_optimizer_matches_optax_with_clipping():
    """Clip ±10 then Adam(β₁ = 0, β₂ = 0.9) over three steps whose gradients exceed the clip."""
    cfg = preset("paper", learning_rate=1e-2)
    rng = np.random.default_rng(0)
    p0 = rng.normal(size=(5, 7)).astype(np.float32)
    grads = [rng.normal(scale=s, size=p0.shape).astype(np.float32) for s in (30.0, 3.0, 0.01)]
    tx = make_optimizer(cfg)
    p, state = jnp.asarray(p0), tx.init(jnp.asarray(p0))
    net = torch.nn.Linear(7, 5, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.from_numpy(p0))
    opt = tp.make_optimizer(net, cfg)
    for gr in grads:
        upd, state = tx.update(jnp.asarray(gr), state, p)
        p = p + upd
        net.weight.grad = torch.from_numpy(gr.copy())
        tp.clip_and_update(net, opt, cfg.grad_clip)
    # a few float32 roundings of O(1) values per step; the steps are ~lr = 1e-2
    np.testing.assert_allclose(net.weight.detach().numpy(), np.asarray(p), rtol=0, atol=1e-6)
    # the clipping mattered: without it (same Adam) the parameters end elsewhere
    adam = optax.adam(cfg.learning_rate, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
    q, s = jnp.asarray(p0), adam.init(jnp.asarray(p0))
    for gr in grads:
        upd, s = adam.update(jnp.asarray(gr), s, q)
        q = q + upd
    assert np.abs(np.asarray(q) - np.asarray(p)).max() > 1e-3


def test_weight_converter_checks_names_and_shapes(case):
    net = tp.peer_prior(case["cfg"])
    params = tp.flatten_jax_params(case["params"])
    name = sorted(k for k in params if k.endswith("kernel"))[0]
    wrong_shape = dict(params)
    wrong_shape[name] = np.zeros(params[name].shape[:-1] + (params[name].shape[-1] + 1,))
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        tp.load_jax_params(net, wrong_shape)
    missing = {k: v for k, v in params.items() if k != name}
    with pytest.raises(ValueError, match="parameter names differ"):
        tp.load_jax_params(net, missing)
