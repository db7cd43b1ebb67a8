"""Operator algebra: ``A @ B``, ``c * A``, ``A + B``, ``A.T`` and ``stack([A1, ..., An])``.

Every result is itself a pytree :class:`~admm_jax.operators.base.LinearOperator` (it runs inside
``jit``, ``vmap``, ``lax.scan``, ``grad`` and :class:`~admm_jax.operators.SelectOperator`
batches), and the exact solve is kept wherever the structure allows it. The rules, applied when
the operator is built (``op.solve_method`` tells which path a result takes):

=========================================  ================================================
expression                                 result
=========================================  ================================================
``Mask @ Mask``                            ``Mask`` with the product mask
``Conv @ Conv``                            ``CircularConvolution`` with the product of the
                                           transfer functions (kernels convolved)
``Mask @ SampledOrthonormal``              ``SampledOrthonormal`` with the product mask (DCT:
                                           mask (…, H, W, C); FFT: the mask must be one real
                                           weight per frequency, shape (…, H, W, C, 1), so
                                           that it scales the real and imaginary parts alike)
``c * Mask`` / ``Conv`` / ``Sampled…``     the same class with the scaled mask / kernel
``c * A`` (any other A)                    :class:`Scaled`: ``(c²AᵀA + ρI)⁻¹ b =
                                           A.solve(b, ρ/c²)/c²``, ``(cA)⁺ = A⁺/c``, exact
                                           when A's solve is (c = 0 allowed)
``Mask + Mask``, ``Conv + Conv``,          the same class with the summed mask / kernel
``Sampled + Sampled`` (same transform, same
sign pattern)
``A.T``: ``Mask.T``, ``Conv.T``, ``A.T.T`` ``Mask``; ``Conv`` with the reversed kernel; ``A``
``A.T`` (any other A)                      :class:`Transposed`: ``(AAᵀ + ρI)⁻¹ = (I − A(AᵀA +
                                           ρI)⁻¹Aᵀ)/ρ`` (exact when A's solve is), ``(Aᵀ)⁺ =
                                           (A⁺)ᵀ`` by ``jax.linear_transpose`` (CG on the
                                           normal equations when A is solved by CG)
``stack([...])`` of masks / of convolutions diagonal ``Σ mᵢ²`` / ``Σ |Kᵢ|²``: exact
/ of SampledOrthonormal (same transform    diagonal ``Σ gᵢ`` in the common transform domain:
and sign pattern)                          exact
anything else (``A @ B``, ``A + B``,       :class:`Composed` / :class:`Sum` / :class:`Stack`
``stack``)                                 solved by conjugate gradients
=========================================  ================================================

The CG fallback stops at the relative residual ``cg_tol`` or after ``cg_maxiter`` iterations:
keyword arguments of :func:`compose`, :func:`add`, :func:`transpose` and :func:`stack` (the
operators ``@``, ``+`` and ``.T`` use the defaults of :mod:`~admm_jax.operators.base`), and
:func:`with_cg` sets them on any operator. "Same sign pattern" means both without signs or the
very same ``signs`` array object (values cannot be compared when the operator is built).

A stack measures one image several times: ``y`` is a tuple with one measurement per operator
(``stack([blur, mask]).apply(x) == (blur.apply(x), mask.apply(x))``) and the data term is
``Σᵢ ½‖yᵢ − Aᵢx‖²``.

Batches: an operand that is a batch of B operators and one that is shared combine into a batch
of B (the shared operand's arrays are broadcast); two batches must have the same size. Build a
k-space mask for ``Mask @ orthonormal_fft(shape)`` as ``Mask(mask=m[..., None],
in_shape=shape + (2,))`` with ``m`` of shape (H, W, C).
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from admm_jax.operators.base import (
    CG_MAXITER,
    CG_TOL,
    Array,
    LinearOperator,
    cg_description,
    cg_pinv,
    cg_solve,
    operator_pytree,
    static_field,
)
from admm_jax.operators.convolution import CircularConvolution
from admm_jax.operators.mask import Mask
from admm_jax.operators.orthonormal import SampledOrthonormal, pinv_diagonal

__all__ = ["Composed", "Scaled", "Sum", "Transposed", "Stack", "WithCG", "compose", "scale",
           "add", "transpose", "stack", "with_cg", "is_scalar"]


# ============================================================================ helpers
def is_scalar(c: Any) -> bool:
    """True for a real number: a Python int/float or a 0-d real array (traced or not)."""
    if isinstance(c, bool):
        return False
    if isinstance(c, numbers.Real):
        return True
    dtype = getattr(c, "dtype", None)
    return (dtype is not None and getattr(c, "ndim", None) == 0
            and (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)))


def _is_closed(op: LinearOperator) -> bool:
    return op.solve_method.startswith("closed form")


def _single_shape(shape: Any) -> bool:
    return isinstance(shape, tuple) and all(isinstance(n, (int, np.integer)) for n in shape)


def _has_leaves(op: Any) -> bool:
    return bool(jax.tree_util.tree_leaves(op))


def _align(*ops: LinearOperator) -> tuple[LinearOperator, ...]:
    """Broadcast shared operands (no batch axis) to the batch of the batched ones."""
    batches = {op.batch_shape for op in ops if op.batch_shape}
    if len(batches) > 1:
        raise ValueError(f"operands are batches of different sizes {sorted(batches)}; "
                         f"combine batches of the same size, or a batch with a single operator")
    if not batches:
        return ops
    (batch,) = batches
    return tuple(op if op.batch_shape or not _has_leaves(op) else
                 jax.tree_util.tree_map(lambda leaf: jnp.broadcast_to(leaf, batch + leaf.shape),
                                        op)
                 for op in ops)


def _batch_of(*ops: LinearOperator) -> tuple[int, ...]:
    for op in ops:
        if op.batch_shape:
            return op.batch_shape
    return ()


def _check_cg(cg_tol: Any, cg_maxiter: Any) -> None:
    if not (isinstance(cg_tol, numbers.Real) and cg_tol > 0 and np.isfinite(cg_tol)):
        raise ValueError(f"cg_tol must be a finite number > 0, got {cg_tol!r}")
    if isinstance(cg_maxiter, bool) or not isinstance(cg_maxiter, numbers.Integral) \
            or cg_maxiter < 1:
        raise ValueError(f"cg_maxiter must be an integer >= 1, got {cg_maxiter!r}")


def _check_operator(name: str, op: Any) -> None:
    if not isinstance(op, LinearOperator):
        raise TypeError(f"{name} must be a LinearOperator, got {type(op).__name__}")


def _tree_sum(values: Sequence[Array]) -> Array:
    total = values[0]
    for v in values[1:]:
        total = total + v
    return total


def _reverse_hw(a: Array) -> Array:
    """``a[..., -i mod H, -j mod W]`` on the last two axes (the kernel of the adjoint filter)."""
    return jnp.roll(jnp.flip(a, axis=(-2, -1)), shift=(1, 1), axis=(-2, -1))


def _same_signs(ops: Sequence[SampledOrthonormal]) -> bool:
    first = ops[0].signs
    return all((op.signs is None and first is None) or op.signs is first for op in ops)


def _spectrum(op: CircularConvolution) -> Array:
    """Transfer function of a convolution, (..., H, W//2+1, 1) (broadcasts over channels)."""
    return jnp.fft.rfft2(op.kernel, axes=(-2, -1))[..., None]


def _filter(x: Array, spectrum: Array, hw: tuple[int, int]) -> Array:
    fx = jnp.fft.rfft2(x, axes=(-3, -2))
    return jnp.fft.irfft2(fx * spectrum, s=hw, axes=(-3, -2)).astype(x.dtype)


# ============================================================================ nodes
@operator_pytree
class Composed(LinearOperator):
    """``A = outer ∘ inner`` (``outer @ inner``: ``inner`` acts first); solved by CG."""

    outer: LinearOperator
    inner: LinearOperator
    in_shape: tuple[int, ...] = static_field()
    cg_tol: float = static_field(default=CG_TOL)
    cg_maxiter: int = static_field(default=CG_MAXITER)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return _batch_of(self.outer, self.inner)

    @property
    def out_shape(self) -> Any:
        return self.outer.out_shape

    def apply(self, x: Array) -> Any:
        return self.outer.apply(self.inner.apply(x))

    def adjoint(self, y: Any) -> Array:
        return self.inner.adjoint(self.outer.adjoint(y))


@operator_pytree
class Scaled(LinearOperator):
    """``c·A`` for a real scalar ``c`` (``scale``: () or (B,) for a batch), exact when A is:
    ``(c²AᵀA + ρI)⁻¹ b = c⁻²(AᵀA + (ρ/c²)I)⁻¹ b`` and ``(cA)⁺ = A⁺/c`` (``c = 0``: ``b/ρ``, 0)."""

    scale: Array
    op: LinearOperator
    in_shape: tuple[int, ...] = static_field()

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return _batch_of(self.op) or tuple(jnp.shape(self.scale))

    @property
    def out_shape(self) -> Any:
        return self.op.out_shape

    @property
    def solve_method(self) -> str:
        return f"{self.op.solve_method} [of A in c·A, at ρ/c²]"

    def apply(self, x: Array) -> Any:
        return jax.tree_util.tree_map(lambda v: self.scale * v, self.op.apply(x))

    def adjoint(self, y: Any) -> Array:
        return self.scale * self.op.adjoint(y)

    def normal(self, x: Array) -> Array:
        return self.scale * self.scale * self.op.normal(x)

    def solve(self, b: Array, rho: Array | float) -> Array:
        zero = self.scale == 0
        c2 = jnp.where(zero, 1.0, self.scale * self.scale)  # safe: no 1/0 in either branch
        return jnp.where(zero, b / rho, self.op.solve(b, rho / c2) / c2).astype(b.dtype)

    def pinv(self, y: Any) -> Array:
        zero = self.scale == 0
        c = jnp.where(zero, 1.0, self.scale)
        x = self.op.pinv(y)
        return jnp.where(zero, 0.0, x / c).astype(x.dtype)


@operator_pytree
class Sum(LinearOperator):
    """``A = a + b`` (same input and output shapes); solved by CG."""

    a: LinearOperator
    b: LinearOperator
    in_shape: tuple[int, ...] = static_field()
    cg_tol: float = static_field(default=CG_TOL)
    cg_maxiter: int = static_field(default=CG_MAXITER)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return _batch_of(self.a, self.b)

    @property
    def out_shape(self) -> Any:
        return self.a.out_shape

    def apply(self, x: Array) -> Any:
        return jax.tree_util.tree_map(jnp.add, self.a.apply(x), self.b.apply(x))

    def adjoint(self, y: Any) -> Array:
        return self.a.adjoint(y) + self.b.adjoint(y)


@operator_pytree
class Transposed(LinearOperator):
    """``Aᵀ`` as an operator: input of shape ``A.out_shape``, output of shape ``A.in_shape``.

    ``solve`` uses ``(AAᵀ + ρI)⁻¹ = (I − A(AᵀA + ρI)⁻¹Aᵀ)/ρ`` when A's solve is a closed form
    (CG otherwise); ``pinv`` is the transpose of ``A.pinv`` (``(Aᵀ)⁺ = (A⁺)ᵀ``) when A's solve is
    a closed form, CG on the normal equations otherwise (a CG solve cannot be transposed)."""

    op: LinearOperator
    in_shape: tuple[int, ...] = static_field()
    cg_tol: float = static_field(default=CG_TOL)
    cg_maxiter: int = static_field(default=CG_MAXITER)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self.op.batch_shape

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.op.in_shape

    @property
    def solve_method(self) -> str:
        if _is_closed(self.op):
            return ("closed form: (AAᵀ + ρI)⁻¹ = (I − A(AᵀA + ρI)⁻¹Aᵀ)/ρ with A: "
                    + self.op.solve_method)
        return cg_description(self.cg_tol, self.cg_maxiter)

    def apply(self, x: Array) -> Array:
        return self.op.adjoint(x)

    def adjoint(self, y: Array) -> Array:
        return self.op.apply(y)

    def solve(self, b: Array, rho: Array | float) -> Array:
        if not _is_closed(self.op):
            return cg_solve(self.normal, b, rho, self.cg_tol, self.cg_maxiter)
        inner = self.op.solve(self.op.adjoint(b), rho)
        return ((b - self.op.apply(inner)) / rho).astype(b.dtype)

    def pinv(self, y: Array) -> Array:
        if not _is_closed(self.op):  # CG solves cannot be transposed: CG on our own normal
            return cg_pinv(self, y, self.cg_tol, self.cg_maxiter)
        zeros = jnp.zeros(self.op.out_shape, y.dtype)
        (x,) = jax.linear_transpose(self.op.pinv, zeros)(y)
        return x


@operator_pytree
class Stack(LinearOperator):
    """Several measurements of one image: ``apply(x) = (A₁x, ..., Aₙx)``, ``AᵀA = Σ AᵢᵀAᵢ``.

    ``rule`` (static, set by :func:`stack`): ``"masks"``, ``"convolutions"`` or
    ``"orthonormal"`` (a diagonal ``AᵀA``, exact solves), or ``"cg"``."""

    ops: tuple[LinearOperator, ...]
    in_shape: tuple[int, ...] = static_field()
    rule: str = static_field(default="cg")
    cg_tol: float = static_field(default=CG_TOL)
    cg_maxiter: int = static_field(default=CG_MAXITER)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return _batch_of(*self.ops)

    @property
    def out_shape(self) -> tuple[Any, ...]:  # type: ignore[override]
        return tuple(op.out_shape for op in self.ops)

    @property
    def solve_method(self) -> str:
        exact = {"masks": "closed form: stacked masks, AᵀA = diag(Σ mᵢ²)",
                 "convolutions": "closed form: stacked convolutions, AᵀA = F⁻¹ diag(Σ |Kᵢ|²) F",
                 "orthonormal": "closed form: stacked samplings of one orthonormal transform, "
                                "AᵀA = Uᵀ diag(Σ gᵢ) U"}
        return exact.get(self.rule) or cg_description(self.cg_tol, self.cg_maxiter)

    def apply(self, x: Array) -> tuple[Any, ...]:
        return tuple(op.apply(x) for op in self.ops)

    def adjoint(self, y: Sequence[Any]) -> Array:
        return _tree_sum([op.adjoint(yi) for op, yi in zip(self.ops, y)])

    def normal(self, x: Array) -> Array:
        return _tree_sum([op.normal(x) for op in self.ops])

    def _gram(self) -> Array:
        """The diagonal of ``AᵀA`` in the common basis of the rule."""
        if self.rule == "masks":
            return _tree_sum([op.mask * op.mask for op in self.ops])
        if self.rule == "convolutions":
            return _tree_sum([jnp.abs(_spectrum(op)) ** 2 for op in self.ops])
        return _tree_sum([op.gram_diagonal() for op in self.ops])

    def _diagonal_apply(self, x: Array, diag: Array) -> Array:
        """``Bᵀ diag B x`` in the rule's basis B (pixels, Fourier, the transform)."""
        if self.rule == "masks":
            return diag * x
        if self.rule == "convolutions":
            return _filter(x, diag, self.in_shape[:2])
        first = self.ops[0]
        return first.from_coefficients(diag * first.coefficients(x)).astype(x.dtype)

    def solve(self, b: Array, rho: Array | float) -> Array:
        if self.rule == "cg":
            return cg_solve(self.normal, b, rho, self.cg_tol, self.cg_maxiter)
        return self._diagonal_apply(b, 1.0 / (self._gram() + rho))

    def pinv(self, y: Sequence[Any]) -> Array:
        if self.rule == "cg":
            return cg_pinv(self, y, self.cg_tol, self.cg_maxiter)
        gram = self._gram()
        if self.rule == "masks":  # as Mask.pinv: invert every non-zero weight
            inv = jnp.where(gram != 0, 1.0 / jnp.where(gram != 0, gram, 1.0), 0.0)
        else:
            inv = pinv_diagonal(gram, max(op.rcond for op in self.ops))
        return self._diagonal_apply(self.adjoint(y), inv)


@operator_pytree
class WithCG(LinearOperator):
    """``op`` with its own CG settings: a closed-form ``op`` is unchanged, otherwise ``solve`` and
    ``pinv`` run CG on ``op.normal`` with ``cg_tol`` / ``cg_maxiter``."""

    op: LinearOperator
    in_shape: tuple[int, ...] = static_field()
    cg_tol: float = static_field(default=CG_TOL)
    cg_maxiter: int = static_field(default=CG_MAXITER)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self.op.batch_shape

    @property
    def out_shape(self) -> Any:
        return self.op.out_shape

    @property
    def solve_method(self) -> str:
        if _is_closed(self.op):
            return self.op.solve_method
        return cg_description(self.cg_tol, self.cg_maxiter)

    def apply(self, x: Array) -> Any:
        return self.op.apply(x)

    def adjoint(self, y: Any) -> Array:
        return self.op.adjoint(y)

    def normal(self, x: Array) -> Array:
        return self.op.normal(x)

    def solve(self, b: Array, rho: Array | float) -> Array:
        if _is_closed(self.op):
            return self.op.solve(b, rho)
        return cg_solve(self.op.normal, b, rho, self.cg_tol, self.cg_maxiter)

    def pinv(self, y: Any) -> Array:
        if _is_closed(self.op):
            return self.op.pinv(y)
        return cg_pinv(self, y, self.cg_tol, self.cg_maxiter)


# ============================================================================ builders
def _compose_exact(outer: LinearOperator, inner: LinearOperator) -> LinearOperator | None:
    """The structured product, or None (both operands already aligned)."""
    if isinstance(outer, Mask) and isinstance(inner, Mask):
        return Mask(mask=outer.mask * inner.mask, in_shape=inner.in_shape)
    if isinstance(outer, CircularConvolution) and isinstance(inner, CircularConvolution):
        h, w = inner.in_shape[0], inner.in_shape[1]
        kernel = jnp.fft.irfft2(_spectrum(outer)[..., 0] * _spectrum(inner)[..., 0], s=(h, w),
                                axes=(-2, -1)).astype(inner.kernel.dtype)
        return CircularConvolution(kernel=kernel, in_shape=inner.in_shape,
                                   rcond=max(outer.rcond, inner.rcond))
    if isinstance(outer, Mask) and isinstance(inner, SampledOrthonormal):
        m = outer.mask
        if inner.transform == "fft":
            if m.shape[-1] != 1:  # different weights on real and imaginary parts: not diagonal
                return None
            m = m[..., 0]
        mask = m * inner.mask
        signs = None if inner.signs is None else jnp.broadcast_to(inner.signs, mask.shape)
        return dataclasses.replace(inner, mask=mask, signs=signs)
    return None


def compose(outer: LinearOperator, inner: LinearOperator, *, cg_tol: float = CG_TOL,
            cg_maxiter: int = CG_MAXITER) -> LinearOperator:
    """``outer @ inner``: apply ``inner``, then ``outer`` (see the module table for the exact
    rules; otherwise a :class:`Composed` operator solved by CG with ``cg_tol``/``cg_maxiter``)."""
    _check_operator("outer", outer)
    _check_operator("inner", inner)
    _check_cg(cg_tol, cg_maxiter)
    inner_out = inner.out_shape
    if not _single_shape(inner_out):
        raise ValueError(f"cannot compose after {type(inner).__name__}: its output is a tuple "
                         f"of measurements {inner_out}, not one array")
    if tuple(outer.in_shape) != tuple(inner_out):
        raise ValueError(f"shape mismatch in A @ B: B ({type(inner).__name__}) outputs "
                         f"{tuple(inner_out)} but A ({type(outer).__name__}) takes "
                         f"{tuple(outer.in_shape)}")
    outer, inner = _align(outer, inner)
    exact = _compose_exact(outer, inner)
    if exact is not None:
        return exact
    return Composed(outer=outer, inner=inner, in_shape=tuple(inner.in_shape), cg_tol=cg_tol,
                    cg_maxiter=cg_maxiter)


def scale(c: Any, op: LinearOperator) -> LinearOperator:
    """``c·A`` for a real scalar ``c`` (Python number or 0-d array, may be traced)."""
    _check_operator("op", op)
    if not is_scalar(c):
        raise TypeError(f"c must be a real scalar (a number or a 0-d array), got "
                        f"{type(c).__name__} with shape {getattr(c, 'shape', None)}")
    if isinstance(op, Mask):
        return dataclasses.replace(op, mask=c * op.mask)
    if isinstance(op, CircularConvolution):
        return dataclasses.replace(op, kernel=c * op.kernel)
    if isinstance(op, SampledOrthonormal):
        return dataclasses.replace(op, mask=c * op.mask)
    if isinstance(op, Scaled):
        return dataclasses.replace(op, scale=c * op.scale)
    c = jnp.asarray(c)
    if not jnp.issubdtype(c.dtype, jnp.floating):
        c = c.astype(jnp.result_type(float))
    # a batch of operators maps every leaf over axis 0: the scale gets that axis too
    c = jnp.broadcast_to(c, op.batch_shape)
    return Scaled(scale=c, op=op, in_shape=tuple(op.in_shape))


def add(a: LinearOperator, b: LinearOperator, *, cg_tol: float = CG_TOL,
        cg_maxiter: int = CG_MAXITER) -> LinearOperator:
    """``a + b`` (same input and output shapes): merged for two masks, two convolutions or two
    samplings of one transform with the same signs; otherwise a :class:`Sum` solved by CG."""
    _check_operator("a", a)
    _check_operator("b", b)
    _check_cg(cg_tol, cg_maxiter)
    if tuple(a.in_shape) != tuple(b.in_shape) or a.out_shape != b.out_shape:
        raise ValueError(f"A + B needs equal shapes: {type(a).__name__} {tuple(a.in_shape)} -> "
                         f"{a.out_shape}, {type(b).__name__} {tuple(b.in_shape)} -> "
                         f"{b.out_shape}")
    same_signs = _same_signs([a, b]) if isinstance(a, SampledOrthonormal) and isinstance(
        b, SampledOrthonormal) else False  # object identity: decide before broadcasting
    a, b = _align(a, b)
    if isinstance(a, Mask) and isinstance(b, Mask):
        return Mask(mask=a.mask + b.mask, in_shape=a.in_shape)
    if isinstance(a, CircularConvolution) and isinstance(b, CircularConvolution):
        return CircularConvolution(kernel=a.kernel + b.kernel, in_shape=a.in_shape,
                                   rcond=max(a.rcond, b.rcond))
    if (isinstance(a, SampledOrthonormal) and isinstance(b, SampledOrthonormal)
            and a.transform == b.transform and same_signs):
        return dataclasses.replace(a, mask=a.mask + b.mask, rcond=max(a.rcond, b.rcond))
    return Sum(a=a, b=b, in_shape=tuple(a.in_shape), cg_tol=cg_tol, cg_maxiter=cg_maxiter)


def transpose(op: LinearOperator, *, cg_tol: float = CG_TOL,
              cg_maxiter: int = CG_MAXITER) -> LinearOperator:
    """``Aᵀ`` as an operator (``A.T``); see the module table for the rules."""
    _check_operator("op", op)
    _check_cg(cg_tol, cg_maxiter)
    if isinstance(op, Transposed):
        return op.op
    if isinstance(op, Mask):
        return op
    if isinstance(op, CircularConvolution):
        return dataclasses.replace(op, kernel=_reverse_hw(op.kernel))
    if isinstance(op, Scaled):  # (cA)ᵀ = c·Aᵀ, keeping the (possibly batched) scale leaf
        inner = transpose(op.op, cg_tol=cg_tol, cg_maxiter=cg_maxiter)
        return Scaled(scale=op.scale, op=inner, in_shape=tuple(inner.in_shape))
    out = op.out_shape
    if not _single_shape(out):
        raise ValueError(f"{type(op).__name__} outputs a tuple of measurements {out}; its "
                         f"transpose would take a tuple, which operators do not")
    return Transposed(op=op, in_shape=tuple(out), cg_tol=cg_tol, cg_maxiter=cg_maxiter)


def _stack_rule(ops: Sequence[LinearOperator]) -> str:
    if all(isinstance(op, Mask) for op in ops):
        return "masks"
    if all(isinstance(op, CircularConvolution) for op in ops):
        return "convolutions"
    if (all(isinstance(op, SampledOrthonormal) for op in ops)
            and len({op.transform for op in ops}) == 1 and _same_signs(ops)):
        return "orthonormal"
    return "cg"


def stack(ops: Sequence[LinearOperator], *, cg_tol: float = CG_TOL,
          cg_maxiter: int = CG_MAXITER) -> Stack:
    """Stack measurements of one image: ``y`` is a tuple ``(A₁x, ..., Aₙx)`` (see
    :class:`Stack`; exact for masks, convolutions, samplings of one transform; CG otherwise)."""
    ops = tuple(ops)
    if not ops:
        raise ValueError("stack needs at least one operator, got an empty sequence")
    for i, op in enumerate(ops):
        _check_operator(f"ops[{i}]", op)
    _check_cg(cg_tol, cg_maxiter)
    shapes = {tuple(op.in_shape) for op in ops}
    if len(shapes) != 1:
        raise ValueError(f"stacked operators must share in_shape, got {sorted(shapes)}")
    rule = _stack_rule(ops)  # object identity of the signs: decide before broadcasting
    ops = _align(*ops)
    return Stack(ops=ops, in_shape=tuple(ops[0].in_shape), rule=rule,
                 cg_tol=cg_tol, cg_maxiter=cg_maxiter)


def with_cg(op: LinearOperator, tol: float = CG_TOL, maxiter: int = CG_MAXITER) -> WithCG:
    """``op`` whose CG fallback (if it has one) stops at relative residual ``tol`` or after
    ``maxiter`` iterations (a closed-form ``op`` is unchanged).

    CG stops at ``maxiter`` silently (it runs inside compiled code, where nothing can be
    raised). The defaults (1e-6, 200) suit the ADMM data step, whose ``+ρI`` keeps the system
    well conditioned; ``pinv`` (the ADMM start, no ``+ρI``) of a strong blur may need far more
    iterations: compare ``op.pinv(y)`` at two ``maxiter`` to see whether it has converged."""
    _check_operator("op", op)
    _check_cg(tol, maxiter)
    return WithCG(op=op, in_shape=tuple(op.in_shape), cg_tol=tol, cg_maxiter=maxiter)
