"""Issue 9's reference set: gradcli against independent closed forms (tests/reference_cases.py), orders 10 to 2000.

Three ways in, each case through each:
- ``float64``: ``gradcli.derivative(expr, wrt="x:K", at={"x": "0.5"})`` must return a value within the default
  tolerance (relative 1e-8) of the truth, or raise a ``GradcliError`` (a refusal);
- ``digits30``: the same with ``digits=30``: all 30 significant digits correct, or a ``GradcliError``;
- ``cli``: ``gradcli d EXPR --wrt x:K --at x=P --format plain --no-check`` in-process: with exit 0 the printed
  value is within relative 1e-8; any other documented exit (1, 2, 3) is a refusal; exit 70 is a bug.

No wrong value may come back, and refusing is not a way out: at least 95% of the cases whose value lies in
float64's range are answered in float64 (API and CLI), and at least 98% of all cases with ``digits=30``.

The reference values themselves are checked against sympy.diff (orders <= 12), mpmath.diff (orders <= 30) and
other independent routes at high order (Leibniz sums, mpmath complex arithmetic, mpmath.hermite, mpmath.ff).
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
from dataclasses import dataclass
from fractions import Fraction

import mpmath
import numpy as np
import pytest
import sympy
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from reference_cases import (
    CERTIFIED_DIGITS,
    FAMILIES,
    FAMILY_BY_NAME,
    Case,
    Family,
    all_cases,
    cases_for,
    is_near_zero,
    reference_value,
)

import gradcli
from gradcli.cli import main

TOL = mpmath.mpf("1e-8")  # the documented default --tol
DIGITS = 30
CMP_DPS = 120  # comparisons are made at this precision, whatever mpmath's global precision is
FAMILY_NAMES = [f.name for f in FAMILIES]
MIN_ANSWERED = {"float64": 0.95, "digits30": 0.98, "cli": 0.95}


# ---- comparing one answer with the truth ----------------------------------------------------------------------


def to_mpf(value: object) -> mpmath.mpf:
    with mpmath.workdps(CMP_DPS):
        if isinstance(value, np.ndarray):
            value = value.item()
        if isinstance(value, (np.floating, np.integer)):
            value = float(value)
        return mpmath.mpf(value)


def rel_err(value: mpmath.mpf, true: mpmath.mpf) -> mpmath.mpf:
    with mpmath.workdps(CMP_DPS):
        return abs(value - true) / abs(true)


def within_tol(value: mpmath.mpf, true: mpmath.mpf) -> bool:
    # a value certified within 1e-8 and then rounded to float64 may be half an ulp further
    with mpmath.workdps(CMP_DPS):
        return mpmath.isfinite(value) and rel_err(value, true) <= TOL * (1 + mpmath.mpf(2) ** -50)


def digits_correct(value: mpmath.mpf, true: mpmath.mpf, digits: int = DIGITS) -> bool:
    """All ``digits`` significant digits right: the same digit string as the truth, or within half a unit of the
    last digit of it (so that an exact tie, or a true value just beside one, may round either way)."""
    with mpmath.workdps(CMP_DPS):
        if not mpmath.isfinite(value):
            return False
        if mpmath.nstr(value, digits) == mpmath.nstr(true, digits):
            return True
        e = int(mpmath.floor(mpmath.log10(abs(true))))
        if abs(true) >= mpmath.mpf(10) ** (e + 1):  # log10 rounded up to an integer
            e += 1
        elif abs(true) < mpmath.mpf(10) ** e:
            e -= 1
        half_ulp = mpmath.mpf(10) ** (e - digits + 1) / 2
        # the slack covers the reference's own error (>= 60 correct digits), no more
        return abs(value - true) <= half_ulp * (1 + mpmath.mpf(10) ** -20)


# ---- running one case -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    case: Case
    mode: str
    status: str  # "ok", "wrong", "refused", "bug"
    value: object = None
    detail: str = ""

    def message(self) -> str:
        c = self.case
        head = f"[{self.mode}] {c.expr}  order {c.k}  at {c.var}={c.point}: "
        with mpmath.workdps(CMP_DPS):
            true = mpmath.nstr(c.true, 35)
            if self.status == "wrong":
                got = mpmath.nstr(self.value, 35) if isinstance(self.value, mpmath.mpf) else repr(self.value)
                err = (mpmath.nstr(rel_err(self.value, c.true), 3)
                       if isinstance(self.value, mpmath.mpf) and mpmath.isfinite(self.value) else "inf/nan")
                return head + f"got {got}, true {true}, relative error {err}{self.detail}"
        return head + f"{self.status}: {self.detail} (true {true})"


def run_api(case: Case, digits: int | None) -> Outcome:
    mode = "float64" if digits is None else "digits30"
    try:
        kwargs = {} if digits is None else {"digits": digits}
        raw = gradcli.derivative(case.expr, wrt=f"{case.var}:{case.k}", at={case.var: case.point}, **kwargs)
    except gradcli.GradcliError as exc:
        return Outcome(case, mode, "refused", detail=f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # noqa: BLE001 - anything else is a bug, reported as such
        return Outcome(case, mode, "bug", detail=f"{type(exc).__name__}: {exc}")
    try:
        value = to_mpf(raw)
    except (TypeError, ValueError) as exc:
        return Outcome(case, mode, "wrong", raw, f" (not a number: {exc})")
    ok = within_tol(value, case.true) if digits is None else digits_correct(value, case.true, digits)
    return Outcome(case, mode, "ok" if ok else "wrong", value)


def run_cli(case: Case) -> Outcome:
    argv = ["d", case.expr, "--wrt", f"{case.var}:{case.k}", "--at", f"{case.var}={case.point}",
            "--format", "plain", "--no-check"]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    stderr = err.getvalue().strip().replace("\n", " | ")
    if code == 0:
        text = out.getvalue().strip()
        try:
            value = to_mpf(text)
        except (TypeError, ValueError):
            return Outcome(case, "cli", "wrong", text, f" (stdout is not one number; stderr: {stderr})")
        status = "ok" if within_tol(value, case.true) else "wrong"
        return Outcome(case, "cli", status, value, f" (stderr: {stderr})" if stderr else "")
    if code in (1, 2, 3):
        return Outcome(case, "cli", "refused", detail=f"exit {code}: {stderr}")
    return Outcome(case, "cli", "bug", detail=f"exit {code}: {stderr}")


RUNNERS = {
    "float64": lambda c: run_api(c, None),
    "digits30": lambda c: run_api(c, DIGITS),
    "cli": run_cli,
}


@functools.cache
def outcomes(mode: str, family: str) -> tuple[Outcome, ...]:
    """Each (mode, family) runs once per session, shared by its own test and the answer-rate test."""
    return tuple(RUNNERS[mode](c) for c in cases_for(family))


def expected_answer(mode: str, case: Case) -> bool:
    """Cases counted in the answer rate: in float64 (API and CLI) only values inside float64's range."""
    return mode == "digits30" or case.in_float_range


# ---- the reference set through gradcli ---------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILY_NAMES)
@pytest.mark.parametrize("mode", list(RUNNERS))
def test_no_wrong_value(mode: str, family: str) -> None:
    results = outcomes(mode, family)
    bad = [o for o in results if o.status in ("wrong", "bug")]
    assert not bad, f"{len(bad)} of {len(results)} cases wrong or crashed:\n" + "\n".join(o.message() for o in bad)


@pytest.mark.parametrize("mode", list(RUNNERS))
def test_answer_rate(mode: str) -> None:
    results = [o for name in FAMILY_NAMES for o in outcomes(mode, name) if expected_answer(mode, o.case)]
    refused = [o for o in results if o.status != "ok" and o.status != "wrong"]
    answered = sum(o.status in ("ok", "wrong") for o in results)
    rate = answered / len(results)
    assert rate >= MIN_ANSWERED[mode], (
        f"[{mode}] answered {answered} of {len(results)} ({rate:.1%}), need {MIN_ANSWERED[mode]:.0%}; refused:\n"
        + "\n".join(o.message() for o in refused[:40]) + ("\n..." if len(refused) > 40 else ""))


def test_issue_cases_are_in_the_reference_set() -> None:
    def value(family: str, k: int, point: str) -> mpmath.mpf:
        (case,) = [c for c in cases_for(family) if c.k == k and c.point == point]
        return case.true

    assert mpmath.nstr(value("exp_sin", 500, "0.5"), 5) == "-1.4301e+75"
    assert mpmath.nstr(value("sin3_cosh", 150, "0.5"), 5) == "4.3757e+74"
    assert mpmath.nstr(value("exp_sin_cos", 500, "0.5"), 5) == "-1.2598e+76"
    assert value("exp", 2000, "0") == 1
    assert value("exp", 10, "0") == 1


def test_reference_set_size_and_coverage() -> None:
    cases = all_cases()
    assert len(cases) >= 320
    assert len({c.expr for c in cases}) >= 12
    assert {10, 20, 40, 60, 100, 150, 200, 300, 500, 700, 1000} <= {c.k for c in cases}
    assert len({c.id for c in cases}) == len(cases)
    assert sum(c.in_float_range for c in cases) >= 250
    for c in cases:
        assert mpmath.isfinite(c.true) and c.true != 0
        assert not is_near_zero(c.true, c.scale)


# ---- the reference values, checked by independent routes -------------------------------------------------------


def agree(a: mpmath.mpf, b: mpmath.mpf, digits: int) -> bool:
    with mpmath.workdps(CMP_DPS):
        return abs(a - b) <= mpmath.mpf(10) ** -digits * abs(b)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_reference_values_agree_with_sympy_at_low_order(family: str) -> None:
    fam = FAMILY_BY_NAME[family]
    sym = sympy.Symbol(fam.var)
    d = fam.sympy_expr()
    assert fam.sympy_expr().free_symbols == {sym}
    for k in range(1, 13):
        d = sympy.diff(d, sym)
        for point in fam.points[:2]:
            exact = d.subs(sym, sympy.Rational(point)).evalf(50)
            with mpmath.workdps(60):
                want = mpmath.mpf(sympy.Float(exact, 50)._mpf_) if exact != 0 else mpmath.mpf(0)
            got, _ = reference_value(family, k, point)
            assert agree(got, want, 45), f"{fam.expr} order {k} at {point}: closed form {got}, sympy {want}"


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_reference_values_agree_with_mpmath_diff(family: str) -> None:
    fam = FAMILY_BY_NAME[family]
    sym = sympy.Symbol(fam.var)
    f = sympy.lambdify(sym, fam.sympy_expr(), "mpmath")
    for k, point in [(13, fam.points[0]), (30, fam.points[-1])]:
        with mpmath.workdps(40):
            numeric = mpmath.diff(f, mpmath.mpf(point), k)
        got, _ = reference_value(family, k, point)
        assert agree(got, numeric, 30), f"{fam.expr} order {k} at {point}: closed form {got}, mpmath.diff {numeric}"


def leibniz_exp_sin(k: int, x: mpmath.mpf) -> mpmath.mpf:
    """d^k e^x sin x = e^x sum_j C(k, j) sin(x + j pi/2): a sum of huge terms that cancel, at high precision."""
    with mpmath.workdps(CERTIFIED_DIGITS + 40 + k // 2):
        s = [mpmath.sin(x), mpmath.cos(x), -mpmath.sin(x), -mpmath.cos(x)]
        return mpmath.exp(x) * mpmath.fsum(math.comb(k, j) * s[j % 4] for j in range(k + 1))


def mpc_exp_im(zs: list[complex | tuple[str, str]], k: int, x: mpmath.mpf) -> mpmath.mpf:
    """1/2 sum Im(z^k e^{zx}) (or Im(z^k e^{zx}) for one z) with mpmath's complex arithmetic, no Gaussian rationals."""
    with mpmath.workdps(CERTIFIED_DIGITS + 60):
        total = mpmath.fsum(mpmath.im(mpmath.power(z, k) * mpmath.exp(z * x))
                            for z in (mpmath.mpc(mpmath.mpf(a), mpmath.mpf(b)) for a, b in zs))
        return total if len(zs) == 1 else total / 2


def test_reference_values_at_high_order_by_other_routes() -> None:
    digits = CERTIFIED_DIGITS
    for k in (100, 500, 1000):
        for point in ("0.5", "-0.4", "1.25"):
            with mpmath.workdps(100):
                x = mpmath.mpf(Fraction(point).numerator) / Fraction(point).denominator
            assert agree(reference_value("exp_sin", k, point)[0], leibniz_exp_sin(k, x), digits)
    with mpmath.workdps(150):
        third = mpmath.mpf(1) / 3
        for k in (150, 500, 1000):
            want = mpc_exp_im([(0.5, 4 * third), (0.5, 2 * third)], k, mpmath.mpf("0.5"))
            assert agree(reference_value("exp_sin_cos", k, "0.5")[0], want, digits)
        for k in (150, 300, 500):
            want = mpc_exp_im([(1, 3), (-1, 3)], k, mpmath.mpf("0.3"))
            assert agree(reference_value("sin3_cosh", k, "0.3")[0], want, digits)
        for k in (300, 700):
            want = mpc_exp_im([(2, 3)], k, mpmath.mpf("-0.4"))
            assert agree(reference_value("exp2_sin3", k, "-0.4")[0], want, digits)
        for k in (100, 300):
            x = mpmath.mpf("1.25")
            want = (-1) ** k * mpmath.hermite(k, x) * mpmath.exp(-x * x)
            assert agree(reference_value("gauss", k, "1.25")[0], want, digits)
        for k in (60, 150):
            x = mpmath.mpf("0.3")
            want = (-1) ** k * mpmath.factorial(k) * mpmath.im(mpmath.power(mpmath.mpc(x, -1), -(k + 1)))
            assert agree(reference_value("lorentz", k, "0.3")[0], want, digits)
            want = mpmath.ff(mpmath.mpf(5) / 2, k) * mpmath.power(mpmath.mpf("0.7"), mpmath.mpf(5) / 2 - k)
            assert agree(reference_value("pow52", k, "0.7")[0], want, digits)
            want = mpmath.gamma(k) * (-1) ** (k - 1) / mpmath.power(mpmath.mpf("1.5"), k)
            assert agree(reference_value("log1p", k, "0.5")[0], want, digits)


def test_comparison_helpers() -> None:
    with mpmath.workdps(60):
        t = mpmath.mpf("1.23456789012345678901234567890449")
        assert digits_correct(mpmath.mpf("1.23456789012345678901234567890"), t)
        assert not digits_correct(mpmath.mpf("1.23456789012345678901234567891"), t)
        tie = mpmath.mpf("1.234567890123456789012345678905")
        assert digits_correct(mpmath.mpf("1.23456789012345678901234567890"), tie)
        assert digits_correct(mpmath.mpf("1.23456789012345678901234567891"), tie)
        assert digits_correct(mpmath.mpf(1), mpmath.mpf(1))
        assert not digits_correct(mpmath.mpf("9.99999999999999999999999999900e5"), mpmath.mpf("1e6"))
        assert within_tol(mpmath.mpf(1 + 1e-9), mpmath.mpf(1))
        assert not within_tol(mpmath.mpf(1 + 2e-8), mpmath.mpf(1))
        assert not within_tol(mpmath.mpf("inf"), mpmath.mpf(1))


# ---- property: random family, order and point -------------------------------------------------------------------


def decimal_string(n: int) -> str:
    """n/100 as an exact decimal string: -135 -> '-1.35'."""
    sign = "-" if n < 0 else ""
    return f"{sign}{abs(n) // 100}.{abs(n) % 100:02d}"


@settings(max_examples=30, deadline=None, derandomize=True,  # the same examples every CI run
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_property_value_within_its_tolerance(data: st.DataObject) -> None:
    fam: Family = data.draw(st.sampled_from(FAMILIES), label="family")
    k = data.draw(st.integers(1, 300), label="order")
    point = decimal_string(data.draw(st.integers(*fam.domain), label="hundredths"))
    true, scale = reference_value(fam.name, k, point)
    assume(scale > 0 and not is_near_zero(true, scale))  # x^2 sin(x) at 0, order 1: every term is 0
    case = Case(fam.name, fam.expr, fam.var, k, point, true, scale)
    for outcome in (run_api(case, None), run_api(case, DIGITS)):
        assert outcome.status in ("ok", "refused"), outcome.message()
