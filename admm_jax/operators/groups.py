"""A batch made of groups of operators of different kinds, each group computed on its own.

:class:`SelectOperator` lets one compiled step mix problems, but under ``vmap`` it evaluates
every branch for every sample: K kinds of operator cost K data steps per sample.
:class:`OperatorGroups` is the other way to mix: the batch is cut, statically, into G
contiguous groups; group ``g`` holds ``sizes[g]`` samples and a *batch of operators of one
kind* (leaves with leading axis ``sizes[g]``; kinds may repeat). Every per-sample function runs
once per group, on that group's samples only, so a mixed batch costs what its samples cost.

Layout of a batch of B = Σ sizes samples:

* images, ``Aᵀy``, ρ and every other per-sample array: leading axis B, group g in the rows
  ``offsets[g] : offsets[g] + sizes[g]``;
* measurements ``y``: a tuple with one entry per group, entry g of leading axis ``sizes[g]``
  (groups measure different shapes). When every group's measurement has the same shape, a
  single array of leading axis B is accepted too.

It is a batch-only structure: the solvers in :mod:`admm_jax.admm` and
:func:`~admm_jax.operators.base.vmap_over_batch` accept it wherever they accept a batch of
operators; it has no meaning for one sample, so its per-sample methods raise.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from admm_jax import _checks
from admm_jax.operators.base import Array, LinearOperator, operator_pytree, static_field


@operator_pytree
class OperatorGroups(LinearOperator):
    """G groups of batched operators over one batch (see the module docstring).

    ``groups``: G operators, each a batch or one shared by its group; ``sizes``: the static number of samples of each group (the
    leading axis of that group's leaves); ``names``: a label per group (logs, metrics).
    """

    groups: tuple[LinearOperator, ...]
    in_shape: tuple[int, ...] = static_field()
    sizes: tuple[int, ...] = static_field()
    names: tuple[str, ...] = static_field(default=())

    @classmethod
    def create(cls, groups: tuple[LinearOperator, ...] | list[LinearOperator],
               names: tuple[str, ...] | None = None,
               sizes: tuple[int, ...] | None = None) -> "OperatorGroups":
        """Group operators sharing one ``in_shape``: each a batch (``batch_shape == (n_g,)``)
        or one operator shared by its group's samples (then its entry of ``sizes`` is
        required; e.g. a :class:`BoxDownsample`, which has no arrays to batch)."""
        groups = tuple(groups)
        if not groups:
            raise ValueError("OperatorGroups needs at least one group")
        if sizes is not None and len(sizes) != len(groups):
            raise ValueError(f"sizes has {len(sizes)} entries for {len(groups)} groups")
        resolved = []
        for g, op in enumerate(groups):
            if not isinstance(op, LinearOperator):
                raise TypeError(f"groups[{g}] must be a LinearOperator, got {type(op).__name__}")
            if isinstance(op, OperatorGroups):
                raise TypeError(f"groups[{g}] is itself an OperatorGroups; flatten the groups")
            if len(op.batch_shape) > 1:
                raise ValueError(f"groups[{g}] ({type(op).__name__}) must be one operator or "
                                 f"a batch with one leading axis, got batch_shape "
                                 f"{op.batch_shape}")
            given = None if sizes is None else sizes[g]
            if op.batch_shape:
                if given is not None and given != op.batch_shape[0]:
                    raise ValueError(f"sizes[{g}] = {given} but groups[{g}] is a batch of "
                                     f"{op.batch_shape[0]}")
                resolved.append(int(op.batch_shape[0]))
            else:
                if given is None:
                    raise ValueError(f"groups[{g}] ({type(op).__name__}) is a single operator; "
                                     f"give its number of samples in sizes")
                resolved.append(_checks.check_int(f"sizes[{g}]", given, minimum=1))
        shapes = {op.in_shape for op in groups}
        if len(shapes) != 1:
            raise ValueError(f"all groups must share in_shape, got {sorted(shapes)}")
        names = tuple(names) if names is not None else tuple(
            f"{type(op).__name__}[{g}]" for g, op in enumerate(groups))
        if len(names) != len(groups):
            raise ValueError(f"names has {len(names)} entries for {len(groups)} groups")
        return cls(groups=groups, in_shape=groups[0].in_shape, sizes=tuple(resolved),
                   names=names)

    # ------------------------------------------------------------------ structure
    @property
    def batch_shape(self) -> tuple[int, ...]:
        return (sum(self.sizes),)

    @property
    def offsets(self) -> tuple[int, ...]:
        """First row of each group in the batch."""
        out, start = [], 0
        for n in self.sizes:
            out.append(start)
            start += n
        return tuple(out)

    @property
    def out_shape(self) -> tuple[tuple[int, ...], ...]:  # type: ignore[override]
        """One measurement shape per group (a measurement batch is a tuple, one per group)."""
        return tuple(tuple(op.out_shape) for op in self.groups)

    @property
    def solve_method(self) -> str:
        listed = "; ".join(f"[{n}] {op.solve_method}" for n, op in zip(self.names, self.groups))
        exact = all(op.solve_method.startswith("closed form") for op in self.groups)
        return f"{'closed form' if exact else 'cg'}: per group: {listed}"

    def group_index(self) -> Array:
        """(B,) int32: the group of every sample."""
        return jnp.concatenate([jnp.full((n,), g, jnp.int32) for g, n in enumerate(self.sizes)])

    # ------------------------------------------------------------------ batched evaluation
    def split(self, value: Any, g: int) -> Any:
        """Group ``g``'s part of a per-sample argument: entry g of a per-group tuple/list, or
        the group's rows of an array (or pytree of arrays) with leading axis B."""
        if isinstance(value, (tuple, list)):
            if len(value) != len(self.groups):
                raise ValueError(f"a per-group argument (tuple) must have one entry per group "
                                 f"({len(self.groups)}: {self.names}), got {len(value)}")
            return value[g]
        start, n = self.offsets[g], self.sizes[g]
        return jax.tree_util.tree_map(lambda a: a[start:start + n], value)

    def map(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(op_i, *args_i)`` for every sample i, one ``vmap`` per group.

        Results that have the same shape in every group are concatenated along the batch axis
        (images, scalars per sample); otherwise a tuple with one entry per group is returned
        (measurements of different shapes)."""
        outs = [jax.vmap(fn, in_axes=(0 if op.is_batched else None,) + (0,) * len(args))(
                    op, *(self.split(a, g) for a in args))
                for g, op in enumerate(self.groups)]
        return _join(outs)

    # ------------------------------------------------------------------ per sample: none
    def _one_sample(self, *_: Any) -> Any:
        raise TypeError("OperatorGroups is a batch of operators of several kinds; it has no "
                        "per-sample apply/adjoint/solve (use vmap_over_batch or the solvers)")

    apply = adjoint = normal = solve = pinv = _one_sample


def _join(outs: list[Any]) -> Any:
    structs = [jax.tree_util.tree_structure(o) for o in outs]
    if all(s == structs[0] for s in structs):
        leaves = [jax.tree_util.tree_leaves(o) for o in outs]
        if all(all(a.shape[1:] == b.shape[1:] for a, b in zip(leaves[0], lv))
               for lv in leaves[1:]):
            return jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs, axis=0), *outs)
    return tuple(outs)
