"""How numbers are stored: float64 numpy arrays, or object arrays of ``mpmath.mpf`` (the Tape over mpf
arrays, and ``--digits`` point arrays). The ball engine's numbers are python-flint's (see
:mod:`gradcli.ball`); every backend reads the same registry (:mod:`gradcli.ops`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import mpmath
import numpy as np
import sympy

if TYPE_CHECKING:
    from .ops import Primitive

__all__ = ["Backend", "F64", "mp_backend", "backend_of"]


@dataclass(frozen=True, slots=True)
class Backend:
    """How numbers are stored: ``float64`` numpy arrays, or object arrays of ``mpf`` at ``dps`` digits."""

    name: str
    dps: int = 0

    @property
    def is_mp(self) -> bool:
        return self.name == "mp"

    def kernel(self, prim: Primitive) -> Callable[..., Any]:
        return prim.mp if self.is_mp else prim.f64

    def call(self, prim: Primitive, *args: Any, **params: Any) -> Any:
        """Apply ``prim``'s forward kernel of this backend."""
        return self.kernel(prim)(*args, **params)

    def scalar(self, value: Any) -> Any:
        """A python/sympy number as this backend's scalar."""
        if self.is_mp:
            if isinstance(value, sympy.Basic):
                return mpmath.mpf(sympy.N(value, self.dps + 10))
            return mpmath.mpf(value)
        return float(value)

    def array(self, values: Any) -> np.ndarray:
        """Convert numbers (or arrays of them) to this backend's array type."""
        if self.is_mp:
            arr = np.asarray(values, dtype=object)
            return np.vectorize(self.scalar, otypes=[object])(arr) if arr.size else arr
        return np.asarray(values, dtype=np.float64)

    def params(self, params: Any) -> dict[str, Any]:
        """A node's constant parameters (a dict or (name, value) pairs) for this backend's rules: the
        exponent ``p`` as this backend's scalar; the others (integer orders, a Bessel order) as they are."""
        items = params.items() if isinstance(params, dict) else params
        return {k: (self.scalar(v) if k == "p" else v) for k, v in items}

    def zeros(self, shape: tuple[int, ...]) -> np.ndarray:
        if self.is_mp:
            out = np.empty(shape, dtype=object)
            out.fill(mpmath.mpf(0))
            return out
        return np.zeros(shape)



F64 = Backend("float64")


def mp_backend(dps: int) -> Backend:
    """The arbitrary-precision backend; the caller sets ``mpmath.mp.dps`` for the computation."""
    return Backend("mp", dps)


def backend_of(arr: Any) -> Backend:
    a = np.asarray(arr)
    return Backend("mp", mpmath.mp.dps) if a.dtype == object else F64
