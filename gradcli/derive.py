"""From an expression and a point to derivative values: picks the engine, vectorises over points.

Every function here is shared by the CLI and the Python API. Points are dicts of name -> backend arrays
of shape ``(P,)``; values come back as arrays of shape ``(P,)`` (or ``(P, n)``, ``(P, n, n)``) together
with a :class:`~gradcli.taylor.Failure` saying which points left the domain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np
import sympy

from . import ops
from .errors import InputError, NotFinite
from .graph import Graph, lower
from .taylor import Failure, propagate, propagate_multi, scale_for, scaled_derivative

__all__ = [
    "Prepared",
    "prepare",
    "resolve_wrt",
    "resolve_point",
    "derivative_values",
    "gradient_values",
    "hessian_values",
    "taylor_values",
    "raise_not_finite",
]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A parsed and lowered expression."""

    text: str
    expr: sympy.Expr
    graph: Graph

    @property
    def variables(self) -> tuple[str, ...]:
        return self.graph.variables


def prepare(expr: str | sympy.Expr) -> Prepared:
    """Parse (safely) and lower an expression."""
    from .parse import parse_expr

    if isinstance(expr, sympy.Basic):
        return Prepared(sympy.sstr(expr), expr, lower(expr))
    if not isinstance(expr, str):
        raise InputError(f"the expression must be a string, got {type(expr).__name__}")
    parsed = parse_expr(expr)
    return Prepared(expr, parsed, lower(parsed))


def resolve_wrt(prep: Prepared, wrt: str | list[str] | tuple[str, ...] | None) -> tuple[list[str], list[str]]:
    """The differentiation sequence, and notes for variables EXPR does not contain (likely typos)."""
    from .parse import parse_wrt

    if wrt is None:
        if len(prep.variables) != 1:
            found = ", ".join(prep.variables) if prep.variables else "none"
            raise InputError(f"--wrt is required: EXPR has {len(prep.variables)} variables ({found})")
        names = [prep.variables[0]]
    elif isinstance(wrt, str):
        names = parse_wrt(wrt)
    else:
        names = parse_wrt(",".join(str(w) for w in wrt)) if wrt else parse_wrt("")
    notes = [
        f"note: {prep.text} does not depend on '{n}', so its derivative is 0 (a typo?)"
        for n in dict.fromkeys(names)
        if n not in prep.variables
    ]
    return names, notes


def resolve_point(prep: Prepared, wrt: list[str], at: dict[str, Any] | None) -> dict[str, Any]:
    """Check that every free variable has a value and no value names an unknown variable."""
    at = dict(at or {})
    known = set(prep.variables) | set(wrt)
    for name in at:
        if name not in known:
            raise InputError(f"--at names '{name}', which is neither in EXPR nor in --wrt")
    missing = [n for n in prep.variables if n not in at]
    if missing:
        hint = " (for Euler's number write E)" if "e" in missing else ""
        raise InputError(f"--at is missing a value for {', '.join(repr(m) for m in missing)}{hint}")
    return at


def point_arrays(point: dict[str, Any], bk: ops.Backend) -> tuple[dict[str, np.ndarray], int]:
    """Values (numbers, sympy constants or arrays) as backend arrays of one common length P."""
    from .graph import finite_mask

    arrays: dict[str, np.ndarray] = {}
    for name, v in point.items():
        try:
            if isinstance(v, sympy.Basic):
                arr = np.atleast_1d(bk.array([bk.scalar(v)]) if not bk.is_mp else _mp_arr(bk.scalar(v)))
            else:
                arr = np.atleast_1d(bk.array(v))
        except OverflowError:  # an exact integer such as 10**400 has no float64
            arr = np.array([np.inf])
        except (TypeError, ValueError):
            raise InputError(f"the value of {name} must be a number or an array of numbers") from None
        if arr.ndim != 1 or not arr.size:
            raise InputError(f"the value of {name} must be a number or a non-empty one-dimensional array")
        if not finite_mask(arr).all():
            # nan/inf given as a value, or a finite constant beyond float64's range (10**400)
            finite_input = isinstance(v, (int, sympy.Basic)) and not isinstance(v, bool) and (
                not isinstance(v, sympy.Basic) or bool(v.is_finite))
            hint = "; use --digits N for values beyond float64's range" if finite_input and not bk.is_mp else ""
            raise InputError(f"the value of {name} is not a finite {'float64 ' if hint else ''}number{hint}")
        arrays[name] = arr
    sizes = {a.shape[0] for a in arrays.values() if a.shape[0] != 1}
    if len(sizes) > 1:
        raise InputError(f"point arrays have different lengths: {sorted(sizes)}")
    n = sizes.pop() if sizes else 1
    return {k: (np.broadcast_to(a, (n,)).copy() if a.shape[0] != n else a) for k, a in arrays.items()}, n


def _mp_arr(x: Any) -> np.ndarray:
    out = np.empty(1, dtype=object)
    out[0] = x
    return out


# ---- single derivatives -------------------------------------------------------------------------------
def derivative_values(
    graph: Graph, wrt: list[str], point: dict[str, np.ndarray], bk: ops.Backend, npoints: int, engine: str = "auto"
) -> tuple[np.ndarray, Failure]:
    """d^n f / d wrt[0] ... d wrt[n-1] at every point; ``engine`` is auto, taylor or reverse."""
    if engine not in ("auto", "taylor", "reverse"):
        raise InputError(f"unknown engine {engine!r}: use auto, taylor or reverse")
    order = len(wrt)
    point = {k: v for k, v in point.items() if k in graph.variables}
    if any(n not in graph.variables for n in wrt):
        _, fail = _taylor_univariate(graph, None, 0, point, bk, npoints)
        return bk.zeros((npoints,)), fail
    if engine == "reverse" or (engine == "auto" and order == 1):
        return _reverse(graph, wrt, point, bk, npoints)
    counts = {n: wrt.count(n) for n in dict.fromkeys(wrt)}
    if order == 0:
        return _taylor_univariate(graph, None, 0, point, bk, npoints)
    if len(counts) == 1:
        return _taylor_univariate(graph, wrt[0], order, point, bk, npoints)
    return _taylor_mixed(graph, counts, point, bk, npoints)


def _seed(bk: ops.Backend, value: np.ndarray, order: int, step: Any = None) -> np.ndarray:
    s = bk.zeros((order + 1, value.shape[0]))
    s[0] = value
    if step is not None and order >= 1:
        s[1] = step
    return s


def _taylor_univariate(
    graph: Graph, var: str | None, order: int, point: dict[str, np.ndarray], bk: ops.Backend, npoints: int
) -> tuple[np.ndarray, Failure]:
    coeffs, fail, step = taylor_coefficients(graph, var, order, point, bk, npoints)
    if bk.is_mp:
        return coeffs[order] * mpmath.factorial(order), fail
    return scaled_derivative(coeffs[order], order, step), fail


def taylor_coefficients(
    graph: Graph, var: str | None, order: int, point: dict[str, np.ndarray], bk: ops.Backend, npoints: int
) -> tuple[np.ndarray, Failure, np.ndarray]:
    """Normalized coefficients of f(x0 + s t) in t (shape (order+1, P)), the failure mask, and s.

    In float64 and at high orders the step s is chosen per point so that the coefficients stay inside
    float64's range (they decay like R^-k for a radius of convergence R, or faster): a pilot estimate,
    then up to three corrections from the decay seen in the previous run.
    """

    def run(step: Any) -> tuple[np.ndarray, Failure]:
        seeds = {name: _seed(bk, point[name], order, step if name == var else None) for name in graph.variables}
        return propagate(graph, seeds, bk, npoints)

    if bk.is_mp or var is None or order <= 60:
        coeffs, fail = run(bk.scalar(1) if bk.is_mp else np.ones(npoints))
        return coeffs, fail, np.ones(npoints)
    step = scale_for(graph, var, point, npoints, order)
    for _ in range(4):
        coeffs, fail = run(step)
        rate = _decay(coeffs, order)
        if np.all(np.isnan(rate)):
            break
        step = np.where(np.isnan(rate), step, step / np.where(np.isnan(rate), 1.0, rate))
    return coeffs, fail, step


def _decay(coeffs: np.ndarray, order: int) -> np.ndarray:
    """Per point, nan where the top coefficients are representable; else the geometric rate of the
    representable ones (so that dividing the step by it brings c_order near the size of c_0)."""
    with np.errstate(all="ignore"):
        mag = np.abs(coeffs)
        normal = np.isfinite(mag) & (mag > 1e-250) & (mag < 1e250)
        any_normal = normal.any(axis=0)
        last = order - np.argmax(normal[::-1], axis=0)
        first = np.argmax(normal, axis=0)
        ks = np.arange(coeffs.shape[1])
        finite_all = np.isfinite(mag).all(axis=0)
        tiny = ((mag > 0) & (mag <= 1e-250)).any(axis=0)
        # exact zeros past the last normal coefficient (a polynomial, an odd function) are no underflow
        fine = ~any_normal | (((last >= order - 3) | ~tiny) & finite_all)
        span = np.maximum(last - first, 1)
        rate = (mag[last, ks] / mag[first, ks]) ** (1.0 / span)
        # overflowing runs: shrink the step sharply; underflowing: the extrapolated rate
        rate = np.where(finite_all, rate, 1e3)
        rate = np.where((rate > 0) & np.isfinite(rate), rate, 1.0)
        return np.where(fine | (np.abs(np.log(rate)) < 1e-3), np.nan, rate)


def _taylor_mixed(
    graph: Graph, counts: dict[str, int], point: dict[str, np.ndarray], bk: ops.Backend, npoints: int
) -> tuple[np.ndarray, Failure]:
    names = list(counts)
    dims = tuple(counts[n] + 1 for n in names)
    seeds = {}
    for name in graph.variables:
        s = bk.zeros(dims + (npoints,))
        s[(0,) * len(dims)] = point[name]
        if name in counts:
            unit = [0] * len(dims)
            unit[names.index(name)] = 1
            s[tuple(unit)] = bk.scalar(1)
        seeds[name] = s
    coeffs, fail = propagate_multi(graph, seeds, bk, npoints)
    scale = 1
    for n in names:
        scale *= math.factorial(counts[n])
    top = coeffs[tuple(counts[n] for n in names)]
    with np.errstate(all="ignore"):
        return top * (mpmath.mpf(scale) if bk.is_mp else float(scale)), fail


def _tensor_eval(graph: Graph, variables: dict[str, Any], bk: ops.Backend) -> Any:
    from .graph import walk
    from .tensor import Tensor, apply

    values = walk(
        graph,
        lambda name: variables[name],
        lambda c: Tensor(np.asarray(bk.scalar(c), dtype=object) if bk.is_mp else bk.scalar(c)),
        lambda i, prim, args, params: apply(prim, *args, **{k: (bk.scalar(v) if k == "p" else v) for k, v in params.items()}),
    )
    return values[graph.output]


def _reverse(
    graph: Graph, wrt: list[str], point: dict[str, np.ndarray], bk: ops.Backend, npoints: int
) -> tuple[np.ndarray, Failure]:
    """Nested tapes, the GradientTape pattern: the outer tape records the inner tape's sweep."""
    from .tape import Tape
    from .tensor import Tensor

    variables = {n: Tensor(point[n]) for n in graph.variables}

    def nested(k: int) -> Any:
        if k == 0:
            return _tensor_eval(graph, variables, bk)
        with Tape() as tape:
            tape.watch(variables[wrt[k - 1]])
            inner = nested(k - 1)
        g = tape.gradient(inner, variables[wrt[k - 1]], unconnected_gradients="zero")
        return g

    result = np.broadcast_to(nested(len(wrt)).value, (npoints,))
    return result, _failure_of(graph, result, point, bk, npoints, len(wrt))


def _failure_of(
    graph: Graph, result: np.ndarray, point: dict[str, np.ndarray], bk: ops.Backend, npoints: int, order: int
) -> Failure:
    """Reverse sweeps can stay finite where f itself is not (log'(-1) = -1), so the forward values
    are always checked too; a derivative that alone is not finite is traced with a Taylor run."""
    from .graph import finite_mask

    seeds = {name: _seed(bk, point[name], 0) for name in graph.variables}
    _, forward = propagate(graph, seeds, bk, npoints)
    bad_result = ~finite_mask(result).reshape(npoints, -1).all(axis=1)
    culprit = forward.culprit.copy()
    trace = bad_result & ~forward.bad
    if trace.any() and graph.variables:
        _, fail = _taylor_univariate(graph, graph.variables[0], max(order, 1), point, bk, npoints)
        culprit = np.where(trace, fail.culprit, culprit)
    return Failure(forward.bad | bad_result, culprit)


# ---- vectors and matrices -----------------------------------------------------------------------------
def gradient_values(
    graph: Graph, wrt: list[str], point: dict[str, np.ndarray], bk: ops.Backend, npoints: int
) -> tuple[np.ndarray, Failure]:
    """All first partials in one reverse sweep: shape (P, len(wrt))."""
    from .tape import Tape
    from .tensor import Tensor

    variables = {n: Tensor(point[n]) for n in graph.variables}
    for n in wrt:
        variables.setdefault(n, Tensor(bk.zeros((npoints,))))
    with Tape() as tape:
        for n in wrt:
            tape.watch(variables[n])
        y = _tensor_eval(graph, variables, bk)
    grads = tape.gradient(y, [variables[n] for n in wrt], unconnected_gradients="zero")
    out = np.stack([np.broadcast_to(g.value, (npoints,)) for g in grads], axis=1) if wrt else bk.zeros((npoints, 0))
    return out, _failure_of(graph, out, point, bk, npoints, 1)


def hessian_values(
    graph: Graph, wrt: list[str], point: dict[str, np.ndarray], bk: ops.Backend, npoints: int
) -> tuple[np.ndarray, Failure]:
    """The Hessian by forward-over-reverse: one reverse sweep on dual numbers for all n directions
    (see :mod:`gradcli.dual`); exactly symmetric, each pair (i, j), j > i, mirrored from one entry."""
    from .dual import hessian

    out = hessian(graph, wrt, {k: v for k, v in point.items() if k in graph.variables}, bk, npoints)
    return out, _failure_of(graph, out, point, bk, npoints, 2)


def taylor_values(
    graph: Graph, var: str, order: int, point: dict[str, np.ndarray], bk: ops.Backend, npoints: int
) -> tuple[np.ndarray, np.ndarray, Failure]:
    """f(A), f'(A), ..., f^(N)(A) and the Taylor coefficients f^(k)(A)/k!, each of shape (P, N+1)."""
    coeffs, fail, step = taylor_coefficients(graph, var, order, point, bk, npoints)
    if bk.is_mp:
        derivs = np.stack([coeffs[k] * mpmath.factorial(k) for k in range(order + 1)], axis=1)
        return derivs, np.array(coeffs).T.copy(), fail
    derivs = np.stack([scaled_derivative(coeffs[k], k, step) for k in range(order + 1)], axis=1)
    with np.errstate(all="ignore"):
        plain = np.stack([coeffs[k] / step**k for k in range(order + 1)], axis=1)
    return derivs, plain, fail


def raise_not_finite(
    graph: Graph, fail: Failure, values: np.ndarray, point: dict[str, np.ndarray], index: int, *, digits: bool
) -> None:
    """Raise :class:`NotFinite` for point ``index``: the failing function where known, or overflow."""
    where = ", ".join(f"{k}={_fmt(v[index] if np.ndim(v) else v)}" for k, v in sorted(point.items()))
    at = f" at {where}" if where else ""
    culprit = int(fail.culprit[index]) if fail.bad[index] else -1
    if culprit >= 0:
        node = graph.nodes[culprit]
        fn = {"div": "division", "pow": "power"}.get(node.op, node.op)
        if node.op == "pow" and dict(node.params).get("p") == sympy.Rational(1, 2):
            fn = "sqrt"
        raise NotFinite(f"the result is not finite{at}: {fn} is undefined or not differentiable there")
    if not digits:
        raise NotFinite(f"the result overflows float64{at}; use --digits N for arbitrary precision")
    raise NotFinite(f"the result is not finite{at}")


def _fmt(v: Any) -> str:
    if isinstance(v, mpmath.mpf):
        return mpmath.nstr(v, 17)
    return repr(float(v))
