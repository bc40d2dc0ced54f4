"""The independent oracle: sympy's symbolic derivative, evaluated at high precision, within a budget.

The symbolic derivative is taken step by step and abandoned when it grows past a size limit or the
time budget runs out; the check then says it was skipped and why, and, where it can, runs a second
independent check instead: mpmath's numerical differentiation (finite differences at raised
precision) of the plain forward evaluation, which shares no derivative code with the engines.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np
import sympy

from . import ops
from .graph import Graph

__all__ = ["CheckResult", "CheckBatch", "Oracle", "close", "rel_err", "rel_err_many", "symbolic_derivative",
           "run_check", "SMALL", "LAMBDIFY_MAX_ORDER"]

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


def symbolic_derivative(
    expr: sympy.Expr, wrt: list[str], deadline: Callable[[], bool]
) -> tuple[sympy.Expr | None, str | None]:
    """sympy.diff along ``wrt``, run by run; (None, why) once it grows too large or too slow."""
    from .parse import symbol

    d = expr
    done = 0
    for name, count in runs(wrt):
        # one sympy.diff per run of equal names: diff(f, x, k) is far quicker than k single steps
        d = sympy.diff(d, symbol(name), count)
        done += count
        if deadline():
            return None, f"the symbolic derivative of order {done} exceeded the time budget"
        if d == 0:
            return d, None
        if d.has(sympy.Derivative):
            # sympy could not differentiate a part (sign(1/x)): nothing to evaluate, not a mismatch
            return None, "sympy left the derivative unevaluated"
        size = sum(1 for _ in sympy.preorder_traversal(d))
        if size > MAX_SYMBOLIC_NODES:
            return None, f"the symbolic derivative of order {done} has {size} nodes, too large to evaluate"
    return d, None


def runs(wrt: list[str]) -> list[tuple[str, int]]:
    """Consecutive repeats grouped: ["x", "x", "y"] -> [("x", 2), ("y", 1)] (:attr:`parse.Wrt.runs`)."""
    from .parse import Wrt

    return list(Wrt(wrt).runs)


def _evaluate(d: sympy.Expr, point: dict[str, Any], dps: int) -> Any:
    from .parse import symbol

    # evalf with subs (not xreplace first) so that its adaptive precision absorbs cancellation
    # exact constants (--at x=pi/2) stay exact: the witness is evaluated where the certificate was
    subs = {symbol(k): v if isinstance(v, sympy.Basic) else sympy.Float(mpmath.mpf(v), dps) for k, v in point.items()}
    val = d.evalf(dps, subs=subs)
    if not val.is_number:
        return mpmath.mpf("nan")
    if val.has(sympy.nan):  # 0/0 (LambertW'(0) as W/(x (1 + W))): as_real_imag's comparison would raise
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


#: The longest wait handed to threading (a --check-timeout of 1e12 s means "no limit" in practice).
_LONGEST_WAIT = 1e7


#: Why a witness has no verdict where its formula has no value but the certified derivative exists.
NO_VALUE = "sympy's derivative has no value at this point (its formula is 0/0 or similar there)"


def _undefined(oracle: Any, value: Any) -> bool:
    """sympy's formula is undefined (nan) where the value is finite: a removable singularity of the
    formula (lambertw'(0) = W/(x (1 + W)) is 0/0), not a disagreement. The value was certified by balls,
    which only enclose a derivative that exists."""
    try:
        return bool(mpmath.isnan(mpmath.mpf(oracle))) and bool(mpmath.isfinite(mpmath.mpf(value)))
    except (TypeError, ValueError):
        return False


def _bounded(fn: Callable[[Callable[[], bool]], Any], timeout: float) -> tuple[bool, Any]:
    """Run ``fn(expired)`` in a daemon thread for at most ``timeout`` s: (finished, result).

    sympy cannot be interrupted, so a run that overstays is abandoned (told so through ``expired``)
    rather than waited for; an exception inside is re-raised here, never swallowed.
    """
    box: dict[str, Any] = {}
    expired = threading.Event()
    go = threading.Event()

    def work() -> None:
        # Wait until the caller is blocked in join: a caller still waking up from start() would want
        # the GIL back while fn runs, and get it only after the interpreter's switch interval (5 ms),
        # stalling a witness that takes half a millisecond about one call in four.
        go.wait()
        try:
            box["result"] = fn(expired.is_set)
        except BaseException as exc:  # handed to the caller's thread below
            box["exception"] = exc

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    go.set()
    thread.join(min(max(timeout, 0.0), _LONGEST_WAIT))  # threading refuses waits past time_t
    if thread.is_alive():
        expired.set()
        return False, None
    if "exception" in box:
        raise box["exception"]
    return True, box["result"]


class _Derivative:
    """sympy's derivative of one expression along one ``wrt`` within one budget (or why there is none),
    and what is built from it (its text, lambdified functions), shared by every :class:`Oracle` of that
    expression, ``wrt`` and budget."""

    __slots__ = ("symbolic", "skipped", "fns")

    def __init__(self, symbolic: sympy.Expr | None, skipped: str | None) -> None:
        self.symbolic, self.skipped = symbolic, skipped
        self.fns: dict[str, Any] = {}


@functools.lru_cache(maxsize=256)
def _derivative(expr: sympy.Expr, wrt: tuple[str, ...], budget: float) -> _Derivative:
    """:func:`symbolic_derivative` within ``budget`` s, once per (expression, wrt, budget): an oracle
    built again for the same derivative (each call of a compiled expression, each API call) reuses it,
    and one that did not finish is not started again (sympy cannot be interrupted: every abandoned run
    would go on taking CPU time beside the next)."""
    done, result = _bounded(lambda expired: symbolic_derivative(expr, list(wrt), expired), budget)
    if not done:
        return _Derivative(None, f"sympy's derivative of order {len(wrt)} did not finish within {budget:g} s")
    return _Derivative(*result)


class Oracle:
    """sympy's derivative of ``expr`` along ``wrt``, computed once (within ``timeout`` s) and then
    evaluated at any number of points; :meth:`check` compares an engine value with it."""

    def __init__(self, expr: sympy.Expr, graph: Graph, wrt: list[str], timeout: float, *,
                 chain: TaylorChain | None = None) -> None:
        self.expr, self.graph, self.wrt, self.timeout = expr, graph, list(wrt), timeout
        self._fns: dict[str, Any] = {}  # lambdified derivative per module set (check_many), its text
        self._chain = chain  # gradcli taylor: every order shares one chain (see TaylorChain)
        if chain is not None:
            self.symbolic, self.skipped = chain.symbolic_of(len(self.wrt))
            return
        # Beyond order ~20 sympy's derivative of most expressions grows too fast to finish: it gets a fifth
        # of the budget, so that a high order does not wait seconds for a witness that will not come.
        budget = timeout if len(wrt) <= HIGH_ORDER else timeout / 5
        found = _derivative(expr, tuple(self.wrt), budget)
        self.symbolic, self.skipped, self._fns = found.symbolic, found.skipped, found.fns

    @property
    def symbolic_text(self) -> str | None:
        if self.symbolic is None:
            return None
        if "text" not in self._fns:  # printed once: every chunk's CheckBatch carries it
            self._fns["text"] = sympy.sstr(self.symbolic)
        return self._fns["text"]

    def check(self, point: dict[str, Any], value: Any, *, tol: float, dps: int = 30) -> CheckResult:
        """Compare ``value`` (the engine's) with the oracle at ``point`` (exact binary/mpf values)."""
        if self._chain is not None:
            return self._chain.check(self, point, value, tol=tol, dps=dps)
        if self.symbolic is not None:
            done, oracle = _bounded(lambda expired: self._value(point, value, tol, dps), self.timeout)
            if not done:
                return CheckResult(ok=None, symbolic=self.symbolic_text,
                                   skipped=f"evaluating sympy's derivative took over {self.timeout:g} s")
            if _undefined(oracle, value):
                return CheckResult(ok=None, symbolic=self.symbolic_text, skipped=NO_VALUE)
            err = rel_err(value, oracle)
            return CheckResult(ok=err <= tol, symbolic=self.symbolic_text, value=oracle, rel_err=err)
        # no symbolic derivative in the budget: the ball-arithmetic certificate stands alone
        return CheckResult(ok=None, skipped=self.skipped)

    def _value(self, point: dict[str, Any], value: Any, tol: float, dps: int) -> Any:
        """sympy's derivative at ``point``, to ``dps`` digits.

        From the second point on (a compiled expression called again; lambdify costs two to ten evalf
        runs, so a one-shot CLI call does not pay for it), at binary numbers (floats, ints: exact in
        mpmath) the lambdified derivative is tried first, with mpmath at ``dps`` plus guard digits (one
        order less of Python overhead than evalf), and kept when it agrees with ``value`` within ``tol``,
        as :meth:`check_many` keeps its rows: cancellation would make it disagree, not agree. Otherwise,
        and at exact constants (``pi/2``), evalf's adaptive precision decides."""
        seen = self._fns.get("points", 0)
        self._fns["points"] = seen + 1
        if seen and all(isinstance(v, (int, float, mpmath.mpf)) and not isinstance(v, bool)
                        for v in point.values()):
            quick = self._mp_value(point, dps + len(self.wrt) + 10)
            if quick is not None and rel_err(value, quick) <= tol:
                with mpmath.workdps(dps):
                    return +quick
        return _evaluate(self.symbolic, point, dps)

    def _mp_value(self, point: dict[str, Any], dps: int) -> Any:
        """The lambdified derivative at ``point`` with mpmath at ``dps`` digits; None where it has no
        finite real value there (a pole of sympy's formula, a complex intermediate)."""
        names, call = self._lambdified("mpmath")
        with mpmath.workdps(dps):
            try:
                got = _real(call(*(mpmath.mpf(point[k]) for k in names)))
            except (TypeError, ValueError, ZeroDivisionError, OverflowError, NameError, KeyError):
                return None
            return got if isinstance(got, mpmath.mpf) and mpmath.isfinite(got) else None

    # ---- many points at once (--points) ------------------------------------------------------------
    def check_many(
        self,
        points: dict[str, np.ndarray],
        values: np.ndarray,
        *,
        tol: float,
        dps: int = 30,
        mask: np.ndarray | None = None,
    ) -> CheckBatch:
        """Compare a chunk of engine ``values`` (shape (P,)) with the oracle at every point, vectorised.

        Up to order :data:`LAMBDIFY_MAX_ORDER` the symbolic derivative is evaluated over the whole chunk
        in float64 (``sympy.lambdify`` of the oracle's own validated tree with numpy); a row that
        disagrees there is evaluated again with mpmath at ``dps`` digits and, if it still disagrees, with
        the precise per-point :meth:`check` (float64 cancellation is the oracle's failing, not a
        finding). Higher orders, ``--digits`` values and a skipped symbolic derivative go row by row at
        raised precision. The slow paths share one budget of ``timeout`` seconds per chunk; rows past
        it are reported as skipped. Rows outside ``mask`` (points that left the domain) are not checked.

        Example: the derivative of x**3 at x = 1, 2 is 3, 12.

        >>> import sympy, numpy as np
        >>> from gradcli.graph import lower
        >>> from gradcli.parse import symbol
        >>> f = symbol("x") ** 3
        >>> batch = Oracle(f, lower(f), ["x"], 5.0).check_many({"x": np.array([1.0, 2.0])},
        ...                                                    np.array([3.0, 12.0]), tol=1e-8)
        >>> [r.ok for r in batch], bool(batch.failed.any())
        ([True, True], False)
        """
        n = len(values)
        todo = np.ones(n, dtype=bool) if mask is None else np.asarray(mask, dtype=bool).copy()
        batch = CheckBatch.empty(n, ~todo, self.symbolic_text, values.dtype == object)
        rows = np.flatnonzero(todo)
        if rows.size == 0:
            return batch
        deadline = _now() + self.timeout
        if n == 1 or self.symbolic is None:
            self._check_each(batch, points, values, rows, tol, dps, deadline)
            return batch
        oracle = None
        if values.dtype != object and len(self.wrt) <= LAMBDIFY_MAX_ORDER:
            oracle = self._numpy_values(points, n)
        if oracle is None:
            self._mp_each(batch, points, values, rows, tol, dps + len(self.wrt), deadline)
            return batch
        errs = rel_err_many(values, oracle)
        ok = errs <= tol
        batch.status[rows] = ok[rows]
        batch.value[rows] = oracle[rows]
        batch.rel_err[rows] = errs[rows]
        suspects = np.flatnonzero(todo & ~ok)
        if suspects.size:
            # float64 may have lost the oracle's digits to cancellation: recheck at dps digits, then
            # (if still different) with evalf's adaptive precision
            self._mp_each(batch, points, values, suspects, tol, dps, deadline, keep_on_timeout=True)
            still = suspects[batch.status[suspects] == 0]
            self._check_each(batch, points, values, still, tol, dps, deadline, keep_on_timeout=True)
        return batch

    def _numpy_values(self, points: dict[str, np.ndarray], n: int) -> np.ndarray | None:
        """The symbolic derivative at every point in float64, or None if it has no numpy form."""
        fn = self._lambdified("numpy")
        if fn is None:
            return None
        names, call = fn
        try:
            with np.errstate(all="ignore"):
                out = np.asarray(call(*(np.asarray(points[k], dtype=np.float64) for k in names)))
        except (TypeError, ValueError, NameError, AttributeError, ZeroDivisionError, OverflowError):
            # a function sympy prints without a numpy equivalent: the mpmath path still works
            self._fns["numpy"] = None
            return None
        if np.iscomplexobj(out):
            out = np.where(out.imag == 0, out.real, np.nan)
        return np.array(np.broadcast_to(out.astype(np.float64), (n,)))

    def _lambdified(self, kind: str) -> tuple[list[str], Callable[..., Any]] | None:
        """sympy.lambdify of the oracle's derivative (our validated tree, never user text), cached."""
        if kind not in self._fns:
            names = sorted(str(s) for s in self.symbolic.free_symbols)
            symbols = sorted(self.symbolic.free_symbols, key=str)
            modules = [_NUMPY_EXTRA, "numpy"] if kind == "numpy" else [_MPMATH_EXTRA, "mpmath"]
            # common subexpressions computed once (exp(-x**2 - y**2) in every term of a product rule);
            # sympy.cse itself is slow on very large trees, which the numpy path sees only at low orders
            cse = sum(1 for _ in sympy.preorder_traversal(self.symbolic)) <= 5000
            self._fns[kind] = (names, sympy.lambdify(symbols, self.symbolic, modules=modules, cse=cse))
        return self._fns[kind]

    def _mp_each(
        self, batch: CheckBatch, points: dict[str, np.ndarray], values: np.ndarray, rows: np.ndarray,
        tol: float, dps: int, deadline: float, *, keep_on_timeout: bool = False,
    ) -> None:
        """Row by row with mpmath at ``dps`` digits until ``deadline``."""
        if self.symbolic is None:
            self._check_each(batch, points, values, rows, tol, dps, deadline, keep_on_timeout=keep_on_timeout)
            return
        names, call = self._lambdified("mpmath")
        done = 0
        with mpmath.workdps(dps):
            for i in rows:
                if _now() > deadline:
                    break
                try:
                    got = call(*(mpmath.mpf(points[k][i]) for k in names))
                except (TypeError, ValueError, ZeroDivisionError, OverflowError):
                    got = mpmath.mpf("nan")
                got = _real(got)
                if _undefined(got, values[i]):  # the precise per-point check says so (single)
                    batch.single[int(i)] = CheckResult(ok=None, symbolic=self.symbolic_text, skipped=NO_VALUE)
                    batch.status[i] = -1
                    done += 1
                    continue
                err = rel_err(values[i], got)
                batch.set(int(i), err <= tol, got, err)
                done += 1
        self._note_budget(batch, rows, done, keep_on_timeout)

    def _check_each(
        self, batch: CheckBatch, points: dict[str, np.ndarray], values: np.ndarray, rows: np.ndarray,
        tol: float, dps: int, deadline: float, *, keep_on_timeout: bool = False,
    ) -> None:
        """The precise per-point :meth:`check` until ``deadline`` (at least one row is always checked)."""
        done = 0
        for i in rows:
            if done and _now() > deadline:
                break
            point = {k: v[i] for k, v in points.items()}
            result = self.check(point, values[i], tol=tol, dps=dps)
            batch.single[int(i)] = result
            batch.status[i] = -1 if result.ok is None else int(result.ok)
            done += 1
        self._note_budget(batch, rows, done, keep_on_timeout)

    def _note_budget(self, batch: CheckBatch, rows: np.ndarray, done: int, keep: bool) -> None:
        if done < rows.size and not keep:
            batch.status[rows[done:]] = -1
            batch.skipped[0] = (f"the check's budget of {self.timeout:g} s per chunk of rows (--check-timeout) "
                                "ran out before their turn")


class TaylorChain:
    """The check of ``gradcli taylor``: one budget for every order 0..N instead of N+1 separate oracles.

    sympy differentiates once, incrementally (d_k = d/dx d_(k-1)), for at most ``timeout`` s (a fifth of
    it when N > 20, as for one derivative); the derivatives it reached are evaluated at the point within
    the rest of that ``timeout`` (at least a fifth of it), and every other order is compared with one
    ``mpmath.diffs`` run (all orders from one set of forward evaluations at raised precision), itself
    bounded by ``timeout``. Orders that neither reached are reported as skipped, with the reason. At
    most about 2.2 times ``timeout`` per point in all, however large N.

    >>> import sympy
    >>> from gradcli.graph import lower
    >>> from gradcli.parse import symbol
    >>> f = symbol("x") ** 3
    >>> chain = TaylorChain(f, lower(f), "x", 4, 5.0)
    >>> [chain.oracle(k).check({"x": 3.0}, v, tol=1e-8).ok for k, v in enumerate([27.0, 27.0, 18.0, 6.0, 0.0])]
    [True, True, True, True, True]
    """

    def __init__(self, expr: sympy.Expr, graph: Graph, var: str, order: int, timeout: float) -> None:
        self.expr, self.graph, self.var, self.order, self.timeout = expr, graph, var, order, timeout
        self.budget = timeout if order <= HIGH_ORDER else timeout / 5
        self._start = _now()
        found: list[sympy.Expr] = [expr]
        why: list[str] = []
        done, _ = _bounded(lambda expired: self._differentiate(found, why, expired), self.budget)
        self.symbolic = list(found)  # a snapshot: an abandoned run may still append
        reached = len(self.symbolic) - 1
        if why:
            self.why = why[0]
        elif reached < order:
            self.why = f"sympy's derivatives reached order {reached} of {order} within {self.budget:g} s"
        else:
            self.why = None
        self._evaluation_deadline: dict[Any, float] = {}
        self._numeric: dict[Any, list[Any] | None] = {}
        self._oracles: dict[int, Oracle] = {}

    def _differentiate(self, found: list[sympy.Expr], why: list[str], expired: Callable[[], bool]) -> None:
        from .parse import symbol

        x = symbol(self.var)
        d = self.expr
        for k in range(1, self.order + 1):
            if d != 0:
                d = sympy.diff(d, x)
                size = sum(1 for _ in sympy.preorder_traversal(d))
                if size > MAX_SYMBOLIC_NODES:
                    why.append(f"sympy's derivative of order {k} has {size} nodes, too large to evaluate")
                    return
            if expired():
                return
            found.append(d)

    def symbolic_of(self, k: int) -> tuple[sympy.Expr | None, str | None]:
        """sympy's k-th derivative, or (None, why it is missing)."""
        return (self.symbolic[k], None) if k < len(self.symbolic) else (None, self.why)

    def oracle(self, k: int) -> Oracle:
        """The :class:`Oracle` of order k (cached)."""
        if k not in self._oracles:
            self._oracles[k] = Oracle(self.expr, self.graph, [self.var] * k, self.timeout, chain=self)
        return self._oracles[k]

    def check(self, oracle: Oracle, point: dict[str, Any], value: Any, *, tol: float, dps: int) -> CheckResult:
        """:meth:`Oracle.check` for order ``len(oracle.wrt)`` within the chain's shared budgets."""
        key = tuple(sorted((n, repr(v)) for n, v in point.items()))
        why = oracle.skipped
        if oracle.symbolic is not None:
            # differentiation and evaluation share ``timeout`` (at least a fifth of it for the evaluation)
            deadline = self._evaluation_deadline.setdefault(
                key, max(self._start + self.timeout, _now() + self.timeout / 5))
            done, got = _bounded(lambda expired: _evaluate(oracle.symbolic, point, dps), deadline - _now())
            if done and _undefined(got, value):
                return CheckResult(ok=None, symbolic=oracle.symbolic_text, skipped=NO_VALUE)
            if done:
                err = rel_err(value, got)
                return CheckResult(ok=err <= tol, symbolic=oracle.symbolic_text, value=got, rel_err=err)
            why = f"evaluating sympy's derivatives at this point took over {self.timeout:g} s"
        return CheckResult(ok=None, skipped=why)


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


# ---- the vectorised check (--points) -----------------------------------------------------------------
#: Up to this order a chunk's symbolic derivative is evaluated in float64 (lambdify with numpy); beyond
#: it a large symbolic derivative loses its digits to cancellation (DESIGN.md: from about order 16), so
#: higher orders are evaluated row by row with mpmath at raised precision.
LAMBDIFY_MAX_ORDER = 8


def _now() -> float:
    return time.monotonic()


def rel_err_many(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`rel_err` elementwise over float64 arrays (inf where either side is nan)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    with np.errstate(all="ignore"):
        diff = np.abs(a - b)
        scale = np.maximum(np.abs(a), np.abs(b))
        err = np.where(scale >= SMALL, diff / scale, diff)
        err = np.where(a == b, 0.0, err)
        return np.where(np.isnan(err) | np.isnan(a) | np.isnan(b), np.inf, err)


def _real(v: Any) -> Any:
    """An mpmath result as a real mpf: nan for a genuinely complex value (outside the real domain)."""
    if isinstance(v, mpmath.mpc):
        return v.real if v.imag == 0 else mpmath.mpf("nan")
    if isinstance(v, (int, float, sympy.Integer, sympy.Rational)):
        return mpmath.mpf(float(v)) if not isinstance(v, int) else mpmath.mpf(v)
    return v


def _elementwise(fn: Callable[..., Any], nargs: int) -> Callable[..., np.ndarray]:
    """A float64 function over arrays from a scalar one (math/mpmath functions without a numpy ufunc);
    nan where the scalar function is undefined (poles, complex results)."""

    def one(*xs: Any) -> float:
        try:
            return float(fn(*xs))
        except (ValueError, OverflowError, ZeroDivisionError, TypeError):
            return float("nan")

    ufunc = np.frompyfunc(one, nargs, 1)

    def call(*args: Any) -> np.ndarray:
        return np.asarray(ufunc(*args), dtype=np.float64)

    return call


#: Names sympy's numpy / mpmath printers leave to lambdify's namespace: every function that
#: syntax.FUNCTIONS or their derivatives can produce and numpy (mpmath) lacks, from the registry's entries.
_NUMPY_EXTRA: dict[str, Any] = {name: fn for p in ops.REGISTRY.values() for name, fn in p.numpy}
_MPMATH_EXTRA: dict[str, Any] = {name: fn for p in ops.REGISTRY.values() for name, fn in p.mpmath}


@dataclass(frozen=True, slots=True)
class CheckBatch:
    """One entry's check over a chunk of P points, as arrays; ``batch[i]`` is row i's CheckResult.

    ``status`` is 1 where the row agreed, 0 where it disagreed, -1 where it was not checked
    (``skipped[0]`` says why). Rows in ``excluded`` (they left the domain) have no result (None).
    Rows checked one at a time by :meth:`Oracle.check` keep their full result in ``single``.
    """

    status: np.ndarray  # int8 (P,)
    value: np.ndarray  # the oracle's values: float64, or mpf objects with --digits
    rel_err: np.ndarray  # float64 (P,)
    excluded: np.ndarray  # bool (P,)
    symbolic: str | None
    single: dict[int, CheckResult]
    skipped: list[str | None]

    @classmethod
    def empty(cls, n: int, excluded: np.ndarray, symbolic: str | None, mp: bool) -> CheckBatch:
        value = np.full(n, mpmath.mpf("nan"), dtype=object) if mp else np.full(n, np.nan)
        return cls(np.full(n, -1, dtype=np.int8), value, np.full(n, np.nan), np.asarray(excluded, dtype=bool),
                   symbolic, {}, [None])

    def set(self, i: int, ok: bool, value: Any, err: float) -> None:
        """Record row ``i``'s verdict (replacing an earlier, less precise one)."""
        self.status[i] = int(ok)
        self.value[i] = value if self.value.dtype == object else float(value)
        self.rel_err[i] = err
        self.single.pop(i, None)

    @property
    def failed(self) -> np.ndarray:
        """True for each row whose engine value disagreed with the oracle."""
        return self.status == 0

    def __len__(self) -> int:
        return len(self.status)

    def __getitem__(self, i: int) -> CheckResult | None:
        if self.excluded[i]:
            return None
        if i in self.single:
            return self.single[i]
        if self.status[i] < 0:
            return CheckResult(ok=None, symbolic=self.symbolic, skipped=self.skipped[0] or "not checked")
        v = self.value[i]
        return CheckResult(ok=bool(self.status[i]), symbolic=self.symbolic,
                           value=v if self.value.dtype == object else float(v), rel_err=float(self.rel_err[i]))
