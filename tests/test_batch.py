"""The fused many-point evaluator (gradcli.batch) against the plain engine and against sympy."""

from __future__ import annotations

import random
import threading

import mpmath
import numpy as np
import pytest
import sympy

from gradcli import batch, ops, syntax
from gradcli.derive import derivative_values, gradient_values, hessian_values, prepare
from gradcli.errors import InputError

P = 2 * batch.MIN_POINTS + 123  # the fused path (blocks: test_threads_and_blocks_do_not_change_values)
PH = batch.MIN_POINTS + 123  # Hessians (the plain engine's are slower)
PIECE = batch.MIN_POINTS - 1  # the plain path


def _unary_names() -> list[str]:
    names = []
    for name, fn in syntax.FUNCTIONS.items():
        prim = ops.REGISTRY.get(name)
        if prim is None or prim.params or fn.min_args != fn.max_args or prim.vjp is None:
            continue
        names.append(name)
    return sorted(names)


def _random_expr(rng: random.Random, depth: int) -> str:
    if depth == 0 or rng.random() < 0.2:
        return rng.choice(["x", "y", "x", "y", "2", "0.5", "3"])
    kind = rng.random()
    if kind < 0.45:
        op = rng.choice(["+", "-", "*", "/", "^2", "^3", "^0.5"])
        if op.startswith("^"):
            return f"({_random_expr(rng, depth - 1)}){op}"
        return f"({_random_expr(rng, depth - 1)}) {op} ({_random_expr(rng, depth - 1)})"
    name = rng.choice(_unary_names())
    args = ", ".join(_random_expr(rng, depth - 1) for _ in range(syntax.FUNCTIONS[name].min_args))
    return f"{name}({args})"


def _expressions(count: int) -> list[str]:
    rng = random.Random(14)
    out: list[str] = []
    while len(out) < count:
        text = _random_expr(rng, 3)
        try:
            prep = prepare(text)
        except Exception:  # noqa: BLE001 - a random text may be a constant, 1/0, ...
            continue
        if set(prep.variables) == {"x", "y"}:
            out.append(text)
    return out


def _points(seed: int, n: int = P) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    # mostly inside the usual domains, some outside (log of a negative, asin beyond 1)
    return {"x": rng.uniform(-1.2, 2.5, n), "y": rng.uniform(-2.5, 1.2, n)}


def _plain(fn, graph, wrt, pts):
    """The plain engine, in pieces small enough that the fused evaluator is not used (rows are independent)."""
    n = len(next(iter(pts.values())))
    cuts = [(a, min(n, a + PIECE)) for a in range(0, n, PIECE)]
    parts = [fn(graph, wrt, {k: v[a:b] for k, v in pts.items()}, ops.F64, b - a) for a, b in cuts]
    vals = np.concatenate([p[0] for p in parts])
    bad = np.concatenate([p[1].bad for p in parts])
    culprit = np.concatenate([p[1].culprit for p in parts])
    return vals, bad, culprit


EXPRS = _expressions(24)


@pytest.mark.parametrize("text", EXPRS)
def test_fused_gradient_equals_the_plain_engine_bit_for_bit_with_the_same_failures(text: str) -> None:
    graph = prepare(text).graph
    pts = _points(len(text))
    ref, bad, culprit = _plain(gradient_values, graph, ["x", "y"], pts)
    out, fail = gradient_values(graph, ["x", "y"], pts, ops.F64, P)
    np.testing.assert_array_equal(fail.bad, bad, err_msg=text)
    np.testing.assert_array_equal(fail.culprit, culprit, err_msg=text)
    np.testing.assert_array_equal(out[~bad], ref[~bad], err_msg=text)


def _exact_hessians(text: str, pts: dict[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
    """sympy's Hessian at 50 digits at the given rows: the independent oracle."""
    prep = prepare(text)
    x, y = sorted(prep.expr.free_symbols, key=str)  # the parser's symbols (with their assumptions)
    entries = [sympy.lambdify((x, y), sympy.diff(prep.expr, a, b), "mpmath") for a in (x, y) for b in (x, y)]
    with mpmath.workdps(50):
        return np.array([[float(sympy.re(f(mpmath.mpf(pts["x"][r]), mpmath.mpf(pts["y"][r])))) for f in entries]
                         for r in rows]).reshape(-1, 2, 2)


def _assert_hessians_agree(text: str, pts: dict[str, np.ndarray], out: np.ndarray, ref: np.ndarray,
                           good: np.ndarray) -> None:
    """The fused Hessian within 1e-13 of the plain engine's (relative to the row's largest entry). The
    two use different formulas (the registry's reverse rules against its Taylor rules), so where they
    differ more, one or both lost digits to cancellation: at those rows both are compared with sympy's
    50-digit Hessian, and the fused one must be within 4x the plain one's error (and 1e-13)."""
    scale = np.maximum(np.abs(ref).reshape(-1, 4).max(axis=1), 1e-300)
    err = np.abs(out - ref).reshape(-1, 4).max(axis=1) / scale
    rows = np.flatnonzero(good & ~(err <= 1e-13))
    assert rows.size <= len(out) // 100, (text, rows.size)  # rare, or a bug
    if rows.size:
        exact = _exact_hessians(text, pts, rows)
        norm = np.maximum(np.abs(exact).reshape(-1, 4).max(axis=1), 1e-300)
        fused = np.abs(out[rows] - exact).reshape(-1, 4).max(axis=1) / norm
        plain = np.abs(ref[rows] - exact).reshape(-1, 4).max(axis=1) / norm
        worst = int(np.argmax(fused / np.maximum(plain, 1e-13)))
        assert (fused <= 4 * np.maximum(plain, 1e-13)).all(), (
            text, {k: float(v[rows[worst]]) for k, v in pts.items()}, fused[worst], plain[worst])
    np.testing.assert_array_equal(out, np.swapaxes(out, 1, 2))


#: gamma((atan2(x, y)) / ((x) * (y))) reaches gamma at -4343.3 (x = 0.0044, y = -0.163): the plain
#: engine's polygamma rule once raised TypeError there (mpmath's zeta(s, x < 0) is complex); fixed.
HESSIAN_EXPRS = EXPRS


@pytest.mark.parametrize("text", HESSIAN_EXPRS)
def test_fused_hessian_matches_the_plain_engine_with_the_same_failures(text: str) -> None:
    graph = prepare(text).graph
    pts = _points(len(text) + 1, PH)
    ref, bad, culprit = _plain(hessian_values, graph, ["x", "y"], pts)
    out, fail = hessian_values(graph, ["x", "y"], pts, ops.F64, PH)
    np.testing.assert_array_equal(fail.bad, bad, err_msg=text)
    np.testing.assert_array_equal(fail.culprit, culprit, err_msg=text)
    _assert_hessians_agree(text, pts, out, ref, ~bad)


@pytest.mark.parametrize("text", HESSIAN_EXPRS)
def test_stacked_directions_give_the_plain_engines_hessian_and_flag_its_failures(text: str) -> None:
    graph = prepare(text).graph
    pts = _points(len(text) + 1, PH)
    ref, bad, _ = _plain(hessian_values, graph, ["x", "y"], pts)
    out, suspect, _ = batch.hessian(graph, ["x", "y"], pts, PH, stacked=True, block=1000)
    assert suspect[bad].all(), text  # every failing row reaches the exact analysis
    _assert_hessians_agree(text, pts, out, ref, ~bad)


def test_fused_first_derivative_equals_the_plain_engine() -> None:
    graph = prepare("x*exp(-(x^2+y^2))*sin(3*y)").graph
    pts = _points(3)
    ref, _, _ = _plain(lambda g, w, p, bk, n: derivative_values(g, w, p, bk, n), graph, ["y"], pts)
    out, fail = derivative_values(graph, ["y"], pts, ops.F64, P)
    assert not fail.bad.any()
    np.testing.assert_array_equal(out, ref)


H = "x*exp(-(x^2+y^2))*sin(3*y)"


@pytest.mark.parametrize("text", [H, "log(1 + x^2) * atan(y/x) + sqrt(x^2 + y^2)", "tanh(x*y) / (2 + cos(x))"])
def test_fused_gradient_and_hessian_agree_with_sympy(text: str) -> None:
    prep = prepare(text)
    x, y = sorted(prep.expr.free_symbols, key=str)  # the parser's symbols (with their assumptions)
    pts = _points(7)
    pts["x"] = np.abs(pts["x"]) + 0.1
    grad, fail = gradient_values(prep.graph, ["x", "y"], pts, ops.F64, P)
    hess, hfail = hessian_values(prep.graph, ["x", "y"], pts, ops.F64, P)
    assert not fail.bad.any() and not hfail.bad.any()
    for i, a in enumerate((x, y)):
        want = sympy.lambdify((x, y), sympy.diff(prep.expr, a), "numpy")(pts["x"], pts["y"])
        np.testing.assert_allclose(grad[:, i], want, rtol=1e-12, atol=1e-13)
        for j, b in enumerate((x, y)):
            want = sympy.lambdify((x, y), sympy.diff(prep.expr, a, b), "numpy")(pts["x"], pts["y"])
            np.testing.assert_allclose(hess[:, i, j], want, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("text", [H, *[t for t in EXPRS if "gamma" not in t][:6]])  # gamma's kernels are slow
def test_threads_and_blocks_do_not_change_values(text: str) -> None:
    graph = prepare(text).graph
    pts = _points(11)
    *one, b1 = batch.gradient(graph, ["x", "y"], pts, P, threads=1, block=P)
    *many, b2 = batch.gradient(graph, ["x", "y"], pts, P, threads=3, block=1000)
    for a, b in [*zip(one, many), (b1, b2)]:  # values, suspects, and the rounding-error bounds
        np.testing.assert_array_equal(a, b)
    for stacked in (False, True):
        one = batch.hessian(graph, ["x", "y"], pts, P, threads=1, block=P, stacked=stacked)
        many = batch.hessian(graph, ["x", "y"], pts, P, threads=2, block=777, stacked=stacked)
        for a, b in zip(one, many):
            np.testing.assert_array_equal(a, b)


def test_gradcli_threads_must_be_a_positive_whole_number(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADCLI_THREADS", "two")
    with pytest.raises(InputError, match="GRADCLI_THREADS"):
        batch.threads_from()
    monkeypatch.setenv("GRADCLI_THREADS", "3")
    assert batch.threads_from() == 3
    assert batch.threads_from(1) == 1
    with pytest.raises(InputError, match="threads"):
        batch.threads_from(0)


def test_a_few_points_do_not_use_the_fused_evaluator() -> None:
    graph = prepare("sin(x)*y + 0.25").graph
    before = batch.compile_gradient.cache_info().misses + batch.compile_gradient.cache_info().hits
    gradient_values(graph, ["x", "y"], {"x": np.ones(10), "y": np.ones(10)}, ops.F64, 10)
    after = batch.compile_gradient.cache_info().misses + batch.compile_gradient.cache_info().hits
    assert after == before


def test_a_variable_expr_lacks_has_a_zero_column() -> None:
    graph = prepare("x^2").graph
    pts = {"x": np.linspace(-1, 1, P)}
    out, fail = gradient_values(graph, ["x", "z"], pts, ops.F64, P)
    np.testing.assert_array_equal(out[:, 0], 2 * pts["x"])
    np.testing.assert_array_equal(out[:, 1], 0.0)
    assert not fail.bad.any()


def test_the_helper_threads_are_kept_between_calls_and_shared_by_concurrent_callers() -> None:
    from concurrent.futures import ThreadPoolExecutor

    graph = prepare("x*exp(-(x^2+y^2))*sin(3*y)").graph
    pts = {"x": np.linspace(-2, 2, P), "y": np.linspace(2, -2, P)}
    want, _, _ = batch.gradient(graph, ["x", "y"], pts, P, threads=1)

    def helpers() -> set[int | None]:
        return {t.ident for t in threading.enumerate() if t.name.startswith("gradcli-batch")}

    with ThreadPoolExecutor(4) as callers:  # four callers at once, each with 3 threads on 6 blocks
        outs = list(callers.map(lambda _: batch.gradient(graph, ["x", "y"], pts, P, threads=3, block=60)[0],
                                range(8)))
    for out in outs:
        np.testing.assert_array_equal(out, want)
    kept = helpers()
    assert kept
    for _ in range(3):
        np.testing.assert_array_equal(batch.gradient(graph, ["x", "y"], pts, P, threads=3, block=100)[0], want)
    assert helpers() == kept
