"""Pure-function bridge between the NNX prior and the ADMM solver.

The ADMM solver works in the **[0, 1] pixel domain**; the networks work in the **[−1, 1]
domain**. :func:`make_prior_fn` returns ``apply_fn(params, x01)`` that

1. maps the solver's iterate ``x01`` (in [0, 1]) to the network domain: ``v = 2·x01 − 1``
   — the [−1, 1] domain **begins** here;
2. runs the network ``o = P(v)`` (unbounded output, interpreted as [−1, 1]);
3. maps back: ``o / 2 + 0.5`` — the [−1, 1] domain **ends** here. No clipping is applied.

``params`` is an explicit argument (the ``nnx.Param`` state of the model), so ``apply_fn`` can be
used inside ``jax.jit``, ``jax.grad``, ``jax.vmap``, ``lax.scan`` and ``jax.checkpoint``.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = ["make_prior_fn", "count_params", "to_network_domain", "from_network_domain"]


def to_network_domain(x01: jax.Array) -> jax.Array:
    """[0, 1] pixel domain → [−1, 1] network domain: ``2·x − 1``."""
    return 2.0 * x01 - 1.0


def from_network_domain(v: jax.Array) -> jax.Array:
    """[−1, 1] network domain → [0, 1] pixel domain: ``v / 2 + 0.5`` (no clipping)."""
    return v / 2.0 + 0.5


def make_prior_fn(model: nnx.Module) -> tuple[Callable[[Any, jax.Array], jax.Array], nnx.State]:
    """Split an NNX projector into ``(apply_fn, params)``.

    ``params`` is ``nnx.state(model, nnx.Param)`` — a pytree of the trainable weights (float32).
    ``model`` may be abstract (built by ``nnx.eval_shape``, no initializer run: for loading saved
    weights), as long as everything but its parameters has values; ``params`` is then a
    template of ``jax.ShapeDtypeStruct`` leaves.
    Any other state (e.g. stored virtual-batch-norm statistics) is captured as constants at the
    time of the call; call :func:`make_prior_fn` again after changing it.

    ``apply_fn(params, x01)``: ``x01`` is a float image batch ``(B, H, W, C)`` (or a single image
    ``(H, W, C)``) in the **[0, 1] domain**; returns ``P(2·x01 − 1) / 2 + 0.5`` as float32 with the
    same shape (the network's output is unbounded, so neither is the result). The model is
    rebuilt from ``params`` with ``nnx.merge`` at trace time only, so under ``jax.jit`` there is
    no per-call Python overhead; when calling it eagerly in a loop, wrap it in ``jax.jit``.
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(f"make_prior_fn expects an nnx.Module, got {type(model).__name__}")
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    if any(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in jax.tree_util.tree_leaves(rest)):
        # an nnx.eval_shape model: its parameters may be filled in later, but non-parameter
        # state (e.g. batch statistics) would be captured as shapes without values
        raise ValueError("make_prior_fn: the model is abstract (nnx.eval_shape) and has "
                         "non-parameter state without values; set that state first")

    def apply_fn(params, x01: jax.Array) -> jax.Array:
        x01 = jnp.asarray(x01)
        if not jnp.issubdtype(x01.dtype, jnp.floating):
            raise TypeError(f"apply_fn expects a float image in [0, 1], got dtype {x01.dtype}")
        single = x01.ndim == 3
        if single:
            x01 = x01[None]
        net = nnx.merge(graphdef, params, rest)
        v = to_network_domain(x01)          # ---- [-1, 1] network domain begins
        o = net(v)
        out = from_network_domain(o)        # ---- [-1, 1] network domain ends
        return out[0] if single else out

    return apply_fn, params


def count_params(model_or_state: Any) -> int:
    """Number of scalar parameters.

    * ``nnx.Module``: counts its ``nnx.Param`` variables (not batch statistics);
    * ``nnx.State``: counts its ``nnx.Param`` entries;
    * any other pytree: counts all array leaves.
    Works on abstract models/states from ``nnx.eval_shape`` too (no memory is touched).
    """
    if isinstance(model_or_state, nnx.Module):
        tree = nnx.state(model_or_state, nnx.Param)
    elif isinstance(model_or_state, nnx.State):
        tree = (nnx.filter_state(model_or_state, nnx.Param)
                if _has_non_param(model_or_state) else model_or_state)
    else:
        tree = model_or_state
    return int(sum(int(np.prod(np.shape(leaf))) for leaf in jax.tree_util.tree_leaves(tree)))


def _has_non_param(state: nnx.State) -> bool:
    leaves = jax.tree_util.tree_leaves(state, is_leaf=lambda x: isinstance(x, nnx.Variable))
    return any(isinstance(v, nnx.Variable) and not isinstance(v, nnx.Param) for v in leaves)
