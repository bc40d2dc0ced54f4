"""Reference derivative values from independent closed forms: the oracle for issue 9's certified engine.

Nothing here imports gradcli. Every value is the exact k-th derivative of a family's function at an exact
decimal point, from a closed form evaluated with exact rational arithmetic (``fractions.Fraction``, Gaussian
rationals for complex exponentials, exact Hermite recurrences) wherever possible, and mpmath at a working
precision that grows with the order for the transcendental factors.

Each value is computed twice, at two working precisions 30 digits apart, and the two must agree to
``CERTIFIED_DIGITS + 5`` digits, or building the case fails: the stored ``true`` values carry at least 60 correct
significant digits. ``tests/test_reference.py`` also checks the closed forms against ``sympy.diff`` at low
orders and ``mpmath.diff`` at moderate ones.

Families
    exp(a*x)*sin(b*x), exp(a*x)*cos(b*x)   d^k = Im/Re((a+ib)^k e^{(a+ib)x}), (a+ib)^k exact
    sin(3*x)*cosh(x)                         two complex exponentials (1+3i), (-1+3i)
    exp(x/2)*sin(x)*cos(x/3)                 product to sum, then complex exponentials (1/2+4i/3), (1/2+2i/3)
    exp(-x^2)                                (-1)^k H_k(x) e^{-x^2}, H_k(x) by the exact three-term recurrence
    1/(1+x), log(1+x), x**2.5                falling factorials, exact rationals (times sqrt(x) for x**2.5)
    sin, cos, exp(2*x), sinh(2*t), cosh(2*t), exp(x)   shifts and powers of 2
    1/(1+x**2), atan(x)                      partial fractions: Im((-1)^k k! (x-i)^{-k-1}), exact
    x*exp(x), x**2*sin(x)                    Leibniz sums
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

import mpmath

__all__ = [
    "CERTIFIED_DIGITS",
    "FLOAT_RANGE",
    "Case",
    "Family",
    "FAMILIES",
    "FAMILY_BY_NAME",
    "NEAR_ZERO_RATIO",
    "all_cases",
    "cases_for",
    "reference_value",
]

CERTIFIED_DIGITS = 60  # every stored value has at least this many correct significant digits
NEAR_ZERO_RATIO = mpmath.mpf("1e-3")  # cases with |f^(k)| < ratio * natural scale are left out (see below)
FLOAT_RANGE = (mpmath.mpf("1e-300"), mpmath.mpf("1e300"))  # a float64 answer is expected inside this range


@dataclass(frozen=True)
class Case:
    family: str
    expr: str  # gradcli syntax
    var: str
    k: int  # order
    point: str  # exact decimal
    true: mpmath.mpf = field(compare=False)  # >= CERTIFIED_DIGITS correct significant digits
    scale: mpmath.mpf = field(compare=False, repr=False)  # natural magnitude of the terms making up the value

    @property
    def id(self) -> str:
        return f"{self.expr} d{self.var}^{self.k} at {self.var}={self.point}"

    @property
    def in_float_range(self) -> bool:
        return FLOAT_RANGE[0] < abs(self.true) < FLOAT_RANGE[1]


# ---- exact helpers -------------------------------------------------------------------------------------------


def gauss_pow(a: Fraction, b: Fraction, k: int) -> tuple[Fraction, Fraction]:
    """(a + ib)^k exactly, by repeated squaring over Gaussian rationals."""
    rr, ri = Fraction(1), Fraction(0)
    pr, pi_ = Fraction(a), Fraction(b)
    while k:
        if k & 1:
            rr, ri = rr * pr - ri * pi_, rr * pi_ + ri * pr
        pr, pi_ = pr * pr - pi_ * pi_, 2 * pr * pi_
        k >>= 1
    return rr, ri


def mpq(q: Fraction | int) -> mpmath.mpf:
    """An exact rational as an mpf, rounded once at the current working precision."""
    q = Fraction(q)
    return mpmath.mpf(q.numerator) / q.denominator


def falling(p: Fraction, k: int) -> Fraction:
    """p (p-1) ... (p-k+1), exactly."""
    out = Fraction(1)
    for j in range(k):
        out *= p - j
    return out


def hermite_exact(k: int, x: Fraction) -> Fraction:
    """Physicists' Hermite polynomial H_k(x) by H_{n+1} = 2x H_n - 2n H_{n-1}, in exact rationals."""
    h0, h1 = Fraction(1), 2 * x
    if k == 0:
        return h0
    for n in range(1, k):
        h0, h1 = h1, 2 * x * h1 - 2 * n * h0
    return h1


def shifted_sin(x: mpmath.mpf, m: int) -> mpmath.mpf:
    """sin(x + m pi/2), the m-th derivative of sin at x, without rounding pi."""
    return (mpmath.sin(x), mpmath.cos(x), -mpmath.sin(x), -mpmath.cos(x))[m % 4]


def cexp_deriv(a: Fraction, b: Fraction, k: int, x: mpmath.mpf) -> tuple[mpmath.mpf, mpmath.mpf, mpmath.mpf]:
    """(Re, Im, |.|) of d^k/dx^k e^{(a+ib)x} = (a+ib)^k e^{(a+ib)x}."""
    pr, pi_ = gauss_pow(a, b, k)
    pr, pi_ = mpq(pr), mpq(pi_)
    ea = mpmath.exp(mpq(a) * x)
    c, s = mpmath.cos(mpq(b) * x), mpmath.sin(mpq(b) * x)
    re = ea * (pr * c - pi_ * s)
    im = ea * (pr * s + pi_ * c)
    return re, im, ea * mpmath.sqrt(pr * pr + pi_ * pi_)


# ---- the closed forms: (k, exact point) -> (value, scale) at the current mpmath precision ----------------------

ClosedForm = Callable[[int, Fraction, mpmath.mpf], tuple[mpmath.mpf, mpmath.mpf]]


def exp_sin(a: Fraction, b: Fraction) -> ClosedForm:
    def f(k: int, q: Fraction, x: mpmath.mpf) -> tuple[mpmath.mpf, mpmath.mpf]:
        _, im, mag = cexp_deriv(a, b, k, x)
        return im, mag

    return f


def exp_cos(a: Fraction, b: Fraction) -> ClosedForm:
    def f(k: int, q: Fraction, x: mpmath.mpf) -> tuple[mpmath.mpf, mpmath.mpf]:
        re, _, mag = cexp_deriv(a, b, k, x)
        return re, mag

    return f


def sum_of_exp_sin(*zs: tuple[Fraction, Fraction]) -> ClosedForm:
    """1/2 sum of Im e^{z x}, the shape of sin(3x)cosh(x) and of exp(x/2)sin(x)cos(x/3)."""

    def f(k: int, q: Fraction, x: mpmath.mpf) -> tuple[mpmath.mpf, mpmath.mpf]:
        val, mag = mpmath.mpf(0), mpmath.mpf(0)
        for a, b in zs:
            _, im, m = cexp_deriv(a, b, k, x)
            val += im
            mag += m
        return val / 2, mag / 2

    return f


def gaussian(k: int, q: Fraction, x: mpmath.mpf) -> tuple[mpmath.mpf, mpmath.mpf]:
    h = hermite_exact(k, q)
    e = mpmath.exp(-mpq(q * q))
    val = (-1) ** k * mpq(h) * e
    # Cramer's bound |H_k(x)| <= 1.0865 e^{x^2/2} sqrt(2^k k!) is the natural scale
    scale = mpmath.mpf("1.0865") * mpmath.exp(mpq(q * q) / 2) * mpmath.sqrt(mpq(2**k * math.factorial(k))) * e
    return val, scale


def recip_1px(k: int, q: Fraction, x: mpmath.mpf) -> tuple[mpmath.mpf, mpmath.mpf]:
    v = mpq(Fraction((-1) ** k * math.factorial(k)) / (1 + q) ** (k + 1))
    return v, abs(v)


def log_1px(k: int, q: Fraction, x: mpmath.mpf) -> tuple[mpmath.mpf, mpmath.mpf]:
    v = mpq(Fraction((-1) ** (k - 1) * math.factorial(k - 1)) / (1 + q) ** k)
    return v, abs(v)


def power_5_2(k: int, q: Fraction, x: mpmath.mpf) -> tuple[mpmath.mpf, mpmath.mpf]:
    # d^k x^{5/2} = (5/2)_k falling * x^{5/2-k} = (5/2)_k * x^{2-k} * sqrt(x)
    v = mpq(falling(Fraction(5, 2), k) * q ** (2 - k)) * mpmath.sqrt(mpq(q))
    return v, abs(v)


def sine(k: int, q: Fraction, x: mpmath.mpf) -> tuple[mpmath.mpf, mpmath.mpf]:
    return shifted_sin(x, k), mpmath.mpf(1)


def cosine(k: int, q: Fraction, x: mpmath.mpf) -> tuple[mpmath.mpf, mpmath.mpf]:
    return shifted_sin(x, k + 1), mpmath.mpf(1)


def exp_scaled(c: int) -> ClosedForm:
    def f(k: int, q: Fraction, x: mpmath.mpf) -> tuple[mpmath.mpf, mpmath.mpf]:
        v = mpmath.mpf(c) ** k * mpmath.exp(c * x)
        return v, abs(v)

    return f


def lorentz_k(k: int, q: Fraction) -> tuple[Fraction, Fraction]:
    """d^k/dx^k 1/(1+x^2) = Im((-1)^k k! (x-i)^{-k-1}) = (-1)^k k! Im((x+i)^{k+1}) / (1+x^2)^{k+1}; exact."""
    _, im = gauss_pow(q, Fraction(1), k + 1)
    r = 1 + q * q
    val = Fraction((-1) ** k * math.factorial(k)) * im / r ** (k + 1)
    # |(x-i)^{-k-1}| = (1+x^2)^{-(k+1)/2}; its square is exact
    scale_sq = Fraction(math.factorial(k) ** 2) / r ** (k + 1)
    return val, scale_sq


def lorentz(k: int, q: Fraction, x: mpmath.mpf) -> tuple[mpmath.mpf, mpmath.mpf]:
    val, scale_sq = lorentz_k(k, q)
    return mpq(val), mpmath.sqrt(mpq(scale_sq))


def arctan(k: int, q: Fraction, x: mpmath.mpf) -> tuple[mpmath.mpf, mpmath.mpf]:
    return lorentz(k - 1, q, x)


def x_exp(k: int, q: Fraction, x: mpmath.mpf) -> tuple[mpmath.mpf, mpmath.mpf]:
    # Leibniz: sum_j C(k,j) (d^j x) (d^{k-j} e^x) = (x + k) e^x
    e = mpmath.exp(x)
    return mpq(q + k) * e, mpq(abs(q) + k) * e


def x2_sin(k: int, q: Fraction, x: mpmath.mpf) -> tuple[mpmath.mpf, mpmath.mpf]:
    # Leibniz: x^2 sin^{(k)} + 2k x sin^{(k-1)} + k(k-1) sin^{(k-2)}
    terms = [(q * q, k), (2 * k * q, k - 1), (Fraction(k * (k - 1)), k - 2)]
    val = sum((mpq(c) * shifted_sin(x, m) for c, m in terms), mpmath.mpf(0))
    return val, sum((mpq(abs(c)) for c, _ in terms), mpmath.mpf(0))


def sinh2(k: int, q: Fraction, x: mpmath.mpf) -> tuple[mpmath.mpf, mpmath.mpf]:
    v = mpmath.mpf(2) ** k * (mpmath.sinh(2 * x) if k % 2 == 0 else mpmath.cosh(2 * x))
    return v, mpmath.mpf(2) ** k * mpmath.cosh(2 * x)


def cosh2(k: int, q: Fraction, x: mpmath.mpf) -> tuple[mpmath.mpf, mpmath.mpf]:
    v = mpmath.mpf(2) ** k * (mpmath.cosh(2 * x) if k % 2 == 0 else mpmath.sinh(2 * x))
    return v, mpmath.mpf(2) ** k * mpmath.cosh(2 * x)


# ---- families --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    name: str
    expr: str  # gradcli syntax
    closed: ClosedForm
    orders: tuple[int, ...]
    points: tuple[str, ...]
    domain: tuple[int, int]  # property tests draw points n/100 with domain[0] <= n <= domain[1]
    var: str = "x"
    extra: tuple[tuple[int, str], ...] = ()  # further (order, point) cases

    def sympy_expr(self):  # noqa: ANN201 - sympy is imported lazily, only by the self-tests
        import sympy

        return sympy.sympify(self.expr.replace("^", "**"), locals={self.var: sympy.Symbol(self.var)}, rational=True)


H = Fraction
ALL_ORDERS = (10, 20, 40, 60, 100, 150, 200, 300, 500, 700, 1000)
P5 = ("0.3", "0.5", "0.7", "1.25", "-0.4")

FAMILIES: tuple[Family, ...] = (
    Family("exp_sin", "exp(x)*sin(x)", exp_sin(H(1), H(1)), ALL_ORDERS, P5, (-150, 200)),
    Family("exp_cos", "exp(x)*cos(x)", exp_cos(H(1), H(1)), (10, 40, 100, 200, 500, 1000), P5, (-150, 200)),
    Family("exp2_sin3", "exp(2*x)*sin(3*x)", exp_sin(H(2), H(3)), (10, 20, 60, 150, 300, 500, 700),
           ("0.3", "0.7", "-0.4"), (-150, 150)),
    Family("expm_cos2", "exp(-x)*cos(2*x)", exp_cos(H(-1), H(2)), (10, 20, 60, 100, 200, 300, 500),
           ("0.3", "0.5", "1.25"), (-150, 150)),
    Family("sin3_cosh", "sin(3*x)*cosh(x)", sum_of_exp_sin((H(1), H(3)), (H(-1), H(3))),
           (10, 20, 40, 60, 100, 150, 200, 300, 500), ("0.3", "0.5", "1.25"), (-150, 150)),
    Family("exp_sin_cos", "exp(x/2)*sin(x)*cos(x/3)",
           sum_of_exp_sin((H(1, 2), H(4, 3)), (H(1, 2), H(2, 3))), ALL_ORDERS, ("0.3", "0.5", "-0.4"), (-150, 150)),
    Family("gauss", "exp(-x^2)", gaussian, (10, 20, 40, 60, 100, 150, 200, 300), ("0.3", "0.5", "1.25", "-0.4"),
           (-150, 150)),
    Family("recip", "1/(1+x)", recip_1px, (10, 20, 40, 60, 100, 150, 200, 300), ("0.3", "0.5", "1.25"), (-50, 200)),
    Family("log1p", "log(1+x)", log_1px, (10, 40, 100, 150, 300), ("0.5", "-0.4", "1.25"), (-50, 200)),
    Family("pow52", "x**2.5", power_5_2, (10, 20, 40, 60, 100, 150), ("0.5", "0.7", "1.25"), (20, 300)),
    Family("sin", "sin(x)", sine, ALL_ORDERS, ("0.3", "1.25"), (-300, 300)),
    Family("cos", "cos(x)", cosine, (10, 100, 500, 1000), ("0.5", "-0.4"), (-300, 300)),
    Family("exp2", "exp(2*x)", exp_scaled(2), (10, 100, 300, 500, 1000), ("0.5", "-0.4", "1.25"), (-150, 150)),
    Family("lorentz", "1/(1+x**2)", lorentz, (10, 20, 40, 60, 100, 150), ("0.3", "0.5", "1.25"), (-200, 200)),
    Family("atan", "atan(x)", arctan, (10, 40, 100, 150, 200), ("0.3", "0.5", "1.25"), (-200, 200)),
    Family("x_exp", "x*exp(x)", x_exp, (10, 60, 200, 500, 1000), ("0.3", "-0.4"), (-150, 150)),
    Family("x2_sin", "x**2*sin(x)", x2_sin, (10, 20, 60, 100, 300, 1000), ("0.5", "1.25", "-0.4"), (-300, 300)),
    Family("sinh2", "sinh(2*t)", sinh2, (10, 100, 500, 1000), ("0.5", "-0.4"), (-150, 150), var="t"),
    Family("cosh2", "cosh(2*t)", cosh2, (10, 100, 500, 1000), ("0.5", "-0.4"), (-150, 150), var="t"),
    Family("exp", "exp(x)", exp_scaled(1), (10, 100, 1000), ("0.5",), (-300, 300), extra=((10, "0"), (2000, "0"))),
)
FAMILY_BY_NAME = {f.name: f for f in FAMILIES}


def working_dps(k: int) -> int:
    """Digits for the mpmath factors: 60 wanted + guard + k/2 for what the closed forms might cancel."""
    return CERTIFIED_DIGITS + 30 + k // 2


def _eval(family: Family, k: int, point: str, dps: int) -> tuple[mpmath.mpf, mpmath.mpf]:
    with mpmath.workdps(dps):
        q = Fraction(point)
        return family.closed(k, q, mpmath.mpf(q.numerator) / q.denominator)


@functools.cache
def reference_value(family_name: str, k: int, point: str) -> tuple[mpmath.mpf, mpmath.mpf]:
    """(f^(k)(point), scale), with at least CERTIFIED_DIGITS correct digits (checked at two precisions) unless the
    value is below 1e-20 of its scale."""
    family = FAMILY_BY_NAME[family_name]
    dps = working_dps(k)
    lo, _ = _eval(family, k, point, dps)
    hi, scale = _eval(family, k, point, dps + 30)
    with mpmath.workdps(dps + 30):
        # relative to the value; values below 1e-20 of their scale (none in the set: see is_near_zero) only need
        # to be right relative to the scale, and an exact 0 (for the property test's random points) is allowed
        size = max(abs(hi), mpmath.mpf(10) ** -20 * scale)
        if abs(lo - hi) > mpmath.mpf(10) ** -(CERTIFIED_DIGITS + 5) * size:
            raise ValueError(f"{family.expr} d^{k} at {point}: two working precisions disagree: {lo} vs {hi}")
    return hi, scale


def is_near_zero(value: mpmath.mpf, scale: mpmath.mpf) -> bool:
    """A value much smaller than its natural scale: relative error there is a judgment call (a value near 0 may
    be certified by an absolute bound against a scale), so such points are left out of the reference set."""
    with mpmath.workdps(30):
        return abs(value) < NEAR_ZERO_RATIO * scale


@functools.cache
def cases_for(family_name: str) -> tuple[Case, ...]:
    family = FAMILY_BY_NAME[family_name]
    grid = [(k, p) for k in family.orders for p in family.points] + list(family.extra)
    out = []
    for k, p in grid:
        value, scale = reference_value(family.name, k, p)
        if is_near_zero(value, scale):
            continue
        out.append(Case(family.name, family.expr, family.var, k, p, value, scale))
    return tuple(out)


def all_cases() -> list[Case]:
    return [c for f in FAMILIES for c in cases_for(f.name)]


if __name__ == "__main__":  # a summary: python tests/reference_cases.py
    total = 0
    for fam in FAMILIES:
        cs = cases_for(fam.name)
        total += len(cs)
        print(f"{fam.name:12s} {fam.expr:26s} {len(cs):3d} cases, orders {sorted({c.k for c in cs})}")
    print("total", total)
