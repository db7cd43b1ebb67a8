"""User-written operators: give ``apply``, get everything else.

Two ways to plug in your own ``A``:

1. Subclass :class:`~admm_jax.operators.base.LinearOperator` with ``@operator_pytree`` and
   implement ``apply`` (and optionally closed forms for ``adjoint`` / ``solve`` / ``pinv``).
2. Wrap a function with :class:`FunctionOperator`::

       op = FunctionOperator(fn=my_forward, params=my_arrays, in_shape=(64, 64, 3))

   where ``my_forward(params, x)`` is linear in ``x``. The adjoint comes from
   ``jax.linear_transpose`` and ``solve`` / ``pinv`` from conjugate gradients, inside ``jit``,
   ``vmap``, ``lax.scan`` and ``grad`` like the built-in operators.

Linearity is checked (:func:`check_linearity`): ``apply(a·x + b·y)`` against
``a·apply(x) + b·apply(y)`` on random inputs, when a :class:`FunctionOperator` is built from
concrete arrays and when a solver first meets an operator whose adjoint comes from
``jax.linear_transpose``. An ``x + 1`` or ``x**2`` is refused with a clear ``ValueError`` instead
of giving a wrong start or failing inside JAX's transposition rules.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from admm_jax import _checks
from admm_jax.operators.base import Array, LinearOperator, operator_pytree, static_field

#: Operator structures (pytree definitions: class, static fields, ``fn``) already found linear.
#: The check is a property of the code of ``apply``, so it runs once per structure, not on every
#: pytree rebuild (``jit``/``vmap`` rebuild operators all the time). Bounded, oldest dropped.
_LINEAR_STRUCTURES: dict[Any, None] = {}
_MAX_REMEMBERED = 256


@operator_pytree
class FunctionOperator(LinearOperator):
    """``A x = fn(params, x)``, a linear operator given only by its forward map.

    ``fn(params, x)``: ONE sample ``x`` of shape ``in_shape`` (e.g. (H, W, C), float, the
    [0, 1] image domain) → its measurement, an array of any shape (or a tuple of arrays).
    The solvers batch it themselves (``jax.vmap``); the adjoint comes from
    ``jax.linear_transpose`` and the solves from conjugate gradients.
    ``params``: any pytree of arrays; with ``batched=True`` every leaf's axis 0 is the batch
    (one operator per sample, ``fn`` then sees one sample's slice of each leaf).
    ``fn`` is a static field: pass the same function object to avoid recompiles.

    Built from concrete arrays, it checks that ``fn`` is linear in ``x`` (``ValueError``
    otherwise, see :func:`check_linearity`)."""

    params: Any
    fn: Callable[[Any, Array], Any] = static_field()
    in_shape: tuple[int, ...] = static_field()
    batched: bool = static_field(default=False)

    def __post_init__(self) -> None:
        # pytree rebuilds also come here, with tracers or placeholder leaves: check only real
        # arrays (a rebuild with placeholders must not fail or be remembered as linear)
        leaves = jax.tree_util.tree_leaves(self.params)
        if all(_is_concrete_array(leaf) for leaf in leaves):
            check_linearity(self, only_if_applies=True)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        if not self.batched:
            return ()
        leaves = jax.tree_util.tree_leaves(self.params)
        return (leaves[0].shape[0],) if leaves else ()

    @property
    def out_shape(self) -> Any:
        """Shape of one sample's measurement (a batch's leading axis is not part of it)."""
        if not self.batched:
            return super().out_shape
        one = jax.tree_util.tree_map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape[1:], leaf.dtype),
                                     self.params)
        out = jax.eval_shape(self.fn, one, jax.ShapeDtypeStruct(self.in_shape, jnp.float32))
        if isinstance(out, (tuple, list)):
            return tuple(tuple(o.shape) for o in out)
        return tuple(out.shape)

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


# --------------------------------------------------------------------------- linearity
def check_linearity(op: LinearOperator, *, rtol: float = _checks.LINEARITY_RTOL,
                    only_if_applies: bool = False) -> None:
    """Raise ``ValueError`` if ``op``, or an operator it is built from, whose adjoint comes
    from ``jax.linear_transpose`` (no hand-written closed form) is not linear.

    Compares ``apply(a·x + b·y)`` with ``a·apply(x) + b·apply(y)`` on random float32 inputs
    (:func:`admm_jax._checks.check_linear`; three calls of ``apply``). Operators with
    hand-written adjoints are trusted. Skipped when ``op`` holds traced values (inside ``jit``
    with the operator as an argument): check it once outside, or build it there. The result is
    remembered per operator structure (class, static fields, ``fn``), so repeated calls cost a
    pytree flatten. With ``only_if_applies``, an ``apply`` that raises is left for the caller to
    meet later (used while pytrees are rebuilt) instead of being reported here.
    """
    leaves = jax.tree_util.tree_leaves(op)
    if any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
        return
    for part, path in _transposed_parts(op, ()):
        key = _structure_key(part)
        if key is not None and key in _LINEAR_STRUCTURES:
            continue
        try:
            _checks.check_linear(type(part).__name__, _apply_at(op, path), part.in_shape,
                                 rtol=rtol)
        except ValueError as exc:
            if only_if_applies and exc.__cause__ is not None:  # apply raised, see check_linear
                return
            raise
        if key is not None:
            _remember(key)


def _transposed_parts(op: LinearOperator, path: tuple
                      ) -> list[tuple[LinearOperator, tuple]]:
    """``(operator, path)`` for ``op`` and the operators in its fields (recursively, a path is
    a tuple of field names and tuple indices) whose adjoint is the default transposition of
    ``apply``."""
    found = [(op, path)] if type(op).adjoint is LinearOperator.adjoint else []
    if dataclasses.is_dataclass(op):
        for f in dataclasses.fields(op):
            value = getattr(op, f.name, None)
            if isinstance(value, LinearOperator):
                found.extend(_transposed_parts(value, path + (f.name,)))
            elif isinstance(value, (tuple, list)):
                for i, child in enumerate(value):
                    if isinstance(child, LinearOperator):
                        found.extend(_transposed_parts(child, path + (f.name, i)))
    return found


def _apply_at(op: LinearOperator, path: tuple) -> Callable[[Array], Any]:
    """``x -> part.apply(x)`` for the part of ``op`` at ``path``; for a batch of operators,
    every sample's part at once (``vmap`` over the operator, as the solvers map it)."""

    def part_of(o: Any) -> LinearOperator:
        for step in path:
            o = o[step] if isinstance(step, int) else getattr(o, step)
        return o

    if not op.is_batched:
        return part_of(op).apply
    return lambda x: jax.vmap(lambda o: part_of(o).apply(x))(op)


def _structure_key(op: LinearOperator) -> Any:
    try:
        key = jax.tree_util.tree_structure(op)
        hash(key)
        return key
    except TypeError:  # unhashable static fields: check every time
        return None


def _remember(key: Any) -> None:
    if len(_LINEAR_STRUCTURES) >= _MAX_REMEMBERED:
        _LINEAR_STRUCTURES.pop(next(iter(_LINEAR_STRUCTURES)))
    _LINEAR_STRUCTURES[key] = None


def _is_concrete_array(leaf: Any) -> bool:
    if isinstance(leaf, jax.core.Tracer):
        return False
    return isinstance(leaf, (np.ndarray, np.generic, jax.Array, float, complex))
