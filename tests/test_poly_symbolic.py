"""Issue 12, items 3 and 4: `taylor --poly` (text, LaTeX, JSON, CSV) and `--symbolic-format text|pretty|latex`."""

from __future__ import annotations

import json

import pytest
import sympy
from conftest import run

from gradcli.render import taylor_polynomial

X = sympy.Symbol("x")


# ---- taylor --poly ---------------------------------------------------------------------------------------
def test_poly_text_around_zero(capsys) -> None:
    code, out, err = run(capsys, "taylor", "exp(2*x)", "--wrt", "x", "--order", "3", "--at", "x=0", "--poly")
    assert (code, out) == (0, "1.0 + 2.0*x + 2.0*x**2 + 1.3333333333333333*x**3\n"), err


def test_poly_text_around_a_point_keeps_powers_of_x_minus_a_and_drops_zero_terms(capsys) -> None:
    code, out, _ = run(capsys, "taylor", "log(x)", "--wrt", "x", "--order", "3", "--at", "x=1", "--poly")
    assert (code, out) == (0, "1.0*(x - 1.0) - 0.5*(x - 1.0)**2 + 0.3333333333333333*(x - 1.0)**3\n")


def test_poly_negative_center(capsys) -> None:
    code, out, _ = run(capsys, "taylor", "x**2", "--wrt", "x", "--order", "2", "--at", "x=-0.5", "--poly")
    assert (code, out) == (0, "0.25 - 1.0*(x + 0.5) + 1.0*(x + 0.5)**2\n")


def test_poly_text_is_a_sympy_expression_equal_to_the_taylor_polynomial(capsys) -> None:
    code, out, _ = run(capsys, "taylor", "sin(x)*exp(x)", "--wrt", "x", "--order", "6", "--at", "x=0.5", "--poly")
    assert code == 0
    got = sympy.sympify(out.strip())
    f = sympy.sin(X) * sympy.exp(X)
    half = sympy.Rational(1, 2)
    want = sum(sympy.diff(f, X, k).subs(X, half) / sympy.factorial(k) * (X - half) ** k for k in range(7))
    for t in (0.0, 0.3, 0.5, 1.0):
        assert float(got.subs(X, t)) == pytest.approx(float(want.subs(X, t)), rel=1e-14)


def test_poly_latex(capsys) -> None:
    code, out, _ = run(capsys, "taylor", "log(x)", "--wrt", "x", "--order", "2", "--at", "x=1", "--poly",
                       "--format", "latex")
    assert (code, out) == (0, r"1.0 \left(x - 1.0\right) - 0.5 \left(x - 1.0\right)^{2}" + "\n")


def test_poly_json_has_the_poly_key(capsys) -> None:
    code, out, _ = run(capsys, "taylor", "exp(x)", "--wrt", "x", "--order", "2", "--at", "x=0", "--poly", "--json",
                       "--no-check")
    obj = json.loads(out)
    assert code == 0 and obj["poly"] == "1.0 + 1.0*x + 0.5*x**2" and obj["coefficients"] == [1.0, 1.0, 0.5]


def test_poly_with_digits_prints_the_certified_digits(capsys) -> None:
    code, out, _ = run(capsys, "taylor", "exp(x)", "--wrt", "x", "--order", "3", "--at", "x=0", "--poly",
                       "--digits", "20", "--no-check")
    assert (code, out) == (0, "1.0000000000000000000 + 1.0000000000000000000*x + 0.50000000000000000000*x**2 + "
                              "0.16666666666666666667*x**3\n")


def test_poly_with_points_is_one_line_per_row_and_nan_outside_the_domain(capsys) -> None:
    code, out, err = run(capsys, "taylor", "log(x)", "--wrt", "x", "--order", "1", "--at", "x=-1:2:1", "--poly",
                         "--no-check")
    assert code == 3 and "line 1" in err
    assert out == "nan\nnan\n1.0*(x - 1.0)\n0.6931471805599453 + 0.5*(x - 2.0)\n"


def test_poly_csv_adds_a_poly_column(capsys) -> None:
    code, out, _ = run(capsys, "taylor", "x**3", "--wrt", "x", "--order", "1", "--at", "x=1:2:1", "--poly",
                       "--format", "csv", "--no-check")
    assert (code, out) == (0, "x,d0,d1,c0,c1,poly\n1.0,1.0,3.0,1.0,3.0,1.0 + 3.0*(x - 1.0)\n"
                              "2.0,8.0,12.0,8.0,12.0,8.0 + 12.0*(x - 2.0)\n")


def test_poly_table_prints_the_polynomial_under_the_table(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    code, out, _ = run(capsys, "taylor", "exp(x)", "--wrt", "x", "--order", "2", "--at", "x=0", "--poly",
                       "--format", "table")
    assert code == 0
    assert out.endswith("Taylor polynomial around x = 0.0:\n1.0 + 1.0*x + 0.5*x**2\n")
    assert "coefficient" in out


def test_poly_table_with_many_points_is_one_polynomial_a_line(capsys) -> None:
    code, out, _ = run(capsys, "taylor", "x**2", "--wrt", "x", "--order", "1", "--at", "x=1:2:1", "--poly",
                       "--format", "table", "--no-check")
    assert (code, out) == (0, "1.0 + 2.0*(x - 1.0)\n4.0 + 4.0*(x - 2.0)\n")


def test_format_latex_without_poly_is_exit_2(capsys) -> None:
    code, out, err = run(capsys, "taylor", "exp(x)", "--wrt", "x", "--order", "2", "--at", "x=0", "--format", "latex")
    assert (code, out) == (2, "") and "--poly" in err


def test_format_latex_is_taylors_only(capsys) -> None:
    code, _, err = run(capsys, "d", "x**2", "--at", "x=1", "--format", "latex")
    assert code == 2 and "latex" in err


def test_polynomial_of_zero_coefficients_is_0() -> None:
    assert taylor_polynomial([0.0, 0.0], "x", 3.0, None) == "0"
    assert taylor_polynomial([1.0, float("nan")], "x", 0.0, None) is None


# ---- --symbolic-format ----------------------------------------------------------------------------------
def test_symbolic_format_text_is_sympys_str(capsys) -> None:
    code, out, _ = run(capsys, "d", "x**3*y", "--wrt", "x", "--at", "x=1,y=2", "--show-symbolic",
                       "--symbolic-format", "text")
    assert (code, out) == (0, "6.0 ; 3*x**2*y\n")


def test_symbolic_format_latex_in_plain_on_every_command(capsys) -> None:
    code, out, _ = run(capsys, "d", "sin(x)/x", "--wrt", "x", "--at", "x=1", "--symbolic-format", "latex")
    assert code == 0
    assert out == (r"-0.3011686789397568 ; \frac{\cos{\left(x \right)}}{x} - \frac{\sin{\left(x \right)}}{x^{2}}"
                   "\n")
    code, out, _ = run(capsys, "grad", "x*y**2", "--at", "x=1,y=2", "--symbolic-format", "latex")
    assert (code, out) == (0, "4.0 4.0 ; y^{2} ; 2 x y\n")
    code, out, _ = run(capsys, "hessian", "x*y**2", "--at", "x=1,y=2", "--symbolic-format", "latex")
    assert (code, out) == (0, "0.0 4.0 4.0 2.0 ; 0 ; 2 y ; 2 y ; 2 x\n")
    code, out, _ = run(capsys, "jacobian", "x*y", "x/y", "--at", "x=1,y=2", "--symbolic-format", "latex")
    assert (code, out) == (0, r"2.0 1.0 0.5 -0.25 ; y ; x ; \frac{1}{y} ; - \frac{x}{y^{2}}" + "\n")
    code, out, _ = run(capsys, "taylor", "exp(2*x)", "--wrt", "x", "--order", "1", "--at", "x=0",
                       "--symbolic-format", "latex")
    assert (code, out) == (0, "1.0 2.0 1.0 2.0 ; e^{2 x} ; 2 e^{2 x}\n")


def test_symbolic_format_in_csv_and_json(capsys) -> None:
    code, out, _ = run(capsys, "d", "x**3", "--at", "x=2", "--format", "csv", "--symbolic-format", "latex")
    assert (code, out) == (0, "x,value,check_ok,check_rel_err,symbolic\n2.0,12.0,true,0.0,3 x^{2}\n")
    code, out, _ = run(capsys, "d", "x**3/y", "--wrt", "x", "--at", "x=2,y=3", "--json", "--symbolic-format",
                       "pretty")
    assert code == 0 and json.loads(out)["check"]["symbolic"] == "   2\n3⋅x \n────\n y  "


def test_symbolic_format_pretty_is_refused_where_output_is_one_line_per_point(capsys) -> None:
    for fmt in ("plain", "csv"):
        code, out, err = run(capsys, "d", "x**3", "--at", "x=2", "--format", fmt, "--symbolic-format", "pretty")
        assert (code, out) == (2, "") and "--format table or json" in err, fmt


def test_symbolic_format_pretty_in_a_table_keeps_the_drawing(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    code, out, _ = run(capsys, "d", "x**3/y", "--wrt", "x", "--at", "x=2,y=3", "--format", "table",
                       "--symbolic-format", "pretty", "--no-check")
    assert code == 0
    lines = out.splitlines()
    drawing = ["   2", "3⋅x ", "────", " y  "]
    found = [next(i for i, line in enumerate(lines) if f"│ {part}" in line) for part in drawing]
    assert found == list(range(found[0], found[0] + 4))  # the four lines of the fraction, in order


def test_symbolic_format_pretty_when_narrow_is_the_vertical_layout_with_the_drawing_aligned(capsys,
                                                                                          monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "30")
    code, out, _ = run(capsys, "d", "x**3/y", "--wrt", "x", "--at", "x=2,y=3", "--format", "table",
                       "--symbolic-format", "pretty", "--no-check")
    assert code == 0
    assert "  symbolic derivative     2\n" in out
    pad = " " * len("  symbolic derivative  ")  # the drawing's later lines start under its first
    assert f"\n{pad}3⋅x \n{pad}────\n{pad} y  \n" in out
