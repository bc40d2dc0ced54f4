"""Lower a sympy expression to a graph of primitives in topological order (the tape of instructions).

Shared subexpressions become one node. Constants stay sympy numbers until an engine converts them to
its backend, so ``--digits`` sees them exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy

from . import ops
from .errors import InputError, NotFinite
from .syntax import COMPOSITES

__all__ = ["Node", "Graph", "lower", "walk"]


@dataclass(frozen=True, slots=True)
class Node:
    """One instruction: ``op`` is ``"var"``, ``"const"`` or a primitive name."""

    op: str
    inputs: tuple[int, ...] = ()
    name: str = ""
    value: Any = None  # the sympy number of a constant
    params: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class Graph:
    nodes: tuple[Node, ...]
    output: int
    variables: tuple[str, ...]  # free variables of the expression, sorted
    #: nodes the output does not need: domain guards (parts of EXPR sympy simplified away, such as 1/x
    #: in x/x), which the engines evaluate for their value only, so that x = 0 still fails there
    guards: frozenset[int] = frozenset()


class _Builder:
    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.index: dict[Node, int] = {}

    def add(self, node: Node) -> int:
        found = self.index.get(node)
        if found is not None:
            return found
        self.nodes.append(node)
        self.index[node] = len(self.nodes) - 1
        return len(self.nodes) - 1

    def const(self, value: sympy.Expr) -> int:
        return self.add(Node("const", value=_checked_constant(value)))

    def op(self, name: str, *inputs: int, **params: Any) -> int:
        return self.add(Node(name, tuple(inputs), params=tuple(sorted(params.items()))))

    def fold(self, name: str, ids: list[int]) -> int:
        acc = ids[0]
        for i in ids[1:]:
            acc = self.op(name, acc, i)
        return acc


def _checked_constant(value: sympy.Expr) -> sympy.Expr:
    """A constant subexpression must be a finite real number (``1/0`` or ``log(-1)`` is exit 3)."""
    try:
        num = sympy.N(value, 30)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError) as exc:  # sympy's own failures
        raise NotFinite(f"the constant {value} cannot be evaluated: {exc}") from None
    if not (num.is_real and num.is_finite):
        raise NotFinite(f"the constant {value} is not a finite real number")
    return value


def lower(expr: sympy.Expr, guards: tuple[sympy.Expr, ...] = ()) -> Graph:
    """Lower ``expr`` (and its domain ``guards``) to a :class:`Graph` (an iterative post-order walk: no
    recursion limit)."""
    b = _Builder()
    memo: dict[sympy.Basic, int] = {}
    stack: list[tuple[sympy.Basic, bool]] = [(g, False) for g in guards] + [(expr, False)]
    while stack:
        e, ready = stack.pop()
        if e in memo:
            continue
        if not ready:
            children = _children(e)
            stack.append((e, True))
            stack.extend((c, False) for c in children if c not in memo)
            continue
        memo[e] = _lower_one(e, b, memo)
    names = tuple(sorted({str(s) for s in expr.free_symbols} | {str(s) for g in guards for s in g.free_symbols}))
    needed = {memo[expr]}
    for i in range(memo[expr], -1, -1):  # inputs come before their node
        if i in needed:
            needed.update(b.nodes[i].inputs)
    return Graph(tuple(b.nodes), memo[expr], names, frozenset(range(len(b.nodes))) - needed)


def _children(e: sympy.Basic) -> list[sympy.Basic]:
    """The subexpressions ``_lower_one`` will look up in ``memo``."""
    if e.is_Symbol or not e.free_symbols:
        return []
    if e.is_Mul:
        return [_denominator_factor(f) if _is_reciprocal_power(f) else f for f in e.args if f.free_symbols]
    if e.is_Add:
        return [(-t) if _has_negative_coeff(t) else t for t in e.args]
    if e.is_Pow:
        return _pow_children(e)
    rewrite = COMPOSITES.get(type(e))
    if rewrite is not None:
        return [rewrite(*e.args)]
    prim = ops.BY_SYMPY.get(type(e))
    if prim is not None:
        return list(prim.parts(e)[1])
    return list(e.args)


def _is_reciprocal_power(f: sympy.Basic) -> bool:
    return bool(f.is_Pow and f.exp.is_number and f.exp.is_negative and f.free_symbols)


def _denominator_factor(f: sympy.Pow) -> sympy.Basic:
    return f.base if f.exp == -1 else sympy.Pow(f.base, -f.exp)


def _has_negative_coeff(t: sympy.Basic) -> bool:
    return bool(t.is_Mul and t.args[0].is_number and t.args[0].is_negative)


def _pow_children(e: sympy.Pow) -> list[sympy.Basic]:
    base, exp = e.args
    if exp.is_number:
        return [base]
    if base.is_number:
        return [exp]
    return [base, exp]


def _lower_one(e: sympy.Basic, b: _Builder, memo: dict[sympy.Basic, int]) -> int:
    if not e.free_symbols:
        return b.const(e)
    if e.is_Symbol:
        return b.add(Node("var", name=str(e)))
    if e.is_Add:
        terms = list(e.args)
        pos = [memo[t] for t in terms if not _has_negative_coeff(t)]
        neg = [memo[-t] for t in terms if _has_negative_coeff(t)]
        if not pos:
            return b.op("neg", b.fold("add", neg))
        acc = b.fold("add", pos)
        for n in neg:
            acc = b.op("sub", acc, n)
        return acc
    if e.is_Mul:
        return _lower_mul(e, b, memo)
    if e.is_Pow:
        return _lower_pow(e, b, memo)
    rewrite = COMPOSITES.get(type(e))
    if rewrite is not None:
        return memo[rewrite(*e.args)]
    prim = ops.BY_SYMPY.get(type(e))
    if prim is None:
        raise InputError(f"unsupported function {type(e).__name__}")
    params, operands = prim.parts(e)  # polygamma(n, x), besselj(nu, x): parameters, then operands
    return b.op(prim.name, *(memo[a] for a in operands), **params)


def _lower_mul(e: sympy.Mul, b: _Builder, memo: dict[sympy.Basic, int]) -> int:
    coeff = sympy.Integer(1)
    num: list[int] = []
    den: list[int] = []
    for f in e.args:
        if not f.free_symbols:
            coeff *= f
        elif _is_reciprocal_power(f):
            den.append(memo[_denominator_factor(f)])
        else:
            num.append(memo[f])
    acc = b.fold("mul", num) if num else None
    if coeff == -1 and acc is not None:
        acc = b.op("neg", acc)
    elif coeff != 1 or acc is None:
        c = b.const(coeff)
        acc = c if acc is None else b.op("mul", c, acc)
    if den:
        acc = b.op("div", acc, b.fold("mul", den))
    return acc


def _lower_pow(e: sympy.Pow, b: _Builder, memo: dict[sympy.Basic, int]) -> int:
    base, exp = e.args
    if exp.is_number:
        if exp == -1:
            return b.op("div", b.const(sympy.Integer(1)), memo[base])
        return b.op("pow", memo[base], p=exp)
    # b ** x = exp(x * log(b)) for a constant base; x ** y = exp(y * log(x)) in general
    if base.is_number:
        return b.op("exp", b.op("mul", b.const(sympy.log(base)), memo[exp]))
    return b.op("exp", b.op("mul", memo[exp], b.op("log", memo[base])))


def walk(
    graph: Graph,
    var: Callable[[str], Any],
    const: Callable[[sympy.Expr], Any],
    op: Callable[[int, ops.Primitive, list[Any], dict[str, Any]], Any],
) -> list[Any]:
    """Evaluate every node in order with the given leaf and operation functions; returns all values."""
    values: list[Any] = []
    for i, node in enumerate(graph.nodes):
        if node.op == "var":
            values.append(var(node.name))
        elif node.op == "const":
            values.append(const(node.value))
        else:
            values.append(op(i, ops.REGISTRY[node.op], [values[j] for j in node.inputs], dict(node.params)))
    return values


#: Unsigned integer types as wide as a row of 2, 4 or 8 booleans (numpy stores True as the byte 1).
_ROW_WORDS = {2: np.uint16, 4: np.uint32, 8: np.uint64}


def _row_words(mask: np.ndarray) -> np.ndarray | None:
    """Each row of a C-contiguous boolean array of 2, 4 or 8 columns as one unsigned integer (None for
    other shapes): a row test is then one comparison instead of a reduction across a short axis."""
    word = _ROW_WORDS.get(mask.shape[1])
    if word is None or mask.dtype != np.bool_ or not mask.flags.c_contiguous:
        return None
    return mask.view(word)[:, 0]


def rows_any(mask: np.ndarray) -> np.ndarray:
    """``mask.any(axis=1)`` for a 2-D boolean array of many rows and a few columns: numpy's reduction
    across a short inner axis takes ~13 ms per 10^6 rows; column by column ~1 ms, a row as one word less."""
    words = _row_words(mask)
    if words is not None:
        return words != 0
    out = np.array(mask[:, 0], dtype=bool, copy=True) if mask.shape[1] else np.zeros(mask.shape[0], dtype=bool)
    for j in range(1, mask.shape[1]):
        out |= mask[:, j]
    return out


def rows_all(mask: np.ndarray) -> np.ndarray:
    """``mask.all(axis=1)`` (see :func:`rows_any`)."""
    words = _row_words(mask)
    if words is not None:
        return words == words.dtype.type(int.from_bytes(b"\x01" * mask.shape[1], "little"))
    out = np.array(mask[:, 0], dtype=bool, copy=True) if mask.shape[1] else np.ones(mask.shape[0], dtype=bool)
    for j in range(1, mask.shape[1]):
        out &= mask[:, j]
    return out


def finite_mask(arr: Any) -> np.ndarray:
    """True where every entry along the leading axes is finite; works for float and mpf arrays."""
    a = np.asarray(arr)
    if a.dtype == object:
        import mpmath

        fin = np.asarray(np.frompyfunc(lambda v: bool(mpmath.isfinite(v)), 1, 1)(a), dtype=bool)
    else:
        fin = np.isfinite(a)
    return fin
