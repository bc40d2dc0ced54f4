"""The plain functions gradient, hessian, jacobian, taylor (and their doctests) against sympy."""

from __future__ import annotations

import doctest
import math

import mpmath
import numpy as np
import pytest
import sympy

import gradcli
from gradcli import dual, ops
from gradcli.check import close
from gradcli.derive import hessian_values, point_arrays, prepare

X, Y, Z = sympy.symbols("x y z", real=True)
SYMS = {"x": X, "y": Y, "z": Z}


def at30(point: dict[str, float]) -> dict[sympy.Symbol, sympy.Float]:
    return {SYMS[k]: sympy.Float(v, 30) for k, v in point.items()}


def sym_gradient(expr: sympy.Expr, wrt: list[str], point: dict[str, float]) -> list[float]:
    return [float(sympy.diff(expr, SYMS[w]).evalf(30, subs=at30(point))) for w in wrt]


def sym_hessian(expr: sympy.Expr, wrt: list[str], point: dict[str, float], dps: int = 30) -> list[list[sympy.Float]]:
    hess = sympy.hessian(expr, [SYMS[w] for w in wrt])
    subs = {SYMS[k]: sympy.Float(v, dps) for k, v in point.items()}
    return [[hess[i, j].evalf(dps, subs=subs) for j in range(len(wrt))] for i in range(len(wrt))]


def text(expr: sympy.Expr) -> str:
    """An expression in gradcli's syntax (sympy's printer, with gradcli's names for Abs, Min and Max)."""
    return sympy.sstr(expr).replace("Abs(", "abs(").replace("Min(", "min(").replace("Max(", "max(")


def assert_matrix_close(got: np.ndarray, want: list[list[object]], tol: float = 1e-12) -> None:
    got = np.asarray(got)
    assert got.shape == (len(want), len(want[0]))
    for i, row in enumerate(want):
        for j, w in enumerate(row):
            assert close(got[i, j], w, tol), (i, j, got[i, j], w)


# ---- the doctests (also collected by --doctest-modules; here they run whatever the options) -------------------
@pytest.mark.parametrize("module", ["gradcli", "gradcli.api", "gradcli.tape", "gradcli.tensor"])
def test_docstring_examples_run(module: str) -> None:
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0


# ---- gradient ---------------------------------------------------------------------------------------------------
SEED_F = 2 * X**3 + 5 * Y**2 + 11 * X + 5
SEED_G = 2 * X**3 + 5 * Y**2 + 11 * X * Y + 5


def test_gradient_of_the_seed_example_is_161_and_20() -> None:
    got = gradcli.gradient("2*x**3+5*y**2+11*x+5", at={"x": 5, "y": 2})
    assert got.tolist() == sym_gradient(SEED_F, ["x", "y"], {"x": 5, "y": 2}) == [161.0, 20.0]


def test_gradient_follows_the_order_of_wrt_as_string_or_list() -> None:
    want = sym_gradient(SEED_G, ["y", "x"], {"x": 5, "y": 2})
    assert gradcli.gradient("2*x**3+5*y**2+11*x*y+5", at={"x": 5, "y": 2}, wrt="y,x").tolist() == want
    assert gradcli.gradient("2*x**3+5*y**2+11*x*y+5", at={"x": 5, "y": 2}, wrt=["y", "x"]).tolist() == want


def test_gradient_by_a_variable_the_expression_lacks_is_zero() -> None:
    got = gradcli.gradient("x**2", at={"x": 1.5}, wrt="x,z")
    assert got.tolist() == [float(sympy.diff(X**2, X).subs(X, 1.5)), 0.0]


def test_gradient_is_vectorised_over_arrays() -> None:
    xs = np.linspace(-1, 1, 7)
    got = gradcli.gradient("sin(x)*y", at={"x": xs, "y": 2.0})
    assert got.shape == (7, 2)
    for i, v in enumerate(xs):
        want = sym_gradient(sympy.sin(X) * Y, ["x", "y"], {"x": v, "y": 2.0})
        assert all(close(g, w, 1e-14) for g, w in zip(got[i], want))


def test_gradient_with_digits_is_exact_to_those_digits() -> None:
    got = gradcli.gradient("exp(x)*atan(y)", at={"x": "1/3", "y": "pi/5"}, digits=40)
    f = sympy.exp(X) * sympy.atan(Y)
    point = {X: sympy.Rational(1, 3), Y: sympy.pi / 5}
    for g, w in zip(got, (sympy.diff(f, X), sympy.diff(f, Y))):
        assert isinstance(g, mpmath.mpf)
        with mpmath.workdps(60):
            assert abs(g - mpmath.mpf(str(w.evalf(60, subs=point)))) < mpmath.mpf("1e-38")


def test_gradient_errors_are_gradcli_errors_with_exit_codes() -> None:
    with pytest.raises(gradcli.InputError, match="'y'"):
        gradcli.gradient("x*y", at={"x": 1})
    with pytest.raises(gradcli.InputError, match="twice"):
        gradcli.gradient("x*y", at={"x": 1, "y": 2}, wrt="x,x")
    with pytest.raises(gradcli.NotFinite) as info:
        gradcli.gradient("log(x)", at={"x": -1})
    assert info.value.exit_code == 3


# ---- hessian -------------------------------------------------------------------------------------------------------
def test_hessian_of_the_seed_example_is_60_11_11_10() -> None:
    got = gradcli.hessian("2*x**3+5*y**2+11*x*y+5", at={"x": 5, "y": 2})
    want = sym_hessian(SEED_G, ["x", "y"], {"x": 5, "y": 2})
    assert got.tolist() == [[float(v) for v in row] for row in want] == [[60.0, 11.0], [11.0, 10.0]]


# One expression per registry primitive, inside its domain: the dual (forward-over-reverse) engine runs
# every primitive's Taylor rule and reverse rule.
HESSIAN_CASES = [
    (sympy.exp(X * Y) + sympy.log(X + Y**2), {"x": 0.3, "y": 0.8}),
    (sympy.sin(X) * sympy.cos(Y) + sympy.tan(X * Y), {"x": 0.3, "y": 0.8}),
    (sympy.asin(X * Y) + sympy.acos(X - Y) + sympy.atan(X / Y), {"x": 0.3, "y": 0.8}),
    (sympy.atan2(X, Y) * sympy.sinh(Y) + sympy.cosh(X) * sympy.tanh(X * Y), {"x": 0.3, "y": -0.8}),
    (sympy.asinh(X * Y) + sympy.acosh(1 + X**2 + Y**2) + sympy.atanh(X * Y), {"x": 0.3, "y": 0.8}),
    (sympy.Abs(X - Y) * X + sympy.sign(X) * Y**3, {"x": 0.3, "y": 0.8}),
    (sympy.erf(X * Y) + sympy.erfc(X - Y), {"x": 0.3, "y": 0.8}),
    (sympy.gamma(X + Y) + sympy.loggamma(X * Y + 1), {"x": 0.3, "y": 0.8}),
    (sympy.sqrt(X**2 + Y**2) + X**sympy.Rational(5, 2) / Y**3, {"x": 0.3, "y": 0.8}),
    (X**Y + 2**(X * Y), {"x": 1.3, "y": 0.8}),
    (sympy.Max(X, Y) * sympy.Min(X * Y, 1), {"x": 0.3, "y": 0.8}),
    (X * Y * Z + sympy.exp(X * Z) / (1 + Y**2 * Z**2), {"x": 0.3, "y": 0.8, "z": -1.1}),
]


@pytest.mark.parametrize(("expr", "point"), HESSIAN_CASES, ids=[str(c[0])[:40] for c in HESSIAN_CASES])
def test_hessian_matches_sympy_for_every_primitive(expr: sympy.Expr, point: dict[str, float]) -> None:
    got = gradcli.hessian(text(expr), at=point)
    assert_matrix_close(got, sym_hessian(expr, sorted(point), point), 1e-11)
    assert np.array_equal(got, got.T)


def test_hessian_is_vectorised_over_points() -> None:
    xs, ys = np.linspace(0.1, 0.9, 5), np.linspace(-1, 1, 5)
    got = gradcli.hessian("exp(x*y)*sin(x+y)", at={"x": xs, "y": ys})
    assert got.shape == (5, 2, 2)
    for i in range(5):
        point = {"x": xs[i], "y": ys[i]}
        assert_matrix_close(got[i], sym_hessian(sympy.exp(X * Y) * sympy.sin(X + Y), ["x", "y"], point))


def test_hessian_with_digits_is_exact_to_those_digits() -> None:
    got = gradcli.hessian("exp(x*y)/(1+x**2)", at={"x": "1/3", "y": "2"}, digits=40)
    hess = sympy.hessian(sympy.exp(X * Y) / (1 + X**2), [X, Y])
    point = {X: sympy.Rational(1, 3), Y: 2}
    with mpmath.workdps(60):
        for i in range(2):
            for j in range(2):
                assert abs(got[i, j] - mpmath.mpf(str(hess[i, j].evalf(60, subs=point)))) < mpmath.mpf("1e-38")


def test_hessian_rows_and_columns_follow_wrt_and_absent_variables_are_zero() -> None:
    got = gradcli.hessian("x**3*y", at={"x": 2, "y": 3}, wrt="z,y,x")
    want = sym_hessian(X**3 * Y, ["z", "y", "x"], {"x": 2, "y": 3, "z": 0})
    assert_matrix_close(got, want)
    assert got[0].tolist() == [0.0, 0.0, 0.0]


def test_hessian_of_a_linear_function_is_zero() -> None:
    assert gradcli.hessian("3*x - 2*y + 1", at={"x": 1, "y": 2}).tolist() == [[0.0, 0.0], [0.0, 0.0]]


def test_hessian_of_many_variables_matches_sympy() -> None:
    n = 12
    names = [f"v{i:02d}" for i in range(n)]
    syms = sympy.symbols(names, real=True)
    expr = sympy.exp(sum(s * (i + 1) / n for i, s in enumerate(syms)) / 4) + sum(
        syms[i] ** 2 * sympy.sin(syms[i + 1]) for i in range(n - 1))
    rng = np.random.default_rng(1)
    point = {name: float(v) for name, v in zip(names, rng.uniform(-1, 1, n))}
    got = gradcli.hessian(text(expr), at=point)
    hess = sympy.hessian(expr, syms)
    subs = {s: sympy.Float(point[str(s)], 30) for s in syms}
    assert_matrix_close(got, [[hess[i, j].evalf(30, subs=subs) for j in range(n)] for i in range(n)], 1e-12)


def test_hessian_in_small_blocks_equals_one_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    prep = prepare("exp(x*y)*sin(z) + x**2*y*z")
    rng = np.random.default_rng(2)
    point, npts = point_arrays({k: rng.uniform(-1, 1, 9) for k in "xyz"}, ops.F64)
    whole, _ = hessian_values(prep.graph, ["x", "y", "z"], point, ops.F64, npts)
    monkeypatch.setattr(dual, "BLOCK", 1)  # one direction and one point per sweep
    blocked, _ = hessian_values(prep.graph, ["x", "y", "z"], point, ops.F64, npts)
    assert np.array_equal(whole, blocked)
    expr = sympy.exp(X * Y) * sympy.sin(Z) + X**2 * Y * Z
    for p in range(npts):
        assert_matrix_close(whole[p], sym_hessian(expr, ["x", "y", "z"], {k: point[k][p] for k in "xyz"}))


def test_hessian_engine_agrees_with_nested_tapes() -> None:
    """Two engines: forward-over-reverse on the graph, and reverse-over-reverse with gradcli.Tape."""
    values = {"x": 0.7, "y": -0.4}
    xs = {k: gradcli.constant(v) for k, v in values.items()}
    with gradcli.Tape(persistent=True) as outer:
        outer.watch(list(xs.values()))
        f = gradcli.exp(xs["x"] * xs["y"]) * gradcli.atan(xs["x"] - xs["y"] ** 2)
        grads = outer.gradient(f, [xs["x"], xs["y"]])
    tape = [[float(outer.gradient(g, xs[k])) for k in "xy"] for g in grads]
    engine = gradcli.hessian("exp(x*y)*atan(x-y**2)", at=values)
    assert_matrix_close(engine, tape, 1e-14)


def test_hessian_outside_the_domain_is_not_finite() -> None:
    with pytest.raises(gradcli.NotFinite):
        gradcli.hessian("sqrt(x)*y", at={"x": -1, "y": 1})


# ---- jacobian -------------------------------------------------------------------------------------------------------
def test_jacobian_has_a_row_per_expression_and_matches_sympy() -> None:
    exprs = [X * Y, X + Y, sympy.sin(X) * sympy.exp(Y)]
    got = gradcli.jacobian([text(e) for e in exprs], at={"x": 2, "y": 3})
    want = sympy.Matrix(exprs).jacobian([X, Y]).evalf(30, subs={X: 2, Y: 3})
    assert_matrix_close(got, want.tolist())


def test_jacobian_takes_the_union_of_variables_sorted_or_wrt() -> None:
    got = gradcli.jacobian(["x*y", "z**2"], at={"x": 2, "y": 3, "z": 4})
    want = sympy.Matrix([X * Y, Z**2]).jacobian([X, Y, Z]).subs({X: 2, Y: 3, Z: 4})
    assert got.tolist() == [[float(v) for v in row] for row in want.tolist()]
    got = gradcli.jacobian(["x*y", "z**2"], at={"x": 2, "y": 3, "z": 4}, wrt="z,x")
    want = sympy.Matrix([X * Y, Z**2]).jacobian([Z, X]).subs({X: 2, Y: 3, Z: 4})
    assert got.tolist() == [[float(v) for v in row] for row in want.tolist()]


def test_jacobian_refuses_a_value_for_a_variable_nothing_uses() -> None:
    with pytest.raises(gradcli.InputError, match="'w'"):
        gradcli.jacobian(["x*y", "x+y"], at={"x": 2, "y": 3, "w": 1})


def test_jacobian_of_one_expression_string_is_one_row() -> None:
    got = gradcli.jacobian("x*y", at={"x": 2, "y": 3})
    assert got.tolist() == [[float(sympy.diff(X * Y, X).subs(Y, 3)), float(sympy.diff(X * Y, Y).subs(X, 2))]]


# ---- taylor ---------------------------------------------------------------------------------------------------------
def test_taylor_of_exp_2x_at_0_gives_powers_of_two_and_their_coefficients() -> None:
    derivs, coeffs = gradcli.taylor("exp(2*x)", "x", 6, at={"x": 0})
    assert all(math.isclose(d, 2.0**k, rel_tol=1e-15) for k, d in enumerate(derivs))  # (e^{2x})^(k)(0) = 2^k
    assert all(math.isclose(c, 2.0**k / math.factorial(k), rel_tol=1e-15) for k, c in enumerate(coeffs))


def test_taylor_matches_sympy_derivatives() -> None:
    derivs, coeffs = gradcli.taylor("sin(x)/(1+x**2)", "x", 8, at={"x": "pi/4"})
    f = sympy.sin(X) / (1 + X**2)
    for k in range(9):
        want = sympy.diff(f, X, k).evalf(30, subs={X: sympy.pi / 4})
        assert close(derivs[k], want, 1e-12), k
        assert close(coeffs[k], want / sympy.factorial(k), 1e-12), k


def test_taylor_refuses_a_bad_order() -> None:
    with pytest.raises(gradcli.InputError, match="order"):
        gradcli.taylor("exp(x)", "x", -1, at={"x": 0})


def test_derivative_with_check_returns_the_check_result() -> None:
    value, result = gradcli.derivative("x**3", at={"x": 3}, check=True)
    assert value == float(sympy.diff(X**3, X).subs(X, 3))
    assert isinstance(result, gradcli.CheckResult) and result.ok is True


def test_compile_gives_the_plain_functions_values() -> None:
    f = gradcli.compile("2*x**3+5*y**2+11*x*y+5")
    at = {"x": 5, "y": 2}
    assert f.derivative("x,x", at) == gradcli.derivative("2*x**3+5*y**2+11*x*y+5", wrt="x,x", at=at) == 60.0
    assert f.gradient(at).tolist() == [172.0, 75.0]
    assert f.hessian(at).tolist() == [[60.0, 11.0], [11.0, 10.0]]
    d, c = f.taylor("x", 3, at)
    assert d.tolist() == [385.0, 172.0, 60.0, 12.0] and c.tolist() == [385.0, 172.0, 30.0, 2.0]


def test_compile_refuses_a_bad_expression_at_once() -> None:
    with pytest.raises(gradcli.InputError):
        gradcli.compile("x +* 2")


def test_plain_calls_reuse_the_parsed_expression() -> None:
    from gradcli import api

    api._prepare_text.cache_clear()
    for _ in range(3):
        gradcli.derivative("sin(x)*x", at={"x": 1})
    info = api._prepare_text.cache_info()
    assert info.misses == 1 and info.hits == 2


# ---- the API names its own parameters in errors, never the CLI's options (issue 10) ---------------------
@pytest.mark.parametrize(
    ("call", "says"),
    [
        (lambda: gradcli.derivative("x*y", at={"x": 1, "y": 2}), "wrt is required: the expression has 2 variables"),
        (lambda: gradcli.derivative("x", wrt="x", at={"z": 1}), "at names 'z', which is neither in the expression"),
        (lambda: gradcli.gradient("x*y", at={"x": 1}), "at is missing a value for 'y'"),
        (lambda: gradcli.derivative("x", wrt="x:0", at={"x": 1}), "wrt: the order in 'x:0'"),
        (lambda: gradcli.hessian("x*y", at={"x": 1, "y": 2}, wrt="x,x"), "wrt lists a variable twice"),
        (lambda: gradcli.compile("x*").derivative(at={"x": 1}), ""),
    ],
)
def test_api_errors_name_its_parameters_not_cli_options(call, says: str) -> None:
    with pytest.raises(gradcli.InputError) as info:
        call()
    message = str(info.value)
    assert says in message and "--" not in message and "EXPR" not in message


def test_the_cli_still_names_its_options(capsys) -> None:
    from conftest import run

    code, _, err = run(capsys, "d", "x*y", "--at", "x=1,y=2")
    assert code == 2 and "--wrt is required: EXPR has 2 variables" in err


def test_threads_give_the_same_arrays_and_bad_counts_are_input_errors() -> None:
    rng = np.random.default_rng(3)
    at = {"x": rng.uniform(-2, 2, 20_000), "y": rng.uniform(-2, 2, 20_000)}
    expr = "x*exp(-(x^2+y^2))*sin(3*y)"
    one, two = gradcli.gradient(expr, at, threads=1), gradcli.gradient(expr, at, threads=2)
    assert np.array_equal(one, two)
    assert np.array_equal(gradcli.hessian(expr, at, threads=1), gradcli.hessian(expr, at, threads=2))
    x, y = at["x"], at["y"]
    e = np.exp(-(x * x + y * y))
    assert np.allclose(one[:, 0], e * np.sin(3 * y) * (1 - 2 * x * x), rtol=1e-13, atol=1e-15)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(gradcli.InputError, match="threads"):
            gradcli.gradient(expr, {"x": 1.0, "y": 2.0}, threads=bad)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("size", [10, 20_000])
def test_a_non_finite_value_in_a_point_array_is_an_input_error(bad: float, size: int) -> None:
    x = np.linspace(-1.0, 1.0, size)
    x[size // 3] = bad
    with pytest.raises(gradcli.InputError, match="the value of x is not a finite number"):
        gradcli.gradient("exp(x)*y", at={"x": x, "y": np.ones(size)})


def test_large_finite_values_in_a_point_array_are_accepted() -> None:
    # their squares overflow (the quick test of a large array), every value is still finite
    x = np.full(20_000, 1e200)
    x[::2] = -1e300
    got = gradcli.gradient("x + 2*y", at={"x": x, "y": x})
    np.testing.assert_array_equal(got, np.broadcast_to([1.0, 2.0], (20_000, 2)))
