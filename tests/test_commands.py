"""The Command objects: each command's entries, ball groups, value shape, labels and column names agree
with each other and with what the evaluation returns, for every command the CLI has."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy

from gradcli import ops
from gradcli.cli import cli
from gradcli.commands import COMMANDS, Chunk, Job, evaluate_block
from gradcli.derive import point_arrays, prepare
from gradcli.parse import symbol
from gradcli.render import JSON_SCHEMA

JOBS = {
    "d": (["x**3*y"], ["x", "x", "y"], 0),
    "grad": (["x**3*y"], ["y", "x"], 0),
    "hessian": (["x**3*y+exp(x*y)"], ["x", "y"], 0),
    "jacobian": (["x*y", "x+y", "sin(x)"], ["x", "y"], 0),
    "taylor": (["exp(2*x)*y"], ["x"], 4),
}


def test_every_cli_command_that_differentiates_is_a_command() -> None:
    assert set(COMMANDS) == set(JOBS)
    assert set(COMMANDS) <= set(cli.commands)
    assert set(COMMANDS) <= set(JSON_SCHEMA["properties"]["command"]["enum"])


@pytest.mark.parametrize("name", sorted(JOBS))
def test_shape_entries_labels_and_columns_agree_with_the_values(name: str) -> None:
    exprs, wrt, order = JOBS[name]
    job = Job(name, tuple(prepare(e) for e in exprs), tuple(wrt), ops.F64, check=True, order=order)
    cmd = job.command
    assert job.command is COMMANDS[name] and cmd.name == name
    values, size = point_arrays({"x": 0.5, "y": 2.0}, ops.F64)
    block = evaluate_block(job, Chunk(values, size, (None,)))
    shape = cmd.shape(job)
    assert block.values.shape == (1, *shape)
    n = math.prod(shape)
    assert len(job.entries) == len(cmd.entry_labels(job)) == n
    assert len(cmd.column_names(job)) == n * (2 if cmd.series else 1)
    assert cmd.kind == {0: "scalar", 1: "vector", 2: "matrix"}[len(shape)]
    # each entry is the derivative its wrt names (sympy, exactly, at the point)
    x, y = symbol("x"), symbol("y")
    for e, v, check in zip(job.entries, block.values.reshape(-1), block.checks):
        want = sympy.sympify(e.prep.text, locals={"x": x, "y": y})
        for w in e.wrt:
            want = sympy.diff(want, symbol(w))
        assert np.isclose(v, float(want.subs({x: 0.5, y: 2.0})), rtol=1e-14)
        assert check[0].ok is True
    assert block.symbolic is not None and len(block.symbolic) == n


def test_symbolic_derivatives_come_with_the_block_only_when_asked() -> None:
    prep = prepare("sin(x)")
    values, size = point_arrays({"x": 0.5}, ops.F64)
    plain = evaluate_block(Job("d", (prep,), ("x",), ops.F64, check=False), Chunk(values, size, (None,)))
    asked = evaluate_block(Job("d", (prep,), ("x",), ops.F64, check=False, symbolic=True),
                           Chunk(values, size, (None,)))
    assert plain.symbolic is None and plain.row(0).symbolic is None
    assert asked.row(0).symbolic == [sympy.cos(symbol("x"))]
    assert asked.checks is None


@pytest.mark.parametrize("width", range(0, 10))
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_row_reductions_agree_with_numpy(width: int, layout: str) -> None:
    from gradcli.graph import rows_all, rows_any

    rng = np.random.default_rng(width)
    mask = rng.random((2000, width)) < 0.8  # rows of all True, all False and mixed at each width
    mask[:3] = [True] * width, [False] * width, [i % 2 == 0 for i in range(width)]
    arr = np.asfortranarray(mask) if layout == "F" else mask[::2] if layout == "strided" else mask
    np.testing.assert_array_equal(rows_all(arr), arr.all(axis=1))
    np.testing.assert_array_equal(rows_any(arr), arr.any(axis=1))


def test_rows_from_no_file_have_no_line_numbers_without_a_tuple_of_them() -> None:
    from gradcli.commands import Unnumbered

    lines = Unnumbered(3)
    assert len(lines) == 3 and list(lines) == [None, None, None] and lines[-3] is None
    assert len(lines[1:]) == 2 and list(lines[::2]) == [None, None]
    with pytest.raises(IndexError):
        lines[3]
