"""Dense matrix operators (compressive sensing) with Woodbury solves."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from admm_jax import _checks
from admm_jax.operators.base import Array, LinearOperator, operator_pytree, static_field


@operator_pytree
class DenseOperator(LinearOperator):
    """``A x = M vec(x)`` for a dense ``M`` of shape (m, D), ``D = H·W·C`` (row-major vec).

    The eigendecomposition ``M Mᵀ = U diag(λ) Uᵀ`` (m×m) is computed once in :meth:`create`, so
    ``solve`` for any ρ is two matrix-vector products with ``M`` and two with ``U``:
    ``(MᵀM + ρI)⁻¹ b = (b − Mᵀ U diag(1/(ρ+λ)) Uᵀ M b) / ρ`` (Woodbury), and
    ``M⁺ y = Mᵀ U diag(1/λ) Uᵀ y`` over the singular values ``√λ`` above ``rcond · max √λ``
    (and above ``√(m·eps) · max √λ``, the resolution of the eigendecomposition of ``M Mᵀ``).
    """

    matrix: Array  # (..., m, D)
    eigvecs: Array  # (..., m, m)
    eigvals: Array  # (..., m)
    in_shape: tuple[int, ...] = static_field()
    rcond: float = static_field(default=1e-6)

    @classmethod
    def create(cls, matrix: Array, in_shape: tuple[int, ...], rcond: float = 1e-6) -> "DenseOperator":
        matrix = jnp.asarray(matrix)
        if matrix.shape[-1] != math.prod(in_shape):
            raise ValueError(
                f"matrix has {matrix.shape[-1]} columns but in_shape {in_shape} has "
                f"{math.prod(in_shape)} entries")
        gram = matrix @ jnp.swapaxes(matrix, -1, -2)
        eigvals, eigvecs = jnp.linalg.eigh(gram)
        return cls(matrix=matrix, eigvecs=eigvecs, eigvals=eigvals, in_shape=tuple(in_shape),
                   rcond=rcond)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(self.matrix.shape[:-2])

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (self.matrix.shape[-2],)

    def apply(self, x: Array) -> Array:
        return self.matrix @ x.reshape(-1)

    def adjoint(self, y: Array) -> Array:
        return (self.matrix.T @ y).reshape(self.in_shape)

    def solve(self, b: Array, rho: Array | float) -> Array:
        mb = self.matrix @ b.reshape(-1)
        w = self.eigvecs @ ((self.eigvecs.T @ mb) / (rho + self.eigvals))
        return (b - self.adjoint(w)) / rho

    def pinv(self, y: Array) -> Array:
        # λ are squared singular values: compare singular values, as numpy.linalg.pinv does.
        # eigh of M Mᵀ resolves λ only to ~eps·max λ, so the relative cutoff on λ is never below
        # m·eps (it is rcond² = 1e-12 in float64; in float32 the noise eigenvalues of a
        # rank-deficient M would otherwise be inverted).
        eps = jnp.finfo(self.eigvals.dtype).eps
        rel = max(self.rcond ** 2, self.eigvals.shape[-1] * float(eps))
        cutoff = rel * jnp.max(self.eigvals)
        keep = self.eigvals > cutoff
        inv = jnp.where(keep, 1.0 / jnp.where(keep, self.eigvals, 1.0), 0.0)
        return self.adjoint(self.eigvecs @ (inv * (self.eigvecs.T @ y)))


def gaussian_cs(key: Array, shape: tuple[int, int, int] = (64, 64, 3), ratio: float = 0.1,
                dtype=jnp.float32) -> DenseOperator:
    """Gaussian compressive sensing: ``m = max(1, round(ratio·D))`` rows, entries N(0, 1)/√m.

    ``ratio`` in (0, 1]: the fraction of the ``D = H·W·C`` entries that is measured.
    """
    _checks.check_in_range("ratio", ratio, 0.0, 1.0, low_open=True)
    d = math.prod(shape)
    m = max(1, int(round(ratio * d)))
    matrix = jax.random.normal(key, (m, d), dtype) / jnp.sqrt(jnp.asarray(m, dtype))
    return DenseOperator.create(matrix, shape)
