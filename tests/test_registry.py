"""Tests generated from the registry: every user-facing function, at points of its sample domain,
through the public API (certified values) against sympy; the README's function list; and the functions
added last (erfinv, lambertw, besselj) at high order against independent references."""

from __future__ import annotations

import re
from pathlib import Path

import mpmath
import pytest
import sympy
from conftest import run

import gradcli
from gradcli import ops, syntax
from gradcli.parse import symbol

x = symbol("x")
README = Path(__file__).resolve().parent.parent / "README.md"
UNARY = sorted(name for name, p in ops.REGISTRY.items() if p.public and p.arity == 1)


def _text_and_expr(prim: ops.Primitive) -> tuple[str, sympy.Expr]:
    params = [sympy.sympify(v) for _, v in prim.sample_params]
    text = f"{prim.name}({''.join(f'{v}, ' for v in params)}x)"
    return text, prim.sympy(*params, x)


def _point(prim: ops.Primitive) -> float:
    lo, hi = prim.sample
    return round(lo + (hi - lo) * 0.63, 3)  # a short decimal: the same number typed and in sympy


def _sympy_value(expr: sympy.Expr, order: int, at: float) -> mpmath.mpf:
    d = sympy.diff(expr, x, order) if order else expr
    return mpmath.mpf(sympy.N(d.subs(x, sympy.Rational(repr(at))), 40))


@pytest.mark.parametrize("name", UNARY)
def test_certified_derivatives_of_order_1_to_8_match_sympy(name: str) -> None:
    prim = ops.REGISTRY[name]
    text, expr = _text_and_expr(prim)
    at = _point(prim)
    for order in range(1, 9):
        got = gradcli.derivative(text, wrt=f"x:{order}", at={"x": at})
        want = _sympy_value(expr, order, at)
        assert abs(got - want) <= 1e-12 * max(abs(want), 1), (name, order, got, want)


@pytest.mark.parametrize("name", UNARY)
def test_digits_30_matches_sympy_at_order_5(capsys: pytest.CaptureFixture[str], name: str) -> None:
    prim = ops.REGISTRY[name]
    text, expr = _text_and_expr(prim)
    at = _point(prim)
    code, out, err = run(capsys, "d", text, "--wrt", "x:5", "--at", f"x={at!r}", "--digits", "30",
                         "--format", "plain")
    assert code == 0, err
    with mpmath.workdps(40):
        want = _sympy_value(expr, 5, at)
        assert abs(mpmath.mpf(out.strip()) - want) <= mpmath.mpf(10) ** -27 * max(abs(want), 1), (out, want)


def _readme_list(section: str, pattern: str) -> set[str]:
    text = README.read_text()
    body = text[text.index(section):]
    body = body[: body.index("\n### ", 1)]
    return set(re.search(pattern, body, re.S).group(1).split())


def test_readme_lists_exactly_the_registrys_functions() -> None:
    listed = _readme_list("### Expression syntax", r"the functions `([^`]*)`")
    assert listed == set(syntax.FUNCTIONS)


def test_readme_lists_every_alias() -> None:
    body = README.read_text()
    body = body[body.index("Aliases:"):]
    body = body[: body.index("\n\n")]
    named = {w for chunk in re.findall(r"`([^`]*)`", body, re.S) for w in re.findall(r"[a-z][a-z0-9]*", chunk)}
    assert set(syntax.ALIASES) <= named


# ---- the functions added last, at high order, against references that share no code with gradcli -------
def _lagrange(c: list, n: int) -> list:
    """b_1..b_n of the inverse series of g(t) = sum_{k>=1} c[k] t^k, by Lagrange inversion:
    b_m = [t^(m-1)] (t/g(t))^m / m (powers by J.C.P. Miller's recurrence)."""
    gh = [c[k + 1] for k in range(n)]
    phi = [1 / gh[0]]
    for k in range(1, n):
        phi.append(-mpmath.fsum(gh[j] * phi[k - j] for j in range(1, k + 1)) / gh[0])
    b = [mpmath.mpf(0)]
    for m in range(1, n + 1):
        p = [phi[0] ** m]
        for k in range(1, m):
            p.append(mpmath.fsum((m * j - k + j) * phi[j] * p[k - j] for j in range(1, k + 1)) / (k * phi[0]))
        b.append(p[m - 1] / m)
    return b


def _erfinv_reference(at: float, n: int) -> mpmath.mpf:
    # erf(y0 + t) - erf(y0) has coefficients 2/sqrt(pi) (-1)^(k-1) H_(k-1)(y0) e^(-y0^2) / k!
    y0 = mpmath.erfinv(mpmath.mpf(at))
    c = [mpmath.mpf(0)] + [2 / mpmath.sqrt(mpmath.pi) * (-1) ** (k - 1) * mpmath.hermite(k - 1, y0)
                          * mpmath.exp(-y0 * y0) / mpmath.factorial(k) for k in range(1, n + 1)]
    return _lagrange(c, n)[n] * mpmath.factorial(n)


def _lambertw_reference(at: float, n: int) -> mpmath.mpf:
    # (w0 + t) e^(w0 + t) - w0 e^w0 has coefficients e^w0 (w0/k! + 1/(k-1)!)
    w0 = mpmath.re(mpmath.lambertw(mpmath.mpf(at)))
    c = [mpmath.mpf(0)] + [mpmath.exp(w0) * (w0 / mpmath.factorial(k) + 1 / mpmath.factorial(k - 1))
                          for k in range(1, n + 1)]
    return _lagrange(c, n)[n] * mpmath.factorial(n)


def _besselj_reference(nu: sympy.Rational, at: float, n: int) -> mpmath.mpf:
    order = int(nu) if nu.is_Integer else mpmath.mpf(nu.p) / nu.q
    return mpmath.besselj(order, mpmath.mpf(at), derivative=n)


HIGH = [
    ("erfinv(x)", lambda at, n: _erfinv_reference(at, n), 0.3, 30),
    ("erfinv(x)", lambda at, n: _erfinv_reference(at, n), -0.85, 30),
    ("lambertw(x)", lambda at, n: _lambertw_reference(at, n), 0.5, 30),
    ("lambertw(x)", lambda at, n: _lambertw_reference(at, n), -0.2, 30),
    ("lambertw(x)", lambda at, n: _lambertw_reference(at, n), 0.0, 30),
    ("besselj(1/3, x)", lambda at, n: _besselj_reference(sympy.Rational(1, 3), at, n), 1.5, 100),
    ("besselj(2, x)", lambda at, n: _besselj_reference(sympy.Integer(2), at, n), -1.5, 100),
    ("besselj(0, x)", lambda at, n: _besselj_reference(sympy.Integer(0), at, n), 0.0, 100),
    ("besselj(-3, x)", lambda at, n: _besselj_reference(sympy.Integer(-3), at, n), 0.4, 30),
]


@pytest.mark.parametrize(("text", "reference", "at", "order"), HIGH, ids=lambda v: str(v))
def test_high_order_derivative_matches_an_independent_reference(text: str, reference, at: float, order: int) -> None:
    with mpmath.workdps(60 + 2 * order):
        want = reference(at, order)
    got = gradcli.derivative(text, wrt=f"x:{order}", at={"x": at})
    assert abs(got - want) <= 1e-14 * abs(want), (got, want)


def test_lambertw_has_no_derivative_at_minus_1_over_e() -> None:
    with pytest.raises(gradcli.NotFinite):
        gradcli.derivative("lambertw(x)", wrt="x", at={"x": "-exp(-1)"})


def test_erfinv_is_undefined_outside_minus_1_to_1() -> None:
    with pytest.raises(gradcli.NotFinite):
        gradcli.derivative("erfinv(x)", wrt="x", at={"x": 1.5})


def test_besselj_of_fractional_order_is_undefined_for_negative_x() -> None:
    with pytest.raises(gradcli.NotFinite):
        gradcli.derivative("besselj(1/3, x)", wrt="x", at={"x": -1})


def test_besselj_order_must_be_a_constant(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "d", "besselj(y, x)", "--wrt", "x", "--at", "x=1,y=1")
    assert code == 2 and "besselj" in err and out == ""


@pytest.mark.parametrize("command", [["grad"], ["hessian"], ["taylor", "--order", "4"]])
def test_new_functions_run_in_every_command(capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    code, out, err = run(capsys, *command, "erfinv(x)*lambertw(y) + besselj(1/2, x*y)", "--at", "x=0.3,y=0.7",
                         *(["--wrt", "x"] if command[0] == "taylor" else []), "--format", "json")
    assert code == 0, err
    assert out.strip()


@pytest.mark.parametrize("name", UNARY)
def test_a_constant_call_is_a_number(name: str) -> None:
    # a call of constants is a ball around its value (FLINT refuses to compose one-term series)
    prim = ops.REGISTRY[name]
    text, expr = _text_and_expr(prim)
    at = _point(prim)
    got = gradcli.derivative(f"y*{text.replace('x)', f'{at!r})')}", wrt="y", at={"y": 1})
    assert abs(got - float(_sympy_value(expr, 0, at))) <= 1e-14 * max(abs(got), 1)
