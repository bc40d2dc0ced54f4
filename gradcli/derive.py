"""From an expression and a point to derivative values: picks the engine, vectorises over points.

Every function here is shared by the CLI and the Python API. Points are dicts of name -> backend arrays
of shape ``(P,)``; values come back as arrays of shape ``(P,)`` (or ``(P, n)``, ``(P, n, n)``) together
with a :class:`~gradcli.taylor.Failure` saying which points left the domain.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np
import sympy

from . import ops
from .errors import InputError, NotFinite
from .graph import Graph, finite_mask, lower, rows_all
from .taylor import (
    Failure,
    propagate,
    scaled_derivative,
    seed,
    taylor_coefficients,
    taylor_mixed,
    taylor_univariate,
)

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
    "describe_failure",
    "check_work",
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
    from .parse import parse_expr_guarded

    if isinstance(expr, sympy.Basic):
        return Prepared(sympy.sstr(expr), expr, lower(expr))
    if not isinstance(expr, str):
        raise InputError(f"the expression must be a string, got {type(expr).__name__}")
    parsed, guards = parse_expr_guarded(expr)
    return Prepared(expr, parsed, lower(parsed, guards))


def resolve_wrt(prep: Prepared, wrt: str | list[str] | tuple[str, ...] | None) -> tuple[list[str], list[str]]:
    """The differentiation sequence, and notes for variables EXPR does not contain (likely typos)."""
    from .parse import Wrt, parse_wrt

    if wrt is None:
        if len(prep.variables) != 1:
            found = ", ".join(prep.variables) if prep.variables else "none"
            raise InputError(f"--wrt is required: EXPR has {len(prep.variables)} variables ({found})")
        names = Wrt(prep.variables[:1])
    elif isinstance(wrt, Wrt):
        names = wrt  # parsed once (the CLI's --wrt), passed on as it is
    elif isinstance(wrt, str):
        names = _parse_wrt(wrt)
    else:
        names = parse_wrt(",".join(str(w) for w in wrt)) if wrt else parse_wrt("")
    notes = [
        f"note: {prep.text} does not depend on '{n}', so its derivative is 0 (a typo?)"
        for n in dict.fromkeys(names)
        if n not in prep.variables
    ]
    return names, notes


@functools.lru_cache(maxsize=256)
def _parse_wrt(spec: str) -> Any:
    from .parse import parse_wrt

    return parse_wrt(spec)


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
    if point and not bk.is_mp and all(_plain_number(v) for v in point.values()):
        return {k: np.array([float(v)]) for k, v in point.items()}, 1  # one point of plain numbers: no checks due
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
        # (not by np.dot(arr, arr), a faster pass alone: OpenBLAS's threads then spin for a while beside
        # the fused evaluator's workers, and cost gradcli.gradient at 10^6 points 10-20 ms of its 30)
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


def _plain_number(v: Any) -> bool:
    """A finite Python float, or an int float64 holds exactly."""
    t = type(v)
    return (t is float and math.isfinite(v)) or (t is int and -(2**53) <= v <= 2**53)


def _mp_arr(x: Any) -> np.ndarray:
    out = np.empty(1, dtype=object)
    out[0] = x
    return out


# ---- work bounds: what would take minutes is refused at once ------------------------------------------
#: Taylor mode costs about ops x (order+1)^2 arithmetic operations per point (ops: the expression's
#: operations); in float64 (numpy, vectorised) this budget is a few seconds.
MAX_WORK_F64 = 2 * 10**9
#: With --digits N every operation is an mpmath one, about (1 + N/25) times dearer than at 15 digits.
MAX_WORK_MP = 3 * 10**7
#: Mixed partials multiply truncated series of prod(n_i + 1) terms, at a cost of that number squared.
MAX_RING_WORK_F64 = 2 * 10**7
MAX_RING_WORK_MP = 3 * 10**5
#: Nested reverse tapes (engine="reverse") grow about threefold per order.
MAX_REVERSE_ORDER = 10
#: mpmath's gamma and polygamma cost about digits^3: 3 s a point at 1000 digits, minutes at 10000.
MAX_DIGITS_GAMMA = 1000


def check_work(graph: Graph, wrt: list[str], bk: ops.Backend, engine: str = "auto") -> None:
    """Raise InputError when a derivative would take far more than a few seconds (see the bounds above).

    >>> from gradcli.graph import lower
    >>> from gradcli.parse import parse_expr
    >>> check_work(lower(parse_expr("sin(x)")), ["x"] * 100_000, ops.F64)
    Traceback (most recent call last):
    ...
    gradcli.errors.InputError: order 100000 exceeds the limit 44720 for this expression (1 operation, float64)
    """
    if bk.is_mp and bk.dps - 10 > MAX_DIGITS_GAMMA:
        slow = sorted({n.op for n in graph.nodes if n.op in ops.REGISTRY and ops.REGISTRY[n.op].slow_digits})
        if slow:
            raise InputError(f"--digits above {MAX_DIGITS_GAMMA} is not supported for {', '.join(slow)} "
                             "(mpmath would take minutes per point)")
    order = len(wrt)
    if order <= 1:
        return
    nops = max(1, sum(1 for node in graph.nodes if node.op not in ("var", "const")))
    factor = 1 + bk.dps / 25 if bk.is_mp else 1
    where = f"{nops} operation{'s' if nops != 1 else ''}, " + (f"{bk.dps - 10} digits" if bk.is_mp else "float64")
    if engine == "reverse":
        if order > MAX_REVERSE_ORDER:
            raise InputError(f"order {order} exceeds the limit {MAX_REVERSE_ORDER} of the reverse engine (nested "
                             "tapes grow exponentially with the order); use the taylor engine")
        return
    counts = [wrt.count(n) for n in dict.fromkeys(wrt)]
    if len(counts) == 1:
        budget = (MAX_WORK_MP if bk.is_mp else MAX_WORK_F64) / (nops * factor)
        limit = max(1, math.isqrt(int(budget)) - 1)
        if order > limit:
            raise InputError(f"order {order} exceeds the limit {limit} for this expression ({where})")
        return
    terms = math.prod(c + 1 for c in counts)
    budget = (MAX_RING_WORK_MP if bk.is_mp else MAX_RING_WORK_F64) / (nops * factor)
    limit = max(4, math.isqrt(int(budget)))
    if terms > limit:
        spec = ",".join(f"{n}:{wrt.count(n)}" for n in dict.fromkeys(wrt))
        raise InputError(f"the mixed partial {spec} needs series of {terms} terms, over the limit {limit} for "
                         f"this expression ({where}); lower the orders")


def degree(graph: Graph, name: str) -> float:
    """The degree of the graph's output as a polynomial in ``name`` (inf if it is not one).

    >>> from gradcli.graph import lower
    >>> from gradcli.parse import parse_expr
    >>> degree(lower(parse_expr("x**3*y + sin(y)/(1+y)")), "x"), degree(lower(parse_expr("x/(1+x)")), "x")
    (3, inf)
    """
    deg: list[float] = []
    for node in graph.nodes:
        args = [deg[j] for j in node.inputs]
        if node.op == "var":
            d: float = 1 if node.name == name else 0
        elif node.op == "const" or not any(args):
            d = 0  # constant in ``name``, whatever the function
        elif node.op in ("add", "sub"):
            d = max(args)
        elif node.op == "neg":
            d = args[0]
        elif node.op == "mul":
            d = args[0] + args[1]
        elif node.op == "div" and args[1] == 0:
            d = args[0]
        elif node.op == "pow":
            p = dict(node.params).get("p")
            whole = p is not None and float(p) == int(float(p)) and float(p) >= 0
            d = args[0] * int(float(p)) if whole else math.inf
        else:
            d = math.inf
        deg.append(d)
    return deg[graph.output] if deg else 0


# ---- single derivatives -------------------------------------------------------------------------------
def derivative_values(
    graph: Graph, wrt: list[str], point: dict[str, np.ndarray], bk: ops.Backend, npoints: int, engine: str = "auto",
    *, threads: int | None = None,
) -> tuple[np.ndarray, Failure]:
    """d^n f / d wrt[0] ... d wrt[n-1] at every point; ``engine`` is auto, taylor or reverse.

    First derivatives at many float64 points run on the fused evaluator (:mod:`gradcli.batch`) with
    ``threads`` worker threads (default: $GRADCLI_THREADS, else one per core)."""
    if engine not in ("auto", "taylor", "reverse"):
        raise InputError(f"unknown engine {engine!r}: use auto, taylor or reverse")
    order = len(wrt)
    point = {k: v for k, v in point.items() if k in graph.variables}
    if any(n not in graph.variables or degree(graph, n) < wrt.count(n) for n in dict.fromkeys(wrt)):
        # exactly 0 (f does not depend on a variable, or is a polynomial of lower degree in it), at any
        # order and without work; the forward values are still checked (x**2*log(y) at y = 0 fails)
        _, fail = taylor_univariate(graph, None, 0, point, bk, npoints)
        return bk.zeros((npoints,)), fail
    check_work(graph, wrt, bk, engine)
    if order == 1 and engine in ("auto", "reverse") and _fused(bk, npoints):
        out, fail = _fused_gradient(graph, wrt, point, bk, npoints, threads)
        return out[:, 0], fail
    if order == 2 and engine == "auto" and _fused(bk, npoints):
        # a second derivative at many points: one entry of the fused forward-over-reverse Hessian
        from . import batch

        names = list(dict.fromkeys(wrt))
        pts = {k: v for k, v in point.items() if k in graph.variables}
        out, suspect, bound = batch.hessian(graph, names, pts, npoints, threads=threads)
        i, j = names.index(wrt[0]), names.index(wrt[1])
        values = np.ascontiguousarray(out[:, i, j])
        entries = _entry_bounds(graph, names, pts, npoints, hessian=True)
        return values, _suspects_failure(graph, values, suspect, pts, bk, npoints, 2, bound,
                                         lambda rows: entries(rows)[:, i, j])
    if engine == "reverse" or (engine == "auto" and order == 1):
        return _reverse(graph, wrt, point, bk, npoints)
    counts = {n: wrt.count(n) for n in dict.fromkeys(wrt)}
    if order == 0:
        return taylor_univariate(graph, None, 0, point, bk, npoints)
    if len(counts) == 1:
        return taylor_univariate(graph, wrt[0], order, point, bk, npoints)
    return taylor_mixed(graph, counts, point, bk, npoints)


def _tensor_eval(graph: Graph, variables: dict[str, Any], bk: ops.Backend) -> Any:
    from .graph import walk
    from .tensor import Tensor, apply

    values = walk(
        graph,
        lambda name: variables[name],
        lambda c: Tensor(np.asarray(bk.scalar(c), dtype=object) if bk.is_mp else bk.scalar(c)),
        lambda i, prim, args, params: apply(
            prim, *args, **bk.params(params)
        ),
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

    seeds = {name: seed(bk, point[name], 0) for name in graph.variables}
    _, forward = propagate(graph, seeds, bk, npoints)
    bad_result = ~rows_all(finite_mask(result).reshape(npoints, -1))
    culprit = forward.culprit.copy()
    trace = bad_result & ~forward.bad
    if trace.any() and graph.variables:
        _, fail = taylor_univariate(graph, graph.variables[0], max(order, 1), point, bk, npoints)
        culprit = np.where(trace, fail.culprit, culprit)
    return Failure(forward.bad | bad_result, culprit, complete=True)


# ---- the fused evaluator for many float64 points -------------------------------------------------------
#: From this many float64 points on, the fused evaluator (gradcli.batch); below, one call of the plain
#: engine costs less than lowering would (and gradcli.batch is not even imported). A chunk this small is
#: certified by balls alone anyway (commands.DIRECT_ROWS, the same number), so the fused evaluator's
#: rounding-error bound serves every chunk that needs one. Measured (gradient / Hessian of
#: x*exp(-(x^2+y^2))*sin(3*y) through gradcli.gradient/hessian) at 1000 points, 64 here instead of 4096:
#: 9.1 -> 1.5 ms and 17.6 -> 7.2 ms. A call smaller than a block starts no thread pool.
FUSED_MIN_POINTS = 12


def _fused(bk: ops.Backend, npoints: int) -> bool:
    return not bk.is_mp and npoints >= FUSED_MIN_POINTS


def _suspects_failure(graph: Graph, out: np.ndarray, suspect: np.ndarray, point: dict[str, np.ndarray],
                      bk: ops.Backend, npoints: int, order: int, bound: np.ndarray | None,
                      entry_bounds: Callable[[np.ndarray], np.ndarray]) -> Failure:
    """The Failure of a fused run: rows it found clean are clean (every non-finite value reaches a
    checked one); the suspect rows get the exact analysis of :func:`_failure_of`, which names the node.
    ``bound``: the run's rounding-error bounds, and ``entry_bounds`` each value's, passed on."""
    bad = np.zeros(npoints, dtype=bool)
    rows = np.flatnonzero(suspect) if suspect.any() else np.empty(0, dtype=np.intp)
    culprit = np.full(npoints, -1) if rows.size else np.broadcast_to(np.intp(-1), (npoints,))  # no 8 MB of -1
    if rows.size:
        sub = {k: np.broadcast_to(v, (npoints,))[rows] for k, v in point.items()}
        fail = _failure_of(graph, out[rows], sub, bk, rows.size, order)
        bad[rows] = fail.bad
        culprit[rows] = fail.culprit
    return Failure(bad, culprit, bound, complete=True, entry_bounds=None if bound is None else entry_bounds)


def _entry_bounds(graph: Graph, wrt: list[str], point: dict[str, np.ndarray], npoints: int, *,
                  hessian: bool) -> Callable[[np.ndarray], np.ndarray]:
    """Each value's own rounding-error bound at given rows, by the fused evaluator
    (:func:`gradcli.batch.entry_bounds`)."""
    from . import batch

    def at(rows: np.ndarray) -> np.ndarray:
        sub = {k: np.broadcast_to(v, (npoints,))[rows] for k, v in point.items()}
        return batch.entry_bounds(graph, wrt, sub, rows.size, hessian=hessian)

    return at


def _fused_gradient(graph: Graph, wrt: list[str], point: dict[str, np.ndarray], bk: ops.Backend, npoints: int,
                    threads: int | None) -> tuple[np.ndarray, Failure]:
    from . import batch

    pts = {k: v for k, v in point.items() if k in graph.variables}
    out, suspect, bound = batch.gradient(graph, wrt, pts, npoints, threads=threads)
    return out, _suspects_failure(graph, out, suspect, pts, bk, npoints, 1, bound,
                                  _entry_bounds(graph, wrt, pts, npoints, hessian=False))


# ---- vectors and matrices -----------------------------------------------------------------------------
def gradient_values(
    graph: Graph, wrt: list[str], point: dict[str, np.ndarray], bk: ops.Backend, npoints: int, *,
    threads: int | None = None,
) -> tuple[np.ndarray, Failure]:
    """All first partials in one reverse sweep: shape (P, len(wrt)).

    At many float64 points (:data:`gradcli.batch.MIN_POINTS` or more) the sweep runs fused, in
    cache-sized blocks on ``threads`` worker threads (default: $GRADCLI_THREADS, else one per core)."""
    check_work(graph, wrt[:1], bk, "reverse")
    if _fused(bk, npoints):
        return _fused_gradient(graph, wrt, point, bk, npoints, threads)
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
    graph: Graph, wrt: list[str], point: dict[str, np.ndarray], bk: ops.Backend, npoints: int, *,
    threads: int | None = None,
) -> tuple[np.ndarray, Failure]:
    """The Hessian by forward-over-reverse: one reverse sweep on dual numbers for all n directions
    (see :mod:`gradcli.dual`); exactly symmetric, each pair (i, j), j > i, mirrored from one entry.
    At many float64 points the same sweep runs fused (:mod:`gradcli.batch`) on ``threads`` threads."""
    check_work(graph, wrt[:1], bk, "reverse")
    if _fused(bk, npoints):
        from . import batch

        pts = {k: v for k, v in point.items() if k in graph.variables}
        out, suspect, bound = batch.hessian(graph, wrt, pts, npoints, threads=threads)
        return out, _suspects_failure(graph, out, suspect, pts, bk, npoints, 2, bound,
                                      _entry_bounds(graph, wrt, pts, npoints, hessian=True))
    from .dual import hessian

    out = hessian(graph, wrt, {k: v for k, v in point.items() if k in graph.variables}, bk, npoints)
    return out, _failure_of(graph, out, point, bk, npoints, 2)


def taylor_values(
    graph: Graph, var: str, order: int, point: dict[str, np.ndarray], bk: ops.Backend, npoints: int
) -> tuple[np.ndarray, np.ndarray, Failure]:
    """f(A), f'(A), ..., f^(N)(A) and the Taylor coefficients f^(k)(A)/k!, each of shape (P, N+1)."""
    check_work(graph, [var] * order, bk, "taylor")
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
        if ops.REGISTRY[node.op].smooth and not digits:
            # the first failing node had finite inputs: a function smooth on all reals can only overflow
            raise NotFinite(f"the result overflows float64{at} (in {fn}); use --digits N for arbitrary precision")
        raise NotFinite(f"the result is not finite{at}: {fn} is undefined or not differentiable there")
    if not digits:
        raise NotFinite(f"the result or an intermediate value leaves float64's range{at}; "
                        "use --digits N for arbitrary precision")
    raise NotFinite(f"the result is not finite{at}")


def describe_failure(graph: Graph, kind: str, culprit: int | None, point: dict[str, Any], *,
                     digits: bool) -> NotFinite:
    """The NotFinite for a value the ball engine found undefined (``kind`` "undefined" or "kink") or
    beyond float64's range ("range")."""
    where = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(point.items()))
    at = f" at {where}" if where else ""
    if kind == "range":
        return NotFinite(f"the result exceeds float64's range{at}; use --digits N for arbitrary precision")
    if culprit is not None and culprit >= 0:
        node = graph.nodes[culprit]
        fn = {"div": "division", "pow": "power"}.get(node.op, node.op)
        if node.op == "pow" and dict(node.params).get("p") == sympy.Rational(1, 2):
            fn = "sqrt"
        return NotFinite(f"the result is not finite{at}: {fn} is undefined or not differentiable there")
    if kind == "kink":
        return NotFinite(f"the derivative does not exist{at}: abs, sign, min or max has a kink there")
    return NotFinite(f"the result is not finite{at}")


def _fmt(v: Any) -> str:
    if isinstance(v, mpmath.mpf):
        return mpmath.nstr(v, 17)
    return repr(float(v))
