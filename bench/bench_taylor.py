"""High-order derivatives: gradcli's Taylor mode against sympy diff+evalf, checked against 50 digits.

For the k-th derivative of

    f1 = exp(sin(x))*log(1+x^2)  at x = 0.5
    f2 = x*sin(x)/(1+x^2)        at x = 0.7
    f3 = 1/(1+exp(-x))           at x = 0.3

it prints, in one run and one table:

* ``gradcli ms``  the engine time (median of several runs) of ``derive.derivative_values`` on one point,
  the call ``gradcli d`` makes; parsing and lowering happen once, outside the timing;
* ``sympy ms``    ``sympy.diff(f, x, k).evalf(subs=...)`` with sympy's cache cleared (k <= 20);
* ``ratio``       sympy / gradcli;
* ``rel err``     gradcli's value against a 50-digit reference that shares no code with gradcli:
  for k <= 20 sympy's exact derivative evaluated at 60 digits; above, the Cauchy integral formula
  c_k = (1/2 pi i) \\oint f(z) (z-a)^(-k-1) dz, evaluated by the trapezoidal rule on a circle of radius
  rho*R (R the distance from a to f's nearest complex singularity, rho < 1) with mpmath's complex
  functions at raised precision (the rule converges like rho^N; the sum cancels about k*log10(1/rho)
  digits, which the working precision adds back). The reference is itself verified: against sympy at
  k = 8, 16, 20, and between two radii at every k.

Beyond k ~ 170, f^(k) exceeds float64's range (1e308). The engine then works with the coefficients of
f(a + s t) for a per-point step s (taylor.taylor_coefficients), which stay representable; the ``form``
column says ``k!c/s^k`` where the value compared is k! * c_k / s^k formed in mpmath from the engine's
float64 c_k and s (``gradcli d`` in float64 reports such a value as an overflow, exit 3, suggesting
--digits). Everything else is compared as the float64 value ``gradcli d`` prints.

Then: ``--digits 50`` at k = 300 (exp(2*x) at x = 1 against 2^300 e^2; f1 against the Cauchy reference),
and the mixed partial x:4,y:4,z:4 of exp(x*y)*sin(y+z)/(1+x^2*z^2) against sympy; and the issue's
targets, each with PASS or FAIL.

    python bench/bench_taylor.py
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np
import sympy
from sympy.core.cache import clear_cache

from gradcli import ops
from gradcli.derive import derivative_values, point_arrays, prepare
from gradcli.parse import parse_constant, symbol
from gradcli.render import number
from gradcli.taylor import taylor_coefficients

ORDERS = [1, 2, 4, 8, 16, 20, 32, 64, 100, 128, 256, 512, 1024]
SYMPY_ORDERS = [1, 2, 4, 8, 16, 20]
REF_DPS = 50


@dataclass(frozen=True)
class Case:
    name: str
    text: str
    at: float
    f: Callable[[Any], Any]  # the same function on mpmath (complex) numbers
    radius: Any  # distance from `at` to the nearest complex singularity


CASES = [
    # log(1+z^2) branches at z = +-i; exp(sin z) is entire
    Case("f1", "exp(sin(x))*log(1+x^2)", 0.5, lambda z: mpmath.exp(mpmath.sin(z)) * mpmath.log(1 + z**2),
         lambda a: mpmath.sqrt(a**2 + 1)),
    # poles at z = +-i
    Case("f2", "x*sin(x)/(1+x^2)", 0.7, lambda z: z * mpmath.sin(z) / (1 + z**2), lambda a: mpmath.sqrt(a**2 + 1)),
    # poles at z = +-i pi
    Case("f3", "1/(1+exp(-x))", 0.3, lambda z: 1 / (1 + mpmath.exp(-z)), lambda a: mpmath.sqrt(a**2 + mpmath.pi**2)),
]


def median_time(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median wall time in seconds of ``repeat`` runs after one warm-up, and the last result."""
    result = fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


# ---- independent references --------------------------------------------------------------------------
def cauchy_coefficients(f: Callable[[Any], Any], a: Any, radius: Any, orders: list[int], rho: float,
                        digits: int) -> dict[int, mpmath.mpf]:
    """Taylor coefficients f^(k)(a)/k! by the trapezoidal rule for Cauchy's integral on |z-a| = rho*R."""
    kmax = max(orders)
    n = 2 * (kmax + 1) + 64  # aliasing error ~ rho^n, far below 10^-digits
    loss = int(kmax * math.log10(1 / rho)) + 1
    with mpmath.workdps(digits + loss + 20):
        r = mpmath.mpf(rho) * radius
        roots = [mpmath.expjpi(mpmath.mpf(2 * j) / n) for j in range(n)]
        samples = [f(a + r * w) for w in roots]
        out = {}
        for k in orders:
            s = mpmath.fsum(samples[j] * roots[(-j * k) % n] for j in range(n)) / n
            out[k] = +(s.real / r**k)
    return out


def sympy_derivative(expr: sympy.Expr, k: int, at: Any, dps: int) -> mpmath.mpf:
    """sympy's exact k-th derivative evaluated at the exact binary value of ``at``."""
    x = symbol("x")
    d = sympy.diff(expr, x, k)
    with mpmath.workdps(dps):
        return mpmath.mpf(sympy.N(d.subs(x, sympy.Rational(at)), dps))


def rel(a: Any, b: Any) -> float:
    with mpmath.workdps(REF_DPS + 20):
        a, b = mpmath.mpf(a), mpmath.mpf(b)
        return float(abs(a - b) / abs(b)) if b != 0 else float(abs(a))


# ---- the main table -------------------------------------------------------------------------------------
def engine_row(prep: Any, case: Case, k: int) -> tuple[float, Any, str]:
    """(engine seconds, value as mpf, form) for the k-th derivative at case.at."""
    point = {"x": np.array([case.at])}
    repeat = 9 if k <= 128 else 5
    secs, (vals, _) = median_time(lambda: derivative_values(prep.graph, ["x"] * k, point, ops.F64, 1), repeat)
    value = float(vals[0])
    if math.isfinite(value):
        return secs, mpmath.mpf(value), "float"
    coeffs, _, step = taylor_coefficients(prep.graph, "x", k, point, ops.F64, 1)
    with mpmath.workdps(REF_DPS + 20):
        return secs, mpmath.factorial(k) * mpmath.mpf(float(coeffs[k, 0])) / mpmath.mpf(float(step[0])) ** k, "k!c/s^k"


def sympy_time(expr: sympy.Expr, k: int, at: float) -> float:
    x = symbol("x")
    clear_cache()
    t0 = time.perf_counter()
    sympy.diff(expr, x, k).evalf(subs={x: at})
    return time.perf_counter() - t0


def fmt_ms(t: float | None) -> str:
    return "" if t is None else (f"{t * 1e3:.3f}" if t < 0.01 else f"{t * 1e3:.1f}")


def main() -> None:
    results: dict[tuple[str, int], dict[str, Any]] = {}
    verify: list[str] = []
    for case in CASES:
        prep = prepare(case.text)
        a = mpmath.mpf(case.at)
        high = [k for k in ORDERS if k > 20] + [8, 16, 20]
        ref_a = cauchy_coefficients(case.f, a, case.radius(a), high, 0.8, REF_DPS)
        ref_b = cauchy_coefficients(case.f, a, case.radius(a), high, 0.7, REF_DPS)
        exact = {k: sympy_derivative(prep.expr, k, case.at, REF_DPS + 10) for k in SYMPY_ORDERS}
        with mpmath.workdps(REF_DPS + 20):
            worst_sympy = max(rel(mpmath.factorial(k) * ref_a[k], exact[k]) for k in (8, 16, 20))
            worst_radii = max(rel(ref_a[k], ref_b[k]) for k in high)
        verify.append(f"{case.name}: Cauchy vs sympy at k=8,16,20: {worst_sympy:.1e}; "
                      f"radii 0.8R vs 0.7R, k<=1024: {worst_radii:.1e}")
        for k in ORDERS:
            secs, value, form = engine_row(prep, case, k)
            with mpmath.workdps(REF_DPS + 20):
                ref = exact[k] if k in exact else mpmath.factorial(k) * ref_a[k]
            results[(case.name, k)] = {
                "engine": secs,
                "sympy": sympy_time(prep.expr, k, case.at) if k in SYMPY_ORDERS else None,
                "err": rel(value, ref),
                "ref": ref,
                "form": form,
            }

    print("High-order derivatives in float64 (one point; times in ms; rel err against a 50-digit reference)")
    print()
    header = f"{'k':>5} | " + " | ".join(
        f"{c.name + ' gradcli':>11} {'sympy':>9} {'ratio':>7} {'rel err':>8} {'form':>7}" for c in CASES
    )
    print(header)
    print("-" * len(header))
    for k in ORDERS:
        cells = []
        for c in CASES:
            r = results[(c.name, k)]
            ratio = f"{r['sympy'] / r['engine']:.0f}x" if r["sympy"] else ""
            cells.append(f"{fmt_ms(r['engine']):>11} {fmt_ms(r['sympy']):>9} {ratio:>7} {r['err']:>8.1e} "
                         f"{r['form']:>7}")
        print(f"{k:>5} | " + " | ".join(cells))
    print()
    print("f1 = exp(sin(x))*log(1+x^2) at 0.5, f2 = x*sin(x)/(1+x^2) at 0.7, f3 = 1/(1+exp(-x)) at 0.3.")
    print("gradcli: derive.derivative_values on one point (median of 5-9 runs, parse/lower excluded).")
    print("sympy: diff + evalf at the point, cache cleared, one run.")
    print("Reference: sympy's exact derivative at 60 digits for k <= 20; above, the Cauchy integral on a")
    print("circle in the complex plane with mpmath at raised precision. form k!c/s^k: f^(k) > 1e308 leaves")
    print("float64, so the engine's scaled coefficient c_k of f(a+s*t) and its step s are compared as")
    print("k!*c_k/s^k in mpmath (gradcli d exits 3 there and suggests --digits).")
    print("Reference self-check (relative differences):")
    for line in verify:
        print(f"  {line}")

    # ---- --digits 50 at k = 300 --------------------------------------------------------------------------
    print()
    extra: dict[str, Any] = {}
    digit_rows = []
    for label, text, at_text, ref_fn in [
        ("exp(2*x), x=1", "exp(2*x)", "1", lambda: mpmath.mpf(2) ** 300 * mpmath.e**2),
        ("f1, x=0.5", CASES[0].text, "0.5",
         lambda: mpmath.factorial(300) * cauchy_coefficients(CASES[0].f, mpmath.mpf("0.5"),
                                                              CASES[0].radius(mpmath.mpf("0.5")), [300], 0.8, 80)[300]),
    ]:
        prep = prepare(text)
        with mpmath.workdps(60):  # what --digits 50 runs at (50 + 10 guard digits)
            bk = ops.mp_backend(60)
            point, _ = point_arrays({"x": parse_constant(at_text, what="--at x")}, bk)
            secs, (vals, _) = median_time(
                lambda g=prep.graph, p=point, b=bk: derivative_values(g, ["x"] * 300, p, b, 1), 3)
            printed = number(vals[0], 50)  # the 50 significant digits gradcli prints
        with mpmath.workdps(100):
            ref = ref_fn()
            err = abs(mpmath.mpf(printed) - ref) / abs(ref)
            correct = float(-mpmath.log10(err)) if err > 0 else 100.0
        digit_rows.append((label, secs, printed, correct))
        extra[label] = correct
    print("--digits 50, k = 300 (engine on mpmath numbers; reference: 2^300 e^2, and the Cauchy integral at 80 digits)")
    for label, secs, printed, correct in digit_rows:
        print(f"  {label:<14} {secs * 1e3:8.1f} ms  {printed}  correct digits: {min(correct, 50):.1f}")

    # ---- mixed partial -------------------------------------------------------------------------------------
    mixed_text = "exp(x*y)*sin(y+z)/(1+x^2*z^2)"
    prep = prepare(mixed_text)
    mpoint = {"x": 0.3, "y": 0.4, "z": 0.5}
    arrays = {k: np.array([v]) for k, v in mpoint.items()}
    wrt = ["x"] * 4 + ["y"] * 4 + ["z"] * 4
    msecs, (mvals, _) = median_time(lambda: derivative_values(prep.graph, wrt, arrays, ops.F64, 1), 9)
    x, y, z = symbol("x"), symbol("y"), symbol("z")
    mexpr = prep.expr
    clear_cache()
    t0 = time.perf_counter()
    md = sympy.diff(mexpr, x, 4, y, 4, z, 4)
    mref = sympy.N(md.subs({x: sympy.Rational(0.3), y: sympy.Rational(0.4), z: sympy.Rational(0.5)}), 40)
    msym = time.perf_counter() - t0
    merr = rel(float(mvals[0]), mpmath.mpf(mref))
    print()
    print(f"mixed x:4,y:4,z:4 of {mixed_text} at x=0.3,y=0.4,z=0.5: gradcli {msecs * 1e3:.2f} ms, "
          f"sympy diff+evalf {msym * 1e3:.0f} ms, value {float(mvals[0])!r}, rel err vs sympy {merr:.1e}")

    # ---- targets -------------------------------------------------------------------------------------------
    names = [c.name for c in CASES]
    r = results

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    ratios20 = [r[(n, 20)]["sympy"] / r[(n, 20)]["engine"] for n in names]
    scaling = [r[(n, 1024)]["engine"] / r[(n, 128)]["engine"] for n in names]
    t100 = [r[(n, 100)]["engine"] for n in names]
    err20 = max(r[(n, k)]["err"] for n in names for k in ORDERS if k <= 20)
    err100 = max(r[(n, k)]["err"] for n in names for k in ORDERS if k <= 100)
    err1024 = max(r[(n, k)]["err"] for n in names for k in ORDERS)
    digits = min(extra.values())
    print()
    print("Targets")
    print(f"  k=20 at least 1000x faster than sympy:      {', '.join(f'{v:.0f}x' for v in ratios20):<28} "
          f"{verdict(min(ratios20) >= 1000)}")
    print(f"  time(1024)/time(128) <= 64:                 {', '.join(f'{v:.1f}' for v in scaling):<28} "
          f"{verdict(max(scaling) <= 64)}")
    print(f"  k=100 under 10 ms:                          {', '.join(f'{v * 1e3:.2f} ms' for v in t100):<28} "
          f"{verdict(max(t100) < 0.010)}")
    print(f"  rel err <= 1e-12 up to k=20:                {err20:<28.1e} {verdict(err20 <= 1e-12)}")
    print(f"  rel err <= 1e-9 up to k=100:                {err100:<28.1e} {verdict(err100 <= 1e-9)}")
    print(f"  (rel err up to k=1024, no target:           {err1024:.1e})")
    worst = max(((n, k) for n in names for k in ORDERS), key=lambda nk: r[nk]["err"])
    case = next(c for c in CASES if c.name == worst[0])
    size = float(abs(r[worst]["ref"]) / mpmath.factorial(worst[1]) * case.radius(mpmath.mpf(case.at)) ** worst[1])
    print(f"  (the largest error, {worst[0]} at k={worst[1]}, is where |f^(k)/k!| R^k = {size:.1e}: a near-zero of")
    print("   the derivative, whose relative error grows like 1/that; the absolute error is at rounding level)")
    print(f"  >= 45 correct digits at k=300, --digits 50: {min(digits, 50):<28.1f} {verdict(digits >= 45)}")
    print(f"  mixed x:4,y:4,z:4 under 50 ms:              {f'{msecs * 1e3:.2f} ms':<28} {verdict(msecs < 0.050)}")


if __name__ == "__main__":
    main()
