"""The surface syntax: the function names EXPR may call, their aliases, and the composites (sympy
functions rewritten into the registry's primitives before lowering). All of it follows from the
registry (:mod:`gradcli.ops`): a public primitive is a function of EXPR under its own name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import reduce
from typing import Any

import sympy

from .ops import REGISTRY, Primitive

__all__ = ["Function", "FUNCTIONS", "ALIASES", "COMPOSITES"]


# ---- composites: sympy classes rewritten into primitives before lowering -----------------------------
def _max2(a: sympy.Expr, b: sympy.Expr) -> sympy.Expr:
    # max(a, b) = (a + b + |a - b|)/2: at a tie abs has no derivative, so neither has max (exit 3).
    return (a + b + sympy.Abs(a - b, evaluate=False)) / 2


def _min2(a: sympy.Expr, b: sympy.Expr) -> sympy.Expr:
    return (a + b - sympy.Abs(a - b, evaluate=False)) / 2


COMPOSITES: dict[Any, Callable[..., sympy.Expr]] = {
    sympy.Max: lambda *args: reduce(_max2, args),
    sympy.Min: lambda *args: reduce(_min2, args),
    # sympy's own rewrites can produce these (tan(x + pi/2) is -cot(x)); they are quotients of primitives
    sympy.cot: lambda u: sympy.cos(u) / sympy.sin(u),
    sympy.sec: lambda u: 1 / sympy.cos(u),
    sympy.csc: lambda u: 1 / sympy.sin(u),
    sympy.coth: lambda u: sympy.cosh(u) / sympy.sinh(u),
    sympy.sech: lambda u: 1 / sympy.cosh(u),
    sympy.csch: lambda u: 1 / sympy.sinh(u),
    sympy.acot: lambda u: sympy.atan(1 / u),
}


# ---- surface syntax: the function names EXPR may call -------------------------------------------------
@dataclass(frozen=True, slots=True)
class Function:
    """A function name the parser accepts: how many arguments, the sympy object it builds, and what
    the parser must know of it (its primitive's ``guarded`` and ``factorial_like``)."""

    name: str
    build: Callable[..., sympy.Expr]
    min_args: int
    max_args: int
    doc: str
    guarded: bool = False
    factorial_like: bool = False


def _log(x: sympy.Expr, base: sympy.Expr | None = None) -> sympy.Expr:
    return sympy.log(x) if base is None else sympy.log(x, base)


def _function(p: Primitive) -> Function:
    count = p.arity + len(p.params)  # parameters come first: besselj(nu, x)
    return Function(p.name, p.sympy, count, count, p.doc, p.guarded, p.factorial_like)


FUNCTIONS: dict[str, Function] = {p.name: _function(p) for p in REGISTRY.values() if p.public}
FUNCTIONS.update(
    {
        "log": Function("log", _log, 1, 2, "log(x) natural logarithm; log(x, b) base b", guarded=True),
        "sqrt": Function("sqrt", sympy.sqrt, 1, 1, "square root", guarded=True),
        "min": Function("min", sympy.Min, 2, 64, "minimum of its arguments"),
        "max": Function("max", sympy.Max, 2, 64, "maximum of its arguments"),
    }
)


#: Other spellings users type: name -> (function, fixed base of log or None).
ALIASES: dict[str, tuple[str, int | None]] = {
    "ln": ("log", None), "log10": ("log", 10), "log2": ("log", 2),
    **{f"arc{f}": (f"a{f}", None) for f in ("sin", "cos", "tan", "sinh", "cosh", "tanh")},
    "arctan2": ("atan2", None), "pow": ("pow", None),
}  # fmt: skip
