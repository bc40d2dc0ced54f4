"""The primitive registry: the one place where a function is defined.

Each :class:`Primitive` holds, side by side,

* ``sympy``   – the sympy class the graph lowers to this primitive (None for internal ones),
* ``f64``     – the numpy kernel on float64 arrays,
* ``mp``      – the kernel on object arrays of ``mpmath.mpf`` (``--digits``),
* ``vjp``     – the reverse rule, written with Tensor operations (the ``T`` namespace) so that an
                outer tape records it and differentiates it again,
* ``taylor``  – the Taylor rule on *normalized* coefficient arrays ``c[k] = f^(k)/k!`` with the order
                axis first (shape ``(K+1, P)``), written with series arithmetic and backend kernels only,
                so that the same rule runs on float64 and on mpmath numbers.

The surface syntax (:mod:`gradcli.syntax`: the names EXPR may call) is built from it. Adding a
function (say ``erf``) means adding one entry to the list :data:`_E` below. The rules are written with
:mod:`gradcli.series` (truncated power-series arithmetic) over a :mod:`gradcli.backend` (``Backend``,
``F64`` and ``mp_backend`` are re-exported here).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import flint as _flint
import mpmath
import numpy as np
import sympy

from .backend import F64, Backend, backend_of, mp_backend
from .errors import InputError
from .series import (
    cauchy,
    compose_known,
    const_like,
    div_series,
    exp_series,
    integrate,
    ode_pair,
    orders,
    point_columns,
    rsum,
    series_length,
    zeros_for,
)

__all__ = ["Primitive", "Backend", "F64", "mp_backend", "REGISTRY", "BY_SYMPY"]


# ---- kernels ---------------------------------------------------------------------------------------
_NAN = float("nan")


def _mp_real(fn: Callable[..., Any]) -> Callable[..., Any]:
    """An elementwise mpmath kernel that gives nan where the real function is undefined."""

    def scalar(*xs: Any) -> Any:
        try:
            r = fn(*xs)
        except (ValueError, ZeroDivisionError):
            return mpmath.mpf("nan")
        return r if isinstance(r, mpmath.mpf) else mpmath.mpf("nan")

    def kernel(*arrays: Any, **params: Any) -> np.ndarray:
        if params:
            return np.frompyfunc(lambda *xs: scalar(*xs, *params.values()), len(arrays), 1)(*arrays)
        return np.frompyfunc(scalar, len(arrays), 1)(*arrays)

    return kernel


def _f64_scalar(fn: Callable[..., float]) -> Callable[..., np.ndarray]:
    """A float64 kernel from a scalar ``math`` function (numpy lacks erf, gamma, lgamma)."""

    def scalar(*xs: float) -> float:
        try:
            return float(fn(*xs))
        except (ValueError, OverflowError, ZeroDivisionError, TypeError):
            return _NAN

    vec = np.vectorize(scalar, otypes=[np.float64])

    def kernel(*arrays: Any, **params: Any) -> np.ndarray:
        arrays = tuple(np.asarray(a, dtype=np.float64) for a in arrays)
        if params:
            return np.vectorize(lambda *xs: scalar(*xs, *params.values()), otypes=[np.float64])(*arrays)
        return vec(*arrays)

    return kernel


def _np(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    def kernel(*arrays: Any, **params: Any) -> np.ndarray:
        with np.errstate(all="ignore"):
            return fn(*arrays, **params)

    # a numpy ufunc also writes into a given array (out=): the entry's f64_into, for gradcli.batch
    kernel.into = fn if isinstance(fn, np.ufunc) else None  # type: ignore[attr-defined]
    return kernel


def _f64_loggamma(x: float) -> float:
    # sympy's loggamma is complex for x <= 0, so the real function ends there.
    return math.lgamma(x) if x > 0 else _NAN


def _mp_loggamma(x: Any) -> Any:
    return mpmath.loggamma(x) if x > 0 else mpmath.mpf("nan")


def _f64_polygamma(x: float, n: int) -> float:
    if x <= 0 and x == math.floor(x):
        return _NAN
    return float(mpmath.psi(n, x))


def _mp_polygamma(x: Any, n: int) -> Any:
    if x <= 0 and x == mpmath.floor(x):
        return mpmath.mpf("nan")
    return mpmath.psi(n, x)


def _f64_sign(x: np.ndarray) -> np.ndarray:
    return np.sign(x)


def _mp_sign(x: Any) -> Any:
    return mpmath.mpf(mpmath.sign(x))


def _f64_atan2(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    # the origin has no angle (sympy: atan2(0, 0) = nan); IEEE's 0 there would hide a bad point
    with np.errstate(all="ignore"):
        return np.where((np.asarray(y) == 0) & (np.asarray(x) == 0), _NAN, np.arctan2(y, x))


def _mp_atan2(y: Any, x: Any) -> Any:
    return mpmath.mpf("nan") if y == 0 and x == 0 else mpmath.atan2(y, x)


def _f64_pow(x: np.ndarray, p: Any, out: np.ndarray | None = None) -> np.ndarray:
    with np.errstate(all="ignore"):
        if p == 2:  # x*x: one correctly rounded product, ~30x faster than libm's pow
            return np.multiply(x, x, out=out)
        return np.power(x, float(p), out=out)


def _mp_pow_scalar(x: Any, p: Any) -> Any:
    if x == 0 and p < 0:
        return mpmath.mpf("inf") if p == int(p) and int(p) % 2 == 0 else mpmath.mpf("nan")
    return mpmath.power(x, p)


def _f64_erfinv(x: float) -> float:
    # Giles' single-precision approximation ("Approximating the erfinv function", GPU Computing Gems,
    # 2010), then Newton on erf(y) = x; beyond 0.5 on log erfc(|y|) = log(1 - |x|), where 1 - |x| is
    # exact and the logarithm is nearly linear in y (plain Newton on erf crawls in the far tail).
    if not -1.0 <= x <= 1.0:
        return _NAN
    if abs(x) == 1.0:
        return math.copysign(math.inf, x)
    w = -math.log((1.0 - x) * (1.0 + x))
    if w < 5.0:
        w -= 2.5
        p = 2.81022636e-08
        for c in (3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087, -0.00125372503,
                  -0.00417768164, 0.246640727, 1.50140941):
            p = c + p * w
    else:
        w = math.sqrt(w) - 3.0
        p = -0.000200214257
        for c in (0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773, -0.0076224613,
                  0.00943887047, 1.00167406, 2.83297682):
            p = c + p * w
    a, y = abs(x), abs(p * x)
    for _ in range(8):  # quadratic convergence: two steps suffice from Giles' 1e-7
        dens = 2.0 / math.sqrt(math.pi) * math.exp(-y * y)
        if a <= 0.5:
            step = (math.erf(y) - a) / dens
        else:
            tail = math.erfc(y)
            step = (math.log(1.0 - a) - math.log(tail)) * tail / dens
        y -= step
        if abs(step) <= 1e-17 * y:
            break
    return math.copysign(y, x)


def _f64_lambertw(x: np.ndarray) -> np.ndarray:
    # W0 by Halley's iteration on w e^w = x from a guess that is good everywhere on [-1/e, inf):
    # the branch-point series -1 + p - p^2/3 + 11/72 p^3, p = sqrt(2(e x + 1)), near -1/e; log(1 + x)
    # in between; log x - log log x for large x. Below -1/e W0 is not real (nan).
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(all="ignore"):
        p = np.sqrt(np.maximum(2.0 * (math.e * x + 1.0), 0.0))
        near = -1.0 + p - p * p / 3.0 + 11.0 / 72.0 * p**3
        lx = np.log(np.maximum(x, 3.0))
        w = np.where(x < -0.25, near, np.where(x < 3.0, np.log1p(np.maximum(x, -0.25)), lx - np.log(lx)))
        for _ in range(12):
            e = np.exp(w)
            f = w * e - x
            step = f / (e * (w + 1.0) - (w + 2.0) * f / (2.0 * w + 2.0))
            w = np.where(np.isfinite(step) & (near > -1.0 + 1e-6) | (x >= -0.25), w - step, w)
        w = np.where(x == 0.0, 0.0, w)
        return np.where(x < -1.0 / math.e, _NAN, np.where(np.isinf(x) & (x > 0), np.inf, w))


def _mp_lambertw(x: Any) -> Any:
    if x < -mpmath.exp(-1):
        return mpmath.mpf("nan")
    r = mpmath.lambertw(x)
    return r.real if isinstance(r, mpmath.mpc) else r  # at -1/e rounded, mpmath keeps a tiny imaginary part


def _bessel_order(nu: Any, mp: bool = False) -> Any:
    """The order of J_nu as mpmath wants it: an int when integral (exact and fast), else a real number
    (a sympy Rational from the graph, or a float given to the Tape API)."""
    if isinstance(nu, sympy.Basic):
        if nu.is_Integer:
            return int(nu)
        return mpmath.mpf(int(nu.p)) / int(nu.q) if mp else float(nu)
    if float(nu) == int(float(nu)):
        return int(float(nu))
    return mpmath.mpf(nu) if mp else float(nu)


def _besselj_real(nu: Any, x: Any) -> Any:
    """J_nu(x) where it is real: every x for an integer nu; x >= 0 otherwise (J_nu(0) = 0 for nu > 0)."""
    if not isinstance(nu, int) and x <= 0:
        if x == 0 and nu > 0:
            return mpmath.mpf(0)
        return mpmath.mpf("nan")
    return mpmath.besselj(nu, x)


def _f64_besselj(x: float, nu: Any) -> float:
    with mpmath.workprec(53):
        return float(_besselj_real(_bessel_order(nu), mpmath.mpf(x)))


def _mp_besselj(x: Any, nu: Any) -> Any:
    return _besselj_real(_bessel_order(nu, mp=True), x)


def pow_series(bk: Backend, u: np.ndarray, p: Any) -> np.ndarray:
    """``u**p`` for a constant p: u v' = p v u' gives
    ``v[k] = sum_{j=1..k} ((p+1) j - k) u[j] v[k-j] / (k u[0])``; non-negative integers by squaring,
    which stays exact where u[0] = 0."""
    if float(p) == int(float(p)) and 0 <= float(p) <= 2**31:
        e = int(float(p))
        result = const_like(u, bk.scalar(1))
        base = u
        while e:
            if e & 1:
                result = cauchy(result, base)
            e >>= 1
            if e:
                base = cauchy(base, base)
        return result
    n = u.shape[0]
    v = zeros_for(u, u.shape)
    m = series_length(u)
    with np.errstate(all="ignore"):
        v[0] = bk.call(POW, u[0], p=p)
        if n == 1:
            return v
        j = orders(n, u)
        if m <= 2 and (u.dtype != object or np.all(u[0] != 0)):
            # linear argument: v[k] = v[k-1] (p - k + 1)/k u1/u0, a binomial series
            v[1:] = v[0] * np.cumprod((p + 1 - j[1:]) / j[1:] * (u[1] / u[0]), axis=0)
            return v
        cols = point_columns(u, v)
        if cols is None:
            for k in range(1, n):
                hi = min(k, m - 1) + 1
                coef = (p + 1) * j[1:hi] - k
                v[k] = (coef * u[1:hi] * v[k - hi + 1 : k][::-1]).sum(axis=0) / (k * u[0])
            return v
        if u.dtype != object:
            jj = j[:, 0]
            for uc, vc in cols:
                for k in range(1, n):
                    hi = min(k, m - 1) + 1
                    vc[k] = np.dot(((p + 1) * jj[1:hi] - k) * uc[1:hi], vc[k - hi + 1 : k][::-1]) / (k * uc[0])
            return v
        # mpmath: (p+1) sum j u[j] v[k-j] - k sum u[j] v[k-j], both sums exact, combined with extra bits
        with mpmath.workprec(mpmath.mp.prec + 64):
            for uc, vc in cols:
                if uc[0] == 0:  # no derivatives (mpmath would raise where float64 gives inf)
                    vc[1:] = mpmath.mpf("nan")
                    continue
                wc = uc * j[:, 0]
                for k in range(1, n):
                    vc[k] = ((p + 1) * rsum(wc, vc, k, m, mpmath.fdot) - k * rsum(uc, vc, k, m, mpmath.fdot)) / (
                        k * uc[0]
                    )
    return v


def _psi_over_factorial(x: Any, n: int, m: int) -> Any:
    """psi^(n+m)(x) / m! for an mpf x: (-1)^(n+m+1) (n+m)!/m! zeta(n+m+1, x), with Hurwitz's zeta
    sum_k (x+k)^-s; nan at the poles. mpmath's psi loses digits at high orders for x < 0 (its terms
    cancel), and mpmath's zeta(s, x) is not that sum for x < 0 (wrong from x = -30 on, complex
    beyond): there the terms with x+k < 0 are added exactly (fsum) to zeta(s, x + shift) > 0."""
    if not mpmath.isfinite(x) or (x <= 0 and x == mpmath.floor(x)):
        return mpmath.mpf("nan")  # mpmath.zeta(s, nan or inf) never returns
    if n + m == 0:
        return mpmath.digamma(x)
    s = n + m + 1
    if x < 0:
        shift = int(-mpmath.floor(x))
        zeta = mpmath.zeta(s, x + shift) + mpmath.fsum((x + k) ** -s for k in range(shift))
    else:
        zeta = mpmath.zeta(s, x)
    return (-1) ** s * mpmath.rf(m + 1, n) * zeta


def _gamma_family_coeffs(bk: Backend, x0: np.ndarray, sigma: np.ndarray, count: int,
                         coeff: Callable[[Any, int], Any]) -> list[Any]:
    """``coeff(x, m) * sigma^m`` for m < count at every point, in mpmath (no overflow in between);
    float64 arrays in float64 (inf or 0 only where the scaled value itself leaves the range)."""
    if bk.is_mp:
        return [np.frompyfunc(lambda x, s, m=m: coeff(x, m) * s**m, 2, 1)(x0, sigma) for m in range(count)]
    out = []
    with mpmath.workprec(64):
        for m in range(count):
            def one(x: float, s: float, m: int = m) -> float:
                return float(coeff(mpmath.mpf(float(x)), m) * mpmath.mpf(float(s)) ** m)

            out.append(np.asarray(np.frompyfunc(one, 2, 1)(x0, sigma), dtype=np.float64))
    return out


# ---- Taylor rules ----------------------------------------------------------------------------------
def _t_add(bk: Backend, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a + b


def _t_sub(bk: Backend, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a - b


def _t_neg(bk: Backend, a: np.ndarray) -> np.ndarray:
    return -a


def _t_mul(bk: Backend, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return cauchy(a, b)


def _t_div(bk: Backend, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return div_series(a, b)


def _t_pow(bk: Backend, u: np.ndarray, p: Any) -> np.ndarray:
    return pow_series(bk, u, p)


def _t_exp(bk: Backend, u: np.ndarray) -> np.ndarray:
    return exp_series(u, bk.call(EXP, u[0]))


def _t_log(bk: Backend, u: np.ndarray) -> np.ndarray:
    # log' = 1/u
    return integrate(u, div_series(const_like(u, bk.scalar(1)), u), bk.call(LOG, u[0]))


def _t_sin(bk: Backend, u: np.ndarray) -> np.ndarray:
    return ode_pair(u, bk.call(SIN, u[0]), bk.call(COS, u[0]), -1)[0]


def _t_cos(bk: Backend, u: np.ndarray) -> np.ndarray:
    return ode_pair(u, bk.call(SIN, u[0]), bk.call(COS, u[0]), -1)[1]


def _t_tan(bk: Backend, u: np.ndarray) -> np.ndarray:
    s, c = ode_pair(u, bk.call(SIN, u[0]), bk.call(COS, u[0]), -1)
    return div_series(s, c)


def _t_sinh(bk: Backend, u: np.ndarray) -> np.ndarray:
    return ode_pair(u, bk.call(SINH, u[0]), bk.call(COSH, u[0]), 1)[0]


def _t_cosh(bk: Backend, u: np.ndarray) -> np.ndarray:
    return ode_pair(u, bk.call(SINH, u[0]), bk.call(COSH, u[0]), 1)[1]


def _t_tanh(bk: Backend, u: np.ndarray) -> np.ndarray:
    s, c = ode_pair(u, bk.call(SINH, u[0]), bk.call(COSH, u[0]), 1)
    return div_series(s, c)


def _one_plus(u: np.ndarray, sign_sq: int, bk: Backend, one_sign: int = 1) -> np.ndarray:
    """``one_sign + sign_sq * u^2`` as a series."""
    sq = cauchy(u, u) * sign_sq
    sq[0] = sq[0] + one_sign * bk.scalar(1)
    return sq


def _from_deriv(prim_name: str, dseries: Callable[[Backend, np.ndarray], np.ndarray]) -> Callable[..., np.ndarray]:
    """A unary rule from f' written as a series in u (JAX jet's def_deriv, on normalized coefficients)."""

    def rule(bk: Backend, u: np.ndarray) -> np.ndarray:
        return integrate(u, dseries(bk, u), bk.call(REGISTRY[prim_name], u[0]))

    return rule


def _half(bk: Backend) -> Any:
    return bk.scalar(sympy.Rational(-1, 2))


# asin' = (1-u^2)^(-1/2), acos' = -(1-u^2)^(-1/2), atan' = 1/(1+u^2)
_t_asin = _from_deriv("asin", lambda bk, u: pow_series(bk, _one_plus(u, -1, bk), _half(bk)))
_t_acos = _from_deriv("acos", lambda bk, u: -pow_series(bk, _one_plus(u, -1, bk), _half(bk)))
_t_atan = _from_deriv("atan", lambda bk, u: div_series(const_like(u, bk.scalar(1)), _one_plus(u, 1, bk)))
# asinh' = (1+u^2)^(-1/2), acosh' = (u^2-1)^(-1/2), atanh' = 1/(1-u^2)
_t_asinh = _from_deriv("asinh", lambda bk, u: pow_series(bk, _one_plus(u, 1, bk), _half(bk)))
_t_acosh = _from_deriv("acosh", lambda bk, u: pow_series(bk, _one_plus(u, 1, bk, -1), _half(bk)))
_t_atanh = _from_deriv("atanh", lambda bk, u: div_series(const_like(u, bk.scalar(1)), _one_plus(u, -1, bk)))


def _erf_deriv(bk: Backend, u: np.ndarray) -> np.ndarray:
    # erf' = 2/sqrt(pi) * exp(-u^2)
    e = -cauchy(u, u)
    return exp_series(e, bk.call(EXP, e[0])) * bk.scalar(2 / sympy.sqrt(sympy.pi))


_t_erf = _from_deriv("erf", _erf_deriv)
_t_erfc = _from_deriv("erfc", lambda bk, u: -_erf_deriv(bk, u))


def _t_abs(bk: Backend, u: np.ndarray) -> np.ndarray:
    # |u| = sign(u0) u where u0 != 0. Where u0 = 0, let u_m be the first nonzero coefficient: for even
    # m, |u| = sign(u_m) u near t = 0 (|x^2| = x^2); for odd m the derivatives of order >= m do not
    # exist (|x| at 0), so they are nan, never a silent 0.
    v = u * bk.call(SIGN, u[0])
    for p in np.flatnonzero(np.atleast_1d(u[0] == 0)):
        nz = np.flatnonzero(u[:, p] != 0)
        if nz.size == 0:
            continue
        m = int(nz[0])
        if m % 2 == 0:
            v[:, p] = u[:, p] * bk.call(SIGN, u[m, p])
        else:
            v[m:, p] = bk.scalar(_NAN)
    return v


def _t_sign(bk: Backend, u: np.ndarray) -> np.ndarray:
    # sign is constant away from 0; at 0 it jumps unless u does not move at all.
    v = zeros_for(u, u.shape)
    v[0] = bk.call(SIGN, u[0])
    moving = np.any(u[1:] != 0, axis=0) if u.shape[0] > 1 else np.zeros(u.shape[1:], dtype=bool)
    jumps = np.atleast_1d((u[0] == 0) & moving)
    if jumps.any():
        v[1:, jumps] = bk.scalar(_NAN)
    return v


def _t_polygamma(bk: Backend, u: np.ndarray, n: int) -> np.ndarray:
    # polygamma(n, u0 + d) = sum_m psi^(n+m)(u0)/m! d^m
    return compose_known(
        u, lambda sigma: _gamma_family_coeffs(bk, u[0], sigma, u.shape[0], lambda x, m: _psi_over_factorial(x, n, m))
    )


def _lgamma_coeff(x: Any, m: int) -> Any:
    # log|Gamma|(x + d) - log|Gamma|(x) = sum_{m>=1} psi^(m-1)(x)/m! d^m (valid off the poles)
    return mpmath.mpf(0) if m == 0 else _psi_over_factorial(x, 0, m - 1) / m


def _lgamma_increment(bk: Backend, u: np.ndarray) -> np.ndarray:
    return compose_known(u, lambda sigma: _gamma_family_coeffs(bk, u[0], sigma, u.shape[0], _lgamma_coeff))


def _t_loggamma(bk: Backend, u: np.ndarray) -> np.ndarray:
    inc = _lgamma_increment(bk, u)
    inc[0] = bk.call(LOGGAMMA, u[0])
    return inc


def _t_gamma(bk: Backend, u: np.ndarray) -> np.ndarray:
    inc = _lgamma_increment(bk, u)
    return exp_series(inc, bk.call(GAMMA, u[0]))


def _t_atan2(bk: Backend, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    # atan2(y, x) = atan2(y0, x0) + atan((x0 y - y0 x) / (x0 x + y0 y)): the angle difference,
    # whose argument is 0 at t = 0, so only atan's series is needed.
    shape = np.broadcast_shapes(y.shape, x.shape)
    y = np.broadcast_to(y, shape)
    x = np.broadcast_to(x, shape)
    num = x[0] * y - y[0] * x
    den = x[0] * x + y[0] * y
    v = _t_atan(bk, div_series(num, den))
    v[0] = bk.call(ATAN2, y[0], x[0])
    return v


def _inverse_rule(u: np.ndarray, y0: Any, factor0: Any, factor_next: Callable[[np.ndarray, np.ndarray, int], Any]
                  ) -> np.ndarray:
    """The series of y with y(0) = y0 and y' = F(y) u', F known only through y (erfinv, lambertw):
    ``y[k] = (1/k) sum_{j=1..k} j u[j] F[k-j]`` needs F[0..k-1], and F[k] follows from y[0..k]
    (``factor_next(y, F, k)``), so the two recurrences advance together, O(K^2) (Griewank & Walther,
    sec. 13.2: the rule for an inverse function from its ODE)."""
    n = u.shape[0]
    y = zeros_for(u, u.shape)
    f = zeros_for(u, u.shape)
    y[0], f[0] = y0, factor0
    w = u * orders(n, u)
    for k in range(1, n):
        y[k] = rsum(w, f, k, k + 1, None) / k
        if k + 1 < n:
            f[k] = factor_next(y, f, k)
    return y


def _exp_next(s: np.ndarray, e: np.ndarray, k: int) -> Any:
    # e = exp(s): e[k] = (1/k) sum_{j=1..k} j s[j] e[k-j]
    return rsum(s * orders(s.shape[0], s), e, k, k + 1, None) / k


def _t_erfinv(bk: Backend, u: np.ndarray) -> np.ndarray:
    # y = erfinv(u): y' = sqrt(pi)/2 exp(y^2) u'; F = c E, E = exp(S), S = y^2, each advanced by one
    # coefficient per step (S[k] needs y[0..k]; E[k] needs S[1..k])
    c = bk.scalar(sympy.sqrt(sympy.pi) / 2)
    y0 = bk.call(ERFINV, u[0])
    sq, e = zeros_for(u, u.shape), zeros_for(u, u.shape)
    sq[0] = y0 * y0
    e[0] = bk.call(EXP, sq[0])

    def factor_next(y: np.ndarray, f: np.ndarray, k: int) -> Any:
        sq[k] = 2 * y[0] * y[k] + rsum(y, y, k, k, None)
        e[k] = _exp_next(sq, e, k)
        return c * e[k]

    return _inverse_rule(u, y0, c * e[0], factor_next)


def _t_lambertw(bk: Backend, u: np.ndarray) -> np.ndarray:
    # W e^W = u, so W' = exp(-W)/(1 + W) u' (also at u = 0, where W/(u(1 + W)) is 0/0); no derivatives
    # at -1/e, where 1 + W = 0. F = E/(1 + W), E = exp(-W), so (1 + W) F = E gives F[k].
    w0 = bk.call(LAMBERTW, u[0])
    e = zeros_for(u, u.shape)
    e[0] = bk.call(EXP, -w0)

    def factor_next(y: np.ndarray, f: np.ndarray, k: int) -> Any:
        e[k] = _exp_next(-y, e, k)
        return (e[k] - rsum(y, f, k, k + 1, None)) / (1 + y[0])

    with np.errstate(all="ignore"):
        return _inverse_rule(u, w0, e[0] / (1 + w0), factor_next)


def _besselj_coeffs(bk: Backend, x0: np.ndarray, sigma: np.ndarray, count: int, nu: Any) -> list[Any]:
    """J_nu^(m)(x0)/m! sigma^m for m < count at every point, from
    ``J^(m) = 2^-m sum_j (-1)^j C(m, j) J_(nu-m+2j)`` (DLMF 10.6.7): terms of size at most 2^-m C(m, j),
    so, unlike the Bessel ODE's recurrence (unstable: it picks up Y_nu, whose coefficients grow like
    x0^-m), nothing cancels beyond the result's own size. In mpmath (64 bits for float64, the working
    precision plus guard bits for --digits). Non-integer nu: nan at x0 < 0 (J_nu is complex), and at
    0 only the value (J_nu ~ x^nu has no derivatives there)."""
    order = _bessel_order(nu, mp=True)
    integral = isinstance(order, int)

    def column(x: Any, s: Any) -> list[Any]:
        x = mpmath.mpf(x)
        if not mpmath.isfinite(x) or (not integral and x <= 0):
            head = _besselj_real(order, x) if mpmath.isfinite(x) else mpmath.mpf("nan")
            return [head] + [mpmath.mpf("nan")] * (count - 1)
        js = {i: mpmath.besselj(order + i, x) for i in range(-count + 1, count)}
        out, scale = [], mpmath.mpf(1)
        for m in range(count):
            term = mpmath.fsum((-1) ** j * mpmath.binomial(m, j) * js[2 * j - m] for j in range(m + 1))
            out.append(term * scale / (2**m * mpmath.factorial(m)))
            scale *= s
        return out

    shape = np.shape(x0)
    if bk.is_mp:
        with mpmath.workprec(mpmath.mp.prec + 2 * count + 20):
            cols = [column(x, s) for x, s in zip(np.ravel(x0), np.ravel(np.broadcast_to(sigma, shape)))]
        return [np.array([+c[m] for c in cols], dtype=object).reshape(shape) for m in range(count)]
    with mpmath.workprec(64):
        cols = [column(float(x), float(s)) for x, s in zip(np.ravel(x0), np.ravel(np.broadcast_to(sigma, shape)))]
    return [np.array([float(c[m]) for c in cols], dtype=np.float64).reshape(shape) for m in range(count)]


def _t_besselj(bk: Backend, u: np.ndarray, nu: Any) -> np.ndarray:
    # J_nu(u0 + d) = sum_m J_nu^(m)(u0)/m! d^m
    return compose_known(u, lambda sigma: _besselj_coeffs(bk, u[0], sigma, u.shape[0], nu))


# ---- reverse rules (T is gradcli.tensor's namespace of Tensor operations) --------------------------
def _sum_to(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``x`` down to ``shape`` (the reverse of numpy broadcasting)."""
    x = np.asarray(x)
    lead = x.ndim - len(shape)
    if lead > 0:
        x = x.sum(axis=tuple(range(lead)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and x.shape[i] != 1)
    return x.sum(axis=axes, keepdims=True) if axes else x


def _broadcast_to(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return np.array(np.broadcast_to(x, shape))


def _two_over_sqrt_pi(x: Any) -> Any:
    """2/sqrt(pi) in the precision of the tensor ``x`` (an mpf under --digits, else a float)."""
    bk = x.bk if hasattr(x, "bk") else backend_of(x.value)  # a Tensor, or dual.Dual in Hessians
    return bk.scalar(2 / sympy.sqrt(sympy.pi))


def _vjp_pow(T: Any, g: Any, out: Any, x: Any, p: Any) -> tuple[Any, ...]:
    if p == 0:
        return (g * 0.0,)
    if float(p) != int(float(p)):
        # x^p for a fractional p is real for x >= 0 only, so at 0 it has no two-sided derivative:
        # p x^p / x is nan there (p x^(p-1) would be 0 for p > 1), as in the Taylor rule
        return (g * (out * p / x),)
    return (g * (T.pow(x, p=p - 1) * p),)


def _vjp_abs(T: Any, g: Any, out: Any, x: Any) -> tuple[Any, ...]:
    # abs' = x/|x|: nan at 0, where abs has no derivative (never a silent 0).
    return (g * (x / out),)


def _vjp_sign(T: Any, g: Any, out: Any, x: Any) -> tuple[Any, ...]:
    # sign' = 0 away from 0 and undefined at 0: (x - x)/x is exactly that, in Tensor operations.
    return (g * ((x - x) / x),)


def _vjp_atan2(T: Any, g: Any, out: Any, y: Any, x: Any) -> tuple[Any, ...]:
    r2 = x * x + y * y
    return (g * x / r2, -(g * y) / r2)


# ---- ball rules (python-flint arb_series: every coefficient a ball enclosing the true one) -----------
# Used by gradcli.ball. Rules never test a ball for a sign they cannot prove: a ball around 0 (the
# point sqrt(2) in abs(x^2 - 2)) gives nan or a wide ball, never a guessed branch.
def _arb0(s: Any) -> Any:
    c = s.coeffs()
    return c[0] if c else _flint.arb(0)


def _b_add(a: Any, b: Any) -> Any:
    return a + b


def _b_sub(a: Any, b: Any) -> Any:
    return a - b


def _b_neg(a: Any) -> Any:
    return -a


def _b_mul(a: Any, b: Any) -> Any:
    return a * b


def _b_div(a: Any, b: Any) -> Any:
    if _arb0(b).contains(0):  # FLINT divides 0 by t; a quotient is undefined where its denominator is 0
        return _flint.arb_series([_flint.arb.nan()] * min(a.prec, b.prec), prec=min(a.prec, b.prec))
    return a / b


def _b_native(method: str) -> Callable[[Any], Any]:
    """FLINT's own series function (exp, log, sin, cos, tan, asin, acos, atan, erf, erfc, gamma, lgamma)."""
    def rule(u: Any) -> Any:
        return getattr(u, method)()

    rule.__name__ = f"_b_{method}"
    return rule


def _b_inside(method: str, inside: Callable[[Any], bool]) -> Callable[[Any], Any]:
    """A native series function that has no derivatives on the edge of its domain (asin and acos at
    +-1, acosh at 1): a moving argument must be provably inside, since a truncated series that happens
    to be constant there (1 - x^2 y^2 by d^2/dx dy at 0) says nothing about the terms cut off."""
    native = _b_native(method)

    def rule(u: Any) -> Any:
        if u.prec > 1 and not inside(_arb0(u)):
            return _b_nan_tail(u, getattr(_arb0(u), method)())
        return native(u)

    rule.__name__ = f"_b_{method}"
    return rule


def _b_nan_tail(u: Any, value: Any) -> Any:
    """``value``, then no derivatives (a function defined at the point but not differentiable there)."""
    n = u.prec
    return _flint.arb_series([value] + [_flint.arb.nan()] * (n - 1), prec=n)


def _b_pow(u: Any, p: Any) -> Any:
    # x^p, p a constant: integer powers by FLINT's exact repeated products (x^3 at 0 stays exact);
    # sqrt and 1/sqrt natively; other p as exp(p log x) for x > 0. sympy's x^p for x < 0 and
    # fractional p is complex, so no real value (as in the float64 kernel).
    p = sympy.nsimplify(p) if isinstance(p, float) else sympy.sympify(p)
    if p.is_Integer:
        e = int(p)
        return u ** e if e >= 0 else 1 / (u ** (-e))
    u0 = _arb0(u)
    if u0.is_zero() and p > 0:  # x^p at 0: the value 0, and no two-sided derivatives
        return _b_nan_tail(u, _flint.arb(0))
    if p == sympy.Rational(1, 2):
        return u.sqrt()
    if p == sympy.Rational(-1, 2):
        return u.rsqrt()
    if u0 > 0:
        from .ball import constant

        return u ** constant(p)
    return _flint.arb_series([_flint.arb.nan()] * u.prec, prec=u.prec)


def _b_exps(u: Any) -> tuple[Any, Any]:
    e = u.exp()
    return e, 1 / e


def _b_sinh(u: Any) -> Any:
    e, r = _b_exps(u)
    return (e - r) / 2


def _b_cosh(u: Any) -> Any:
    e, r = _b_exps(u)
    return (e + r) / 2


def _b_tanh(u: Any) -> Any:
    # tanh = 1 - 2/(e^(2u) + 1): no overflow issue in arb, whose exponents are unbounded
    return 1 - 2 / ((2 * u).exp() + 1)


def _b_asinh(u: Any) -> Any:
    # asinh = log(u + sqrt(u^2 + 1)), odd: evaluated where u + sqrt(...) does not cancel
    if _arb0(u) < 0:
        return -_b_asinh(-u)
    return (u + (u * u + 1).sqrt()).log()


def _b_acosh(u: Any) -> Any:
    if u.prec > 1 and not _arb0(u) > 1:  # no derivatives at 1, where acosh' = 1/sqrt(u^2 - 1) is infinite
        return _b_nan_tail(u, _arb0(u).acosh())
    return (u + (u * u - 1).sqrt()).log()


def _b_atanh(u: Any) -> Any:
    return ((1 + u).log() - (1 - u).log()) / 2


def _b_abs(u: Any) -> Any:
    # |u| = sign(u0) u where u0 is provably nonzero. Where u0 = 0 exactly, the first nonzero coefficient
    # u_m decides: m even, |u| = sign(u_m) u near the point (|x^2| = x^2); m odd, the two one-sided
    # expansions are +u and -u, enclosed together by [-1, 1] u, so that orders below m stay exact
    # (|x|^3 at 0 has first derivative 0) while the others are wide balls: "not differentiable". A
    # ball around 0 that is not exactly 0 (|x^2 - 2| at sqrt(2)) gets the same enclosure.
    u0 = _arb0(u)
    if u0 > 0:
        return u
    if u0 < 0:
        return -u
    either = _flint.arb(0, 1)
    if not u0.is_zero():
        return u * either
    for m, c in enumerate(u.coeffs()[1:], start=1):
        if c.is_zero():
            continue
        if m % 2 == 0 and (c > 0 or c < 0):
            return u * c.sgn()
        return u * either
    return u


def _b_sign(u: Any) -> Any:
    # constant +-1 away from 0; at 0, constant 0 only if u does not move (otherwise it jumps)
    u0 = _arb0(u)
    n = u.prec
    if u0 > 0 or u0 < 0:
        return _flint.arb_series([u0.sgn()], prec=n)
    if u0.is_zero() and all(c.is_zero() for c in u.coeffs()[1:]):
        return _flint.arb_series([], prec=n)
    return _flint.arb_series([_flint.arb.nan()] * n, prec=n)


def _b_atan2(y: Any, x: Any) -> Any:
    # atan2(y0, x0) + atan((x0 y - y0 x)/(x0 x + y0 y)), as the float64 rule; no value on the branch
    # cut (x0 <= 0, y0 = 0), where the angle jumps by 2 pi, nor at the origin
    y0, x0 = _arb0(y), _arb0(x)
    n = min(y.prec, x.prec)
    if n == 1 and y0.is_zero() and x0 < 0:  # the value alone: atan2(0, x < 0) = pi is defined
        return _flint.arb_series([_flint.arb.pi()], prec=1)
    if y0.contains(0) and not x0 > 0:
        return _flint.arb_series([_flint.arb.nan()] * n, prec=n)
    v = ((x0 * y - y0 * x) / (x0 * x + y0 * y)).atan()
    return v - _arb0(v) + _flint.arb.atan2(y0, x0)


def _composed(rule: Callable[[Any], Any], coeffs_at: Callable[[Any, int], Any], u: Any) -> Any:
    """``rule(u)``; a u that does not move (one term, or u - u0 exactly 0: atan2(x, x)) gives the value
    alone, since FLINT refuses to compose with a series that has no stored terms."""
    if len(u.coeffs()) <= 1:
        return _flint.arb_series([_arb0(coeffs_at(_arb0(u), 1))], prec=u.prec)
    return rule(u)


def _b_polygamma(u: Any, n: int) -> Any:
    # psi^(n)(u0 + t) = d^(n+1)/dt^(n+1) log Gamma(u0 + t), as (Gamma'/Gamma)^(n), composed with u - u0
    from .ball import compose

    def coeffs_at(u0: Any, terms: int) -> Any:
        g = _flint.arb_series([u0, 1], prec=terms + n + 1).gamma()
        psi = g.derivative() / g
        for _ in range(n):
            psi = psi.derivative()
        return psi

    return _composed(compose(coeffs_at), coeffs_at, u)


def _b_erfinv(u: Any) -> Any:
    # series reversion: with y0 = erfinv(u0) and g(t) = erf(y0 + t) - u0, whose constant term is 0 in
    # truth (set exactly, so that FLINT can revert it), erfinv(u0 + d) = y0 + g^(-1)(d). The other
    # coefficients of g are balls around those at the true y0, so the enclosure stays rigorous.
    n = u.prec
    u0 = _arb0(u)
    y0 = u0.erfinv()
    if n == 1 or not y0.is_finite():
        return _flint.arb_series([y0], prec=n) if n == 1 else _b_nan_tail(u, y0)
    g = _flint.arb_series([y0, 1], prec=n).erf()
    g = _flint.arb_series([_flint.arb(0)] + g.coeffs()[1:], prec=n)
    d = _flint.arb_series([_flint.arb(0)] + u.coeffs()[1:], prec=n)
    return g.reversion()(d) + y0


def _b_lambertw(u: Any) -> Any:
    # FLINT's principal branch; at -1/e (or a ball that reaches it) the value at most, no derivatives:
    # W' = 1/(u0 + e^W) is infinite there
    u0 = _arb0(u)
    if u.prec > 1 and not u0 > -_flint.arb(-1).exp():
        return _b_nan_tail(u, u0.lambertw() if u0 >= -_flint.arb(-1).exp() else _flint.arb.nan())
    return u.lambertw()


def _b_besselj(u: Any, nu: Any) -> Any:
    # the Bessel ODE x^2 y'' + x y' + (x^2 - nu^2) y = 0 at x = x0 + t, y = sum a_m t^m, gives
    # x0^2 (m+1)(m+2) a_(m+2) = -[x0 (m+1)(2m+1) a_(m+1) + (m^2 + x0^2 - nu^2) a_m + 2 x0 a_(m-1) + a_(m-2)],
    # from a0 = J_nu(x0), a1 = (J_(nu-1)(x0) - J_(nu+1)(x0))/2 (DLMF 10.6.1); unstable in floating point
    # (Y_nu's growing coefficients), harmless on balls: the radius shows it and the precision rises.
    # At x0 = 0, integer nu: J_n(t) = sum_m (-1)^m/(m! (m+n)!) (t/2)^(2m+n); other nu: complex for x < 0,
    # x^nu at 0 (no derivatives).
    from .ball import compose, constant

    nu_b = constant(nu)
    integral = isinstance(nu, int) or (isinstance(nu, sympy.Basic) and nu.is_Integer) or float(nu) == int(float(nu))

    def coeffs_at(x0: Any, terms: int) -> Any:
        if x0.is_zero() and integral:
            k = abs(int(nu))
            sign = -1 if int(nu) < 0 and k % 2 else 1
            cs = [_flint.arb(0)] * terms
            for m in range((terms - k + 1) // 2 + 1):
                if 2 * m + k < terms:
                    cs[2 * m + k] = sign * (-1) ** m / (_flint.arb.fac_ui(m) * _flint.arb.fac_ui(m + k)
                                                        * _flint.arb(2) ** (2 * m + k))
            return _flint.arb_series(cs, prec=terms)
        if not (x0 > 0 or (integral and x0 < 0)):
            value = x0.bessel_j(nu_b) if x0.is_zero() and nu_b > 0 else _flint.arb.nan()
            return _flint.arb_series([value] + [_flint.arb.nan()] * (terms - 1), prec=terms)
        a = [x0.bessel_j(nu_b), (x0.bessel_j(nu_b - 1) - x0.bessel_j(nu_b + 1)) / 2]
        x2, nu2 = x0 * x0, nu_b * nu_b
        for m in range(terms - 2):
            acc = x0 * ((m + 1) * (2 * m + 1)) * a[m + 1] + (m * m + x2 - nu2) * a[m]
            if m >= 1:
                acc += 2 * x0 * a[m - 1]
            if m >= 2:
                acc += a[m - 2]
            a.append(-acc / (x2 * ((m + 1) * (m + 2))))
        return _flint.arb_series(a[:terms], prec=terms)

    return _composed(compose(coeffs_at), coeffs_at, u)


# ---- the registry ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Primitive:
    """One primitive: its math in every form the engines need, and every other fact the stages ask of it."""

    name: str
    arity: int
    sympy: Any  # sympy class lowered to this primitive, or None for internal primitives
    f64: Callable[..., Any]
    mp: Callable[..., Any]
    vjp: Callable[..., tuple[Any, ...]] | None
    taylor: Callable[..., np.ndarray] | None
    doc: str = ""
    params: tuple[str, ...] = field(default=())
    #: the rule on ball series (python-flint ``arb_series``, see gradcli.ball): FLINT's native series
    #: function where one exists, else the function's own rule on ball coefficients; None for shape
    #: plumbing that never appears in a graph
    ball: Callable[..., Any] | None = None
    #: the float64 kernel writing into a given array, ``f64_into(*args, out=buf, **params)``, for the
    #: fused many-point evaluator (gradcli.batch); None where the kernel can only allocate its result
    f64_into: Callable[..., Any] | None = None
    #: a function EXPR may call by this name (and ``gradcli.<name>`` on Tensors); False: internal
    public: bool = True
    #: where the float64 kernel is not within gradcli.batch.KERNEL_ULPS of its value everywhere, its
    #: error in ulps of its value, ``f64_ulps(T, out, *args, **params)`` (traced by the fused
    #: evaluator's rounding-error bound): loggamma's, polygamma's and besselj's errors are absolute near
    #: their zeros, lambertw's grows at -1/e (tests/test_bound.py measures each against mpmath)
    f64_ulps: Callable[..., Any] | None = None
    #: how a sympy call splits into parameters and operands, ``(params, operands)``, raising InputError
    #: for a parameter the primitive cannot take (polygamma's order, besselj's nu); None: all operands
    split: Callable[[sympy.Basic], tuple[dict[str, Any], tuple[sympy.Basic, ...]]] | None = None
    #: poles or a restricted real domain: kept as a domain guard where sympy simplifies the call away
    guarded: bool = False
    #: smooth on all of R: a non-finite value from finite inputs can only be an overflow
    smooth: bool = False
    #: sympy evaluates it exactly at rationals, through factorials: exact arguments are bounded
    factorial_like: bool = False
    #: mpmath's cost grows like digits^3 (minutes a point at 10^4 digits)
    slow_digits: bool = False
    #: functions sympy's numpy / mpmath printers leave to lambdify's namespace, for the symbolic check
    #: (the function and those its derivatives bring in): ``((name, array function), ...)``
    numpy: tuple[tuple[str, Callable[..., Any]], ...] = ()
    mpmath: tuple[tuple[str, Callable[..., Any]], ...] = ()
    #: an interval inside the domain, and parameter values, for the tests generated from the registry
    sample: tuple[float, float] | None = None
    sample_params: tuple[tuple[str, Any], ...] = ()

    def parts(self, e: sympy.Basic) -> tuple[dict[str, Any], tuple[sympy.Basic, ...]]:
        """The parameters and operands of the sympy call ``e`` of this primitive."""
        return self.split(e) if self.split is not None else ({}, tuple(e.args))


def _p(
    name: str, arity: int, sympy_cls: Any, f64: Any, mp: Any, vjp: Any, taylor: Any, doc: str, params: Any = (),
    *, ball: Any, into: Any = None, **facts: Any,
) -> Primitive:
    into = into if into is not None else getattr(f64, "into", None)  # a numpy ufunc's own out=
    return Primitive(name, arity, sympy_cls, f64, mp, vjp, taylor, doc, tuple(params), ball, into, **facts)


def _split_polygamma(e: sympy.Basic) -> tuple[dict[str, Any], tuple[sympy.Basic, ...]]:
    order = e.args[0]
    if not (order.is_Integer and order >= 0):
        raise InputError(f"polygamma order must be a non-negative integer, got {order}")
    return {"n": int(order)}, (e.args[1],)


def _split_besselj(e: sympy.Basic) -> tuple[dict[str, Any], tuple[sympy.Basic, ...]]:
    nu = e.args[0]
    if not nu.is_Rational:
        raise InputError(f"besselj(nu, x): nu must be a rational constant, got {nu}")
    return {"nu": nu}, (e.args[1],)


def _split_lambertw(e: sympy.Basic) -> tuple[dict[str, Any], tuple[sympy.Basic, ...]]:
    if len(e.args) > 1 and e.args[1] != 0:
        raise InputError(f"only the principal branch of LambertW is supported, got branch {e.args[1]}")
    return {}, (e.args[0],)


def _vjp_lambertw(T: Any, g: Any, out: Any, x: Any) -> tuple[Any, ...]:
    # W' = W/(x (1 + W)) = exp(-W)/(1 + W): the second form holds at x = 0 too (W'(0) = 1)
    return (g * T.exp(-out) / (out + 1.0),)


def _vjp_besselj(T: Any, g: Any, out: Any, x: Any, nu: Any) -> tuple[Any, ...]:
    # J_nu' = (J_(nu-1) - J_(nu+1))/2 (DLMF 10.6.1)
    return (g * (T.besselj(x, nu=nu - 1) - T.besselj(x, nu=nu + 1)) * 0.5,)


def _sqrt_pi_over_2(x: Any) -> Any:
    bk = x.bk if hasattr(x, "bk") else backend_of(x.value)
    return bk.scalar(sympy.sqrt(sympy.pi) / 2)


def _vec(fn: Callable[..., Any], nargs: int) -> Callable[..., np.ndarray]:
    """A float64 array function from a scalar one, for lambdify's namespace; nan where it raises."""

    def one(*xs: Any) -> float:
        try:
            return float(fn(*xs))
        except (ValueError, OverflowError, ZeroDivisionError, TypeError):
            return _NAN

    ufunc = np.frompyfunc(one, nargs, 1)
    return lambda *args: np.asarray(ufunc(*args), dtype=np.float64)


def _dirac_f64(x: Any, k: Any = 0) -> np.ndarray:
    # DiracDelta (from derivatives of abs, sign, min, max) is 0 away from its root, undefined at it
    x = np.asarray(x, dtype=np.float64)
    return np.where(x == 0, np.nan, 0.0)


def _dirac_mp(x: Any, k: Any = 0) -> Any:
    return mpmath.mpf("nan") if x == 0 else mpmath.mpf(0)


_f64_lgamma = _vec(lambda x: math.lgamma(x) if x > 0 else _NAN, 1)
_polygamma_f64 = _vec(lambda n, x: mpmath.psi(int(n), x), 2)


def _polygamma_mp(n: Any, x: Any) -> Any:
    return mpmath.psi(int(n), x)


def _besselj_lambdify_f64(nu: Any, x: Any) -> np.ndarray:
    return _vec(lambda n, v: _mp_besselj(mpmath.mpf(v), sympy.nsimplify(n)), 2)(nu, x)


def _besselj_lambdify_mp(nu: Any, x: Any) -> Any:
    return _mp_besselj(x, sympy.nsimplify(nu))


_mp = _mp_real
_E: list[Primitive] = [
    # arithmetic
    _p("add", 2, None, _np(np.add), _np(np.add), lambda T, g, o, a, b: (g, g), _t_add, "a + b", ball=_b_add,
       public=False, smooth=True),
    _p("sub", 2, None, _np(np.subtract), _np(np.subtract), lambda T, g, o, a, b: (g, -g), _t_sub, "a - b", ball=_b_sub,
       public=False, smooth=True),
    _p("neg", 1, None, _np(np.negative), _np(np.negative), lambda T, g, o, a: (-g,), _t_neg, "-a", ball=_b_neg,
       public=False, smooth=True),
    _p("mul", 2, None, _np(np.multiply), _np(np.multiply), lambda T, g, o, a, b: (g * b, g * a), _t_mul, "a * b",
       ball=_b_mul, public=False, smooth=True),
    # (a/b)' = (1/b, -a/b^2) = (1/b, -out/b)
    _p("div", 2, None, _np(np.divide), _mp(lambda a, b: a / b), lambda T, g, o, a, b: (g / b, -(g * o) / b),
       _t_div, "a / b", ball=_b_div, public=False),
    # (x^p)' = p x^(p-1), p a constant
    _p("pow", 1, None, _f64_pow, _mp(_mp_pow_scalar), _vjp_pow, _t_pow, "x ** p for a constant p", ("p",),
       ball=_b_pow, into=_f64_pow, public=False),
    # exp' = exp, reusing the output
    _p("exp", 1, sympy.exp, _np(np.exp), _mp(mpmath.exp), lambda T, g, o, x: (g * o,), _t_exp, "exponential",
       ball=_b_native("exp"), smooth=True, sample=(-2.0, 2.0)),
    # log' = 1/x
    _p("log", 1, sympy.log, _np(np.log), _mp(mpmath.log), lambda T, g, o, x: (g / x,), _t_log, "natural logarithm",
       ball=_b_native("log"), guarded=True, sample=(0.2, 3.0)),
    _p("sin", 1, sympy.sin, _np(np.sin), _mp(mpmath.sin), lambda T, g, o, x: (g * T.cos(x),), _t_sin, "sine",
       ball=_b_native("sin"), smooth=True, sample=(-3.0, 3.0)),
    _p("cos", 1, sympy.cos, _np(np.cos), _mp(mpmath.cos), lambda T, g, o, x: (-(g * T.sin(x)),), _t_cos, "cosine",
       ball=_b_native("cos"), smooth=True, sample=(-3.0, 3.0)),
    # tan' = 1 + tan^2
    _p("tan", 1, sympy.tan, _np(np.tan), _mp(mpmath.tan), lambda T, g, o, x: (g * (o * o + 1.0),), _t_tan,
       "tangent", ball=_b_native("tan"), guarded=True, sample=(-1.2, 1.2)),
    # asin' = (1-x^2)^(-1/2)
    _p("asin", 1, sympy.asin, _np(np.arcsin), _mp(mpmath.asin),
       lambda T, g, o, x: (g * T.pow(1.0 - x * x, p=-0.5),), _t_asin, "inverse sine",
       ball=_b_inside("asin", lambda u0: abs(u0) < 1), guarded=True, sample=(-0.9, 0.9)),
    _p("acos", 1, sympy.acos, _np(np.arccos), _mp(mpmath.acos),
       lambda T, g, o, x: (-(g * T.pow(1.0 - x * x, p=-0.5)),), _t_acos, "inverse cosine",
       ball=_b_inside("acos", lambda u0: abs(u0) < 1), guarded=True, sample=(-0.9, 0.9)),
    # atan' = 1/(1+x^2)
    _p("atan", 1, sympy.atan, _np(np.arctan), _mp(mpmath.atan), lambda T, g, o, x: (g / (x * x + 1.0),), _t_atan,
       "inverse tangent", ball=_b_native("atan"), smooth=True,
       sample=(-3.0, 3.0)),
    _p("atan2", 2, sympy.atan2, _f64_atan2, _mp(_mp_atan2), _vjp_atan2, _t_atan2,
       "atan2(y, x): the angle of the point (x, y)", ball=_b_atan2, guarded=True,
       sample=(0.2, 2.0)),
    _p("sinh", 1, sympy.sinh, _np(np.sinh), _mp(mpmath.sinh), lambda T, g, o, x: (g * T.cosh(x),), _t_sinh,
       "hyperbolic sine", ball=_b_sinh, smooth=True, sample=(-2.0, 2.0)),
    _p("cosh", 1, sympy.cosh, _np(np.cosh), _mp(mpmath.cosh), lambda T, g, o, x: (g * T.sinh(x),), _t_cosh,
       "hyperbolic cosine", ball=_b_cosh, smooth=True, sample=(-2.0, 2.0)),
    # tanh' = 1 - tanh^2
    _p("tanh", 1, sympy.tanh, _np(np.tanh), _mp(mpmath.tanh), lambda T, g, o, x: (g * (1.0 - o * o),), _t_tanh,
       "hyperbolic tangent", ball=_b_tanh, smooth=True, sample=(-2.0, 2.0)),
    # asinh' = (x^2+1)^(-1/2), acosh' = (x^2-1)^(-1/2), atanh' = 1/(1-x^2)
    _p("asinh", 1, sympy.asinh, _np(np.arcsinh), _mp(mpmath.asinh),
       lambda T, g, o, x: (g * T.pow(x * x + 1.0, p=-0.5),), _t_asinh, "inverse hyperbolic sine", ball=_b_asinh,
       smooth=True, sample=(-3.0, 3.0)),
    _p("acosh", 1, sympy.acosh, _np(np.arccosh), _mp(mpmath.acosh),
       lambda T, g, o, x: (g * T.pow(x * x - 1.0, p=-0.5),), _t_acosh, "inverse hyperbolic cosine", ball=_b_acosh,
       guarded=True, sample=(1.2, 3.0)),
    _p("atanh", 1, sympy.atanh, _np(np.arctanh), _mp(mpmath.atanh),
       lambda T, g, o, x: (g / (1.0 - x * x),), _t_atanh, "inverse hyperbolic tangent", ball=_b_atanh,
       guarded=True, sample=(-0.9, 0.9)),
    _p("abs", 1, sympy.Abs, _np(np.abs), _mp(mpmath.fabs), _vjp_abs, _t_abs, "absolute value", ball=_b_abs,
       sample=(-2.0, -0.2)),
    _p("sign", 1, sympy.sign, _np(_f64_sign), _mp(_mp_sign), _vjp_sign, _t_sign, "sign: -1, 0 or 1", ball=_b_sign,
       numpy=(("DiracDelta", _dirac_f64),), mpmath=(("DiracDelta", _dirac_mp),), sample=(0.2, 2.0)),
    # erf' = 2/sqrt(pi) exp(-x^2), erfc = 1 - erf
    _p("erf", 1, sympy.erf, _f64_scalar(math.erf), _mp(mpmath.erf),
       lambda T, g, o, x: (g * T.exp(-(x * x)) * _two_over_sqrt_pi(x),), _t_erf, "error function",
       ball=_b_native("erf"), smooth=True, numpy=(("erf", _vec(math.erf, 1)),), sample=(-2.0, 2.0)),
    _p("erfc", 1, sympy.erfc, _f64_scalar(math.erfc), _mp(mpmath.erfc),
       lambda T, g, o, x: (-(g * T.exp(-(x * x)) * _two_over_sqrt_pi(x)),), _t_erfc,
       "complementary error function", ball=_b_native("erfc"),
       smooth=True,
       numpy=(("erfc", _vec(math.erfc, 1)), ("erf", _vec(math.erf, 1))), sample=(-2.0, 2.0)),
    # gamma' = gamma * digamma
    _p("gamma", 1, sympy.gamma, _f64_scalar(math.gamma), _mp(mpmath.gamma),
       lambda T, g, o, x: (g * o * T.polygamma(x, n=0),), _t_gamma, "gamma function", ball=_b_native("gamma"),
       guarded=True, factorial_like=True, slow_digits=True, numpy=(("gamma", _vec(math.gamma, 1)),),
       sample=(0.3, 3.0)),
    # loggamma' = digamma (real for x > 0)
    _p("loggamma", 1, sympy.loggamma, _f64_scalar(_f64_loggamma), _mp(_mp_loggamma),
       lambda T, g, o, x: (g * T.polygamma(x, n=0),), _t_loggamma, "log of the gamma function (x > 0)",
       ball=_b_native("lgamma"), guarded=True, factorial_like=True, slow_digits=True,
       numpy=(("lgamma", _f64_lgamma), ("loggamma", _f64_lgamma)), mpmath=(("loggamma", _mp_loggamma),),
       sample=(0.3, 3.0), f64_ulps=lambda T, o, x: 16.0 / T.abs(o)),  # absolute near 1 and 2: 10 ulps measured
    # shape plumbing for broadcasting in the Tape API; each is the other's reverse rule
    _p("sum_to", 1, None, _sum_to, _sum_to, lambda T, g, o, x, shape: (T.broadcast_to(g, shape=x.shape),), None,
       "sum down to a shape", ("shape",), ball=None, public=False),
    _p("broadcast_to", 1, None, _broadcast_to, _broadcast_to, lambda T, g, o, x, shape: (T.sum_to(g, shape=x.shape),),
       None, "broadcast up to a shape", ("shape",), ball=None, public=False),
    # polygamma(n, x)' = polygamma(n+1, x); internal: it appears in derivatives of gamma/loggamma
    _p("polygamma", 1, sympy.polygamma, _f64_scalar(_f64_polygamma), _mp(_mp_polygamma),
       lambda T, g, o, x, n: (g * T.polygamma(x, n=n + 1),), _t_polygamma, "polygamma(n, x)", ("n",),
       ball=_b_polygamma, public=False, split=_split_polygamma, slow_digits=True,
       numpy=(("polygamma", _polygamma_f64),), mpmath=(("polygamma", _polygamma_mp),), sample=(0.7, 2.5),
       sample_params=(("n", 1),),
       f64_ulps=lambda T, o, x, n: 64.0 / T.abs(o)),  # mpmath at 53 bits: absolute near zeros (digamma's 1.46)
    # erfinv' = sqrt(pi)/2 exp(erfinv^2), reusing the output; real on (-1, 1)
    _p("erfinv", 1, sympy.erfinv, _f64_scalar(_f64_erfinv), _mp(mpmath.erfinv),
       lambda T, g, o, x: (g * T.exp(o * o) * _sqrt_pi_over_2(x),), _t_erfinv,
       "inverse error function (-1 < x < 1)", ball=_b_erfinv, guarded=True,
       numpy=(("erfinv", _f64_scalar(_f64_erfinv)),), sample=(-0.9, 0.9)),
    # lambertw' = W/(x (1 + W)); the principal branch W0, real for x >= -1/e
    _p("lambertw", 1, sympy.LambertW, _np(_f64_lambertw), _mp(_mp_lambertw), _vjp_lambertw, _t_lambertw,
       "Lambert W, principal branch: w e^w = x (x >= -1/e)", ball=_b_lambertw, split=_split_lambertw,
       guarded=True, numpy=(("LambertW", _np(_f64_lambertw)),), mpmath=(("LambertW", _mp(_mp_lambertw)),),
       sample=(-0.3, 3.0), f64_ulps=lambda T, o, x: 4.0 / T.abs(o + 1.0)),  # 0.65 / |1 + W| near -1/e
    # besselj(nu, x)' = (J_(nu-1) - J_(nu+1))/2, nu a rational constant; real for x >= 0 (all x, integer nu)
    _p("besselj", 1, sympy.besselj, _f64_scalar(_f64_besselj), _mp(_mp_besselj), _vjp_besselj, _t_besselj,
       "Bessel function of the first kind besselj(nu, x), nu a rational constant", ("nu",), ball=_b_besselj,
       split=_split_besselj, guarded=True, numpy=(("besselj", _besselj_lambdify_f64),),
       mpmath=(("besselj", _besselj_lambdify_mp),), sample=(0.5, 4.0),
       sample_params=(("nu", sympy.Rational(1, 3)),),
       f64_ulps=lambda T, o, x, nu: 16.0 / T.abs(o)),  # mpmath at 53 bits: absolute near its zeros
]

REGISTRY: dict[str, Primitive] = {}
for _prim in _E:
    if _prim.name in REGISTRY:
        raise RuntimeError(f"duplicate primitive {_prim.name}")
    REGISTRY[_prim.name] = _prim

    if _prim.public and (_prim.sympy is None or _prim.sample is None or _prim.ball is None):
        raise RuntimeError(f"user-facing primitive {_prim.name} needs a sympy class, a sample domain and a ball rule")
    if {k for k, _ in _prim.sample_params} != (set(_prim.params) if _prim.sympy is not None else set()):
        raise RuntimeError(f"primitive {_prim.name}: sample_params must name its parameters {_prim.params}")

BY_SYMPY: dict[Any, Primitive] = {p.sympy: p for p in _E if p.sympy is not None}

POW, EXP, LOG, SIN, COS = (REGISTRY[n] for n in ("pow", "exp", "log", "sin", "cos"))
SINH, COSH, SIGN, ATAN2 = (REGISTRY[n] for n in ("sinh", "cosh", "sign", "atan2"))
GAMMA, LOGGAMMA, POLYGAMMA = (REGISTRY[n] for n in ("gamma", "loggamma", "polygamma"))
ERFINV, LAMBERTW = REGISTRY["erfinv"], REGISTRY["lambertw"]
