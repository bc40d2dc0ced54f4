"""Every primitive of the registry against sympy: forward, reverse rule, Taylor rule (both engines)."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import sympy

from gradcli import ops, syntax
from gradcli.derive import derivative_values, point_arrays
from gradcli.graph import lower
from gradcli.parse import symbol

x, y = symbol("x"), symbol("y")

def _case(prim: ops.Primitive) -> tuple[sympy.Expr, list[float]]:
    """The entry's sympy call on x (y as the second operand), with two points of its sample domain."""
    lo, hi = prim.sample
    params = [sympy.sympify(v) for _, v in prim.sample_params]
    operands = [x, y][: prim.arity]
    expr = prim.sympy(*params, *operands)
    if prim.name == "sign":  # sign' is 0: a factor that moves makes the test say something
        expr = expr * x**2
    return expr, [lo + (hi - lo) * 0.17, lo + (hi - lo) * 0.71]


# One expression per primitive with a sympy class, generated from the registry (its sample domain),
# plus the internal arithmetic that has none.
CASES = {name: _case(prim) for name, prim in ops.REGISTRY.items() if prim.sympy is not None}
CASES.update({
    "pow": (x**sympy.Rational(5, 2) + x ** (-3) + x**7, [0.3, 1.7]),
    "div": (1 / (1 + x**2), [0.3, -1.5]),
    "gamma_negative": (sympy.gamma(x), [-1.5]),
    "besselj_integer": (sympy.besselj(2, x), [-1.5, 0.0, 2.5]),
})  # fmt: skip
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
               "gamma loggamma min max erfinv lambertw besselj"
    assert set(contract.split()) == set(syntax.FUNCTIONS)


def test_every_user_facing_primitive_is_tested_here() -> None:
    public = {name for name, prim in ops.REGISTRY.items() if prim.public}
    assert public <= set(CASES)


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


@pytest.mark.parametrize("u", [-2.5, -30.3, -4343.3])
def test_polygamma_rule_at_negative_arguments(u: float) -> None:
    # the Hessian of gamma(x*y) at many points (the dual engine) uses polygamma's Taylor rule: mpmath's
    # zeta(s, a < 0) is not the Hurwitz sum there (wrong from a = -30 on, complex further out)
    from gradcli.derive import hessian_values, prepare

    x0, y0 = 2.0, u / 2.0
    n = 100
    out, fail = hessian_values(prepare("gamma(x*y)").graph, ["x", "y"],
                               {"x": np.full(n, x0), "y": np.full(n, y0)}, ops.F64, n)
    assert not fail.bad.any()
    with mpmath.workdps(40):
        g1, g2 = (mpmath.diff(mpmath.gamma, mpmath.mpf(u), k) for k in (1, 2))
        want = [[y0 * y0 * g2, g1 + u * g2], [g1 + u * g2, x0 * x0 * g2]]
    for i in range(2):
        for j in range(2):
            w = float(want[i][j])
            assert abs(out[0, i, j] - w) <= 1e-12 * abs(w) + 1e-300, (i, j, out[0, i, j], w)
