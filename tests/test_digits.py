"""`--digits N`: the same engines on mpmath numbers, N significant digits printed, exact where float64
overflows; and, in float64, an overflow is exit 3 suggesting --digits.

References are closed forms evaluated by mpmath, or sympy's exact derivative at high precision.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess

import mpmath
import pytest
import sympy
from conftest import run

import gradcli
from gradcli.parse import symbol

x, y = symbol("x"), symbol("y")


def significant_digits(text: str) -> int:
    """How many significant digits a printed number carries (``-1.50e+91`` has 3)."""
    mantissa = re.split("[eE]", text.strip())[0].lstrip("+-").replace(".", "")
    return len(mantissa.lstrip("0")) if mantissa.strip("0") else len(mantissa)


def nstr(value: mpmath.mpf, digits: int) -> str:
    """The independent rounding of a reference to ``digits`` significant digits."""
    return mpmath.nstr(value, digits, strip_zeros=False)


def exact(expr: sympy.Expr, wrt: list[sympy.Symbol], at: dict[str, sympy.Expr], dps: int) -> mpmath.mpf:
    d = sympy.diff(expr, *wrt) if wrt else expr
    with mpmath.workdps(dps):
        return mpmath.mpf(sympy.N(d.subs({symbol(k): v for k, v in at.items()}), dps))


def exp2_300() -> mpmath.mpf:
    """d^300/dx^300 exp(2x) at x = 1 is 2^300 e^2 (about 1.5e91; beyond float64's 2^53 precision)."""
    with mpmath.workdps(120):
        return mpmath.mpf(2) ** 300 * mpmath.e**2


# ---- gradcli d -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("digits", [5, 20, 50])
def test_d_prints_exactly_n_significant_digits(capsys, digits: int) -> None:
    code, out, err = run(capsys, "d", "sin(x)*exp(x)", "--wrt", "x:3", "--at", "x=7/10", "--digits", str(digits),
                         "--format", "plain")
    assert code == 0, err
    assert significant_digits(out) == digits
    ref = exact(sympy.sin(x) * sympy.exp(x), [x] * 3, {"x": sympy.Rational(7, 10)}, digits + 30)
    assert out.strip() == nstr(ref, digits)


def test_one_third_is_printed_to_n_digits(capsys) -> None:
    code, out, err = run(capsys, "d", "x/3", "--at", "x=2", "--digits", "40", "--format", "plain")
    assert code == 0, err
    with mpmath.workdps(60):
        assert out.strip() == nstr(mpmath.mpf(1) / 3, 40)
    assert out.strip() == "0." + "3" * 40


def test_exp2x_order_300_is_exact_to_50_digits_where_float64_loses_them(capsys) -> None:
    code, out, err = run(capsys, "d", "exp(2*x)", "--wrt", "x:300", "--at", "x=1", "--digits", "50",
                         "--format", "plain", "--no-check")
    assert code == 0, err
    assert out.strip() == nstr(exp2_300(), 50)


def test_exp2x_order_300_json_carries_the_value_as_a_string(capsys) -> None:
    code, out, err = run(capsys, "d", "exp(2*x)", "--wrt", "x:300", "--at", "x=1", "--digits", "30", "--json",
                         "--no-check")
    assert code == 0, err
    doc = json.loads(out)
    assert isinstance(doc["value"], str) and doc["value"] == nstr(exp2_300(), 30)
    assert isinstance(doc["at"]["x"], str)


def test_json_check_value_is_a_string_at_the_same_digits(capsys) -> None:
    code, out, err = run(capsys, "d", "log(1+x^2)", "--wrt", "x:4", "--at", "x=1/3", "--digits", "35", "--json")
    assert code == 0, err
    doc = json.loads(out)
    ref = exact(sympy.log(1 + x**2), [x] * 4, {"x": sympy.Rational(1, 3)}, 70)
    assert doc["value"] == nstr(ref, 35)
    assert doc["check"]["ok"] is True and isinstance(doc["check"]["symbolic_value"], str)


def test_digits_with_mixed_partials(capsys) -> None:
    code, out, err = run(capsys, "d", "exp(x*y)*sin(y)/(1+x^2)", "--wrt", "x:2,y:3", "--at", "x=1/4,y=1/3",
                         "--digits", "40", "--format", "plain")
    assert code == 0, err
    ref = exact(sympy.exp(x * y) * sympy.sin(y) / (1 + x**2), [x, x, y, y, y],
                {"x": sympy.Rational(1, 4), "y": sympy.Rational(1, 3)}, 70)
    assert out.strip() == nstr(ref, 40)


def test_digits_with_csv(capsys) -> None:
    code, out, err = run(capsys, "d", "atan(x)", "--wrt", "x:5", "--at", "x=1/7", "--digits", "25",
                         "--format", "csv")
    assert code == 0, err
    row = next(csv.DictReader(io.StringIO(out)))
    assert row["value"] == nstr(exact(sympy.atan(x), [x] * 5, {"x": sympy.Rational(1, 7)}, 60), 25)


def test_digits_with_grad(capsys) -> None:
    code, out, err = run(capsys, "grad", "x^2*y+sin(y)", "--at", "x=1/3,y=2", "--digits", "30", "--json")
    assert code == 0, err
    doc = json.loads(out)
    f, at = x**2 * y + sympy.sin(y), {"x": sympy.Rational(1, 3), "y": sympy.Integer(2)}
    assert doc["value"] == [nstr(exact(f, [x], at, 60), 30), nstr(exact(f, [y], at, 60), 30)]


# ---- gradcli taylor ----------------------------------------------------------------------------------------
def test_taylor_with_digits_prints_derivatives_and_coefficients_to_n_digits(capsys) -> None:
    code, out, err = run(capsys, "taylor", "exp(2*x)", "--wrt", "x", "--order", "6", "--at", "x=1", "--digits", "30",
                         "--format", "plain")
    assert code == 0, err
    (line,) = out.splitlines()  # one line: the 7 derivatives, then the 7 coefficients
    derivs, coeffs = line.split(" ")[:7], line.split(" ")[7:]
    with mpmath.workdps(60):
        e2 = mpmath.e**2
        assert derivs == [nstr(2**k * e2, 30) for k in range(7)]
        assert coeffs == [nstr(2**k * e2 / mpmath.factorial(k), 30) for k in range(7)]


def test_taylor_with_digits_json_values_are_strings(capsys) -> None:
    code, out, err = run(capsys, "taylor", "1/(1-x)", "--wrt", "x", "--order", "40", "--at", "x=1/2", "--digits", "25",
                         "--json")
    assert code == 0, err
    doc = json.loads(out)
    with mpmath.workdps(60):
        # 1/(1-x) at 1/2: f^(k) = k! 2^(k+1), coefficients 2^(k+1)
        assert doc["value"] == [nstr(mpmath.factorial(k) * 2 ** (k + 1), 25) for k in range(41)]
        assert doc["coefficients"] == [nstr(mpmath.mpf(2) ** (k + 1), 25) for k in range(41)]
    assert doc["check"]["ok"] is True


def test_taylor_order_300_with_digits_50(capsys) -> None:
    code, out, err = run(capsys, "taylor", "exp(2*x)", "--wrt", "x", "--order", "300", "--at", "x=1", "--digits", "50",
                         "--json", "--no-check")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["value"][300] == nstr(exp2_300(), 50)


# ---- the Python API ----------------------------------------------------------------------------------------
def test_api_digits_returns_mpf_with_the_requested_precision() -> None:
    value = gradcli.derivative("exp(2*x)", wrt="x:300", at={"x": 1}, digits=60)
    assert isinstance(value, mpmath.mpf)
    with mpmath.workdps(60):
        assert nstr(value, 60) == nstr(exp2_300(), 60)


def test_api_taylor_with_digits() -> None:
    derivs, coeffs = gradcli.taylor("sin(x)", "x", 12, at={"x": "pi/6"}, digits=40)
    with mpmath.workdps(80):
        for k in range(13):
            ref = mpmath.sin(mpmath.pi / 6 + k * mpmath.pi / 2)
            assert nstr(derivs[k], 40) == nstr(ref, 40)
            assert nstr(coeffs[k], 40) == nstr(ref / mpmath.factorial(k), 40)


# ---- float64 overflow: exit 3 suggesting --digits --------------------------------------------------------------
def test_float64_overflow_exits_3_and_suggests_digits(capsys) -> None:
    # 2^1100 e^2 is about 1e332, beyond float64's 1.8e308
    code, out, err = run(capsys, "d", "exp(2*x)", "--wrt", "x:1100", "--at", "x=1", "--no-check")
    assert code == 3
    assert out == ""
    assert "--digits" in err and len(err.strip().splitlines()) == 1


def test_the_same_overflow_with_digits_prints_the_value(capsys) -> None:
    code, out, err = run(capsys, "d", "exp(2*x)", "--wrt", "x:1100", "--at", "x=1", "--digits", "30",
                         "--format", "plain", "--no-check")
    assert code == 0, err
    with mpmath.workdps(60):
        assert out.strip() == nstr(mpmath.mpf(2) ** 1100 * mpmath.e**2, 30)


def test_taylor_overflow_in_float64_exits_3(capsys) -> None:
    code, _, err = run(capsys, "taylor", "1/(1-x)", "--wrt", "x", "--order", "200", "--at", "x=0.5", "--no-check")
    assert code == 3 and "--digits" in err


def test_api_overflow_raises_not_finite_with_code_3() -> None:
    with pytest.raises(gradcli.GradcliError) as info:
        gradcli.derivative("exp(2*x)", wrt="x:1100", at={"x": 1})
    assert info.value.exit_code == 3 and "digits=N" in str(info.value) and "--" not in str(info.value)


@pytest.mark.skipif(shutil.which("gradcli") is None, reason="the gradcli executable is not installed")
def test_installed_gradcli_overflow_and_digits() -> None:
    args = ["gradcli", "d", "exp(2*x)", "--wrt", "x:1100", "--at", "x=1", "--no-check"]
    over = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert over.returncode == 3 and "--digits" in over.stderr
    ok = subprocess.run(args + ["--digits", "20"], capture_output=True, text=True, timeout=60, check=False)
    assert ok.returncode == 0
    with mpmath.workdps(40):
        assert ok.stdout.strip() == nstr(mpmath.mpf(2) ** 1100 * mpmath.e**2, 20)


@pytest.mark.parametrize("expr", ["1/x", "sqrt(x)", "log(x)", "x^(5/2)", "atan2(x, x)"])
def test_a_pole_or_branch_point_with_digits_is_exit_3_like_float64(capsys, expr: str) -> None:
    # mpmath raises on division by zero where float64 gives inf: the Taylor rules turn both into exit 3
    code, out, err = run(capsys, "d", expr, "--wrt", "x:3", "--at", "x=0", "--digits", "20", "--no-check")
    assert (code, out) == (3, "")
    assert "not finite" in err and len(err.strip().splitlines()) == 1
