"""User-written operators: give ``apply``, get everything else.

Two ways to plug in your own ``A``:

1. Subclass :class:`~admm_jax.operators.base.LinearOperator` with ``@operator_pytree`` and
   implement ``apply`` (and optionally closed forms for ``adjoint`` / ``solve`` / ``pinv``).
2. Wrap a function with :class:`FunctionOperator`::

       op = FunctionOperator(fn=my_forward, params=my_arrays, in_shape=(64, 64, 3))

   where ``my_forward(params, x)`` is linear in ``x``. The adjoint comes from
   ``jax.linear_transpose`` and ``solve`` / ``pinv`` from conjugate gradients, inside ``jit``,
   ``vmap``, ``lax.scan`` and ``grad`` like the built-in operators.
"""

from __future__ import annotations

from typing import Any, Callable

from admm_jax.operators.base import Array, LinearOperator, operator_pytree, static_field


@operator_pytree
class FunctionOperator(LinearOperator):
    """``A x = fn(params, x)``; ``params`` is any pytree of arrays (a leaf axis 0 = batch if
    ``batched``). ``fn`` is static: pass the same function object to avoid recompiles."""

    params: Any
    fn: Callable[[Any, Array], Any] = static_field()
    in_shape: tuple[int, ...] = static_field()
    batched: bool = static_field(default=False)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        if not self.batched:
            return ()
        import jax

        leaves = jax.tree_util.tree_leaves(self.params)
        return (leaves[0].shape[0],) if leaves else ()

    def apply(self, x: Array) -> Any:
        return self.fn(self.params, x)


def as_custom(op: LinearOperator) -> FunctionOperator:
    """Wrap a built-in operator so that only its ``apply`` is visible (CG everywhere).

    Useful to check the generic path against a closed form, or to time CG against it.
    """
    return FunctionOperator(params=op, fn=_apply_of, in_shape=op.in_shape,
                            batched=op.is_batched)


def _apply_of(op: LinearOperator, x: Array) -> Any:
    return op.apply(x)
