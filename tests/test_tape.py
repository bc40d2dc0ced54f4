"""gradcli.Tape against tf.GradientTape's semantics; every number against sympy or a closed form.

The seed article's examples are written the way a TensorFlow tutorial writes them, with ``tf``
replaced by ``gradcli`` (``gradcli.GradientTape`` is ``gradcli.Tape``).
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

import gradcli
from gradcli import syntax
from gradcli.check import close

X, Y, Z = sympy.symbols("x y z", real=True)
SEED_F = 2 * X**3 + 5 * Y**2 + 11 * X + 5
SEED_G = 2 * X**3 + 5 * Y**2 + 11 * X * Y + 5


def exact(expr: sympy.Expr, wrt: list[sympy.Symbol], dps: int = 30, **at: float) -> float:
    """The oracle: sympy's derivative, evaluated at the (binary) point with ``dps`` digits, rounded."""
    subs = {sympy.Symbol(k, real=True): sympy.Float(v, dps) for k, v in at.items()}
    return float(sympy.diff(expr, *wrt).evalf(dps, subs=subs))


def agrees(value: object, expected: object, tol: float = 1e-12) -> bool:
    return close(float(value), float(expected), tol)


# ---- the seed article, as a TensorFlow tutorial writes it ------------------------------------------------
def test_seed_x_squared_at_3_gives_6() -> None:
    x = gradcli.Variable(3.0)
    with gradcli.GradientTape() as tape:
        y = x**2
    dy_dx = tape.gradient(y, x)
    assert dy_dx.numpy() == exact(X**2, [X], x=3)
    assert isinstance(dy_dx.numpy(), np.float64)


def test_seed_x_cubed_at_3_gives_27_and_18_with_nested_tapes() -> None:
    x = gradcli.Variable(3.0)
    with gradcli.GradientTape() as tape2:
        with gradcli.GradientTape() as tape1:
            y = x**3
        dy_dx = tape1.gradient(y, x)
    d2y_dx2 = tape2.gradient(dy_dx, x)
    assert float(dy_dx) == exact(X**3, [X], x=3)
    assert float(d2y_dx2) == exact(X**3, [X, X], x=3)


def test_seed_gradient_of_2x3_5y2_11x_5_at_5_2_gives_161_and_20() -> None:
    x = gradcli.Variable(5.0)
    y = gradcli.Variable(2.0)
    with gradcli.GradientTape() as tape:
        f = 2 * x**3 + 5 * y**2 + 11 * x + 5
    df_dx, df_dy = tape.gradient(f, [x, y])
    assert float(df_dx) == exact(SEED_F, [X], x=5, y=2)
    assert float(df_dy) == exact(SEED_F, [Y], x=5, y=2)


def test_seed_one_persistent_tape_gives_all_six_partials_in_one_block() -> None:
    x = gradcli.Variable(5.0)
    y = gradcli.Variable(2.0)
    with gradcli.GradientTape(persistent=True) as tape:
        f = 2 * x**3 + 5 * y**2 + 11 * x * y + 5
        df_dx = tape.gradient(f, x)
        df_dy = tape.gradient(f, y)
        d2f_dx2 = tape.gradient(df_dx, x)
        d2f_dy2 = tape.gradient(df_dy, y)
        d2f_dxdy = tape.gradient(df_dx, y)
        d2f_dydx = tape.gradient(df_dy, x)
    got = [df_dx, df_dy, d2f_dx2, d2f_dy2, d2f_dxdy, d2f_dydx]
    wrts = [[X], [Y], [X, X], [Y, Y], [X, Y], [Y, X]]
    assert [float(g) for g in got] == [exact(SEED_G, w, x=5, y=2) for w in wrts]
    assert [float(g) for g in got] == [172.0, 75.0, 60.0, 10.0, 11.0, 11.0]  # the contract's numbers


def test_tf_docs_nested_tapes_on_a_watched_constant_give_10_then_2() -> None:
    x = gradcli.constant(5.0)
    with gradcli.GradientTape() as g:
        g.watch(x)
        with gradcli.GradientTape() as gg:
            gg.watch(x)
            y = x * x
        dy_dx = gg.gradient(y, x)  # dy_dx = 2 * x
    d2y_dx2 = g.gradient(dy_dx, x)  # d2y_dx2 = 2
    assert float(dy_dx) == exact(X * X, [X], x=5) == 10
    assert float(d2y_dx2) == exact(X * X, [X, X], x=5) == 2


def test_tf_docs_persistent_tape_gives_108_and_6() -> None:
    x = gradcli.constant(3.0)
    with gradcli.GradientTape(persistent=True) as g:
        g.watch(x)
        y = x * x
        z = y * y
    dz_dx = g.gradient(z, x)  # (4*x^3 at x = 3)
    dy_dx = g.gradient(y, x)
    del g
    assert float(dz_dx) == exact((X * X) ** 2, [X], x=3) == 108
    assert float(dy_dx) == exact(X * X, [X], x=3) == 6


# ---- higher orders: nested tapes to any depth ---------------------------------------------------------------
def nested(fn, variables: dict[str, gradcli.Tensor], wrt: list[str]) -> gradcli.Tensor:
    """d^n fn / d wrt[0] ... d wrt[n-1] by nesting one tape per order (the GradientTape pattern)."""
    if not wrt:
        return fn(**variables)
    with gradcli.Tape() as tape:
        tape.watch(variables[wrt[-1]])
        inner = nested(fn, variables, wrt[:-1])
    return tape.gradient(inner, variables[wrt[-1]], unconnected_gradients="zero")


HIGHER = [
    (lambda x, y: gradcli.sin(x) * gradcli.exp(x), sympy.sin(X) * sympy.exp(X), "xxx", 0.7),
    (lambda x, y: gradcli.sin(x) * gradcli.exp(x), sympy.sin(X) * sympy.exp(X), "xxxx", 0.7),
    (lambda x, y: gradcli.log(1 + x * x) / (1 + y), sympy.log(1 + X**2) / (1 + Y), "xxxx", -1.3),
    (lambda x, y: x**3 * y**2 + gradcli.atan(x * y), X**3 * Y**2 + sympy.atan(X * Y), "xyx", 0.4),
    (lambda x, y: x**3 * y**2 + gradcli.atan(x * y), X**3 * Y**2 + sympy.atan(X * Y), "yxyx", 0.4),
    (lambda x, y: gradcli.tanh(x - y) * gradcli.sqrt(x), sympy.tanh(X - Y) * sympy.sqrt(X), "xxy", 1.9),
]


@pytest.mark.parametrize(("fn", "sym", "wrt", "x0"), HIGHER)
def test_third_and_fourth_order_nested_tapes_match_sympy(fn, sym, wrt, x0) -> None:
    variables = {"x": gradcli.constant(x0), "y": gradcli.constant(0.6)}
    got = nested(fn, variables, list(wrt))
    want = exact(sym, [{"x": X, "y": Y}[w] for w in wrt], x=x0, y=0.6)
    assert agrees(got, want, 1e-11), (wrt, float(got), want)


def test_fourth_derivative_of_a_cubic_is_zero_when_asked_for_zeros() -> None:
    variables = {"x": gradcli.constant(2.0), "y": gradcli.constant(1.0)}
    got = nested(lambda x, y: x**3 + y, variables, list("xxxx"))
    assert float(got) == exact(X**3 + Y, [X] * 4, x=2, y=1) == 0


# ---- tape rules: persistent, one-shot, watching ---------------------------------------------------------------
def test_second_gradient_on_a_non_persistent_tape_is_a_tape_error() -> None:
    x = gradcli.Variable(3.0)
    with gradcli.Tape() as tape:
        y = x * x
    tape.gradient(y, x)
    with pytest.raises(gradcli.TapeError, match="persistent=True") as info:
        tape.gradient(y, x)
    assert isinstance(info.value, gradcli.GradcliError)
    assert info.value.exit_code == 2


def test_jacobian_after_gradient_on_a_non_persistent_tape_is_a_tape_error() -> None:
    x = gradcli.Variable(3.0)
    with gradcli.Tape() as tape:
        y = x * x
    tape.gradient(y, x)
    with pytest.raises(gradcli.TapeError):
        tape.jacobian(y, x)


def test_persistent_tape_answers_several_gradient_calls() -> None:
    x = gradcli.Variable(0.3)
    with gradcli.Tape(persistent=True) as tape:
        y = gradcli.sin(x)
        z = gradcli.exp(y)
    for _ in range(3):
        assert agrees(tape.gradient(z, x), exact(sympy.exp(sympy.sin(X)), [X], x=0.3))
        assert agrees(tape.gradient(y, x), exact(sympy.sin(X), [X], x=0.3))


def test_gradient_outside_the_block_is_not_recorded_by_the_persistent_tape() -> None:
    x = gradcli.Variable(2.0)
    with gradcli.Tape(persistent=True) as tape:
        y = x * x * x
    dy = tape.gradient(y, x)
    assert tape.gradient(dy, x) is None  # the sweep ran after the block: nothing recorded it


def test_gradient_inside_a_non_persistent_block_is_not_recorded_by_that_tape() -> None:
    x = gradcli.Variable(2.0)
    with gradcli.Tape() as tape:
        y = x * x
        dy = tape.gradient(y, x)
    assert float(dy) == exact(X * X, [X], x=2)
    assert len(tape._ops) == 1


def test_entering_an_active_tape_again_is_a_tape_error() -> None:
    tape = gradcli.Tape()
    with tape, pytest.raises(gradcli.TapeError, match="already recording"), tape:
        pass


def test_a_tape_can_be_entered_again_after_its_block_and_keeps_its_record() -> None:
    x = gradcli.Variable(1.5)
    tape = gradcli.Tape()
    with tape:
        y = x * x
    with tape:
        z = y * x
    assert agrees(tape.gradient(z, x), exact(X**3, [X], x=1.5))


def test_watch_accepts_a_list_and_gradient_returns_a_list() -> None:
    x, y = gradcli.constant(5.0), gradcli.constant(2.0)
    with gradcli.Tape() as tape:
        tape.watch([x, y])
        f = 2 * x**3 + 5 * y**2 + 11 * x + 5
    grads = tape.gradient(f, [x, y])
    assert isinstance(grads, list)
    assert [float(g) for g in grads] == [exact(SEED_F, [v], x=5, y=2) for v in (X, Y)]


def test_watch_accepts_a_dict_and_gradient_returns_the_same_structure() -> None:
    params = {"x": gradcli.constant(5.0), "inner": {"y": gradcli.constant(2.0)}}
    with gradcli.Tape() as tape:
        tape.watch(params)
        f = 2 * params["x"] ** 3 + 5 * params["inner"]["y"] ** 2 + 11 * params["x"] + 5
    grads = tape.gradient(f, params)
    assert set(grads) == {"x", "inner"} and set(grads["inner"]) == {"y"}
    assert float(grads["x"]) == exact(SEED_F, [X], x=5, y=2)
    assert float(grads["inner"]["y"]) == exact(SEED_F, [Y], x=5, y=2)


def test_gradient_for_a_tuple_of_sources_is_a_tuple() -> None:
    x, y = gradcli.Variable(1.0), gradcli.Variable(2.0)
    with gradcli.Tape() as tape:
        f = x * y
    grads = tape.gradient(f, (x, y))
    assert isinstance(grads, tuple)
    assert [float(g) for g in grads] == [exact(X * Y, [v], x=1, y=2) for v in (X, Y)]


def test_watching_a_number_is_a_tape_error_naming_constant() -> None:
    with gradcli.Tape() as tape, pytest.raises(gradcli.TapeError, match="gradcli.constant"):
        tape.watch(3.0)


def test_variables_are_watched_automatically_when_used() -> None:
    x = gradcli.Variable(3.0)
    unused = gradcli.Variable(1.0)
    with gradcli.Tape() as tape:
        y = x * x
    assert tape.watched_variables() == (x,)
    grads = tape.gradient(y, [x, unused])
    assert float(grads[0]) == exact(X * X, [X], x=3)
    assert grads[1] is None


def test_watch_accessed_variables_false_leaves_variables_unwatched() -> None:
    x = gradcli.Variable(3.0)
    with gradcli.Tape(watch_accessed_variables=False) as tape:
        y = x * x
    assert tape.gradient(y, x) is None
    with gradcli.Tape(watch_accessed_variables=False) as tape:
        tape.watch(x)
        y = x * x
    assert float(tape.gradient(y, x)) == exact(X * X, [X], x=3)


def test_a_non_trainable_variable_is_not_watched_on_access() -> None:
    x = gradcli.Variable(3.0, trainable=False)
    with gradcli.Tape() as tape:
        y = x * x
    assert tape.gradient(y, x) is None


def test_an_unwatched_constant_gets_none_even_when_the_target_uses_it() -> None:
    w = gradcli.Variable(2.0)
    c = gradcli.constant(3.0)
    with gradcli.Tape() as tape:
        y = c * w
    grad_c, grad_w = tape.gradient(y, [c, w])
    assert grad_c is None
    assert float(grad_w) == exact(X * Y, [Y], x=3, y=2)


@pytest.mark.parametrize("zero", ["zero", "ZERO", gradcli.UnconnectedGradients.ZERO])
def test_unconnected_sources_give_zeros_of_their_shape_when_asked(zero) -> None:
    x = gradcli.Variable(2.0)
    other = gradcli.Variable(np.ones(3))
    with gradcli.Tape() as tape:
        tape.watch(other)
        y = x * x
    got = tape.gradient(y, other, unconnected_gradients=zero)
    assert got.shape == (3,)
    assert got.numpy().tolist() == [0.0, 0.0, 0.0]


def test_an_unknown_unconnected_gradients_value_is_a_tape_error() -> None:
    x = gradcli.Variable(2.0)
    with gradcli.Tape() as tape:
        y = x * x
    with pytest.raises(gradcli.TapeError, match="'none' or 'zero'"):
        tape.gradient(y, x, unconnected_gradients="nan")


def test_a_target_that_is_not_a_tensor_is_a_tape_error() -> None:
    x = gradcli.Variable(2.0)
    with gradcli.Tape() as tape:
        x * x
    with pytest.raises(gradcli.TapeError, match="target"):
        tape.gradient(4.0, x)


def test_stop_recording_hides_operations_from_the_tape() -> None:
    x = gradcli.Variable(0.8)
    with gradcli.Tape() as tape:
        a = x * x
        with tape.stop_recording():
            b = gradcli.sin(x)  # a constant as far as this tape knows
        c = a + b * x
    # d/dx (x^2 + s x) with s = sin(0.8) held constant
    s = sympy.Symbol("s", real=True)
    want = sympy.diff(X**2 + s * X, X).evalf(30, subs={X: sympy.Float(0.8, 30), s: sympy.sin(sympy.Float(0.8, 30))})
    assert agrees(tape.gradient(c, x), want)


def test_stop_recording_leaves_an_outer_tape_recording() -> None:
    x = gradcli.Variable(0.8)
    with gradcli.Tape() as outer:
        with gradcli.Tape() as inner:
            with inner.stop_recording():
                y = gradcli.sin(x)
    assert inner.gradient(y, x) is None
    assert agrees(outer.gradient(y, x), exact(sympy.sin(X), [X], x=0.8))


def test_stop_recording_outside_the_block_is_a_tape_error() -> None:
    with pytest.raises(gradcli.TapeError, match="with block"):
        gradcli.Tape().stop_recording()


def test_reset_forgets_what_was_recorded() -> None:
    x = gradcli.Variable(1.7)
    with gradcli.Tape(persistent=True) as tape:
        y_old = x * x * x
        tape.reset()
        y = x * x
    assert float(tape.gradient(y, x)) == exact(X * X, [X], x=1.7)
    assert tape.gradient(y_old, x) is None


def test_reset_lets_a_used_non_persistent_tape_be_used_again() -> None:
    x = gradcli.Variable(1.7)
    tape = gradcli.Tape()
    with tape:
        y = x * x
    tape.gradient(y, x)
    tape.reset()
    assert tape.watched_variables() == ()
    with tape:
        z = x * x * x
    assert agrees(tape.gradient(z, x), exact(X**3, [X], x=1.7))


# ---- jacobian -----------------------------------------------------------------------------------------------------
def test_jacobian_has_shape_target_plus_source_and_matches_sympy() -> None:
    x0 = [0.5, -1.0, 2.0]
    x = gradcli.constant(np.array(x0))
    with gradcli.Tape() as tape:
        tape.watch(x)
        y = gradcli.sin(x) * gradcli.reduce_sum(x * x)
    jac = tape.jacobian(y, x)
    assert jac.shape == (3, 3)
    xs = sympy.symbols("a0:3", real=True)
    total = sum(v**2 for v in xs)
    want = sympy.Matrix([sympy.sin(v) * total for v in xs]).jacobian(xs)
    subs = {v: sympy.Float(a, 30) for v, a in zip(xs, x0)}
    for i in range(3):
        for j in range(3):
            assert agrees(jac.numpy()[i, j], want[i, j].evalf(30, subs=subs))


def test_jacobian_of_a_matrix_target_by_a_vector_has_shape_2_3_3() -> None:
    x = gradcli.constant(np.array([1.0, 2.0, 3.0]))
    rows = gradcli.constant(np.array([[1.0], [2.0]]))
    with gradcli.Tape() as tape:
        tape.watch(x)
        y = rows * x * x  # y[i, j] = rows[i] * x[j]^2
    jac = tape.jacobian(y, x).numpy()
    assert jac.shape == (2, 3, 3)
    want = np.zeros((2, 3, 3))
    for i in range(2):
        for j in range(3):
            want[i, j, j] = 2 * (i + 1) * (j + 1)  # d(r_i x_j^2)/dx_j = 2 r_i x_j
    assert jac.tolist() == want.tolist()


def test_jacobian_of_a_vector_by_a_scalar_source() -> None:
    a = gradcli.Variable(2.0)
    t = np.linspace(0, 1, 5)
    with gradcli.Tape() as tape:
        y = a * a * t
    jac = tape.jacobian(y, a)
    assert jac.shape == (5,)
    assert np.allclose(jac.numpy(), 2 * 2.0 * t, rtol=1e-15, atol=0)  # d(a^2 t)/da = 2 a t


def test_jacobian_of_a_gradient_is_the_hessian() -> None:
    x0 = [0.3, -0.4, 1.1]
    x = gradcli.constant(np.array(x0))
    with gradcli.Tape() as outer:
        outer.watch(x)
        with gradcli.Tape() as inner:
            inner.watch(x)
            f = gradcli.reduce_sum(x) ** 2 * gradcli.reduce_sum(gradcli.sin(x))
        g = inner.gradient(f, x)
    hess = outer.jacobian(g, x).numpy()
    xs = sympy.symbols("a0:3", real=True)
    want = sympy.hessian(sum(xs) ** 2 * sum(sympy.sin(v) for v in xs), xs)
    subs = {v: sympy.Float(a, 30) for v, a in zip(xs, x0)}
    for i in range(3):
        for j in range(3):
            assert agrees(hess[i, j], want[i, j].evalf(30, subs=subs))


def test_jacobian_of_unconnected_sources_is_none_or_zeros() -> None:
    x = gradcli.constant(np.array([1.0, 2.0]))
    other = gradcli.constant(np.array([1.0, 2.0, 3.0]))
    with gradcli.Tape(persistent=True) as tape:
        tape.watch([x, other])
        y = x * x
    assert tape.jacobian(y, other) is None
    zeros = tape.jacobian(y, other, unconnected_gradients="zero")
    assert zeros.shape == (2, 3) and not zeros.numpy().any()


# ---- broadcasting over arrays ---------------------------------------------------------------------------------------
def test_gradient_over_an_array_is_elementwise() -> None:
    x = gradcli.constant(np.linspace(0, 1, 5))
    with gradcli.Tape() as tape:
        tape.watch(x)
        y = x * x
    dy_dx = tape.gradient(y, x)
    assert dy_dx.shape == (5,)
    assert dy_dx.numpy().tolist() == (2 * np.linspace(0, 1, 5)).tolist()  # d(x^2)/dx = 2x


def test_a_scalar_variable_times_an_array_sums_over_the_broadcast_axis() -> None:
    a = gradcli.Variable(3.0)
    t = np.linspace(0, 1, 5)
    with gradcli.Tape() as tape:
        y = a * t
    grad = tape.gradient(y, a)
    assert grad.shape == ()
    assert math.isclose(float(grad), math.fsum(t), rel_tol=1e-15)  # d(sum a t)/da = sum t


def test_two_dimensional_broadcasting_sums_each_source_back_to_its_shape() -> None:
    x = gradcli.constant(np.arange(1.0, 6.0).reshape(5, 1))
    w = gradcli.constant(np.array([0.5, -1.0, 2.0]))
    with gradcli.Tape() as tape:
        tape.watch([x, w])
        y = x * w  # shape (5, 3)
    gx, gw = tape.gradient(y, [x, w])
    assert gx.shape == (5, 1) and gw.shape == (3,)
    assert gx.numpy().ravel().tolist() == [1.5] * 5  # sum_j w_j
    assert gw.numpy().tolist() == [15.0] * 3  # sum_i x_i


def test_a_non_scalar_target_is_summed_and_output_gradients_weigh_it() -> None:
    x = gradcli.constant(np.array([1.0, 2.0, 3.0]))
    with gradcli.Tape(persistent=True) as tape:
        tape.watch(x)
        y = x * x * x
    assert tape.gradient(y, x).numpy().tolist() == [3.0, 12.0, 27.0]  # 3 x^2
    weights = np.array([1.0, 0.0, -2.0])
    got = tape.gradient(y, x, output_gradients=weights)
    assert got.numpy().tolist() == [3.0, 0.0, -54.0]


def test_a_list_of_targets_adds_their_gradients() -> None:
    x = gradcli.Variable(0.5)
    with gradcli.Tape() as tape:
        a = gradcli.sin(x)
        b = x * x
    want = exact(sympy.sin(X) + X**2, [X], x=0.5)
    assert agrees(tape.gradient([a, b], x), want)


def test_output_gradients_of_the_wrong_shape_are_a_tape_error() -> None:
    x = gradcli.constant(np.array([1.0, 2.0]))
    with gradcli.Tape() as tape:
        tape.watch(x)
        y = x * x
    with pytest.raises(gradcli.TapeError, match="shape"):
        tape.gradient(y, x, output_gradients=np.ones(3))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-3, 3, allow_nan=False), min_size=1, max_size=6))
def test_gradient_over_random_arrays_matches_the_closed_form(values: list[float]) -> None:
    x = gradcli.constant(np.array(values))
    with gradcli.Tape() as tape:
        tape.watch(x)
        y = gradcli.sin(x) * x * x
    got = tape.gradient(y, x).numpy()
    for v, g in zip(values, got):
        assert agrees(g, 2 * v * math.sin(v) + v * v * math.cos(v), 1e-13)  # (x^2 sin x)'


# ---- tensors, functions and operators -----------------------------------------------------------------------------
def test_gradient_tape_is_tf_name_for_tape() -> None:
    assert gradcli.GradientTape is gradcli.Tape


def test_numpy_of_a_scalar_is_a_numpy_scalar_as_in_tensorflow() -> None:
    got = gradcli.constant(2.5).numpy()
    assert isinstance(got, np.float64) and got == 2.5
    assert isinstance(gradcli.constant(np.array([2.5])).numpy(), np.ndarray)


def test_numpy_gives_float64_values() -> None:
    assert gradcli.constant(3).numpy().dtype == np.float64
    assert gradcli.Variable([1, 2]).numpy().dtype == np.float64
    assert (gradcli.constant(2.0) * 3).numpy().dtype == np.float64


def test_complex_and_text_values_are_refused() -> None:
    with pytest.raises(gradcli.InputError, match="real numbers"):
        gradcli.constant(1 + 2j)
    with pytest.raises(gradcli.InputError):
        gradcli.constant("x")


def test_tensors_format_and_convert_like_numbers() -> None:
    t = gradcli.constant(2.5)
    assert float(t) == 2.5
    assert f"{t:.2f}" == "2.50"
    assert "2.5" in repr(t)


# Every user-facing function of the registry: its gradcli function (or tf's name for min/max),
# a sympy counterpart and a point inside its domain.
FUNCTIONS = {
    "exp": (sympy.exp, 0.3), "log": (sympy.log, 0.7), "sqrt": (sympy.sqrt, 0.7),
    "sin": (sympy.sin, 0.3), "cos": (sympy.cos, 0.3), "tan": (sympy.tan, 0.3),
    "asin": (sympy.asin, 0.3), "acos": (sympy.acos, 0.3), "atan": (sympy.atan, 0.3),
    "sinh": (sympy.sinh, 0.3), "cosh": (sympy.cosh, 0.3), "tanh": (sympy.tanh, 0.3),
    "asinh": (sympy.asinh, 0.3), "acosh": (sympy.acosh, 1.3), "atanh": (sympy.atanh, 0.3),
    "abs": (sympy.Abs, -0.3), "sign": (lambda v: sympy.sign(v) * v**2, -0.3),
    "erf": (sympy.erf, 0.3), "erfc": (sympy.erfc, 0.3), "gamma": (sympy.gamma, 0.3),
    "loggamma": (sympy.loggamma, 0.3), "erfinv": (sympy.erfinv, 0.3), "lambertw": (sympy.LambertW, 0.3),
}
#: functions with a constant parameter (besselj(nu, x)): ``gradcli.besselj(x, nu=...)``
PARAMETRIC = {"besselj": (lambda v: sympy.besselj(sympy.Rational(1, 3), v), {"nu": sympy.Rational(1, 3)}, 1.3)}
BINARY = {"atan2": sympy.atan2, "min": sympy.Min, "max": sympy.Max}
TF_NAMES = {"min": "minimum", "max": "maximum"}


def test_every_function_of_the_expression_syntax_is_a_gradcli_function() -> None:
    for name in syntax.FUNCTIONS:
        public = TF_NAMES.get(name, name)
        assert public in gradcli.__all__, public
        assert callable(getattr(gradcli, public))
    assert set(syntax.FUNCTIONS) == set(FUNCTIONS) | set(BINARY) | set(PARAMETRIC)


@pytest.mark.parametrize("name", sorted(PARAMETRIC))
def test_each_function_with_a_parameter_differentiates_like_sympy(name: str) -> None:
    sym, params, x0 = PARAMETRIC[name]
    x = gradcli.Variable(x0)
    with gradcli.Tape(persistent=True) as tape:
        y = getattr(gradcli, name)(x, **params)
    assert agrees(y, sym(X).evalf(30, subs={X: sympy.Float(x0, 30)}), 1e-14)
    assert agrees(tape.gradient(y, x), exact(sym(X), [X], x=x0), 1e-13)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_each_unary_function_differentiates_like_sympy(name: str) -> None:
    sym, x0 = FUNCTIONS[name]
    x = gradcli.Variable(x0)
    with gradcli.Tape() as tape:
        y = getattr(gradcli, name)(x) * x**2 if name == "sign" else getattr(gradcli, name)(x)
    assert agrees(y, sym(X).evalf(30, subs={X: sympy.Float(x0, 30)}), 1e-14)
    assert agrees(tape.gradient(y, x), exact(sym(X), [X], x=x0), 1e-13)


@pytest.mark.parametrize("name", sorted(BINARY))
def test_each_binary_function_differentiates_like_sympy(name: str) -> None:
    x, y = gradcli.Variable(0.4), gradcli.Variable(-0.9)
    with gradcli.Tape() as tape:
        f = getattr(gradcli, TF_NAMES.get(name, name))(x, y)
    gx, gy = tape.gradient(f, [x, y])
    sym = BINARY[name](X, Y)
    assert agrees(gx, exact(sym, [X], x=0.4, y=-0.9))
    assert agrees(gy, exact(sym, [Y], x=0.4, y=-0.9))


def test_operators_and_reflected_operators_differentiate_like_sympy() -> None:
    x = gradcli.Variable(0.6)
    with gradcli.Tape() as tape:
        f = (1 - x) / (2 + x) + 3 / x - (-x) * 2 ** x + abs(x - 1) + x**-1.5 + gradcli.square(x)
    sym = (1 - X) / (2 + X) + 3 / X - (-X) * 2**X + sympy.Abs(X - 1) + X**-1.5 + X**2
    assert agrees(f, sym.evalf(30, subs={X: sympy.Float(0.6, 30)}))
    assert agrees(tape.gradient(f, x), exact(sym, [X], x=0.6))


def test_a_tensor_exponent_differentiates_in_base_and_exponent() -> None:
    x, y = gradcli.Variable(1.3), gradcli.Variable(0.7)
    with gradcli.Tape() as tape:
        f = x**y
    gx, gy = tape.gradient(f, [x, y])
    assert agrees(gx, exact(X**Y, [X], x=1.3, y=0.7))
    assert agrees(gy, exact(X**Y, [Y], x=1.3, y=0.7))


def test_an_array_of_exponents_works_elementwise() -> None:
    x = gradcli.Variable(1.5)
    with gradcli.Tape() as tape:
        f = x ** np.array([2.0, 3.0])
    assert agrees(tape.gradient(f, x), exact(X**2 + X**3, [X], x=1.5))


def test_gradient_descent_with_assign_sub_converges_to_the_minimum() -> None:
    x = gradcli.Variable(0.0)
    for _ in range(200):
        with gradcli.Tape() as tape:
            loss = (x - 2.0) ** 2
        x.assign_sub(0.1 * tape.gradient(loss, x).numpy())
    assert abs(float(x) - 2.0) < 1e-12  # argmin (x-2)^2 = 2


def test_assign_refuses_a_new_shape() -> None:
    x = gradcli.Variable(np.ones(3))
    with pytest.raises(gradcli.InputError, match="shape"):
        x.assign(np.ones(2))


# ---- arbitrary precision: object arrays of mpmath numbers -----------------------------------------------------
def test_gradients_of_mpf_object_arrays_keep_forty_digits() -> None:
    with mpmath.workdps(45):
        x = gradcli.constant(np.array([mpmath.mpf("0.7"), mpmath.mpf("-1.25")], dtype=object))
        with gradcli.Tape() as outer:
            outer.watch(x)
            with gradcli.Tape() as inner:
                inner.watch(x)
                y = gradcli.sin(x) * gradcli.exp(x)
            dy = inner.gradient(y, x)
        d2y = outer.gradient(dy, x)
        assert dy.dtype == object and d2y.dtype == object
        f = sympy.sin(X) * sympy.exp(X)
        for i, v in enumerate(["0.7", "-1.25"]):
            for got, order in ((dy, 1), (d2y, 2)):
                want = sympy.diff(f, X, order).evalf(50, subs={X: sympy.Rational(v)})
                assert abs(got.numpy()[i] - mpmath.mpf(str(want))) < mpmath.mpf("1e-40")


def test_a_tape_lists_what_it_recorded_in_order() -> None:
    x = gradcli.Variable(2.0)
    with gradcli.Tape() as tape:
        y = gradcli.sin(x) * x
    ops_seen = tape.operations
    assert [op.prim.name for op in ops_seen] == ["sin", "mul"]
    assert ops_seen[-1].output is y and ops_seen[0].inputs[0] is x
    assert float(tape.gradient(y, x)) == pytest.approx(math.cos(2.0) * 2.0 + math.sin(2.0), rel=1e-15)


def test_a_constant_parameter_may_come_first_as_in_expr() -> None:
    x = gradcli.Variable(1.3)
    with gradcli.Tape() as tape:
        y = gradcli.besselj(mpmath.mpf(1) / 3, x)  # besselj(nu, x), the expression syntax's order
    want = mpmath.diff(lambda v: mpmath.besselj(mpmath.mpf(1) / 3, v), mpmath.mpf("1.3"))
    assert float(y) == pytest.approx(float(mpmath.besselj(mpmath.mpf(1) / 3, mpmath.mpf("1.3"))), rel=1e-14)
    assert float(tape.gradient(y, x)) == pytest.approx(float(want), rel=1e-13)
    with pytest.raises(TypeError, match="'nu' twice"):
        gradcli.besselj(0.5, x, nu=0.5)
