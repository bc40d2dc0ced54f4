"""Truncated power-series arithmetic on normalized coefficients ``c[k] = f^(k)/k!`` (order axis first):
products, quotients, integration, exp, composition with known coefficients and the ODE pair (sin/cos,
sinh/cosh). The registry's Taylor rules (:mod:`gradcli.ops`) are written with these, on either backend
(:mod:`gradcli.backend`): float64 arrays or mpmath object arrays."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mpmath
import numpy as np

__all__ = ["zeros_for", "series_length", "point_columns", "rsum", "cauchy", "div_series", "orders", "integrate",
           "ode_pair", "exp_series", "const_like", "compose_known"]


# The recurrences are sequential in k (c[k] needs c[0..k-1]), so each is a Python loop over k whose
# body is a dot product. On one point (the common case) the loop runs on 1-D columns with np.dot; with
# mpmath numbers (--digits) always point by point with mpmath.fdot, which multiplies exactly and
# rounds the sum once (more accurate, and ~3x faster than numpy's elementwise object arithmetic);
# several float64 points use the vectorised form. Every sum over an input series stops at that
# series' last nonzero coefficient, so a linear argument (exp(2*x), 1+x^2) makes its rule O(K).
def zeros_for(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if a.dtype == object:
        out = np.empty(shape, dtype=object)
        out.fill(mpmath.mpf(0))
        return out
    return np.zeros(shape, dtype=np.float64)


def point_columns(*arrays: np.ndarray) -> list[tuple[np.ndarray, ...]] | None:
    """Per-point 1-D column views of 2-D arrays of one shape, when the recurrences run point by point
    (one point, or mpmath numbers); None for the vectorised float64 path."""
    a = arrays[0]
    if a.ndim != 2 or (a.dtype != object and a.shape[1] != 1):
        return None
    return [tuple(x[:, p] for x in arrays) for p in range(a.shape[1])]


def _dot_for(a: np.ndarray) -> Callable[[np.ndarray, np.ndarray], Any]:
    return mpmath.fdot if a.dtype == object else np.dot


def series_length(x: np.ndarray) -> int:
    """One past the last nonzero coefficient (nan counts as nonzero), over all points."""
    nz = np.flatnonzero(np.any(np.asarray(x != 0, dtype=bool).reshape(x.shape[0], -1), axis=1))
    return int(nz[-1]) + 1 if nz.size else 0


def _finite(x: np.ndarray) -> bool:
    if x.dtype == object:
        return all(mpmath.isfinite(v) for v in x.flat)
    return bool(np.isfinite(x).all())


def rsum(x: np.ndarray, y: np.ndarray, k: int, m: int, dot: Callable[..., Any] | None) -> Any:
    """``sum_{j=1..min(k, m-1)} x[j] y[k-j]``: x's coefficients past ``m`` are zero. ``dot`` works on
    1-D columns; None means the vectorised form over the points axis."""
    hi = max(min(k, m - 1) + 1, 1)
    ys = y[k - hi + 1 : k][::-1]
    if dot is not None:
        return dot(x[1:hi], ys)
    return (x[1:hi] * ys).sum(axis=0)


def _ratios(u: np.ndarray, step: np.ndarray) -> np.ndarray:
    """``prod_{i=1..k} step / i`` for k = 1..K (shape (K, ...)): the series of a function of a linear
    argument u0 + step t, whose rule is then a closed form instead of a loop."""
    return np.cumprod(step / orders(u.shape[0], u)[1:], axis=0)


def cauchy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The truncated product of two series: ``c[k] = sum_j a[j] * b[k-j]`` for k <= K."""
    n = a.shape[0]
    shape = np.broadcast_shapes(a.shape, b.shape)
    obj = a.dtype == object or b.dtype == object
    if not obj and len(shape) == 2 and shape[1] == 1:
        return np.convolve(a[:, 0], b[:, 0])[:n, None]
    # zeros past the last nonzero coefficient are skipped, unless the other side has inf or nan
    # (0 * inf must stay nan: a pole inside a composite rule may not vanish)
    la, lb = (series_length(a), series_length(b)) if _finite(a) and _finite(b) else (n, n)
    if la > lb:  # loop over the shorter series
        a, b, la, lb = b, a, lb, la
    a, b = np.broadcast_to(a, shape), np.broadcast_to(b, shape)
    c = zeros_for(a if a.dtype == object else b, shape)
    cols = point_columns(a, b, c) if obj else None
    if cols is not None:
        for ac, bc, cc in cols:
            for k in range(min(n, la + lb - 1)):
                lo, hi = max(0, k - lb + 1), min(k, la - 1) + 1
                cc[k] = mpmath.fdot(ac[lo:hi], bc[k - hi + 1 : k - lo + 1][::-1])
        return c
    for j in range(min(n, la)):
        c[j:] += a[j] * b[: n - j]
    return c


def div_series(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a / b``: ``q[k] = (a[k] - sum_{j=1..k} b[j] q[k-j]) / b[0]`` (Griewank & Walther, Table 13.1)."""
    shape = np.broadcast_shapes(a.shape, b.shape)
    a, b = np.broadcast_to(a, shape), np.broadcast_to(b, shape)
    q = zeros_for(a if a.dtype == object else b, shape)
    m = series_length(b)
    cols = point_columns(a, b, q)
    if cols is None:
        q[0] = a[0] / b[0]
        for k in range(1, shape[0]):
            q[k] = (a[k] - rsum(b, q, k, m, None)) / b[0]
        return q
    dot = _dot_for(q)
    for ac, bc, qc in cols:
        b0 = bc[0]
        if dot is mpmath.fdot and b0 == 0:  # mpmath raises where float64 gives inf: the same nan
            qc[:] = mpmath.mpf("nan")
            continue
        qc[0] = ac[0] / b0
        for k in range(1, shape[0]):
            qc[k] = (ac[k] - rsum(bc, qc, k, m, dot)) / b0
    return q


def orders(n: int, like: np.ndarray) -> np.ndarray:
    """``[0, 1, ..., n-1]`` shaped to multiply the order axis of ``like``."""
    j = np.arange(n).reshape((n,) + (1,) * (like.ndim - 1))
    return j.astype(object) if like.dtype == object else j.astype(np.float64)


def integrate(u: np.ndarray, w: np.ndarray, v0: Any) -> np.ndarray:
    """The series of v with v(0) = v0 and v' = w * u': ``v[k] = (1/k) sum_{j=1..k} j u[j] w[k-j]``."""
    n = u.shape[0]
    shape = np.broadcast_shapes(u.shape, w.shape)
    v = zeros_for(u if u.dtype == object else w, shape)
    v[0] = v0
    if n > 1:
        du = (u * orders(n, u))[1:]
        p = cauchy(du, w[: n - 1])
        v[1:] = p / orders(n, u)[1:]
    return v


def ode_pair(u: np.ndarray, a0: Any, b0: Any, sign: int) -> tuple[np.ndarray, np.ndarray]:
    """Coupled a' = b u', b' = sign * a u' (sin/cos with sign -1, sinh/cosh with +1)."""
    n = u.shape[0]
    a = zeros_for(u, u.shape)
    b = zeros_for(u, u.shape)
    a[0], b[0] = a0, b0
    w = u * orders(n, u)
    m = series_length(u)
    if m <= 2 and n > 1:
        # linear argument: the derivatives cycle through (a0, b0, sign a0, sign b0)
        r = _ratios(u, u[1])
        k = np.arange(1, n)
        if sign < 0:
            cycle_a, cycle_b = [a0, b0, -a0, -b0], [b0, -a0, -b0, a0]
        else:
            cycle_a, cycle_b = [a0, b0], [b0, a0]
        a[1:] = r * np.stack(np.broadcast_arrays(*cycle_a))[k % len(cycle_a)]
        b[1:] = r * np.stack(np.broadcast_arrays(*cycle_b))[k % len(cycle_b)]
        return a, b
    cols = point_columns(w, a, b)
    if cols is None:
        for k in range(1, n):
            a[k] = rsum(w, b, k, m, None) / k
            b[k] = sign * rsum(w, a, k, m, None) / k
        return a, b
    dot = _dot_for(a)
    for wc, ac, bc in cols:
        for k in range(1, n):
            ac[k] = rsum(wc, bc, k, m, dot) / k
            bc[k] = sign * rsum(wc, ac, k, m, dot) / k
    return a, b


def exp_series(u: np.ndarray, v0: Any) -> np.ndarray:
    """exp: v' = v u', so ``v[k] = (1/k) sum_{j=1..k} j u[j] v[k-j]`` (G&W Table 13.2)."""
    n = u.shape[0]
    v = zeros_for(u, u.shape)
    v[0] = v0
    w = u * orders(n, u)
    m = series_length(u)
    if m <= 2 and n > 1:  # linear argument: v[k] = v0 u1^k / k!
        v[1:] = v[0] * _ratios(u, u[1])
        return v
    cols = point_columns(w, v)
    if cols is None:
        for k in range(1, n):
            v[k] = rsum(w, v, k, m, None) / k
        return v
    dot = _dot_for(v)
    for wc, vc in cols:
        for k in range(1, n):
            vc[k] = rsum(wc, vc, k, m, dot) / k
    return v


def const_like(u: np.ndarray, value: Any) -> np.ndarray:
    c = zeros_for(u, u.shape)
    c[0] = value
    return c


def compose_known(u: np.ndarray, scaled_coeffs: Callable[[np.ndarray], list[Any]]) -> np.ndarray:
    """sum_m c_m (u - u0)^m, for functions whose own Taylor coefficients c_m at u0 are known in closed
    form (the gamma family). ``scaled_coeffs(sigma)`` gives c_m sigma^m per point, computed where they
    cannot overflow, for sigma the natural scale of d = u - u0 (max_j |d_j|^(1/j)); the sum then runs on
    d / sigma by Horner: O(K^3) in general, O(K^2) when u is linear (u0 + a t). In float64, c_m and
    sigma^m alone leave the range at high orders (psi^(m)(x)/m! ~ x^-m) while their product does not."""
    d = u.copy()
    d[0] = d[0] * 0
    n = u.shape[0]
    if u.dtype == object:
        sigma = np.frompyfunc(lambda v: mpmath.mpf(1), 1, 1)(u[0])
    else:
        with np.errstate(all="ignore"):
            roots = np.abs(d[1:]) ** (1.0 / np.arange(1, n).reshape((n - 1,) + (1,) * (u.ndim - 1)))
            sigma = np.max(np.where(np.isfinite(roots), roots, 0.0), axis=0, initial=0.0)
        sigma = np.where(sigma > 0, sigma, 1.0)
    d = d / sigma
    coeffs = scaled_coeffs(sigma)
    if series_length(d) <= 2:  # (a t)^m = a^m t^m
        out = zeros_for(u, u.shape)
        power = None
        for m, c in enumerate(coeffs[:n]):
            out[m] = c if power is None else c * power
            if m + 1 < n:
                power = d[1] if power is None else power * d[1]
        return out
    out = const_like(u, coeffs[-1])
    for c in reversed(coeffs[:-1]):
        out = cauchy(out, d)
        out[0] = out[0] + c
    return out
