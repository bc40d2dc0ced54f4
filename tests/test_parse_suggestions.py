"""Help with typos (issue 11, item 4): close names for unknown functions, common aliases accepted,
"write 2*x" for implicit multiplication, and the E hint for a missing e."""

from __future__ import annotations

import pytest
import sympy

from gradcli.errors import InputError
from gradcli.parse import parse_expr, symbol
from gradcli.syntax import FUNCTIONS

X, Y = symbol("x"), symbol("y")


@pytest.mark.parametrize(("text", "suggested"), [
    ("sinn(x)", "sin()"), ("expp(x)", "exp()"), ("sqr(x)", "sqrt()"), ("atann(x)", "atan()"),
    ("cosine(x)", "cos()"), ("lgamma(x)", "loggamma()"), ("arcsine(x)", "arcsin()"),
])
def test_unknown_function_gets_the_closest_known_names(text: str, suggested: str) -> None:
    with pytest.raises(InputError, match=r"unknown function .* at column 1: did you mean ") as err:
        parse_expr(text)
    assert suggested in err.value.message


def test_suggestions_come_from_the_registry() -> None:
    for name in FUNCTIONS:
        with pytest.raises(InputError) as err:
            parse_expr(f"{name}q(x)")
        assert f"{name}()" in err.value.message or "known:" in err.value.message


def test_a_name_like_no_function_lists_the_known_ones() -> None:
    with pytest.raises(InputError, match=r"unknown function 'qqq' at column 1 \(known: abs, "):
        parse_expr("qqq(x)")


@pytest.mark.parametrize(("alias", "same"), [
    ("ln(x)", "log(x)"), ("log10(x)", "log(x, 10)"), ("log2(x)", "log(x, 2)"),
    ("arcsin(x)", "asin(x)"), ("arccos(x)", "acos(x)"), ("arctan(x)", "atan(x)"),
    ("arcsinh(x)", "asinh(x)"), ("arccosh(x)", "acosh(x)"), ("arctanh(x)", "atanh(x)"),
    ("arctan2(y, x)", "atan2(y, x)"), ("pow(x, 3)", "x**3"), ("pow(x, y)", "x^y"), ("2*ln(x+1)", "2*log(1+x)"),
])
def test_aliases_are_accepted(alias: str, same: str) -> None:
    assert sympy.simplify(parse_expr(alias) - parse_expr(same)) == 0


@pytest.mark.parametrize(("text", "count"), [("log10(x, 2)", "1"), ("pow(x)", "2"), ("ln(x, 2)", "1")])
def test_an_alias_with_the_wrong_arguments_says_so(text: str, count: str) -> None:
    with pytest.raises(InputError, match=f"takes {count} argument"):
        parse_expr(text)


def test_pow_is_bounded_like_a_power() -> None:
    with pytest.raises(InputError, match="too large"):
        parse_expr("pow(9, pow(9, pow(9, 9)))")


def test_aliases_work_through_the_cli(capsys) -> None:
    from gradcli.cli import main

    assert main(["d", "log10(x)", "--at", "x=10", "--format", "plain", "--expect", "1/(10*log(10))"]) == 0


@pytest.mark.parametrize(("text", "hint", "column"), [
    ("2x", "write 2*x", 1), ("x + 3.5y", "write 3.5*y", 5), ("sin(2x)", "write 2*x", 5),
])
def test_implicit_multiplication_says_write_the_product(text: str, hint: str, column: int) -> None:
    with pytest.raises(InputError, match=f"column {column}: ") as err:
        parse_expr(text)
    assert hint in err.value.message


@pytest.mark.parametrize(("text", "hint"), [
    ("2(x+1)", "write 2*(...)"), ("(x+1)(x-1)", "write (x+1)*(...)"), ("x*3 (x)", "write 3*(...)"),
])
def test_a_number_or_bracket_before_parentheses_says_write_the_product(text: str, hint: str) -> None:
    with pytest.raises(InputError, match="no implicit multiplication") as err:
        parse_expr(text)
    assert hint in err.value.message


def test_exponents_are_not_taken_for_implicit_multiplication() -> None:
    assert parse_expr("1e-3*x + 2E5*x") == sympy.Rational(200000001, 1000) * X


def test_a_missing_e_hints_at_E(capsys) -> None:
    from gradcli.cli import main

    assert main(["d", "exp(x)*e", "--wrt", "x", "--at", "x=1"]) == 2
    assert "write E" in capsys.readouterr().err
