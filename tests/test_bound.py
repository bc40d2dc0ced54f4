"""The fused evaluator's rounding-error bound (gradcli.batch._rho): a row's true relative error, against
60-digit mpmath evaluations of sympy's derivatives, is never above the bound it reports. The bound decides
which rows of a large call the ball engine certifies, so a bound below the true error could let a wrong
value through unchecked (only the sample would catch it)."""

from __future__ import annotations

import math
from typing import Any

import mpmath
import numpy as np
import pytest
import sympy
from test_batch import _expressions

import gradcli
from gradcli import batch
from gradcli.certify import SMALL, beyond_bound
from gradcli.check import _MPMATH_EXTRA
from gradcli.derive import prepare

U = 2.0**-53
N = 512  # points per expression: rows with the largest bounds and some others are compared


def _points(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x": rng.uniform(-1.2, 2.5, N), "y": rng.uniform(-2.5, 1.2, N)}


def _symbol(expr: sympy.Expr, name: str) -> sympy.Symbol:
    """The expression's own symbol of that name (the parser's symbols carry assumptions)."""
    return next((s for s in expr.free_symbols if s.name == name), sympy.Symbol(name))


def _truth(derivative: sympy.Expr, x: float, y: float) -> mpmath.mpf | None:
    # with the names sympy prints that mpmath lacks (DiracDelta, from abs and sign), as the check has them
    fn = sympy.lambdify((_symbol(derivative, "x"), _symbol(derivative, "y")), derivative, [_MPMATH_EXTRA, "mpmath"])
    with mpmath.workdps(60):
        try:
            v = fn(mpmath.mpf(x), mpmath.mpf(y))
        except (ValueError, ZeroDivisionError, OverflowError, TypeError):
            return None
        return v if isinstance(v, mpmath.mpf) and mpmath.isfinite(v) else None


def _rows(bound: np.ndarray, usable: np.ndarray, count: int = 24) -> np.ndarray:
    """The usable rows with the largest finite bounds, and a spread of the others."""
    idx = np.flatnonzero(usable & np.isfinite(bound) & (bound * U <= 1e-3))
    top = idx[np.argsort(bound[idx])[-count:]]
    spread = idx[np.linspace(0, idx.size - 1, min(count, idx.size)).astype(int)] if idx.size else idx
    return np.union1d(top, spread)


def _assert_within(values: np.ndarray, bound: np.ndarray, rows: np.ndarray, derivative: sympy.Expr,
                   pts: dict[str, np.ndarray], what: str) -> int:
    compared = 0
    for i in rows:
        t = _truth(derivative, float(pts["x"][i]), float(pts["y"][i]))
        if t is None:
            continue
        v = float(values[i])
        err = abs(mpmath.mpf(v) - t)
        limit = bound[i] * U * max(abs(t), SMALL)  # values within SMALL of 0 compare absolutely (the contract)
        assert err <= limit, f"{what} at row {i}: |{v!r} - {mpmath.nstr(t, 20)}| > bound {limit}"
        compared += 1
    return compared


EXPRESSIONS = _expressions(40)


def _check(engine: Any, k: int, entries: list[tuple[str, ...]], count: int) -> None:
    """The bound of ``engine`` (batch.gradient or batch.hessian) against the truth on expressions k, k+1:
    each value's own bound (batch.entry_bounds, what decides which entries of a flagged row get balls)
    holds, and the row's bound is their sum."""
    hessian = engine is batch.hessian
    compared = 0
    for text in EXPRESSIONS[k : k + 2]:
        prep = prepare(text)
        pts = _points(k)
        out, suspect, bound = engine(prep.graph, ["x", "y"], pts, N)
        assert bound is not None and bound.shape == (N,)
        flat = out.reshape(N, -1)
        rows = _rows(bound, ~suspect & np.isfinite(flat).all(axis=1), count)
        if not rows.size:
            continue
        per = batch.entry_bounds(prep.graph, ["x", "y"], {n: v[rows] for n, v in pts.items()}, rows.size,
                                 hessian=hessian).reshape(rows.size, -1)
        np.testing.assert_allclose(per[:, [0, 1, 3] if hessian else [0, 1]].sum(axis=1), bound[rows], rtol=1e-12)
        for j, wrt in enumerate(entries):
            d = sympy.diff(prep.expr, *(_symbol(prep.expr, w) for w in wrt))
            col = j if len(wrt) == 1 else "xy".index(wrt[0]) * 2 + "xy".index(wrt[1])
            own = np.full(N, np.inf)
            own[rows] = per[:, col]
            compared += _assert_within(flat[:, col], own, rows, d, pts, f"d/d{''.join(wrt)} of {text}")
    assert compared > 0


@pytest.mark.parametrize("k", range(0, 40, 2))
def test_the_gradient_bound_holds_on_generated_expressions(k: int) -> None:
    _check(batch.gradient, k, [("x",), ("y",)], 24)


@pytest.mark.parametrize("k", range(1, 40, 4))
def test_the_hessian_bound_holds_on_generated_expressions(k: int) -> None:
    _check(batch.hessian, k, [("x", "x"), ("x", "y"), ("y", "y")], 12)


def test_cancellation_raises_the_bound_where_the_error_is() -> None:
    # d/dx (exp(x) - x) = exp(x) - 1: float64 loses about -log10|x| digits near 0, and the bound says so
    x = np.concatenate([np.geomspace(1e-12, 1e-2, 100), np.linspace(1.0, 2.0, 100)])
    out, _, bound = batch.gradient(prepare("exp(x) - x").graph, ["x"], {"x": x}, x.size)
    true = np.expm1(x)
    err = np.abs(out[:, 0] - true) / true
    assert (err <= bound * U).all()
    assert (bound[:100] * U > 1e-6).any() and (bound[100:] * U < 1e-13).all()
    assert bound[0] > 1e3 * bound[99]  # it grows as x approaches the cancellation


def test_api_rows_in_a_cancellation_are_certified_by_balls() -> None:
    x = np.geomspace(1e-12, 1e-3, 300)  # more than DIRECT_ROWS: the fused evaluator and its bound
    got = gradcli.derivative("exp(x) - x", wrt="x", at={"x": x})
    with mpmath.workdps(40):
        worst = max(abs(mpmath.mpf(g) / mpmath.expm1(mpmath.mpf(float(v))) - 1) for g, v in zip(got, x))
    assert worst <= 1e-8
    plain = np.exp(x) - 1.0  # float64's own value there is off by far more than the tolerance
    assert np.max(np.abs(plain / np.expm1(x) - 1)) > 1e-6


#: Where a float64 kernel's error is not relative (its f64_ulps rule in the registry): y times the
#: function of x, so that d/dy is the kernel's value and d/dx its derivative, at x spread around the spot.
KERNEL_SPOTS = [
    ("loggamma(x)*y", [1.0, 2.0]),  # zeros: an absolute error
    ("gamma(x)*y", [1.4616321449683622]),  # d/dx = gamma * digamma, digamma's zero
    ("besselj(1/2, x)*y", [math.pi, 2 * math.pi]),  # zeros of J_1/2
    ("besselj(1/3, x)*y", [2.9026, 6.0327]),  # near zeros of J_1/3
    ("lambertw(x)*y", [-1 / math.e]),  # the branch point
]


@pytest.mark.parametrize(("text", "spots"), KERNEL_SPOTS, ids=[t for t, _ in KERNEL_SPOTS])
def test_the_bound_holds_where_kernels_lose_relative_accuracy(text: str, spots: list[float]) -> None:
    prep = prepare(text)
    offsets = np.concatenate([-np.geomspace(1e-3, 1e-15, 40), [0.0], np.geomspace(1e-15, 1e-3, 40)])
    x = np.concatenate([s + offsets for s in spots])
    pts = {"x": x, "y": np.full(x.size, 1.5)}
    out, suspect, bound = batch.gradient(prep.graph, ["x", "y"], pts, x.size)
    usable = np.flatnonzero(~suspect & np.isfinite(out).all(axis=1) & np.isfinite(bound))
    compared = 0
    for j, w in enumerate("xy"):
        d = sympy.diff(prep.expr, _symbol(prep.expr, w))
        compared += _assert_within(out[:, j], bound, usable, d, pts, f"d/d{w} of {text}")
    assert usable.size >= 30 and compared > usable.size  # (lambertw: half the rows are below -1/e)


def test_exact_zeros_do_not_send_rows_to_the_balls() -> None:
    # y = 0: sin(3y) = 0 and d/dx is a sum of exact zeros; 0/0 in the bound would flag every row
    x = np.linspace(-2, 2, 5000)
    pts = {"x": x, "y": np.zeros_like(x)}
    out, _, bound = batch.gradient(prepare("x*exp(-(x^2+y^2))*sin(3*y)").graph, ["x", "y"], pts, x.size)
    assert (out[:, 0] == 0).all()
    np.testing.assert_allclose(out[:, 1], 3 * x * np.exp(-x * x), rtol=1e-15)
    assert not beyond_bound([bound], 1e-8).any()


def test_a_cancellation_to_an_exact_zero_is_beyond_any_bound() -> None:
    # d/dy of y*(cos(x) - 1): float64's cos(x) is 1 for |x| < 1e-8, so the difference is 0 with an
    # error of a few ulps of 1 (true value -x^2/2): no relative bound holds, the row must go to the balls
    x = np.array([0.0, 1e-9, 1e-4, 1.0])
    out, _, bound = batch.gradient(prepare("y*(cos(x) - 1)").graph, ["y"], {"x": x, "y": np.ones_like(x)}, x.size)
    assert out[0, 0] == out[1, 0] == 0.0
    assert np.isinf(bound[:2]).all()
    assert 1e-8 < bound[2] * U < 1e-5 and bound[3] * U < 1e-14


@pytest.mark.parametrize(("k", "hessian", "tol"), [(k, False, 1e-8) for k in range(0, 40, 5)]
                         + [(k, False, 1e-13) for k in range(1, 40, 10)]
                         + [(k, True, tol) for k in range(2, 40, 8) for tol in (1e-8, 1e-13)])
def test_api_arrays_are_within_tol_of_mpmath_on_generated_expressions(k: int, hessian: bool, tol: float) -> None:
    # end to end: the fused values, the bound's flags, each flagged value's own bound, the balls for the
    # values beyond theirs and for the sample (at tol 1e-13 most rows are flagged, and most of them in
    # only some entries: the others stand on their own bounds, within tol / 8)
    text = EXPRESSIONS[k]
    prep = prepare(text)
    pts = _points(100 + k)
    out, suspect, _ = (batch.hessian if hessian else batch.gradient)(prep.graph, ["x", "y"], pts, N)
    inside = ~suspect & np.isfinite(out.reshape(N, -1)).all(axis=1)  # the API raises outside the domain
    at = {name: v[inside][:150] for name, v in pts.items()}
    assert at["x"].size > 64  # the fused evaluator's path, not balls alone
    got = (gradcli.hessian if hessian else gradcli.gradient)(text, at=at, wrt=["x", "y"], tol=tol)
    got = got.reshape(at["x"].size, -1)
    entries = [("x", "x"), ("x", "y"), ("y", "x"), ("y", "y")] if hessian else [("x",), ("y",)]
    compared = 0
    for j, wrt in enumerate(entries):
        d = sympy.diff(prep.expr, *(_symbol(prep.expr, w) for w in wrt))
        for i in range(at["x"].size):
            t = _truth(d, float(at["x"][i]), float(at["y"][i]))
            if t is not None:
                assert abs(mpmath.mpf(float(got[i, j])) - t) <= tol * max(abs(t), SMALL), (text, wrt, i)
                compared += 1
    assert compared > at["x"].size


def test_a_sign_the_rounding_may_have_flipped_is_beyond_any_bound() -> None:
    # d/dx abs(x*y - 1) = sign(x*y - 1) y: where x*y - 1 is all rounding error its sign is unknown
    x = np.linspace(0.5, 2.0, 200)
    graph = prepare("abs(x*y - 1)").graph
    _, _, near = batch.gradient(graph, ["x"], {"x": x, "y": 1 / x}, x.size)  # x*y - 1: 0 or a few ulps
    out, _, far = batch.gradient(graph, ["x"], {"x": x, "y": 2 / x}, x.size)  # x*y - 1 close to 1
    assert (near * U > 1).all()
    np.testing.assert_array_equal(out[:, 0], 2 / x)
    assert (far * U < 1e-14).all()


def _methods(block: Any, i: int) -> list[str]:
    return [c.method for c in block.certificates(i)]


def test_a_flagged_hessian_row_gets_balls_only_for_its_entries_beyond_their_bounds() -> None:
    # d2H/dxdy = (1 - 2x^2) exp(-(x^2+y^2)) (3 cos(3y) - 2y sin(3y)): at x a few ulps from 1/sqrt(2) it
    # loses digits and the row's bound is beyond tol; d2H/dx2 and d2H/dy2 there keep their own bounds'
    # certificate, the mixed entry is certified by balls
    from gradcli import ops
    from gradcli.commands import Chunk, Job, Unnumbered, evaluate_block

    prep = prepare("x*exp(-(x^2+y^2))*sin(3*y)")
    rng = np.random.default_rng(7)
    at = {"x": rng.uniform(-2, 2, 300), "y": rng.uniform(-2, 2, 300)}
    at["x"][:4] = 2**-0.5 * (1 + np.array([1e-12, -3e-12, 2e-11, -5e-12]))
    at["y"][:4] = [0.3, 0.45, 0.8, 1.2]
    block = evaluate_block(Job("hessian", (prep,), ("x", "y"), ops.F64, check=False),
                           Chunk(at, 300, Unnumbered(300)))
    x, y = _symbol(prep.expr, "x"), _symbol(prep.expr, "y")
    truth = {(a, b): sympy.diff(prep.expr, a, b) for a in (x, y) for b in (x, y)}
    for i in range(4):
        assert _methods(block, i) == ["bound", "ball", "ball", "bound"]
        for (r, c), d in zip([(0, 0), (0, 1), (1, 0), (1, 1)], truth.values()):
            t = _truth(d, float(at["x"][i]), float(at["y"][i]))
            assert abs(mpmath.mpf(float(block.values[i, r, c])) - t) <= 1e-8 * max(abs(t), SMALL)
    assert not block.uncertified
    # d2H/dxdy alone comes from the Hessian's program, whose row bound sums every entry's: at x near
    # sqrt(3/2), where d2H/dx2 = x (4x^2 - 6) exp(-(x^2+y^2)) sin(3y) cancels, the sum is beyond tol and
    # the mixed entry's own bound is not
    at["x"][4:8] = 1.5**0.5 * (1 + np.array([1e-12, -3e-12, 2e-11, -5e-12]))
    at["y"][4:8] = at["y"][:4]
    d_xy = evaluate_block(Job("d", (prep,), ("x", "y"), ops.F64, check=False), Chunk(at, 300, Unnumbered(300)))
    assert [_methods(d_xy, i) for i in range(8)] == [["ball"]] * 4 + [["bound"]] * 4
    np.testing.assert_array_equal(d_xy.values[:4], block.values[:4, 0, 1])


def test_a_flagged_jacobian_row_gets_balls_for_the_expression_and_variable_beyond_its_bound() -> None:
    # d/dx (exp(x) - y) cancels where y is close to exp(x); the other three entries are far from 0
    from gradcli import ops
    from gradcli.commands import Chunk, Job, Unnumbered, evaluate_block

    x = np.linspace(0.1, 1.0, 200)
    y = np.exp(x) * 3.0
    y[:5] = np.exp(x[:5]) * (1 + 1e-11)
    job = Job("jacobian", (prepare("x*y"), prepare("exp(x) - x*y")), ("x", "y"), ops.F64, check=False)
    block = evaluate_block(job, Chunk({"x": x, "y": y}, x.size, Unnumbered(x.size)))
    for i in range(5):
        assert _methods(block, i) == ["bound", "bound", "ball", "bound"]
        with mpmath.workdps(50):
            t = mpmath.exp(mpmath.mpf(float(x[i]))) - mpmath.mpf(float(y[i]))
        assert abs(mpmath.mpf(float(block.values[i, 1, 0])) - t) <= 1e-8 * abs(t)
    assert not block.uncertified
