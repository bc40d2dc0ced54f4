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

import mpmath
import numpy as np

from . import ops
from .errors import InputError

__all__ = ["Tensor", "Variable", "constant", "apply", "T", "sqrt", "square", "maximum", "minimum", "reduce_sum"]

# The stack of active tapes, innermost last. A tuple in a ContextVar: no global mutable state.
ACTIVE_TAPES: contextvars.ContextVar[tuple[Any, ...]] = contextvars.ContextVar("gradcli_tapes", default=())

_uids = itertools.count()


class Tensor:
    """An immutable numpy array (float64, or mpmath numbers with ``--digits``) that tapes can record.

    >>> import gradcli
    >>> print((gradcli.constant(3.0) ** 2).numpy())
    9.0
    """

    __slots__ = ("value", "uid", "__weakref__")
    __array_priority__ = 100  # so that ndarray + Tensor gives a Tensor

    def __init__(self, value: Any) -> None:
        self.value = _to_array(value)
        self.uid = next(_uids)

    # -- conversions ---------------------------------------------------------------------------------
    def numpy(self) -> Any:
        """The value as a numpy array; a numpy scalar (or an mpf) for a 0-d tensor, as in TensorFlow."""
        return self.value[()] if self.value.ndim == 0 else self.value

    @property
    def shape(self) -> tuple[int, ...]:
        return self.value.shape

    @property
    def dtype(self) -> Any:
        return self.value.dtype

    @property
    def ndim(self) -> int:
        return self.value.ndim

    @property
    def size(self) -> int:
        return int(self.value.size)

    def __float__(self) -> float:
        return float(self.value)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.value if dtype is None else self.value.astype(dtype)

    def __repr__(self) -> str:
        return f"<gradcli.{type(self).__name__}: shape={self.shape}, value={self.value!r}>"

    def __format__(self, spec: str) -> str:
        return format(self.value.item() if self.value.ndim == 0 else self.value, spec)

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

    def __abs__(self) -> Tensor:
        return apply(ops.REGISTRY["abs"], self)

    def __pow__(self, other: Any) -> Tensor:
        if not isinstance(other, Tensor) and np.ndim(other) > 0:
            other = constant(other)  # an array of exponents: elementwise, through exp and log
        if isinstance(other, Tensor):
            # x ** y = exp(y * log(x)) for a tensor exponent
            return T.exp(other * T.log(self))
        return apply(ops.REGISTRY["pow"], self, p=other)

    def __rpow__(self, other: Any) -> Tensor:
        # b ** x = exp(x * log(b)) for a constant base
        return T.exp(self * T.log(constant(other)))

    __hash__ = object.__hash__


class Variable(Tensor):
    """A tensor that tapes watch automatically when it is used (``watch_accessed_variables``).

    Args:
        value: a number or array (float64), or an object array of ``mpmath.mpf``.
        trainable: watched on access (as tf.Variable); False leaves it to ``tape.watch``.

    >>> import gradcli
    >>> x = gradcli.Variable(3.0)
    >>> with gradcli.Tape() as tape:
    ...     y = x**2
    >>> float(tape.gradient(y, x))
    6.0
    """

    __slots__ = ("trainable",)

    def __init__(self, value: Any, trainable: bool = True) -> None:
        super().__init__(value)
        self.trainable = trainable

    def assign(self, value: Any) -> Variable:
        """Replace the value in place (as tf.Variable.assign); the shape may not change."""
        new = _to_array(value)
        if new.shape != self.value.shape:
            raise InputError(f"cannot assign a value of shape {new.shape} to a Variable of shape {self.value.shape}")
        self.value = new
        return self

    def assign_add(self, delta: Any) -> Variable:
        """Add ``delta`` in place (as tf.Variable.assign_add)."""
        return self.assign(self.value + _to_array(delta))

    def assign_sub(self, delta: Any) -> Variable:
        """Subtract ``delta`` in place (as tf.Variable.assign_sub)."""
        return self.assign(self.value - _to_array(delta))


def constant(value: Any) -> Tensor:
    """A tensor (float64, or mpf objects) that tapes watch only when told to (``tape.watch``).

    >>> import gradcli, numpy as np
    >>> gradcli.constant(np.linspace(0, 1, 3)).numpy().tolist()
    [0.0, 0.5, 1.0]
    """
    return value if isinstance(value, Tensor) and not isinstance(value, Variable) else Tensor(value)


def _to_array(value: Any) -> np.ndarray:
    """float64 for numbers (an object array of mpf stays as it is); anything else is an InputError."""
    if isinstance(value, Tensor):
        return value.value
    arr = np.asarray(value)
    if arr.dtype == object:
        for v in arr.flat:
            if not isinstance(v, (mpmath.mpf, int, float)) or isinstance(v, bool):
                raise InputError(f"an object array must hold mpmath.mpf numbers, got {type(v).__name__}")
        return arr
    if arr.dtype.kind not in "biuf":
        raise InputError(f"gradcli tensors hold real numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


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
        # a constant parameter may come first, as in EXPR: besselj(nu, x) is besselj(x, nu=nu)
        lead = len(args) - prim.arity
        if 0 < lead <= len(prim.params):
            given = dict(zip(prim.params, args[:lead]))
            twice = sorted(set(given) & set(params))
            if twice:
                raise TypeError(f"{prim.name}() got {twice[0]!r} twice (positionally and by name)")
            params, args = {**given, **params}, args[lead:]
        return apply(prim, *args, **params)

    fn.__name__ = prim.name
    fn.__doc__ = f"Elementwise {prim.doc}, recorded by the active tapes."
    return fn


#: The Tensor operations, one per primitive: the namespace reverse rules are written in.
T = SimpleNamespace(**{name: _make(prim) for name, prim in ops.REGISTRY.items()})


# ---- composites of the primitives (tf names) ------------------------------------------------------------
def sqrt(x: Any) -> Tensor:
    """Elementwise square root, recorded by the active tapes."""
    return T.pow(x, p=0.5)


def square(x: Any) -> Tensor:
    """Elementwise square (tf.square), recorded by the active tapes."""
    return T.mul(x, x)


def maximum(a: Any, b: Any) -> Tensor:
    """Elementwise maximum (tf.maximum) as (a + b + |a - b|)/2: no derivative at a tie (nan)."""
    return (_as_tensor(a) + b + T.abs(_as_tensor(a) - b)) * 0.5


def minimum(a: Any, b: Any) -> Tensor:
    """Elementwise minimum (tf.minimum) as (a + b - |a - b|)/2: no derivative at a tie (nan)."""
    return (_as_tensor(a) + b - T.abs(_as_tensor(a) - b)) * 0.5


def reduce_sum(x: Any) -> Tensor:
    """The sum of all entries (tf.reduce_sum without an axis), recorded by the active tapes.

    >>> import gradcli, numpy as np
    >>> x = gradcli.constant(np.array([1.0, 2.0, 3.0]))
    >>> with gradcli.Tape() as t:
    ...     t.watch(x)
    ...     s = gradcli.reduce_sum(x * x)
    >>> float(s), t.gradient(s, x).numpy().tolist()
    (14.0, [2.0, 4.0, 6.0])
    """
    return T.sum_to(x, shape=())
