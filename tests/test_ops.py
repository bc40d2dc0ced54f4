"""Every primitive of the registry against sympy: forward, reverse rule, Taylor rule (both engines)."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import sympy

from gradcli import ops
from gradcli.derive import derivative_values, point_arrays
from gradcli.graph import lower
from gradcli.parse import symbol

x, y = symbol("x"), symbol("y")

# One expression per user-facing primitive, with interior points of its domain.
CASES = {
    "exp": (sympy.exp(x), [0.3, -1.2]),
    "log": (sympy.log(x), [0.4, 2.5]),
    "sin": (sympy.sin(x), [0.3, 2.0]),
    "cos": (sympy.cos(x), [0.3, -2.0]),
    "tan": (sympy.tan(x), [0.3, -1.1]),
    "asin": (sympy.asin(x), [0.3, -0.7]),
    "acos": (sympy.acos(x), [0.3, -0.7]),
    "atan": (sympy.atan(x), [0.3, -3.0]),
    "atan2": (sympy.atan2(x, y), [0.3, -0.7]),
    "sinh": (sympy.sinh(x), [0.3, -1.5]),
    "cosh": (sympy.cosh(x), [0.3, -1.5]),
    "tanh": (sympy.tanh(x), [0.3, -1.5]),
    "asinh": (sympy.asinh(x), [0.3, -1.5]),
    "acosh": (sympy.acosh(x), [1.3, 2.5]),
    "atanh": (sympy.atanh(x), [0.3, -0.6]),
    "abs": (sympy.Abs(x), [0.3, -1.5]),
    "sign": (sympy.sign(x) * x**2, [0.3, -1.5]),
    "erf": (sympy.erf(x), [0.3, -1.5]),
    "erfc": (sympy.erfc(x), [0.3, -1.5]),
    "gamma": (sympy.gamma(x), [0.3, 2.5, -1.5]),
    "loggamma": (sympy.loggamma(x), [0.3, 2.5]),
    "pow": (x**sympy.Rational(5, 2) + x ** (-3) + x**7, [0.3, 1.7]),
    "div": (1 / (1 + x**2), [0.3, -1.5]),
    "polygamma": (sympy.polygamma(1, x), [0.7, 2.5]),
}
Y_VALUE = 0.9


def _oracle(expr: sympy.Expr, order: int, at: float) -> mpmath.mpf:
    d = sympy.diff(expr, x, order)
    return mpmath.mpf(sympy.N(d.subs({x: sympy.Float(at, 40), y: sympy.Float(Y_VALUE, 40)}), 30))


def _engine(expr: sympy.Expr, order: int, at: float, engine: str, bk: ops.Backend = ops.F64) -> float:
    graph = lower(expr)
    point = {"x": at}
    if "y" in graph.variables:
        point["y"] = Y_VALUE
    pts, n = point_arrays(point, bk)
    vals, _ = derivative_values(graph, ["x"] * order, {k: v for k, v in pts.items() if k in graph.variables}, bk, n,
                                engine)
    return vals[0]


def _rel(a: float, b: mpmath.mpf) -> float:
    b = float(b)
    return abs(a - b) / max(abs(b), 1e-12)


def test_registry_covers_every_contract_function() -> None:
    contract = "exp log sqrt sin cos tan asin acos atan atan2 sinh cosh tanh asinh acosh atanh abs sign erf erfc " \
               "gamma loggamma min max"
    assert set(contract.split()) == set(ops.FUNCTIONS)


def test_every_registry_entry_has_all_rules() -> None:
    for prim in ops.REGISTRY.values():
        assert prim.f64 is not None and prim.mp is not None and prim.vjp is not None
        if prim.name not in ("sum_to", "broadcast_to"):
            assert prim.taylor is not None, prim.name


@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_value_matches_sympy(name: str) -> None:
    expr, points = CASES[name]
    for at in points:
        assert _rel(float(_engine(expr, 0, at, "taylor")), _oracle(expr, 0, at)) < 1e-13


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("order", [1, 2])
def test_reverse_rule_matches_sympy(name: str, order: int) -> None:
    expr, points = CASES[name]
    for at in points:
        assert _rel(float(_engine(expr, order, at, "reverse")), _oracle(expr, order, at)) < 1e-11


@pytest.mark.parametrize("name", sorted(CASES))
def test_taylor_rule_to_order_8_matches_sympy(name: str) -> None:
    expr, points = CASES[name]
    for at in points:
        for order in (1, 3, 8):
            assert _rel(float(_engine(expr, order, at, "taylor")), _oracle(expr, order, at)) < 1e-9, (order, at)


@pytest.mark.parametrize("name", sorted(CASES))
def test_taylor_and_nested_tapes_agree_to_order_4(name: str) -> None:
    expr, points = CASES[name]
    for at in points:
        t = float(_engine(expr, 4, at, "taylor"))
        r = float(_engine(expr, 4, at, "reverse"))
        assert abs(t - r) <= 1e-9 * max(abs(t), 1.0), (t, r)


@pytest.mark.parametrize("name", sorted(CASES))
def test_mp_backend_gives_30_digits(name: str) -> None:
    expr, points = CASES[name]
    with mpmath.workdps(40):
        got = _engine(expr, 5, points[0], "taylor", ops.mp_backend(40))
        want = _oracle(expr, 5, points[0])
        assert abs(got - want) <= mpmath.mpf(10) ** -25 * max(abs(want), 1)


def test_abs_has_no_derivative_at_zero() -> None:
    vals = _engine(sympy.Abs(x), 1, 0.0, "taylor")
    assert np.isnan(vals)


def test_abs_of_even_power_is_differentiable_at_zero() -> None:
    # |x^2| = x^2, so its second derivative at 0 is 2 (sympy agrees).
    assert float(_engine(sympy.Abs(x**2, evaluate=False), 2, 0.0, "taylor")) == float(_oracle(x**2, 2, 0.0))
