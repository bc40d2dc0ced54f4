"""Domains and non-differentiable points: exit 3 with the point and the function, never a number.

Each case is a point outside a function's domain, at a pole, or where the derivative does not exist
(abs and sign at 0, min/max at a tie). The CLI must exit 3 with one stderr line naming the variable
values and the function, print nothing on stdout, and the Python API must raise NotFinite; both
engines and --digits alike. Just inside each domain the value must match sympy at 30 digits.
"""

from __future__ import annotations

import json
import re

import mpmath
import pytest
import sympy

import gradcli
from gradcli.check import close
from gradcli.cli import main
from gradcli.errors import NotFinite

# (expr, wrt, point, the function the message names)
OUTSIDE = [
    ("log(x)", "x", {"x": 0}, "log"),
    ("log(x)", "x", {"x": -1}, "log"),
    ("log(x, 2)", "x", {"x": -1}, "log"),
    ("sqrt(x)", "x", {"x": -1}, "sqrt"),
    ("sqrt(x)", "x", {"x": 0}, "sqrt"),  # sqrt(0) = 0, but sqrt'(0) does not exist
    ("asin(x)", "x", {"x": 2}, "asin"),
    ("asin(x)", "x", {"x": 1}, "asin"),  # the edge of the domain: asin'(1) is infinite
    ("acos(x)", "x", {"x": -2}, "acos"),
    ("acosh(x)", "x", {"x": 0.5}, "acosh"),
    ("atanh(x)", "x", {"x": 1}, "atanh"),
    ("loggamma(x)", "x", {"x": 0}, "loggamma"),
    ("loggamma(x)", "x", {"x": -1}, "loggamma"),
    ("gamma(x)", "x", {"x": 0}, "gamma"),
    ("gamma(x)", "x", {"x": -1}, "gamma"),
    ("gamma(x)", "x", {"x": -2}, "gamma"),
    ("1/x", "x", {"x": 0}, "division"),
    ("x/y", "x", {"x": 1, "y": 0}, "division"),
    ("x/y", "y", {"x": 1, "y": 0}, "division"),
    ("x**(-2)", "x", {"x": 0}, "power"),
    ("atan2(y, x)", "x", {"x": 0, "y": 0}, "atan2"),
    # sympy simplifies these to 1 or x, which hides the domain; gradcli keeps it (domain guards)
    ("x/x", "x", {"x": 0}, "division"),
    ("x*y/y", "x", {"x": 1, "y": 0}, "division"),
    ("log(x, x)", "x", {"x": 0}, "log"),
    ("log(x, x)", "x", {"x": 1}, "division"),
    ("sqrt(x)**2", "x", {"x": -1}, "sqrt"),
    ("exp(log(x))", "x", {"x": -2}, "log"),
    ("1/(1/x)", "x", {"x": 0}, "division"),
]
# Points where the function is defined but its derivative is not: abs, sign at 0; min/max at a tie
# (min and max are built on abs, which is what the message names).
KINKS = [
    ("abs(x)", "x", {"x": 0}, "abs"),
    ("abs(x)", "x:2", {"x": 0}, "abs"),
    ("abs(x - y)", "y", {"x": 1.5, "y": 1.5}, "abs"),
    ("sign(x)", "x", {"x": 0}, "sign"),
    ("sign(x)", "x:3", {"x": 0}, "sign"),
    ("min(x, y)", "x", {"x": 1, "y": 1}, "abs"),
    ("max(x, y)", "y", {"x": 2, "y": 2}, "abs"),
    ("max(x, y)", "x,y", {"x": -0.5, "y": -0.5}, "abs"),
    ("min(x, 1)", "x", {"x": 1}, "abs"),
]
CASES = OUTSIDE + KINKS


def _ids(cases: list) -> list[str]:
    return [f"{e}|{w}|{','.join(f'{k}={v}' for k, v in p.items())}" for e, w, p, _ in cases]


def _at(point: dict[str, float]) -> str:
    return ",".join(f"{k}={v}" for k, v in point.items())


def _names_the_point(message: str, point: dict[str, float]) -> bool:
    """Every variable's value appears in the message as NAME=VALUE (in any float spelling)."""
    for name, value in point.items():
        found = re.search(rf"\b{name}=(-?[0-9.]+(?:e[-+]?[0-9]+)?)", message)
        if not found or float(found.group(1)) != float(value):
            return False
    return True


@pytest.mark.parametrize(("expr", "wrt", "point", "fn"), CASES, ids=_ids(CASES))
def test_cli_exits_3_naming_the_point_and_the_function(capsys, expr, wrt, point, fn):
    code = main(["d", expr, "--wrt", wrt, "--at", _at(point), "--format", "plain"])
    out, err = capsys.readouterr()
    assert code == 3
    assert out == ""
    assert len(err.splitlines()) == 1 and err.startswith("gradcli: error:"), err
    assert "Traceback" not in err
    assert _names_the_point(err, point), err
    assert re.search(rf"\b{re.escape(fn)}\b", err), err


@pytest.mark.parametrize(("expr", "wrt", "point", "fn"), CASES, ids=_ids(CASES))
def test_cli_with_digits_exits_3_too(capsys, expr, wrt, point, fn):
    code = main(["d", expr, "--wrt", wrt, "--at", _at(point), "--digits", "25", "--format", "json"])
    out, err = capsys.readouterr()
    assert (code, out) == (3, "")
    assert len(err.splitlines()) == 1 and fn in err, err


@pytest.mark.parametrize("engine", ["taylor", "reverse", "auto"])
@pytest.mark.parametrize(("expr", "wrt", "point", "fn"), CASES, ids=_ids(CASES))
def test_api_raises_not_finite_with_every_engine(expr, wrt, point, fn, engine):
    with pytest.raises(NotFinite) as info:
        gradcli.derivative(expr, wrt=wrt, at=point, engine=engine)
    assert info.value.exit_code == 3
    assert _names_the_point(str(info.value), point), str(info.value)


@pytest.mark.parametrize(("expr", "wrt", "point", "fn"), CASES, ids=_ids(CASES))
def test_api_with_digits_raises_not_finite(expr, wrt, point, fn):
    with pytest.raises(NotFinite):
        gradcli.derivative(expr, wrt=wrt, at=point, digits=30)


def test_a_vectorised_call_raises_not_finite_naming_the_first_bad_point():
    import numpy as np

    with pytest.raises(NotFinite) as info:
        gradcli.derivative("log(x)", at={"x": np.array([1.0, 2.0, -3.0, 0.0])})
    assert "x=-3.0" in str(info.value)


# ---- constants outside the reals are refused too, even where sympy would fold them into a number ----
@pytest.mark.parametrize(
    "expr",
    ["x + log(-1)", "x*abs(acos(2))", "x*sqrt(-1)**2", "x + 1/(1/0)", "log(x, log(x, 1))", "x*(-8)**(1/3)",
     "x + gamma(-1)", "x*loggamma(0)", "x/0", "x**(0/0)", "x + log(1, -1)", "log(-x, x - x)",
     "x*sqrt(x - x - 1)**2", "x + acos(x - x + 2)"],
)
def test_a_constant_outside_the_reals_exits_3_naming_it(capsys, expr):
    # sympy turns sqrt(-1)**2 into -1 and 1/(1/0) into 0 before gradcli sees a graph; over the reals
    # each is undefined, so the parser refuses the first such subexpression, by its text and column.
    code = main(["d", expr, "--at", "x=2", "--format", "plain"])
    out, err = capsys.readouterr()
    assert (code, out) == (3, "")
    assert len(err.splitlines()) == 1 and "column" in err and "not a finite real number" in err, err


# ---- just inside the domain: the right value ----------------------------------------------------------
x, y = sympy.Symbol("x", real=True), sympy.Symbol("y", real=True)
INSIDE = [
    ("log(x)", sympy.log(x), {"x": 1e-3}),
    ("sqrt(x)", sympy.sqrt(x), {"x": 1e-6}),
    ("asin(x)", sympy.asin(x), {"x": 0.999}),
    ("asin(x)", sympy.asin(x), {"x": -0.999}),
    ("acos(x)", sympy.acos(x), {"x": -0.999}),
    ("acosh(x)", sympy.acosh(x), {"x": 1.001}),
    ("atanh(x)", sympy.atanh(x), {"x": 0.999}),
    ("atanh(x)", sympy.atanh(x), {"x": -0.999}),
    ("loggamma(x)", sympy.loggamma(x), {"x": 1e-3}),
    ("gamma(x)", sympy.gamma(x), {"x": 1e-3}),
    ("gamma(x)", sympy.gamma(x), {"x": -0.999}),
    ("gamma(x)", sympy.gamma(x), {"x": -1.001}),
    ("gamma(x)", sympy.gamma(x), {"x": -2.001}),
    ("1/x", 1 / x, {"x": 1e-3}),
    ("1/x", 1 / x, {"x": -1e-3}),
    ("x**(-2)", x ** (-2), {"x": 1e-3}),
    ("abs(x)", sympy.Abs(x), {"x": 1e-3}),
    ("abs(x)", sympy.Abs(x), {"x": -1e-3}),
    ("sign(x)*x**3", sympy.sign(x) * x**3, {"x": -1e-3}),
    ("min(x, 1)", sympy.Min(x, 1), {"x": 0.999}),
    ("max(x, 1)", sympy.Max(x, 1), {"x": 1.001}),
    ("atan2(y, x)", sympy.atan2(y, x), {"x": 1e-3, "y": 1e-3}),
    ("x/y", x / y, {"x": 1.0, "y": 1e-3}),
    ("min(x, y)", sympy.Min(x, y), {"x": 1.0, "y": 1.001}),
    ("max(x, y)", sympy.Max(x, y), {"x": -0.5, "y": -0.499}),
]


def _oracle(f: sympy.Expr, names: list[str], point: dict[str, float]) -> mpmath.mpf:
    d = sympy.diff(f, *[sympy.Symbol(n, real=True) for n in names])
    value = d.evalf(30, subs={sympy.Symbol(k, real=True): sympy.Rational(v) for k, v in point.items()})
    return mpmath.mpf(sympy.Float(value, 30)._mpf_)


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize(("expr", "f", "point"), INSIDE, ids=[f"{e}@{p}" for e, _, p in INSIDE])
def test_just_inside_the_domain_matches_sympy(expr, f, point, order):
    var = "x" if "x" in point and (len(point) == 1 or order != 2) else "y"
    names = [var] * order
    expected = _oracle(f, names, point)
    for engine in ("taylor", "reverse"):
        got = gradcli.derivative(expr, wrt=names, at=point, engine=engine)
        assert close(got, expected, 1e-8), (engine, got, expected)


@pytest.mark.parametrize(("expr", "f", "point"), INSIDE[:8], ids=[f"{e}@{p}" for e, _, p in INSIDE[:8]])
def test_just_inside_the_domain_with_digits_matches_sympy_to_20_digits(expr, f, point):
    expected = _oracle(f, ["x", "x"], point)
    got = gradcli.derivative(expr, wrt="x:2", at=point, digits=25)
    assert close(got, expected, 1e-20), (got, expected)


def test_cli_just_inside_the_domain_exits_0(capsys):
    code = main(["d", "log(x)", "--wrt", "x:2", "--at", "x=1e-3", "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert close(json.loads(out)["value"], -1e6, 1e-8)


# ---- --points: the same, per row ----------------------------------------------------------------------
def test_points_rows_outside_the_domain_exit_3_naming_the_first_line(tmp_path, capsys):
    path = tmp_path / "p.csv"
    path.write_text("x\n1\n0\n-1\n2\n")
    code = main(["d", "log(x)", "--points", str(path), "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 3
    rows = [json.loads(line) for line in out.splitlines()]
    # every row is written in order; the bad ones carry no number, the good ones sympy's value
    assert [r["line"] for r in rows] == [2, 3, 4, 5]
    assert [r["value"] for r in rows] == [1.0, None, None, 0.5]
    assert "log" in rows[1]["error"] and "x=0.0" in rows[1]["error"]
    assert "x=-1.0" in rows[2]["error"]
    assert len(err.splitlines()) == 1 and "line 3" in err and "x=0.0" in err and "log" in err, err


@pytest.mark.parametrize(
    ("expr", "wrt", "csv", "bad_line"),
    [
        ("abs(x)", "x", "x\n1\n-2\n0\n", 4),
        ("max(x, y)", "x", "x,y\n1,2\n3,3\n", 3),
        ("x/y", "y", "x,y\n1,2\n1,0\n", 3),
        ("gamma(x)", "x", "x\n-1.5\n-1\n", 3),
        ("sqrt(x)", "x", "x\n4\n0\n", 3),
    ],
)
def test_points_kinks_and_poles_are_per_row_exit_3(tmp_path, capsys, expr, wrt, csv, bad_line):
    path = tmp_path / "p.csv"
    path.write_text(csv)
    code = main(["d", expr, "--wrt", wrt, "--points", str(path), "--format", "plain"])
    out, err = capsys.readouterr()
    assert code == 3
    values = out.splitlines()
    assert len(values) == len(csv.splitlines()) - 1
    assert values[bad_line - 2] == "nan"  # never a number for the bad row
    assert all(v != "nan" for i, v in enumerate(values) if i != bad_line - 2)
    assert len(err.splitlines()) == 1 and f"line {bad_line}" in err, err
