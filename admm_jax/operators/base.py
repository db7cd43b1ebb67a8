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
* ``pinv(y)``     -> ``A⁺ y``, the minimum-norm least-squares solution (the ADMM start); the
  closed forms leave out singular values below ``rcond · max``: 1e-6 by default, 0.05 for the
  blurs, whose spectra fall smoothly to zero (:class:`~admm_jax.operators.CircularConvolution`)
* ``solve_method`` -> which path ``solve`` takes: ``"closed form: ..."`` or ``"cg (tol, maxiter)"``

The CG fallback stops at the relative residual ``cg_tol`` or after ``cg_maxiter`` iterations:
class attributes with the defaults below, which a subclass may redeclare as static dataclass
fields (the operator-algebra results do; :func:`admm_jax.operators.algebra.with_cg` sets them on
any operator). Operators combine with ``A @ B``, ``c * A``, ``A + B``, ``A - B``, ``-A`` and
``A.T`` (see :mod:`admm_jax.operators.algebra`).

Dispatch is by what an operator *provides*, not by its class: a user operator that only
implements ``apply`` gets the adjoint by transposition and CG solves, and still runs inside the
compiled ADMM scan / while loops.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import traceback
from typing import Any, Callable, TypeVar

import jax
import jax.numpy as jnp
from jax.scipy.sparse.linalg import cg

Array = jax.Array
T = TypeVar("T")

#: default tolerance / iteration cap for the CG fallback (relative residual).
CG_TOL = 1e-6
CG_MAXITER = 200


def cg_solve(normal: Callable[[Array], Array], b: Array, rho: Array | float, tol: float = CG_TOL,
             maxiter: int = CG_MAXITER) -> Array:
    """``(N + ρI)⁻¹ b`` by conjugate gradients for a symmetric PSD ``normal`` = N (implicit
    gradients in ``b``, ``ρ`` and whatever ``normal`` closes over)."""
    rho = jnp.asarray(rho, dtype=b.dtype)
    matvec = lambda v: normal(v) + rho * v
    x, _ = cg(matvec, b, x0=b / (1.0 + rho), tol=tol, atol=0.0, maxiter=maxiter)
    return x


def cg_description(tol: float, maxiter: int) -> str:
    """How ``solve_method`` names the CG path."""
    return f"cg (tol={tol:g}, maxiter={maxiter})"


def cg_least_squares(normal: Callable[[Array], Array], rhs: Array, tol: float = CG_TOL,
                     maxiter: int = CG_MAXITER) -> Array:
    """Minimum-norm solution of ``N x = rhs`` for ``rhs`` in range(N), by CG started at 0.

    CG from ``x = 0`` keeps every iterate in range(N), so it converges to the minimum-norm
    solution (with ``N = AᵀA`` and ``rhs = Aᵀy`` that is ``A⁺ y``). Not for differentiation:
    use :func:`cg_pinv`."""
    x, _ = cg(normal, rhs, x0=jnp.zeros_like(rhs), tol=tol, atol=0.0, maxiter=maxiter)
    return x


def _range_pinv(gram: Callable[[Any], Any], w: Any, tol: float, maxiter: int) -> Any:
    """``G⁺ w`` for a symmetric PSD ``gram`` = G and ``w`` in range(G), by CG from 0; linear in
    ``w`` and transposable (a symmetric ``custom_linear_solve``: its transpose is itself, and
    the cotangents it meets below lie in range(G) too)."""
    def solve(matvec: Callable[[Any], Any], b: Any) -> Any:
        x, _ = cg(matvec, b, x0=jax.tree_util.tree_map(jnp.zeros_like, b), tol=tol, atol=0.0,
                  maxiter=maxiter)
        return x

    return jax.lax.custom_linear_solve(gram, w, solve, symmetric=True)


def _normal_pinv(op: "LinearOperator", v: Array, tol: float, maxiter: int) -> Array:
    """``N⁺ v`` with ``N = AᵀA``, for ANY v (also outside range(N)), linear and transposable.

    ``N⁺ = A⁺(A⁺)ᵀ = Aᵀ M⁺ M⁺ A`` with ``M = AAᵀ``: ``A v`` lies in range(M), and so does
    ``M⁺ A v``, so both solves are consistent systems that CG from 0 solves at the rate of
    κ(M) = κ(N) (the same non-zero spectrum). Transposed (reverse mode) the chain is the same,
    so cotangents stay in range(M). Plain CG on ``N x = v`` diverges for a singular N when v
    has a null-space part; CG on ``N² x = N v`` converges only at the rate of κ(N)², which left
    reverse-mode gradients in y wrong by tens of per cent at the default tolerance."""
    gram = lambda w: op.apply(op.adjoint(w))  # noqa: E731
    return op.adjoint(_range_pinv(gram, _range_pinv(gram, op.apply(v), tol, maxiter), tol,
                                  maxiter))


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def cg_pinv(op: "LinearOperator", y: Any, tol: float = CG_TOL,
            maxiter: int = CG_MAXITER) -> Array:
    """``A⁺ y`` by CG (:func:`cg_least_squares`), differentiable in ``y`` and in the operator's
    arrays even when ``AᵀA`` is singular (the derivative of the pseudo-inverse, below).

    The derivative applies ``(AᵀA)⁺`` to vectors outside its range as ``Aᵀ (AAᵀ)⁺ (AAᵀ)⁺ A``:
    two CG solves on consistent systems, each converging like the forward solve (at the rate
    of κ(AᵀA), κ over the non-zero spectrum). Two solves compound their errors: for a tight
    gradient, tighten ``tol`` (:func:`~admm_jax.operators.with_cg`)."""
    return cg_least_squares(op.normal, op.adjoint(y), tol, maxiter)


@cg_pinv.defjvp
def _cg_pinv_jvp(tol: float, maxiter: int, primals: tuple, tangents: tuple) -> tuple:
    # x = A⁺y; for A of locally constant rank (Golub & Pereyra 1973), with N = AᵀA, r = y − Ax:
    # dx = N⁺[Aᵀ(dy − dA x) + dAᵀ r] + (I − N⁺N) dAᵀ (A N⁺ x)
    op, y = primals
    d_op, d_y = tangents
    x = cg_pinv(op, y, tol, maxiter)

    def d_apply(v: Array) -> Any:
        return jax.jvp(lambda o: o.apply(v), (op,), (d_op,))[1]

    def d_adjoint(w: Any) -> Array:
        return jax.jvp(lambda o: o.adjoint(w), (op,), (d_op,))[1]

    residual = jax.tree_util.tree_map(jnp.subtract, y, op.apply(x))
    d_meas = jax.tree_util.tree_map(jnp.subtract, d_y, d_apply(x))
    g = op.adjoint(d_meas) + d_adjoint(residual)
    u = d_adjoint(op.apply(cg_least_squares(op.normal, x, tol, maxiter)))
    dx = _normal_pinv(op, g, tol, maxiter) + u - _normal_pinv(op, op.normal(u), tol, maxiter)
    return x, dx


def static_field(**kwargs: Any) -> Any:
    """A dataclass field that is static (part of the pytree structure, hashed by ``jit``)."""
    return dataclasses.field(metadata={"static": True}, **kwargs)


def operator_pytree(cls: type[T]) -> type[T]:
    """Class decorator: frozen dataclass + pytree registration (static fields via metadata)."""
    cls = dataclasses.dataclass(frozen=True, eq=False)(cls)
    return jax.tree_util.register_dataclass(cls)


class LinearOperator:
    """Base class of all measurement operators (the module docstring has the whole protocol).

    One operator maps ONE image ``x`` of shape ``in_shape`` (e.g. (H, W, C), float) to its
    measurement ``apply(x)`` of shape ``out_shape``; a batch of operators carries a leading
    axis on its array fields (``batch_shape``) and the solvers map it over a (B, ...) batch.
    Subclasses must define the static field ``in_shape`` and implement ``apply``; they may
    override ``adjoint``, ``solve`` and ``pinv`` with exact closed forms.
    """

    in_shape: tuple[int, ...]
    # CG fallback settings (class defaults; a subclass may redeclare them as static fields)
    cg_tol = CG_TOL
    cg_maxiter = CG_MAXITER
    # numpy scalars defer to our __rmul__ instead of building object arrays
    __array_ufunc__ = None

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
        try:
            (x,) = jax.linear_transpose(self.apply, zeros)(y)
        except (NotImplementedError, AssertionError) as exc:
            # JAX met an operation with no transpose rule (x**2, clip, abs, exp: NotImplemented-
            # Error; x*x: AssertionError): ``apply`` is not linear. Built from concrete arrays
            # the operator would have been refused by the linearity check; built inside jit
            # (traced leaves) it lands here. The same errors raised by the user's own code
            # (its last frame outside JAX) pass through unchanged.
            if not _raised_in_jax(exc):
                raise
            reason = (str(exc).split("\n")[0] if isinstance(exc, NotImplementedError)
                      else "a product of x with x")
            raise ValueError(
                f"{type(self).__name__}.apply is not linear in x, so it has no adjoint: JAX "
                f"could not transpose it ({type(exc).__name__}: {reason}). ADMM needs a "
                f"linear A (no powers, products of x with x, clipping, abs or exp); build the "
                f"operator outside jit to get the linearity check.") from exc
        return x

    def normal(self, x: Array) -> Array:
        """``AᵀA x``."""
        return self.adjoint(self.apply(x))

    def solve(self, b: Array, rho: Array | float) -> Array:
        """``(AᵀA + ρI)⁻¹ b`` by conjugate gradients (SPD system; implicit gradients)."""
        return cg_solve(self.normal, b, rho, self.cg_tol, self.cg_maxiter)

    def pinv(self, y: Any) -> Array:
        """Minimum-norm least squares ``A⁺ y`` by CG on the normal equations started at 0."""
        return cg_pinv(self, y, self.cg_tol, self.cg_maxiter)

    @property
    def solve_method(self) -> str:
        """``"closed form: <class>"`` if the class overrides :meth:`solve`, else the CG settings."""
        if type(self).solve is not LinearOperator.solve:
            return f"closed form: {type(self).__name__}.solve"
        return cg_description(self.cg_tol, self.cg_maxiter)

    # ------------------------------------------------------------- algebra
    # (implemented in admm_jax.operators.algebra, imported on use: it builds on this module)
    def __matmul__(self, other: Any) -> Any:
        from admm_jax.operators import algebra

        return algebra.compose(self, other) if isinstance(other, LinearOperator) \
            else NotImplemented

    def __mul__(self, c: Any) -> Any:
        from admm_jax.operators import algebra

        return algebra.scale(c, self) if algebra.is_scalar(c) else NotImplemented

    __rmul__ = __mul__

    def __add__(self, other: Any) -> Any:
        from admm_jax.operators import algebra

        return algebra.add(self, other) if isinstance(other, LinearOperator) \
            else NotImplemented

    def __sub__(self, other: Any) -> Any:
        from admm_jax.operators import algebra

        return algebra.add(self, algebra.scale(-1.0, other)) \
            if isinstance(other, LinearOperator) else NotImplemented

    def __neg__(self) -> Any:
        from admm_jax.operators import algebra

        return algebra.scale(-1.0, self)

    @property
    def T(self) -> "LinearOperator":  # noqa: N802 - the usual name of the transpose
        """The adjoint ``Aᵀ`` as an operator (``A.T.T`` is ``A``)."""
        from admm_jax.operators import algebra

        return algebra.transpose(self)

    # --------------------------------------------------------------- helpers
    def __call__(self, x: Array) -> Array:
        return self.apply(x)

    def check_image(self, x: Array, name: str = "x") -> None:
        """Raise a clear error if ``x`` is not one image (or a batch of them) of ``in_shape``."""
        from admm_jax._checks import check_float, check_shape

        check_float(name, x)
        check_shape(name, x, self.in_shape, f"{type(self).__name__}.in_shape")


def _raised_in_jax(exc: BaseException) -> bool:
    """Whether the innermost frame of ``exc``'s traceback is in JAX's own source."""
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and f"{os.sep}jax{os.sep}" in frames[-1].filename


def _leaf_dtype(tree: Any) -> Any:
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.result_type(*leaves) if leaves else jnp.float32


def vmap_over_batch(fn: Callable[..., Any], op: LinearOperator, *args: Any) -> Any:
    """Apply ``fn(op, *args)`` sample by sample over a batch.

    ``args`` all carry a leading batch axis. ``op`` is mapped along axis 0 if it is a batch of
    operators (``op.is_batched``) and shared by every sample otherwise. An
    :class:`~admm_jax.operators.groups.OperatorGroups` runs one ``vmap`` per group (measurement
    arguments are then tuples with one entry per group).
    """
    if hasattr(op, "map") and hasattr(op, "groups"):  # OperatorGroups: one vmap per group
        return op.map(fn, *args)
    op_axis = 0 if op.is_batched else None
    return jax.vmap(fn, in_axes=(op_axis,) + (0,) * len(args))(op, *args)
