"""The oracle and the one comparison rule."""

from __future__ import annotations

import time

import mpmath
import sympy

from gradcli.check import Oracle, close, rel_err
from gradcli.graph import lower
from gradcli.parse import symbol

x = symbol("x")


def test_rel_err_is_relative_above_1e_12() -> None:
    assert rel_err(1.0, 1.0 + 1e-9) == float(abs(mpmath.mpf(1e-9 + 1.0) - 1) / mpmath.mpf(1.0 + 1e-9))


def test_rel_err_is_absolute_below_1e_12() -> None:
    assert rel_err(1e-15, 0.0) == 1e-15


def test_close_uses_tol() -> None:
    assert close(100.0, 100.0 + 1e-7, 1e-8)
    assert not close(100.0, 100.1, 1e-8)


def test_nan_is_never_close() -> None:
    assert not close(float("nan"), 1.0, 1.0)


def test_oracle_value_matches_closed_form() -> None:
    expr = sympy.exp(2 * x)
    result = Oracle(expr, lower(expr), ["x", "x", "x"], 5.0).check({"x": 0.5}, 8 * mpmath.e, tol=1e-8)
    with mpmath.workdps(30):
        assert result.ok is True and abs(result.value - 8 * mpmath.exp(1)) < 1e-25
    assert result.symbolic == "8*exp(2*x)"


def test_oracle_reports_mismatch() -> None:
    expr = x**3
    result = Oracle(expr, lower(expr), ["x"], 5.0).check({"x": 3.0}, 28.0, tol=1e-8)
    assert result.ok is False and result.value == 27


def test_oracle_is_bounded_by_its_timeout_and_says_so() -> None:
    expr = sympy.exp(sympy.sin(x)) * sympy.log(1 + x**2)
    start = time.monotonic()
    oracle = Oracle(expr, lower(expr), ["x"] * 40, 0.5)
    result = oracle.check({"x": 0.5}, 0.0, tol=1e-8)
    assert time.monotonic() - start < 0.5 + 10  # the budget, and room for a loaded machine: never a hang
    assert result.skipped
    assert result.ok is None or result.method == "mpmath.diff"
