"""The independent oracle: sympy's symbolic derivative, evaluated at high precision, within a budget.

The symbolic derivative is taken step by step and abandoned when it grows past a size limit or the
time budget runs out; the check then says it was skipped and why, and, where it can, runs a second
independent check instead: mpmath's numerical differentiation (finite differences at raised
precision) of the plain forward evaluation, which shares no derivative code with the engines.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable

import mpmath
import numpy as np
import sympy

from . import ops
from .graph import Graph, walk

__all__ = ["CheckResult", "Oracle", "close", "rel_err", "symbolic_derivative", "run_check", "SMALL"]

#: Magnitudes below this compare absolutely (the contract's rule for --tol and --expect).
SMALL = 1e-12
#: Orders above this give sympy only a fifth of --check-timeout before the numerical check takes over.
HIGH_ORDER = 20
#: A symbolic derivative larger than this many tree nodes is not evaluated (it would not finish).
MAX_SYMBOLIC_NODES = 20_000


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What the check found: ``ok`` is None when no check ran (``skipped`` says why)."""

    ok: bool | None
    symbolic: str | None = None
    value: Any = None  # the oracle's value (float, or mpf with --digits)
    rel_err: float | None = None
    skipped: str | None = None
    method: str = "sympy"  # "sympy", or "mpmath.diff" when the symbolic check was skipped


def rel_err(a: Any, b: Any) -> float:
    """|a - b| relative to the larger magnitude; absolute when both are below :data:`SMALL`."""
    a, b = mpmath.mpf(a), mpmath.mpf(b)
    if mpmath.isnan(a) or mpmath.isnan(b):
        return float("inf")
    if a == b:
        return 0.0
    scale = max(abs(a), abs(b))
    diff = abs(a - b)
    return float(diff / scale if scale >= SMALL else diff)


def close(a: Any, b: Any, tol: float) -> bool:
    """The one comparison used by --check, --expect and the tests."""
    return rel_err(a, b) <= tol


def symbolic_derivative(expr: sympy.Expr, wrt: list[str], deadline: Callable[[], bool]) -> tuple[sympy.Expr | None, str | None]:
    """sympy.diff along ``wrt`` one step at a time; (None, why) once it grows too large or too slow."""
    from .parse import symbol

    d = expr
    for i, name in enumerate(wrt, 1):
        d = sympy.diff(d, symbol(name))
        if deadline():
            return None, f"the symbolic derivative of order {i} exceeded the time budget"
        if d == 0:
            return d, None
        size = sum(1 for _ in sympy.preorder_traversal(d))
        if size > MAX_SYMBOLIC_NODES:
            return None, f"the symbolic derivative of order {i} has {size} nodes, too large to evaluate"
    return d, None


def _evaluate(d: sympy.Expr, point: dict[str, Any], dps: int) -> Any:
    from .parse import symbol

    # evalf with subs (not xreplace first) so that its adaptive precision absorbs cancellation
    subs = {symbol(k): sympy.Float(mpmath.mpf(v), dps) for k, v in point.items()}
    val = d.evalf(dps, subs=subs)
    if not val.is_number:
        return mpmath.mpf("nan")
    if not val.is_real:
        re, im = val.as_real_imag()
        if abs(sympy.N(im, 5)) > 0:
            return mpmath.mpf("nan")
        val = re
    if val in (sympy.zoo, sympy.oo, -sympy.oo, sympy.nan):
        return mpmath.mpf("nan")
    with mpmath.workdps(dps):
        return mpmath.mpf(sympy.Float(val, dps)._mpf_)


def _numeric_derivative(graph: Graph, wrt: list[str], point: dict[str, Any], dps: int) -> Any:
    """mpmath.diff of the forward evaluation: finite differences, mpmath picks step and precision."""
    names = sorted(set(wrt))
    counts = [wrt.count(n) for n in names]
    bk = ops.mp_backend(dps)

    def f(*xs: Any) -> Any:
        env = dict(point)
        env.update(zip(names, xs))
        vals = walk(
            graph,
            lambda n: np.asarray([mpmath.mpf(env[n])], dtype=object),
            lambda c: np.asarray([bk.scalar(c)], dtype=object),
            lambda i, p, args, params: bk.call(p, *args, **{k: (bk.scalar(v) if k == "p" else v) for k, v in params.items()}),
        )
        return vals[graph.output][0]

    with mpmath.workdps(dps):
        x0 = [mpmath.mpf(point[n]) for n in names]
        if len(names) == 1:
            return mpmath.diff(f, x0[0], counts[0])
        return mpmath.diff(f, tuple(x0), tuple(counts))


def _bounded(fn: Callable[[Callable[[], bool]], Any], timeout: float) -> tuple[bool, Any]:
    """Run ``fn(expired)`` in a daemon thread for at most ``timeout`` s: (finished, result).

    sympy cannot be interrupted, so a run that overstays is abandoned (told so through ``expired``)
    rather than waited for; an exception inside is re-raised here, never swallowed.
    """
    box: dict[str, Any] = {}
    expired = threading.Event()

    def work() -> None:
        try:
            box["result"] = fn(expired.is_set)
        except BaseException as exc:  # handed to the caller's thread below
            box["exception"] = exc

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(max(timeout, 0.0))
    if thread.is_alive():
        expired.set()
        return False, None
    if "exception" in box:
        raise box["exception"]
    return True, box["result"]


class Oracle:
    """sympy's derivative of ``expr`` along ``wrt``, computed once (within ``timeout`` s) and then
    evaluated at any number of points; :meth:`check` compares an engine value with it."""

    def __init__(self, expr: sympy.Expr, graph: Graph, wrt: list[str], timeout: float) -> None:
        self.expr, self.graph, self.wrt, self.timeout = expr, graph, list(wrt), timeout
        # Beyond order ~20 sympy's derivative of most expressions grows too fast to finish, so it gets a
        # fifth of the budget and the independent numerical check keeps the rest.
        budget = timeout if len(wrt) <= HIGH_ORDER else timeout / 5
        done, result = _bounded(lambda expired: symbolic_derivative(expr, wrt, expired), budget)
        if not done:
            self.symbolic = None
            self.skipped = f"sympy's derivative of order {len(wrt)} did not finish within {budget:g} s"
        else:
            self.symbolic, self.skipped = result

    @property
    def symbolic_text(self) -> str | None:
        return None if self.symbolic is None else sympy.sstr(self.symbolic)

    def check(self, point: dict[str, Any], value: Any, *, tol: float, dps: int = 30) -> CheckResult:
        """Compare ``value`` (the engine's) with the oracle at ``point`` (exact binary/mpf values)."""
        if self.symbolic is not None:
            done, oracle = _bounded(lambda expired: _evaluate(self.symbolic, point, dps), self.timeout)
            if not done:
                return CheckResult(ok=None, symbolic=self.symbolic_text,
                                   skipped=f"evaluating sympy's derivative took over {self.timeout:g} s")
            err = rel_err(value, oracle)
            return CheckResult(ok=err <= tol, symbolic=self.symbolic_text, value=oracle, rel_err=err)
        if len(self.wrt) > 400:
            return CheckResult(ok=None, skipped=self.skipped)
        done, oracle = _bounded(lambda expired: _numeric_derivative(self.graph, self.wrt, point, dps), self.timeout)
        if not done:
            return CheckResult(ok=None, skipped=f"{self.skipped}; mpmath.diff did not finish either")
        err = rel_err(value, oracle)
        return CheckResult(ok=err <= tol, value=oracle, rel_err=err, skipped=self.skipped, method="mpmath.diff")


def run_check(
    expr: sympy.Expr,
    graph: Graph,
    wrt: list[str],
    point: dict[str, Any],
    value: Any,
    *,
    tol: float,
    timeout: float,
    dps: int = 30,
) -> CheckResult:
    """One-shot :class:`Oracle` check at one point."""
    return Oracle(expr, graph, wrt, timeout).check(point, value, tol=tol, dps=dps)
