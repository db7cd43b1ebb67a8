"""One sample, one of several operators: the structure behind mixed-problem mini-batches.

:class:`SelectOperator` holds K operators (``branches``) and an integer ``index``. For one sample
it *is* ``branches[index]``: its measurement is a tuple with one slot per branch, filled only in
slot ``index`` (the others are zero), so

    apply(x)   = (δ_{0,k} A_0 x, ..., δ_{K-1,k} A_{K-1} x)
    adjoint(y) = Σ_j δ_{j,k} A_jᵀ y_j = A_kᵀ y_k
    solve      = (A_kᵀ A_k + ρI)⁻¹,   pinv = A_k⁺ on slot k.

All are exact, linear and differentiable. A batch of SelectOperators (every branch batched, index
of shape (B,)) lets one compiled step serve a mini-batch that mixes problems, each sample with
its own operator and ρ; under ``vmap`` every branch is evaluated and the right one selected, which
costs little next to a CNN prior.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from admm_jax import _checks
from admm_jax.operators.base import Array, LinearOperator, operator_pytree, static_field


@operator_pytree
class SelectOperator(LinearOperator):
    branches: tuple[LinearOperator, ...]
    index: Array  # int32 scalar, or (B,) for a batch
    in_shape: tuple[int, ...] = static_field()

    @classmethod
    def create(cls, branches: tuple[LinearOperator, ...], index: Array) -> "SelectOperator":
        branches = tuple(branches)
        if not branches:
            raise ValueError("SelectOperator needs at least one branch")
        shapes = {b.in_shape for b in branches}
        if len(shapes) != 1:
            raise ValueError(f"all branches must share in_shape, got {sorted(shapes)}")
        if _checks.is_concrete(index):
            values = np.asarray(index)
            if not np.issubdtype(values.dtype, np.integer) or np.any(values < 0) \
                    or np.any(values >= len(branches)):
                shown = values.tolist() if values.size <= 8 else f"{values.size} values"
                raise ValueError(f"index must be integers in [0, {len(branches)}) (one per "
                                 f"sample, naming its branch), got {shown}.")
        return cls(branches=branches, index=jnp.asarray(index, jnp.int32),
                   in_shape=branches[0].in_shape)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(jnp.shape(self.index))

    @property
    def out_shape(self) -> tuple[tuple[int, ...], ...]:  # type: ignore[override]
        return tuple(b.out_shape for b in self.branches)

    def _select(self, values: list[Array]) -> Array:
        out = values[0]
        for k in range(1, len(values)):
            out = jnp.where(self.index == k, values[k], out)
        return out

    @property
    def solve_method(self) -> str:
        """Each branch's path; "closed form" only if every branch has one."""
        methods = [b.solve_method for b in self.branches]
        exact = all(m.startswith("closed form") for m in methods)
        listed = "; ".join(f"[{k}] {m}" for k, m in enumerate(methods))
        return f"{'closed form' if exact else 'cg'}: per-sample branch: {listed}"

    def apply(self, x: Array) -> tuple[Any, ...]:
        # tree_map: a branch may itself measure a tuple (a stack of operators)
        return tuple(jax.tree_util.tree_map(lambda v: jnp.where(self.index == k, v, 0.0),
                                            b.apply(x))
                     for k, b in enumerate(self.branches))

    def adjoint(self, y: tuple[Array, ...]) -> Array:
        return self._select([b.adjoint(yk) for b, yk in zip(self.branches, y)])

    def normal(self, x: Array) -> Array:
        return self._select([b.normal(x) for b in self.branches])

    def solve(self, b: Array, rho: Array | float) -> Array:
        return self._select([br.solve(b, rho) for br in self.branches])

    def pinv(self, y: tuple[Array, ...]) -> Array:
        return self._select([b.pinv(yk) for b, yk in zip(self.branches, y)])

    def measurement_slot(self, y: Any, k: int) -> Array:
        return y[k]
