"""The linear-operator protocol shared by every measurement model.

An operator ``A`` maps ONE image ``x`` of shape ``in_shape`` (H, W, C) to a measurement
``y = A x`` of shape ``out_shape``. Every operator is a frozen dataclass registered as a JAX
pytree: array fields (mask, matrix, kernel, eigenvectors, ...) are leaves, sizes and options are
static. A *batch* of operators of one kind is the same class whose leaves carry a leading batch
axis; it is produced by ``jax.vmap`` over a generator and consumed by ``jax.vmap`` over the
methods (the solvers in :mod:`admm_jax.admm` do this for you, see :func:`vmap_over_batch`).

Methods and what they compute (all exact unless stated):

* ``apply(x)``    -> ``A x``
* ``adjoint(y)``  -> ``Aᵀ y`` (default: ``jax.linear_transpose`` of ``apply``)
* ``normal(x)``   -> ``Aᵀ A x``
* ``solve(b, rho)`` -> ``(AᵀA + ρ I)⁻¹ b``; closed form where the structure allows it, conjugate
  gradients otherwise (differentiable in ``b`` and ``ρ`` by implicit differentiation)
* ``pinv(y)``     -> ``A⁺ y``, the minimum-norm least-squares solution

Dispatch is by what an operator *provides*, not by its class: a user operator that only
implements ``apply`` gets the adjoint by transposition and CG solves, and still runs inside the
compiled ADMM scan / while loops.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, TypeVar

import jax
import jax.numpy as jnp
from jax.scipy.sparse.linalg import cg

Array = jax.Array
T = TypeVar("T")

#: default tolerance / iteration cap for the CG fallback (relative residual).
CG_TOL = 1e-6
CG_MAXITER = 200


def static_field(**kwargs: Any) -> Any:
    """A dataclass field that is static (part of the pytree structure, hashed by ``jit``)."""
    return dataclasses.field(metadata={"static": True}, **kwargs)


def operator_pytree(cls: type[T]) -> type[T]:
    """Class decorator: frozen dataclass + pytree registration (static fields via metadata)."""
    cls = dataclasses.dataclass(frozen=True, eq=False)(cls)
    return jax.tree_util.register_dataclass(cls)


class LinearOperator:
    """Base class of all measurement operators (see the module docstring).

    Subclasses must define the static field ``in_shape`` and implement ``apply``; they may
    override ``adjoint``, ``solve`` and ``pinv`` with exact closed forms.
    """

    in_shape: tuple[int, ...]

    # ----------------------------------------------------------------- shapes
    @property
    def out_shape(self) -> tuple[int, ...]:
        """Shape of one measurement ``A x``."""
        out = jax.eval_shape(self.apply, jax.ShapeDtypeStruct(self.in_shape, jnp.float32))
        if isinstance(out, (tuple, list)):  # a tuple of measurements (e.g. a wrapped selector)
            return tuple(tuple(o.shape) for o in out)
        return tuple(out.shape)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """Leading batch axes of the array leaves (``()`` for a single operator)."""
        return ()

    @property
    def is_batched(self) -> bool:
        return len(self.batch_shape) > 0

    # ------------------------------------------------------------- the maths
    def apply(self, x: Array) -> Array:  # pragma: no cover - abstract
        raise NotImplementedError

    def adjoint(self, y: Any) -> Array:
        """``Aᵀ y`` obtained by transposing ``apply`` (exact for any linear ``apply``)."""
        zeros = jnp.zeros(self.in_shape, dtype=_leaf_dtype(y))
        (x,) = jax.linear_transpose(self.apply, zeros)(y)
        return x

    def normal(self, x: Array) -> Array:
        """``AᵀA x``."""
        return self.adjoint(self.apply(x))

    def solve(self, b: Array, rho: Array | float) -> Array:
        """``(AᵀA + ρI)⁻¹ b`` by conjugate gradients (SPD system; implicit gradients)."""
        rho = jnp.asarray(rho, dtype=b.dtype)
        matvec = lambda v: self.normal(v) + rho * v
        x, _ = cg(matvec, b, x0=b / (1.0 + rho), tol=CG_TOL, atol=0.0, maxiter=CG_MAXITER)
        return x

    def pinv(self, y: Any) -> Array:
        """Minimum-norm least squares ``A⁺ y`` by CG on the normal equations started at 0.

        CG on ``AᵀA x = Aᵀy`` from ``x = 0`` keeps every iterate in range(Aᵀ), so it converges to
        the minimum-norm solution.
        """
        rhs = self.adjoint(y)
        x, _ = cg(self.normal, rhs, x0=jnp.zeros_like(rhs), tol=CG_TOL, atol=0.0,
                  maxiter=CG_MAXITER)
        return x

    # --------------------------------------------------------------- helpers
    def __call__(self, x: Array) -> Array:
        return self.apply(x)

    def check_image(self, x: Array, name: str = "x") -> None:
        """Raise a clear error if ``x`` is not one image (or a batch of them) of ``in_shape``."""
        from admm_jax._checks import check_float, check_shape

        check_float(name, x)
        check_shape(name, x, self.in_shape, f"{type(self).__name__}.in_shape")


def _leaf_dtype(tree: Any) -> Any:
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.result_type(*leaves) if leaves else jnp.float32


def vmap_over_batch(fn: Callable[..., Any], op: LinearOperator, *args: Any) -> Any:
    """Apply ``fn(op, *args)`` sample by sample over a batch.

    ``args`` all carry a leading batch axis. ``op`` is mapped along axis 0 if it is a batch of
    operators (``op.is_batched``) and shared by every sample otherwise.
    """
    op_axis = 0 if op.is_batched else None
    return jax.vmap(fn, in_axes=(op_axis,) + (0,) * len(args))(op, *args)
