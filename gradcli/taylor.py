"""Taylor-mode propagation over a :class:`~gradcli.graph.Graph`.

Univariate: every node carries normalized coefficients ``c[k] = f^(k)/k!`` of ``f(x0 + s t)`` as an
array of shape ``(K+1, P)`` (order axis first, points last); each primitive's Taylor rule from the
registry costs O(K^2), so the k-th derivative costs O(k^2) per primitive.

Mixed partials: truncated multivariate series, coefficient arrays of shape ``(n1+1, ..., nd+1, P)``
(the ring R[t1..td]/(t1^(n1+1), ..., td^(nd+1))). Sums and products are exact ring operations; a unary
primitive is lifted from its univariate rule: f(u0 + d) = sum_m f^(m)(u0)/m! d^m with d nilpotent,
the coefficients coming from the univariate rule on the seed u0 + t (Horner in the ring).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np

from . import ops
from .graph import Graph, finite_mask, walk
from .series import zeros_for

__all__ = ["Failure", "propagate", "propagate_multi", "scale_for"]


@dataclass(frozen=True, slots=True)
class Failure:
    """Where values stopped being finite: a mask over points and, per point, the first failing node;
    and, from engines that trace one (gradcli.batch), each point's bound on the relative rounding error
    of its values, in units of 2^-53."""

    bad: np.ndarray  # (P,) bool
    culprit: np.ndarray  # (P,) int node index, -1 where fine
    bound: np.ndarray | None = None  # (P,) float, or None: the engine gives no bound
    #: ``bad`` marks every point where a value the engine returned is not finite, so its caller need
    #: not scan them again (the engines that check their results set it)
    complete: bool = False
    #: each value's own bound at the given points (indices), shaped (points, *one point's value shape):
    #: ``bound`` is their sum, and this tells which values of a point whose sum is too large are
    #: (None: the engine gives only the sum)
    entry_bounds: Callable[[np.ndarray], np.ndarray] | None = None


def _track(graph: Graph, npoints: int) -> tuple[np.ndarray, np.ndarray, Any]:
    bad = np.zeros(npoints, dtype=bool)
    culprit = np.full(npoints, -1)

    def note(i: int, out: np.ndarray) -> None:
        fin = finite_mask(out)
        fin = fin.reshape(-1, fin.shape[-1]).all(axis=0) if fin.ndim else np.array([bool(fin)])
        newly = np.broadcast_to(~fin, bad.shape) & ~bad
        culprit[newly] = i
        bad[newly] = True

    return bad, culprit, note


def _moving(graph: Graph, seeds: dict[str, np.ndarray]) -> list[bool]:
    """Per node: does it depend on a variable whose seed moves (is differentiated)?

    A node that does not is exactly constant in t, so its higher coefficients are exactly 0 even where
    its function has no derivative (x * acos(y) at y = 1, differentiated by x). A node that does depend
    on one keeps whatever its rule gives: a truncated series that happens to be constant (1 - x^2 y^2
    in the ring of d^2/dxdy) says nothing about the terms cut off, so acos of it stays undefined.
    """
    moves: list[bool] = []
    for node in graph.nodes:
        if node.op == "var":
            s = seeds[node.name]
            tail = s.reshape(-1, s.shape[-1])[1:]
            moves.append(bool(tail.size) and bool(np.any(tail != 0)))
        else:
            moves.append(any(moves[j] for j in node.inputs))
    return moves


def _frozen(out: np.ndarray, lead: int) -> np.ndarray:
    """``out`` with every coefficient but the constant one set to exactly 0 (a constant node)."""
    flat = out.reshape(-1, out.shape[-1]).copy()
    flat[lead:] = zeros_for(out, flat[lead:].shape)
    return flat.reshape(out.shape)


def propagate(graph: Graph, seeds: dict[str, np.ndarray], bk: ops.Backend, npoints: int) -> tuple[np.ndarray, Failure]:
    """Univariate Taylor series of the graph's output, given each variable's series ``(K+1, P)``."""
    order = next(iter(seeds.values())).shape[0] - 1 if seeds else 0
    bad, culprit, note = _track(graph, npoints)

    def const(value: Any) -> np.ndarray:
        c = bk.zeros((order + 1, 1))
        c[0] = bk.scalar(value)
        return c

    moves = _moving(graph, seeds)

    def op(i: int, prim: ops.Primitive, args: list[np.ndarray], params: dict[str, Any]) -> np.ndarray:
        if i in graph.guards:  # a domain guard: its value alone
            args = [a[:1] for a in args]
        with np.errstate(all="ignore"):
            out = prim.taylor(bk, *args, **bk.params(params))
        if not moves[i]:
            out = _frozen(out, 1)
        note(i, out)
        return out

    values = walk(graph, lambda name: seeds[name], const, op)
    out = np.broadcast_to(values[graph.output], (order + 1, npoints))
    return out, Failure(bad, culprit)


# ---- multivariate ----------------------------------------------------------------------------------
def _mmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Product in the truncated ring: a multidimensional Cauchy product over all but the last axis."""
    shape = np.broadcast_shapes(a.shape, b.shape)
    dims = shape[:-1]
    a = np.broadcast_to(a, shape)
    b = np.broadcast_to(b, shape)
    if a.dtype != object and b.dtype != object and shape[-1] == 1 and _kronecker_length(dims) <= 4096:
        return _kronecker_mul(a, b)
    out = zeros_for(a if a.dtype == object else b, shape)
    # Skipping zero coefficients of a is only exact when b is finite: 0 * inf must stay nan (a pole).
    sparse = a.dtype != object and bool(np.isfinite(b).all())
    for idx in np.ndindex(*dims):
        ai = a[idx]
        if sparse and not ai.any():
            continue
        out[tuple(slice(i, None) for i in idx)] += ai * b[tuple(slice(0, n - i) for i, n in zip(idx, dims))]
    return out


def _kronecker_length(dims: tuple[int, ...]) -> int:
    """Length of the univariate polynomial :func:`_kronecker_mul` convolves (its cost is its square)."""
    length, stride = 1, 1
    for n in dims:
        length += (n - 1) * stride
        stride *= 2 * n - 1
    return length


def _kronecker_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`_mmul` on one float64 point by Kronecker substitution: t_i -> t^(S_i) with
    S_i = prod_{j<i} (2 n_j - 1) keeps every product exponent apart, so one np.convolve does it."""
    dims = a.shape[:-1]
    strides, s = [], 1
    for n in dims:
        strides.append(s)
        s *= 2 * n - 1
    pos = np.zeros(dims, dtype=np.intp)
    for axis, (n, stride) in enumerate(zip(dims, strides)):
        pos += (np.arange(n) * stride).reshape((1,) * axis + (n,) + (1,) * (len(dims) - axis - 1))
    flat = pos.reshape(-1)
    length = int(flat[-1]) + 1
    pa, pb = np.zeros(length), np.zeros(length)
    pa[flat] = a.reshape(-1)
    pb[flat] = b.reshape(-1)
    return np.convolve(pa, pb)[flat].reshape(a.shape)


def _lift(bk: ops.Backend, prim: ops.Primitive, u: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """f(u) for a unary primitive in the ring, from f's univariate coefficients at u0."""
    dims = u.shape[:-1]
    total = sum(n - 1 for n in dims)
    origin = (0,) * len(dims)
    u0 = u[origin]
    seed = bk.zeros((total + 1, u.shape[-1]))
    seed[0] = u0
    if total:  # total = 0 for a domain guard's value alone
        seed[1] = bk.scalar(1)
    with np.errstate(all="ignore"):
        coeffs = prim.taylor(bk, seed, **params)
    delta = u.copy()
    delta[origin] = delta[origin] * 0
    # No shortcut where delta is 0: a truncated series can be constant while u is not (1 - x^2 y^2 in
    # the ring of d^2/dxdy), and then f's undefined derivatives at u0 do matter (propagate_multi
    # freezes the nodes that are really constant).
    out = zeros_for(u, u.shape)
    out[origin] = coeffs[total]
    for m in range(total - 1, -1, -1):
        out = _mmul(out, delta)
        out[origin] = out[origin] + coeffs[m]
    # delta has no constant term, so the constant term is f(u0) exactly (not nan from inf * 0)
    out[origin] = coeffs[0]
    return out


def ring_rule(ring: Any, prim: ops.Primitive, args: list[Any], params: dict[str, Any]) -> Any:
    """A primitive in a truncated multivariate ring, for every backend (float64 arrays here, balls in
    :mod:`gradcli.ball`): sums are termwise, products the ring's, a quotient the product with the lifted
    reciprocal, atan2 the angle-difference form of its univariate rule (atan2(y0, x0) + atan((x0 y - y0 x)
    / (x0 x + y0 y))), and every other primitive, unary, is lifted from its univariate Taylor rule.

    ``ring`` provides ``mul(a, b)``, ``lift(prim, u, params)``, ``origin(a)`` (the constant term) and
    ``with_origin(v, prim, y0, x0)`` (atan2's value at the point, and its branch cut)."""
    name = prim.name
    if name == "add":
        return args[0] + args[1]
    if name == "sub":
        return args[0] - args[1]
    if name == "neg":
        return -args[0]
    if name == "mul":
        return ring.mul(args[0], args[1])
    if name == "div":
        return ring.mul(args[0], ring.lift(ops.POW, args[1], {"p": -1}))
    if name == "atan2":
        y, x = args
        y0, x0 = ring.origin(y), ring.origin(x)
        q = ring.mul(x0 * y - y0 * x, ring.lift(ops.POW, x0 * x + y0 * y, {"p": -1}))
        return ring.with_origin(ring.lift(ops.REGISTRY["atan"], q, {}), prim, y0, x0)
    if prim.arity != 1:
        raise NotImplementedError(f"no multivariate rule for {name}")
    return ring.lift(prim, args[0], params)


@dataclass(frozen=True, slots=True)
class _ArrayRing:
    """The ring on coefficient arrays of shape (n1+1, ..., nd+1, P) of one backend."""

    bk: ops.Backend

    def mul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return _mmul(a, b)

    def lift(self, prim: ops.Primitive, u: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        return _lift(self.bk, prim, u, self.bk.params(params))

    @staticmethod
    def origin(a: np.ndarray) -> np.ndarray:
        return a[(0,) * (a.ndim - 1)]

    def with_origin(self, v: np.ndarray, prim: ops.Primitive, y0: Any, x0: Any) -> np.ndarray:
        v = np.array(v)
        v[(0,) * (v.ndim - 1)] = self.bk.call(prim, y0, x0)
        return v


def _multi_rule(bk: ops.Backend, prim: ops.Primitive, args: list[np.ndarray], params: dict[str, Any]) -> np.ndarray:
    return ring_rule(_ArrayRing(bk), prim, args, params)


def propagate_multi(
    graph: Graph, seeds: dict[str, np.ndarray], bk: ops.Backend, npoints: int
) -> tuple[np.ndarray, Failure]:
    """Multivariate truncated series of the output, given each variable's ring element."""
    shape = next(iter(seeds.values())).shape
    bad, culprit, note = _track(graph, npoints)

    def const(value: Any) -> np.ndarray:
        c = bk.zeros(shape[:-1] + (1,))
        c[(0,) * (len(shape) - 1)] = bk.scalar(value)
        return c

    moves = _moving(graph, seeds)

    def op(i: int, prim: ops.Primitive, args: list[np.ndarray], params: dict[str, Any]) -> np.ndarray:
        if i in graph.guards:  # a domain guard: its value alone
            args = [a[(slice(0, 1),) * (a.ndim - 1)] for a in args]
        with np.errstate(all="ignore"):
            out = _multi_rule(bk, prim, args, bk.params(params))
        if not moves[i]:
            out = _frozen(out, 1)
        note(i, out)
        return out

    values = walk(graph, lambda name: seeds[name], const, op)
    return np.broadcast_to(values[graph.output], shape[:-1] + (npoints,)), Failure(bad, culprit)


# ---- scaling for high orders in float64 --------------------------------------------------------------
def scale_for(graph: Graph, var: str, at: dict[str, np.ndarray], npoints: int, order: int) -> np.ndarray:
    """A per-point step s for the seed x0 + s t that keeps the coefficients of order ``order`` near 1.

    Normalized coefficients decay like R^-k (R the radius of convergence) and underflow float64 near
    k ~ 300 / log10(R); a short pilot run estimates R so that c_k s^k stays representable.
    """
    ones = np.ones(npoints)
    if order <= 60:
        return ones
    pilot = 24
    seeds = {}
    for name in graph.variables:
        s = np.zeros((pilot + 1, npoints))
        s[0] = at[name]
        if name == var:
            s[1] = 1.0
        seeds[name] = s
    coeffs, _ = propagate(graph, seeds, ops.F64, npoints)
    with np.errstate(all="ignore"):
        ks = np.arange(pilot // 2, pilot + 1)
        growth = np.abs(coeffs[ks]) ** (1.0 / ks[:, None])
        rate = np.nanmax(np.where(np.isfinite(growth), growth, np.nan), axis=0)
    rate = np.where(np.isfinite(rate) & (rate > 0), rate, 1.0)
    return 1.0 / rate


def scaled_derivative(coeff: np.ndarray, k: int, s: np.ndarray) -> np.ndarray:
    """f^(k) = k! c_k / s^k in float64, through logarithms when k! or s^k leave float64's range."""
    with np.errstate(all="ignore"):
        if k <= 170 and np.all(s == 1.0):
            return coeff * float(math.factorial(k))
        log_mag = np.log(np.abs(coeff)) + math.lgamma(k + 1) - k * np.log(s)
        return np.where(coeff == 0, 0.0, np.sign(coeff) * np.exp(log_mag))


# ---- Taylor mode for a derivative: the seeds, the step scaling, univariate and mixed ----------------------
def seed(bk: ops.Backend, value: np.ndarray, order: int, step: Any = None) -> np.ndarray:
    """A variable's series at ``value``: the value, then ``step`` (its direction) or 0, then zeros."""
    s = bk.zeros((order + 1, value.shape[0]))
    s[0] = value
    if step is not None and order >= 1:
        s[1] = step
    return s


def taylor_univariate(
    graph: Graph, var: str | None, order: int, point: dict[str, np.ndarray], bk: ops.Backend, npoints: int
) -> tuple[np.ndarray, Failure]:
    """d^order f / d var^order at every point (f itself for order 0), from :func:`taylor_coefficients`."""
    coeffs, fail, step = taylor_coefficients(graph, var, order, point, bk, npoints)
    if bk.is_mp:
        return coeffs[order] * mpmath.factorial(order), fail
    return scaled_derivative(coeffs[order], order, step), fail


def taylor_coefficients(
    graph: Graph, var: str | None, order: int, point: dict[str, np.ndarray], bk: ops.Backend, npoints: int
) -> tuple[np.ndarray, Failure, np.ndarray]:
    """Normalized coefficients of f(x0 + s t) in t (shape (order+1, P)), the failure mask, and s.

    In float64 and at high orders the step s is chosen per point so that the coefficients stay inside
    float64's range (they decay like R^-k for a radius of convergence R, or faster): a pilot estimate,
    then up to three corrections from the decay seen in the previous run.
    """

    def run(step: Any) -> tuple[np.ndarray, Failure]:
        seeds = {name: seed(bk, point[name], order, step if name == var else None) for name in graph.variables}
        return propagate(graph, seeds, bk, npoints)

    if bk.is_mp or var is None or order <= 60:
        coeffs, fail = run(bk.scalar(1) if bk.is_mp else np.ones(npoints))
        return coeffs, fail, np.ones(npoints)
    step = scale_for(graph, var, point, npoints, order)
    for _ in range(4):
        coeffs, fail = run(step)
        rate = _decay(coeffs, order)
        if np.all(np.isnan(rate)):
            break
        step = np.where(np.isnan(rate), step, step / np.where(np.isnan(rate), 1.0, rate))
    else:
        # No step kept every coefficient in float64's range (sin at order 2000: c_k s^k underflows for a
        # small s, and the lower ones overflow for a large s). An underflowed c_order would read as a
        # derivative of 0, a confident wrong number, so these points fail (exit 3, "use --digits").
        lost = ~np.isnan(rate) & ~fail.bad
        if lost.any():
            fail = Failure(fail.bad | lost, np.where(lost, -1, fail.culprit))
    return coeffs, fail, step


def _decay(coeffs: np.ndarray, order: int) -> np.ndarray:
    """Per point, nan where the top coefficients are representable; else the geometric rate of the
    representable ones (so that dividing the step by it brings c_order near the size of c_0)."""
    with np.errstate(all="ignore"):
        mag = np.abs(coeffs)
        normal = np.isfinite(mag) & (mag > 1e-250) & (mag < 1e250)
        any_normal = normal.any(axis=0)
        last = order - np.argmax(normal[::-1], axis=0)
        first = np.argmax(normal, axis=0)
        ks = np.arange(coeffs.shape[1])
        finite_all = np.isfinite(mag).all(axis=0)
        tiny = ((mag > 0) & (mag <= 1e-250)).any(axis=0)
        # exact zeros past the last normal coefficient (a polynomial, an odd function) are no underflow
        fine = ~any_normal | (((last >= order - 3) | ~tiny) & finite_all)
        span = np.maximum(last - first, 1)
        rate = (mag[last, ks] / mag[first, ks]) ** (1.0 / span)
        # overflowing runs: shrink the step sharply; underflowing: the extrapolated rate
        rate = np.where(finite_all, rate, 1e3)
        rate = np.where((rate > 0) & np.isfinite(rate), rate, 1.0)
        return np.where(fine | (np.abs(np.log(rate)) < 1e-3), np.nan, rate)


def taylor_mixed(
    graph: Graph, counts: dict[str, int], point: dict[str, np.ndarray], bk: ops.Backend, npoints: int
) -> tuple[np.ndarray, Failure]:
    """The mixed partial with ``counts`` derivatives per variable, by multivariate truncated series."""
    names = list(counts)
    dims = tuple(counts[n] + 1 for n in names)
    seeds = {}
    for name in graph.variables:
        s = bk.zeros(dims + (npoints,))
        s[(0,) * len(dims)] = point[name]
        if name in counts:
            unit = [0] * len(dims)
            unit[names.index(name)] = 1
            s[tuple(unit)] = bk.scalar(1)
        seeds[name] = s
    log_scale = sum(math.lgamma(counts[n] + 1) for n in names)
    if not bk.is_mp and log_scale > _LOG_F64_FACTORIALS:
        # The coefficient is the derivative over prod(n_i!) > 1e290: a derivative of any size that
        # matters would underflow in it (exp(x+y) at x:100,y:100 would come out as 0). No value.
        return bk.zeros((npoints,)) * np.nan, Failure(np.ones(npoints, dtype=bool), np.full(npoints, -1))
    coeffs, fail = propagate_multi(graph, seeds, bk, npoints)
    scale = 1
    for n in names:
        scale *= math.factorial(counts[n])
    top = coeffs[tuple(counts[n] for n in names)]
    with np.errstate(all="ignore"):
        return top * (mpmath.mpf(scale) if bk.is_mp else math.exp(log_scale)), fail


#: log(1e290): beyond it, prod(n_i!) leaves too little of float64's range for a mixed coefficient.
_LOG_F64_FACTORIALS = math.log(1e290)
