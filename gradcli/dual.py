"""Forward-over-reverse Hessians over a :class:`~gradcli.graph.Graph`: the reverse sweep on dual numbers.

A dual number carries a value and a tangent: the normalized Taylor coefficients of orders 0 and 1, an
array of shape ``(2, N)``. A primitive's forward rule on duals is its registry Taylor rule at order 1,
so the reverse rules, written against a namespace of tensor operations, run unchanged on duals when
handed this module's namespace. The tangent of the adjoint of x_j, seeded with direction e_i, is
d²f/dx_i dx_j (Griewank & Walther, *Evaluating Derivatives*, ch. 5, second-order adjoints).

The n directions e_1..e_n are laid out along the points axis (``N = n * P``), so one forward and one
reverse sweep of numpy operations give the whole Hessian at every point: O(n) times the cost of f in
arithmetic, but a Python-level cost of one sweep, where reverse-over-reverse needs n sweeps.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from . import ops
from .graph import Graph, walk

__all__ = ["Dual", "hessian", "BLOCK"]

#: Dual entries (nodes x columns) one sweep may hold, bounding memory: larger problems run in blocks
#: of points and of directions.
BLOCK = 1 << 22


class Dual:
    """A value and its tangent, as order-0 and order-1 normalized coefficients ``(2, N)`` (or ``(2, 1)``)."""

    __slots__ = ("c", "bk")

    def __init__(self, c: np.ndarray, bk: ops.Backend) -> None:
        self.c = c
        self.bk = bk

    def _lift(self, other: Any) -> Dual:
        if isinstance(other, Dual):
            return other
        c = self.bk.zeros((2, 1))
        c[0] = self.bk.scalar(other)
        return Dual(c, self.bk)

    def _apply(self, name: str, *args: Any, **params: Any) -> Dual:
        duals = [self._lift(a) for a in args]
        return Dual(_RULES[name](self.bk, *(d.c for d in duals), **params), self.bk)

    def __add__(self, other: Any) -> Dual:
        return self._apply("add", self, other)

    def __radd__(self, other: Any) -> Dual:
        return self._apply("add", other, self)

    def __sub__(self, other: Any) -> Dual:
        return self._apply("sub", self, other)

    def __rsub__(self, other: Any) -> Dual:
        return self._apply("sub", other, self)

    def __mul__(self, other: Any) -> Dual:
        return self._apply("mul", self, other)

    def __rmul__(self, other: Any) -> Dual:
        return self._apply("mul", other, self)

    def __truediv__(self, other: Any) -> Dual:
        return self._apply("div", self, other)

    def __rtruediv__(self, other: Any) -> Dual:
        return self._apply("div", other, self)

    def __neg__(self) -> Dual:
        return self._apply("neg", self)


# Arithmetic on (value, tangent) directly: the order-1 case of the registry's series rules, without
# their generality (most operations of a reverse sweep are these, so this is the sweep's speed).
def _pack(c0: np.ndarray, c1: np.ndarray) -> np.ndarray:
    if np.shape(c0) != np.shape(c1):
        c0, c1 = np.broadcast_arrays(c0, c1)
    return np.stack((c0, c1))


def _add(bk: ops.Backend, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a + b


def _sub(bk: ops.Backend, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a - b


def _neg(bk: ops.Backend, a: np.ndarray) -> np.ndarray:
    return -a


def _mul(bk: ops.Backend, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # (a0 + a1 t)(b0 + b1 t) = a0 b0 + (a0 b1 + a1 b0) t
    return _pack(a[0] * b[0], a[0] * b[1] + a[1] * b[0])


def _div(bk: ops.Backend, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # q0 = a0/b0, q1 = (a1 - b1 q0)/b0
    q0 = a[0] / b[0]
    return _pack(q0, (a[1] - b[1] * q0) / b[0])


def _chain(value: str, slope: Any) -> Any:
    """f(u0 + u1 t) = f(u0) + f'(u0) u1 t for a unary f, f' given from the backend's kernels."""
    prim = ops.REGISTRY[value]

    def rule(bk: ops.Backend, u: np.ndarray, **params: Any) -> np.ndarray:
        return _pack(bk.call(prim, u[0], **params), slope(bk, u[0], **params) * u[1])

    return rule


def _k(name: str, bk: ops.Backend, x: Any, **params: Any) -> Any:
    return bk.call(ops.REGISTRY[name], x, **params)


_RULES: dict[str, Any] = {name: prim.taylor for name, prim in ops.REGISTRY.items() if prim.taylor is not None}
_RULES.update(
    add=_add, sub=_sub, neg=_neg, mul=_mul, div=_div,
    # (x^p)' = p x^(p-1); exp' = exp; log' = 1/x; sin' = cos; cos' = -sin
    pow=_chain("pow", lambda bk, x, p: _k("pow", bk, x, p=p - 1) * p if p != 0 else x * 0),
    exp=_chain("exp", lambda bk, x: _k("exp", bk, x)),
    log=_chain("log", lambda bk, x: 1 / x),
    sin=_chain("sin", lambda bk, x: _k("cos", bk, x)),
    cos=_chain("cos", lambda bk, x: -_k("sin", bk, x)),
)


def _namespace() -> SimpleNamespace:
    """The reverse rules' ``T``: every registry primitive with a Taylor rule, acting on duals."""

    def make(name: str) -> Any:
        def fn(x: Dual, *rest: Any, **params: Any) -> Dual:
            return x._apply(name, x, *rest, **params)

        fn.__name__ = name
        return fn

    return SimpleNamespace(**{name: make(name) for name, prim in ops.REGISTRY.items() if prim.taylor is not None})


D = _namespace()


def _sweep(graph: Graph, wrt: list[str], dirs: list[int], point: dict[str, np.ndarray], bk: ops.Backend) -> np.ndarray:
    """Rows ``dirs`` of the Hessian at the points given (arrays of length P): shape (P, len(dirs), n)."""
    npts = next(iter(point.values())).shape[0] if point else 1
    nd = len(dirs)

    def var(name: str) -> Dual:
        c = bk.zeros((2, nd * npts))
        c[0] = np.tile(point[name], nd)
        if name in wrt:
            k = wrt.index(name)
            for slot, d in enumerate(dirs):
                if d == k:
                    c[1, slot * npts : (slot + 1) * npts] = bk.scalar(1)
        return Dual(c, bk)

    def const(value: Any) -> Dual:
        c = bk.zeros((2, 1))
        c[0] = bk.scalar(value)
        return Dual(c, bk)

    def op(i: int, prim: ops.Primitive, args: list[Dual], params: dict[str, Any]) -> Dual:
        return Dual(_RULES[prim.name](bk, *(a.c for a in args), **bk.params(params)), bk)

    with np.errstate(all="ignore"):
        return _reverse(graph, wrt, walk(graph, var, const, op), const, bk, nd, npts)


def _reverse(graph: Graph, wrt: list[str], values: list[Dual], const: Any, bk: ops.Backend, nd: int,
             npts: int) -> np.ndarray:
    """The reverse sweep on duals; the tangents of the variables' adjoints are the Hessian rows."""
    adjoint: list[Dual | None] = [None] * len(graph.nodes)
    adjoint[graph.output] = const(1)
    for i in range(len(graph.nodes) - 1, -1, -1):
        node, g = graph.nodes[i], adjoint[i]
        if g is None or node.op in ("var", "const"):
            continue
        inputs = [values[j] for j in node.inputs]
        cts = ops.REGISTRY[node.op].vjp(D, g, values[i], *inputs, **bk.params(node.params))
        for j, ct in zip(node.inputs, cts):
            if ct is None or graph.nodes[j].op == "const":
                continue
            adjoint[j] = ct if adjoint[j] is None else adjoint[j] + ct
    out = bk.zeros((npts, nd, len(wrt)))
    index = {node.name: i for i, node in enumerate(graph.nodes) if node.op == "var"}
    for col, name in enumerate(wrt):
        a = adjoint[index[name]] if name in index else None
        if a is None:
            continue
        tangent = np.broadcast_to(a.c[1], (nd * npts,))
        out[:, :, col] = tangent.reshape(nd, npts).T
    return out


def hessian(graph: Graph, wrt: list[str], point: dict[str, np.ndarray], bk: ops.Backend, npoints: int) -> np.ndarray:
    """The Hessian along ``wrt`` at every point, shape (P, n, n), exactly symmetric.

    One forward-over-reverse sweep for all n directions at once (in blocks of points and directions
    when n * P * len(graph) exceeds :data:`BLOCK`); the upper triangle is mirrored onto the lower.
    """
    n = len(wrt)
    out = bk.zeros((npoints, n, n))
    if n == 0 or not any(w in graph.variables for w in wrt):
        return out
    width = max(1, BLOCK // max(len(graph.nodes), 1))  # columns (directions x points) per sweep
    dir_block = max(1, min(n, width))
    pt_block = max(1, width // dir_block)
    pts = {k: np.broadcast_to(v, (npoints,)) for k, v in point.items() if k in graph.variables}
    for p0 in range(0, npoints, pt_block):
        chunk = {k: np.ascontiguousarray(v[p0 : p0 + pt_block]) for k, v in pts.items()}
        for d0 in range(0, n, dir_block):
            dirs = list(range(d0, min(n, d0 + dir_block)))
            out[p0 : p0 + pt_block, d0 : d0 + len(dirs), :] = _sweep(graph, wrt, dirs, chunk, bk)
    iu, ju = np.triu_indices(n, 1)
    out[:, ju, iu] = out[:, iu, ju]
    return out
