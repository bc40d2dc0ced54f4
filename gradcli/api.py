"""The plain Python functions: ``derivative``, ``gradient``, ``hessian``, ``jacobian``, ``taylor``.

They share every stage with the CLI (parse, graph, engines, check) and raise
:class:`~gradcli.errors.GradcliError` subclasses for user errors. ``at`` values may be numbers,
constant-expression strings (``"pi/4"``) or numpy arrays (vectorised over points).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import mpmath
import numpy as np
import sympy

from . import ops
from .check import CheckResult, run_check
from .derive import (
    Prepared,
    derivative_values,
    gradient_values,
    hessian_values,
    point_arrays,
    prepare,
    raise_not_finite,
    resolve_point,
    resolve_wrt,
    taylor_values,
)
from .errors import InputError

__all__ = ["derivative", "gradient", "hessian", "jacobian", "taylor", "MAX_DIGITS"]

#: The largest --digits / digits= accepted (mpmath arithmetic grows quickly beyond it).
MAX_DIGITS = 10_000


@contextmanager
def precision(digits: int | None) -> Iterator[ops.Backend]:
    """The backend for ``digits`` (float64 when None), with mpmath's precision set for the block."""
    if digits is None:
        yield ops.F64
        return
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


def _scalar_or_array(values: np.ndarray, scalar: bool) -> Any:
    if scalar:
        v = values[0]
        return v if isinstance(v, mpmath.mpf) else float(v)
    return values


def _is_scalar_point(at: dict[str, Any]) -> bool:
    return all(np.ndim(v) == 0 for v in at.values() if not isinstance(v, sympy.Basic))


def _check_failures(
    prep: Prepared, fail: Any, values: np.ndarray, points: dict[str, np.ndarray], bk: ops.Backend
) -> None:
    from .graph import finite_mask

    fin = finite_mask(values).reshape(values.shape[0], -1).all(axis=1)
    bad = np.flatnonzero(~fin | fail.bad)
    if bad.size:
        raise_not_finite(prep.graph, fail, values, points, int(bad[0]), digits=bk.is_mp)


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
) -> Any:
    """One derivative d^n f / d wrt[0] ... d wrt[n-1], at one point or vectorised over arrays.

    Args:
        expr: the expression, in gradcli's syntax (parsed safely, never executed).
        wrt: ``"x:2,y"`` or a list of names; None for the expression's only variable.
        at: variable values: numbers, constant strings (``"pi/4"``) or numpy arrays.
        digits: compute in this many significant digits (returns an ``mpmath.mpf``).
        check: also run the symbolic cross-check; then returns ``(value, CheckResult)``.

    Returns:
        A float (an ``mpf`` with ``digits``), or an array when ``at`` holds arrays.

    Raises:
        InputError: bad expression, ``wrt`` or ``at`` (exit code 2).
        NotFinite: the point is outside the domain or the result overflows (exit code 3).

    >>> derivative("2*x**3+5*y**2", wrt="x,x", at={"x": 5, "y": 2})
    60.0
    >>> derivative("x**3", at={"x": 3})
    27.0
    """
    prep = prepare(expr)
    names, _notes = resolve_wrt(prep, wrt)
    at = resolve_point(prep, names, _values(at))
    with precision(digits) as bk:
        points, n = point_arrays(at, bk)
        values, fail = derivative_values(prep.graph, names, points, bk, n, engine)
        _check_failures(prep, fail, values, points, bk)
        scalar = _is_scalar_point(at)
        value = _scalar_or_array(values, scalar)
        if not check:
            return value
        results = [
            run_check(prep.expr, prep.graph, names, {k: v[i] for k, v in points.items()}, values[i],
                      tol=tol, timeout=check_timeout, dps=max(30, (digits or 0) + 10))
            for i in range(n)
        ]
    return value, (results[0] if scalar else results)


def _sorted_wrt(prep: Prepared, wrt: str | list[str] | None) -> list[str]:
    if wrt is None:
        if not prep.variables:
            raise InputError("the expression has no variables to differentiate by")
        return list(prep.variables)
    names, _ = resolve_wrt(prep, wrt)
    if len(set(names)) != len(names):
        raise InputError("--wrt lists a variable twice; grad/hessian/jacobian take distinct variables")
    return names


def gradient(expr: str, at: dict[str, Any], wrt: str | list[str] | None = None, *, digits: int | None = None) -> Any:
    """The gradient, variables sorted by name unless ``wrt`` orders them (one reverse sweep).

    >>> gradient("2*x**3+5*y**2+11*x+5", at={"x": 5, "y": 2}).tolist()
    [161.0, 20.0]
    """
    prep = prepare(expr)
    names = _sorted_wrt(prep, wrt)
    at = resolve_point(prep, names, _values(at))
    with precision(digits) as bk:
        points, n = point_arrays(at, bk)
        values, fail = gradient_values(prep.graph, names, points, bk, n)
        _check_failures(prep, fail, values, points, bk)
        return values[0] if _is_scalar_point(at) else values


def hessian(expr: str, at: dict[str, Any], wrt: str | list[str] | None = None, *, digits: int | None = None) -> Any:
    """The Hessian matrix, variables sorted by name unless ``wrt`` orders them.

    Forward-over-reverse: one reverse sweep on dual numbers gives every row at once (exactly symmetric).
    Vectorised like :func:`gradient`: arrays in ``at`` give shape (P, n, n).

    >>> hessian("2*x**3+5*y**2+11*x*y+5", at={"x": 5, "y": 2}).tolist()
    [[60.0, 11.0], [11.0, 10.0]]
    """
    prep = prepare(expr)
    names = _sorted_wrt(prep, wrt)
    at = resolve_point(prep, names, _values(at))
    with precision(digits) as bk:
        points, n = point_arrays(at, bk)
        values, fail = hessian_values(prep.graph, names, points, bk, n)
        _check_failures(prep, fail, values, points, bk)
        return values[0] if _is_scalar_point(at) else values


def jacobian(
    exprs: list[str], at: dict[str, Any], wrt: str | list[str] | None = None, *, digits: int | None = None
) -> Any:
    """One gradient row per expression, over the union of their variables (sorted) unless ``wrt``.

    >>> jacobian(["x*y", "x+y"], at={"x": 2, "y": 3}).tolist()
    [[3.0, 2.0], [1.0, 1.0]]
    """
    if isinstance(exprs, str):
        exprs = [exprs]
    preps = [prepare(e) for e in exprs]
    if wrt is None:
        names = sorted({v for p in preps for v in p.variables})
    else:
        names = _sorted_wrt(preps[0], wrt)
    at = dict(at or {})
    known = {v for p in preps for v in p.variables} | set(names)
    for name in at:
        if name not in known:
            raise InputError(f"at names '{name}', which is in no expression and not in wrt")
    # each expression sees the values of its own variables (another expression's are not unknown to it)
    rows = [gradient(p.expr, {k: v for k, v in at.items() if k in p.variables or k in names}, names, digits=digits)
            for p in preps]
    return np.stack(rows, axis=-2)


def taylor(expr: str, var: str, order: int, at: dict[str, Any], *, digits: int | None = None) -> Any:
    """Derivatives f(A), f'(A), ..., f^(N)(A) and Taylor coefficients f^(k)(A)/k!, as two arrays.

    >>> d, c = taylor("exp(2*x)", "x", 3, at={"x": 0})
    >>> d.tolist(), c.tolist()
    ([1.0, 2.0, 4.0, 8.0], [1.0, 2.0, 2.0, 1.3333333333333333])
    """
    from .parse import MAX_ORDER

    prep = prepare(expr)
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not 0 <= order <= MAX_ORDER:
        raise InputError(f"order must be a whole number from 0 to {MAX_ORDER}, got {order!r}")
    names, _ = resolve_wrt(prep, var)
    if len(names) != 1:
        raise InputError("taylor takes one variable")
    at = resolve_point(prep, names, _values(at))
    with precision(digits) as bk:
        points, n = point_arrays(at, bk)
        if names[0] not in points:
            points[names[0]] = bk.zeros((n,))
        derivs, coeffs, fail = taylor_values(prep.graph, names[0], int(order), points, bk, n)
        _check_failures(prep, fail, derivs, points, bk)
        if _is_scalar_point(at):
            return derivs[0], coeffs[0]
        return derivs, coeffs


__all__ += ["CheckResult"]
