"""The vectorised CSV and JSON writers for --points chunks write exactly what the row-by-row writers
write: the same text, row for row (rows outside the domain, ball-certified, sampled and checked rows
included)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from test_json_schema import validate

from gradcli import ops
from gradcli.commands import Chunk, Job, evaluate_block
from gradcli.derive import prepare
from gradcli.render import Renderer


def _block(command: str, exprs: list[str], wrt: list[str], *, check: bool = True, order: int = 0,
           symbolic: bool = False) -> object:
    rows = [(i / 7 - 3, (i % 5) / 3 - 0.5) for i in range(150)]  # > 64 rows: the estimate, a sample, balls
    xs, ys = (np.array(c, dtype=np.float64) for c in zip(*rows))
    job = Job(command, tuple(prepare(e) for e in exprs), tuple(wrt), ops.F64, check=check, order=order,
              symbolic=symbolic)
    names = sorted({v for p in job.preps for v in p.variables} | set(wrt))
    values = {k: v for k, v in {"x": xs, "y": ys}.items() if k in names}
    return evaluate_block(job, Chunk(values, len(rows), tuple(range(2, len(rows) + 2))))


def _write(block, fmt: str, *, whole: bool, show_symbolic: bool = False) -> str:
    out = io.StringIO()
    renderer = Renderer(block.job, fmt, out, variables=sorted(block.chunk.values), show_symbolic=show_symbolic)
    if whole:
        renderer.block(block)
    else:
        for i in range(block.chunk.size):
            renderer.row(block.row(i))
    renderer.close()
    return out.getvalue()


CASES = [
    ("d", ["x*exp(-(x^2+y^2))*sin(3*y)"], ["x", "y"], {}),
    ("d", ["log(x)*y"], ["x"], {}),  # rows outside the domain: nan / null with "error"
    ("d", ["x*y"], ["x"], {"check": False}),
    ("grad", ["x*y+sin(x)"], ["x", "y"], {}),
    ("hessian", ["x*y**2"], ["x", "y"], {}),
    ("jacobian", ["x*y", "exp(x)-y"], ["x", "y"], {}),
    ("taylor", ["exp(x*y)"], ["x"], {"order": 3}),
    ("d", ["sin(x)"], ["x", "x"], {"symbolic": True, "check": False}),
    ("d", ["exp(x)*sin(y)"], ["x", "x", "y"], {}),  # Taylor mode: rows vouched for by the estimate
]


@pytest.mark.parametrize(("command", "exprs", "wrt", "kw"), CASES, ids=[f"{c[0]}-{c[1][0]}" for c in CASES])
@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_a_chunk_is_written_as_row_by_row(command, exprs, wrt, kw, fmt) -> None:
    block = _block(command, exprs, wrt, **kw)
    symbolic = kw.get("symbolic", False)
    fast = _write(block, fmt, whole=True, show_symbolic=symbolic)
    slow = _write(block, fmt, whole=False, show_symbolic=symbolic)
    assert fast == slow
    assert fast.count("\n") == 150 + (fmt == "csv")


def test_the_json_chunk_is_valid_and_mixes_vouched_and_ball_rows() -> None:
    block = _block("grad", ["x*exp(-(x^2+y^2))*sin(3*y)"], ["x", "y"])
    objs = [validate(line) for line in _write(block, "json", whole=True).splitlines()]
    methods = {o["check"]["method"] for o in objs}
    assert methods == {"ball", "bound"}  # the fused evaluator's rounding-error bound vouched for the rest
    assert objs[0]["check"]["symbolic"] is not None and all(o["check"]["symbolic"] is None for o in objs[1:])
    x, y = np.array([o["at"]["x"] for o in objs]), np.array([o["at"]["y"] for o in objs])
    e = np.exp(-(x * x + y * y))
    want = np.stack([e * np.sin(3 * y) * (1 - 2 * x * x), x * e * (3 * np.cos(3 * y) - 2 * y * np.sin(3 * y))], 1)
    assert np.allclose([o["value"] for o in objs], want, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize(("wrt", "method"), [(["x"], "bound"), (["x", "x", "x"], "estimate")])
def test_rows_not_sampled_say_what_vouched_for_them(wrt: list[str], method: str) -> None:
    # the fused evaluator (first and second derivatives) traces a bound; Taylor mode has the estimate
    block = _block("d", ["exp(x)*sin(3*x)"], wrt, check=False)
    objs = [validate(line) for line in _write(block, "json", whole=True).splitlines()]
    assert {o["check"]["method"] for o in objs} == {"ball", method}
    assert all(o["check"]["certified"] is True for o in objs)
