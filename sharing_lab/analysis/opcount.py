"""Count the aten operators a piece of code sends to kernels (DESIGN §7: launches before time).

A small supernet on a GPU is bound by kernel launches and host work, not by FLOPs, so the per-step number of
operators is the first performance target and, on a CPU, a deterministic one. :class:`OpCounter` is a
``TorchDispatchMode``: it sees every aten operator after autograd and composite decompositions, i.e. every call
that reaches a backend kernel, in the forward, in the backward (on the CPU the autograd engine runs the
backward on the calling thread) and in the optimiser.

Two counts:

- ``dispatched``: every operator.
- ``launching``: those that would launch a kernel on a GPU. The rule: an operator does **not** launch when it
  only makes a view or changes metadata (its schema returns an alias of an input, ``OpOverload.is_view``:
  ``view``, ``t``, ``transpose``, ``permute``, ``expand``, ``slice``, ``select``, ``unsqueeze``, ``squeeze``,
  ``alias``, ``detach``, ``as_strided``, ``unbind``, ``split``, …), when it is in :data:`NON_LAUNCHING`
  (views whose schemas do not say so, such as ``_unsafe_view``, and pure allocations such as ``empty``,
  ``empty_strided``, ``empty_like``; an allocation fills nothing), or when it returns nothing but a Python
  scalar of metadata (``sym_size`` and the like). Everything else launches, ``zeros``/``zero_``/``fill_``
  (a fill kernel) and ``copy_`` included.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# Operators (by overload packet name) that neither compute nor fill: views without alias annotations and plain
# allocations.
NON_LAUNCHING = frozenset({
    "_unsafe_view", "_reshape_alias", "view", "alias", "lift_fresh", "detach", "_has_compatible_shallow_copy_type",
    "empty", "empty_strided", "empty_like", "new_empty", "new_empty_strided", "resize_", "set_",
    "sym_size", "sym_stride", "sym_numel", "sym_storage_offset", "is_same_size", "is_nonzero_metadata",
})


def launches(func: torch._ops.OpOverload) -> bool:
    """Whether ``func`` would launch a kernel on a GPU (the rule of this module's docstring)."""
    if getattr(func, "is_view", False):
        return False
    return func.overloadpacket.__name__ not in NON_LAUNCHING


class OpCounter(TorchDispatchMode):
    """Counts the aten operators dispatched while active (``with OpCounter() as counter: …``).

    ``dispatched`` and ``launching`` as in the module docstring; ``by_op`` counts each overload by name.
    """

    def __init__(self) -> None:
        super().__init__()
        self.dispatched = 0
        self.launching = 0
        self.by_op: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.dispatched += 1
        self.launching += launches(func)
        self.by_op[str(func)] += 1
        return func(*args, **(kwargs or {}))

    def counts(self) -> dict[str, int]:
        return {"dispatched": self.dispatched, "launching": self.launching}


def count_ops(fn: Callable[[], object]) -> OpCounter:
    """Run ``fn()`` under an :class:`OpCounter` and return the counter."""
    with OpCounter() as counter:
        fn()
    return counter
