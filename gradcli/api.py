"""The plain Python functions: ``derivative``, ``gradient``, ``hessian``, ``jacobian``, ``taylor``.

They share every stage with the CLI (parse, graph, engines, check) and raise
:class:`~gradcli.errors.GradcliError` subclasses for user errors. ``at`` values may be numbers,
constant-expression strings (``"pi/4"``) or numpy arrays (vectorised over points).
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import mpmath
import numpy as np
import sympy

from . import ops
from .check import CheckResult
from .commands import Chunk, Job, Unnumbered, evaluate_block
from .derive import Prepared, point_arrays, prepare, resolve_point, resolve_wrt
from .errors import GradcliError, InputError, NotFinite, Uncertified, for_api

__all__ = ["derivative", "gradient", "hessian", "jacobian", "taylor", "compile", "Compiled", "MAX_DIGITS"]

#: The largest --digits / digits= accepted (mpmath arithmetic grows quickly beyond it).
MAX_DIGITS = 10_000


def precision(digits: int | None) -> AbstractContextManager[ops.Backend]:
    """The backend for ``digits`` (float64 when None), with mpmath's precision set for the block."""
    if digits is None:
        return _FLOAT64  # no generator to start: a compiled call takes ~90 us, a few of them here
    return _digits(digits)


_FLOAT64 = nullcontext(ops.F64)


@contextmanager
def _digits(digits: int) -> Iterator[ops.Backend]:
    if isinstance(digits, bool) or not isinstance(digits, int) or not 1 <= digits <= MAX_DIGITS:
        raise InputError(f"digits must be a whole number from 1 to {MAX_DIGITS}, got {digits!r}")
    with mpmath.workdps(digits + 10):
        yield ops.mp_backend(digits + 10)


def _values(at: dict[str, Any] | None) -> dict[str, Any]:
    from .parse import parse_constant

    out: dict[str, Any] = {}
    for name, v in (at or {}).items():
        if isinstance(v, str):
            out[str(name)] = parse_constant(v, what=f"at[{name!r}]")
        elif isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
            out[str(name)] = v
        elif isinstance(v, (np.ndarray, list, tuple, sympy.Basic, mpmath.mpf)):
            out[str(name)] = v
        else:
            raise InputError(f"at[{name!r}] must be a number, a string or an array, got {type(v).__name__}")
    return out


def _is_scalar_point(at: dict[str, Any]) -> bool:
    return all(np.ndim(v) == 0 for v in at.values() if not isinstance(v, sympy.Basic))


def _exact(at: dict[str, Any]) -> dict[str, Any]:
    """The values the ball engine takes exactly: typed constants and Python numbers at one point."""
    return {k: v for k, v in at.items() if isinstance(v, (sympy.Basic, int, float, mpmath.mpf))
            and not isinstance(v, bool)}


def _evaluate(job: Any, at: dict[str, Any], scalar: bool | None = None) -> Any:
    """Run ``job`` at ``at`` through the one evaluation path the CLI uses (engines, certification,
    check); raise the first row's error, or :class:`Uncertified` for a value no ball could prove.
    ``scalar``: whether ``at`` is one point (worked out when not given)."""
    if scalar is None:
        scalar = _is_scalar_point(at)
    points, n = point_arrays(at, job.bk)
    block = evaluate_block(job, Chunk(points, n, Unnumbered(n), exact=_exact(at) if scalar else {}))
    if block.bad.any():
        raise block.error(int(np.argmax(block.bad))) or NotFinite("the result is not finite")
    for i in block.uncertified[:1]:
        cert = next(c for c in block.certs[i] if not c.ok)
        where = ", ".join(f"{k}={points[k][i]}" for k in sorted(points))
        raise Uncertified(f"the value at {where} could not be certified: {cert.reason}")
    return block


#: Jobs of recent calls, by what they are made of (expressions by identity: :func:`_prepared` keeps them),
#: so a repeated call reuses the job's ball-engine plan and its sympy oracles.
_JOBS: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_JOBS_LOCK = threading.Lock()
_JOBS_MAX = 64


def _job(command: str, preps: list[Prepared], names: list[str], bk: ops.Backend, digits: int | None, *,
         check: bool = False, tol: float = 1e-8, check_timeout: float = 5.0, order: int = 0,
         engine: str = "auto", threads: int | None = None) -> Any:
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol < 1:
        raise InputError(f"tol must be a number between 0 and 1, got {tol!r}")
    if engine not in ("auto", "taylor", "reverse"):
        raise InputError(f"unknown engine {engine!r}: use auto, taylor or reverse")
    if threads is not None:
        from .batch import threads_from

        threads_from(threads)  # a whole number >= 1, or an InputError naming it
    key = (command, tuple(id(p) for p in preps), tuple(names), bk, digits, bool(check), float(tol),
           float(check_timeout), order, engine, threads)
    with _JOBS_LOCK:
        job = _JOBS.get(key)
        if job is not None and all(a is b for a, b in zip(job.preps, preps)):
            _JOBS.move_to_end(key)
            return job
    job = Job(command, tuple(preps), tuple(names), bk, digits=digits, check=check, tol=float(tol),
              check_timeout=check_timeout, order=order, engine=engine, threads=threads)
    with _JOBS_LOCK:
        _JOBS[key] = job
        while len(_JOBS) > _JOBS_MAX:
            _JOBS.popitem(last=False)
    return job


def _reports(fn: Any) -> Any:
    """A public function whose errors name its parameters (``at``), not the CLI's options (``--at``)."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GradcliError as exc:
            for_api(exc)
            raise

    return call


def _unwrap(values: np.ndarray, scalar: bool) -> Any:
    if scalar:
        v = values[0]
        if np.ndim(v) == 0:
            return v if isinstance(v, mpmath.mpf) else float(v)
        return v
    return values


@_reports
def derivative(
    expr: str,
    wrt: str | list[str] | None = None,
    at: dict[str, Any] | None = None,
    *,
    digits: int | None = None,
    check: bool = False,
    tol: float = 1e-8,
    check_timeout: float = 5.0,
    engine: str = "auto",
    threads: int | None = None,
) -> Any:
    """One derivative d^n f / d wrt[0] ... d wrt[n-1], at one point or vectorised over arrays.

    Every value returned is certified by ball arithmetic (see :mod:`gradcli.certify`): within ``tol``
    of the true derivative, or with ``digits``, every digit correct.

    Args:
        expr: the expression, in gradcli's syntax (parsed safely, never executed).
        wrt: ``"x:2,y"`` or a list of names; None for the expression's only variable.
        at: variable values: numbers, constant strings (``"pi/4"``, used exactly) or numpy arrays.
        digits: compute this many correct significant digits (returns an ``mpmath.mpf``).
        check: also run the symbolic cross-check; then returns ``(value, CheckResult)``.
        tol: the relative tolerance of the certificate and the check.
        threads: worker threads of the fused evaluator for arrays of many points (default:
            $GRADCLI_THREADS, else one per core); gradient, hessian and jacobian take it too.

    Returns:
        A float (an ``mpf`` with ``digits``), or an array when ``at`` holds arrays.

    Raises:
        InputError: bad expression, ``wrt`` or ``at`` (exit code 2).
        NotFinite: the point is outside the domain, the derivative does not exist there, or the value
            is beyond float64's range (use ``digits``) (exit code 3).
        Uncertified: no ball could prove the value (exit code 1).

    >>> derivative("2*x**3+5*y**2", wrt="x,x", at={"x": 5, "y": 2})
    60.0
    >>> derivative("x**3", at={"x": 3})
    27.0
    """
    prep = _prepared(expr)
    names, _notes = resolve_wrt(prep, wrt)
    at = resolve_point(prep, names, _values(at))
    with precision(digits) as bk:
        job = _job("d", [prep], names, bk, digits, check=check, tol=tol, check_timeout=check_timeout,
                   engine=engine, threads=threads)
        scalar = _is_scalar_point(at)
        block = _evaluate(job, at, scalar)
        value = _unwrap(block.values, scalar)
        if not check:
            return value
        results = [block.checks[0][i] for i in range(block.chunk.size)]
    return value, (results[0] if scalar else results)


@functools.lru_cache(maxsize=256)
def _prepare_text(text: str) -> Prepared:
    return prepare(text)


def _prepared(expr: Any) -> Prepared:
    """Parse and lower ``expr`` once: strings through a small LRU cache, a :class:`Compiled` or a
    ``Prepared`` as it is (both are immutable)."""
    if isinstance(expr, Compiled):
        return expr.prep
    if isinstance(expr, Prepared):
        return expr
    if isinstance(expr, str):
        return _prepare_text(expr)
    return prepare(expr)


class Compiled:
    """An expression parsed and lowered once, for repeated calls (see :func:`compile`).

    >>> f = compile("2*x**3+5*y**2+11*x*y+5")
    >>> f.derivative("x,x", {"x": 5, "y": 2}), f.gradient({"x": 5, "y": 2}).tolist()
    (60.0, [172.0, 75.0])
    """

    __slots__ = ("prep",)

    def __init__(self, expr: str) -> None:
        self.prep = _prepared(expr)

    @property
    def variables(self) -> tuple[str, ...]:
        return self.prep.variables

    def __repr__(self) -> str:
        return f"gradcli.compile({self.prep.text!r})"

    def derivative(self, wrt: str | list[str] | None = None, at: dict[str, Any] | None = None, **kw: Any) -> Any:
        """:func:`derivative` of this expression."""
        return derivative(self.prep, wrt, at, **kw)

    def gradient(self, at: dict[str, Any], wrt: str | list[str] | None = None, **kw: Any) -> Any:
        """:func:`gradient` of this expression."""
        return gradient(self.prep, at, wrt, **kw)

    def hessian(self, at: dict[str, Any], wrt: str | list[str] | None = None, **kw: Any) -> Any:
        """:func:`hessian` of this expression."""
        return hessian(self.prep, at, wrt, **kw)

    def taylor(self, var: str, order: int, at: dict[str, Any], **kw: Any) -> Any:
        """:func:`taylor` of this expression."""
        return taylor(self.prep, var, order, at, **kw)


@_reports
def compile(expr: str) -> Compiled:  # noqa: A001 - the public name the contract gives
    """Parse (safely) and lower ``expr`` once, for repeated calls of the same expression.

    Args:
        expr: the expression, in gradcli's syntax.

    Returns:
        A :class:`Compiled` with ``.derivative``, ``.gradient``, ``.hessian`` and ``.taylor``.

    Raises:
        InputError: a bad expression (exit code 2).

    >>> compile("x**3").derivative(at={"x": 3})
    27.0
    """
    return Compiled(expr)


def _names(command: str, preps: list[Prepared], wrt: Any) -> list[str]:
    """The variables ``command`` differentiates by (see :meth:`gradcli.commands.Command.names`)."""
    from .commands import COMMANDS

    return COMMANDS[command].names(preps, wrt)[0]


@_reports
def gradient(expr: str, at: dict[str, Any], wrt: str | list[str] | None = None, *, digits: int | None = None,
             tol: float = 1e-8, threads: int | None = None) -> Any:
    """The gradient, variables sorted by name unless ``wrt`` orders them (one reverse sweep), certified.

    >>> gradient("2*x**3+5*y**2+11*x+5", at={"x": 5, "y": 2}).tolist()
    [161.0, 20.0]
    """
    prep = _prepared(expr)
    names = _names("grad", [prep], wrt)
    at = resolve_point(prep, names, _values(at))
    with precision(digits) as bk:
        block = _evaluate(_job("grad", [prep], names, bk, digits, tol=tol, threads=threads), at)
        return _unwrap(block.values, _is_scalar_point(at))


@_reports
def hessian(expr: str, at: dict[str, Any], wrt: str | list[str] | None = None, *, digits: int | None = None,
            tol: float = 1e-8, threads: int | None = None) -> Any:
    """The Hessian matrix, variables sorted by name unless ``wrt`` orders them, certified.

    Forward-over-reverse: one reverse sweep on dual numbers gives every row at once (exactly symmetric).
    Vectorised like :func:`gradient`: arrays in ``at`` give shape (P, n, n).

    >>> hessian("2*x**3+5*y**2+11*x*y+5", at={"x": 5, "y": 2}).tolist()
    [[60.0, 11.0], [11.0, 10.0]]
    """
    prep = _prepared(expr)
    names = _names("hessian", [prep], wrt)
    at = resolve_point(prep, names, _values(at))
    with precision(digits) as bk:
        block = _evaluate(_job("hessian", [prep], names, bk, digits, tol=tol, threads=threads), at)
        return _unwrap(block.values, _is_scalar_point(at))


@_reports
def jacobian(
    exprs: list[str], at: dict[str, Any], wrt: str | list[str] | None = None, *, digits: int | None = None,
    tol: float = 1e-8, threads: int | None = None,
) -> Any:
    """One gradient row per expression, over the union of their variables (sorted) unless ``wrt``.

    >>> jacobian(["x*y", "x+y"], at={"x": 2, "y": 3}).tolist()
    [[3.0, 2.0], [1.0, 1.0]]
    """
    if isinstance(exprs, str):
        exprs = [exprs]
    preps = [_prepared(e) for e in exprs]
    names = _names("jacobian", preps, wrt)
    at = _values(at)
    known = {v for p in preps for v in p.variables} | set(names)
    for name in at:
        if name not in known:
            raise InputError(f"at names '{name}', which is in no expression and not in wrt")
    for p in preps:
        resolve_point(p, names, {k: v for k, v in at.items() if k in p.variables or k in names})
    with precision(digits) as bk:
        block = _evaluate(_job("jacobian", preps, names, bk, digits, tol=tol, threads=threads), at)
        return _unwrap(block.values, _is_scalar_point(at))


@_reports
def taylor(expr: str, var: str, order: int, at: dict[str, Any], *, digits: int | None = None,
           tol: float = 1e-8) -> Any:
    """Derivatives f(A), f'(A), ..., f^(N)(A) and Taylor coefficients f^(k)(A)/k!, as two arrays.

    >>> d, c = taylor("exp(2*x)", "x", 3, at={"x": 0})
    >>> d.tolist(), c.tolist()
    ([1.0, 2.0, 4.0, 8.0], [1.0, 2.0, 2.0, 1.3333333333333333])
    """
    from .parse import MAX_ORDER

    prep = _prepared(expr)
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not 0 <= order <= MAX_ORDER:
        raise InputError(f"order must be a whole number from 0 to {MAX_ORDER}, got {order!r}")
    names, _ = resolve_wrt(prep, var)
    if len(names) != 1:
        raise InputError("taylor takes one variable")
    at = resolve_point(prep, names, _values(at))
    with precision(digits) as bk:
        at_full = dict(at)
        at_full.setdefault(names[0], 0)
        block = _evaluate(_job("taylor", [prep], names, bk, digits, tol=tol, order=int(order)), at_full)
        derivs, coeffs = block.values, block.extra["coefficients"]
        if _is_scalar_point(at):
            return derivs[0], coeffs[0]
        return derivs, coeffs


__all__ += ["CheckResult"]
