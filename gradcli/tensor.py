"""Numpy-backed tensors whose operations are recorded by the active tapes.

Every operation goes through :func:`apply`, which runs the primitive's forward kernel from the registry
and offers the result to each active tape (see :mod:`gradcli.tape`). The elementwise functions
(``sin``, ``exp``, ...) are generated from :data:`gradcli.ops.REGISTRY`, and the namespace :data:`T`
of them is what the reverse rules are written in, so a reverse sweep is itself recorded.
"""

from __future__ import annotations

import contextvars
import itertools
from types import SimpleNamespace
from typing import Any

import numpy as np

from . import ops

__all__ = ["Tensor", "Variable", "constant", "apply", "T"]

# The stack of active tapes, innermost last. A tuple in a ContextVar: no global mutable state.
ACTIVE_TAPES: contextvars.ContextVar[tuple[Any, ...]] = contextvars.ContextVar("gradcli_tapes", default=())

_uids = itertools.count()


class Tensor:
    """An immutable numpy array (float64, or mpmath numbers with ``--digits``) that tapes can record.

    >>> import gradcli
    >>> (gradcli.constant(3.0) ** 2).numpy()
    array(9.)
    """

    __slots__ = ("value", "uid", "__weakref__")
    __array_priority__ = 100  # so that ndarray + Tensor gives a Tensor

    def __init__(self, value: Any) -> None:
        if isinstance(value, Tensor):
            value = value.value
        arr = np.asarray(value)
        if arr.dtype != object:
            arr = arr.astype(np.float64, copy=False)
        self.value = arr
        self.uid = next(_uids)

    # -- conversions ---------------------------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """The value as a numpy array."""
        return self.value

    @property
    def shape(self) -> tuple[int, ...]:
        return self.value.shape

    @property
    def dtype(self) -> Any:
        return self.value.dtype

    def __float__(self) -> float:
        return float(self.value)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.value if dtype is None else self.value.astype(dtype)

    def __repr__(self) -> str:
        return f"<gradcli.{type(self).__name__}: shape={self.shape}, value={self.value!r}>"

    def __len__(self) -> int:
        return len(self.value)

    # -- operators -----------------------------------------------------------------------------------
    def __add__(self, other: Any) -> Tensor:
        return apply(ops.REGISTRY["add"], self, other)

    def __radd__(self, other: Any) -> Tensor:
        return apply(ops.REGISTRY["add"], other, self)

    def __sub__(self, other: Any) -> Tensor:
        return apply(ops.REGISTRY["sub"], self, other)

    def __rsub__(self, other: Any) -> Tensor:
        return apply(ops.REGISTRY["sub"], other, self)

    def __mul__(self, other: Any) -> Tensor:
        return apply(ops.REGISTRY["mul"], self, other)

    def __rmul__(self, other: Any) -> Tensor:
        return apply(ops.REGISTRY["mul"], other, self)

    def __truediv__(self, other: Any) -> Tensor:
        return apply(ops.REGISTRY["div"], self, other)

    def __rtruediv__(self, other: Any) -> Tensor:
        return apply(ops.REGISTRY["div"], other, self)

    def __neg__(self) -> Tensor:
        return apply(ops.REGISTRY["neg"], self)

    def __pos__(self) -> Tensor:
        return self

    def __pow__(self, other: Any) -> Tensor:
        if isinstance(other, Tensor):
            # x ** y = exp(y * log(x)) for a tensor exponent
            return T.exp(other * T.log(self))
        return apply(ops.REGISTRY["pow"], self, p=other)

    def __rpow__(self, other: Any) -> Tensor:
        # b ** x = exp(x * log(b)) for a constant base
        return T.exp(self * T.log(constant(other)))

    __hash__ = object.__hash__


class Variable(Tensor):
    """A tensor that tapes watch automatically when it is used (``watch_accessed_variables``)."""

    __slots__ = ()

    def assign(self, value: Any) -> None:
        """Replace the value in place (as tf.Variable.assign)."""
        self.value = np.asarray(value, dtype=self.value.dtype)


def constant(value: Any) -> Tensor:
    """A tensor that is not watched unless a tape is told to (``tape.watch``)."""
    return value if isinstance(value, Tensor) and not isinstance(value, Variable) else Tensor(value)


def _as_tensor(x: Any) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)


def apply(prim: ops.Primitive, *args: Any, **params: Any) -> Tensor:
    """Run ``prim`` on tensors (numbers are wrapped) and let every active tape record it."""
    inputs = tuple(_as_tensor(a) for a in args)
    values = tuple(t.value for t in inputs)
    bk = ops.Backend("mp") if any(v.dtype == object for v in values) else ops.F64
    with np.errstate(all="ignore"):
        out = Tensor(bk.call(prim, *values, **params))
    for tape in ACTIVE_TAPES.get():
        tape._record(prim, inputs, out, params)
    return out


def _make(prim: ops.Primitive) -> Any:
    def fn(*args: Any, **params: Any) -> Tensor:
        return apply(prim, *args, **params)

    fn.__name__ = prim.name
    fn.__doc__ = f"Elementwise {prim.doc}, recorded by the active tapes."
    return fn


#: The Tensor operations, one per primitive: the namespace reverse rules are written in.
T = SimpleNamespace(**{name: _make(prim) for name, prim in ops.REGISTRY.items()})
