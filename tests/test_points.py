"""--points: CSV and JSON lines from files and stdin, streamed, vectorised, with one-line errors.

Every value is compared with sympy (the exact derivative evaluated at high precision) or a closed form.
"""

from __future__ import annotations

import io
import json
import math
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mpmath
import numpy as np
import pytest
import sympy
from conftest import run

from gradcli import ops, syntax
from gradcli.check import Oracle, close
from gradcli.graph import lower
from gradcli.parse import symbol
from gradcli.points import FIRST_CHUNK_BYTES, PointsReader

x, y = symbol("x"), symbol("y")
GRADCLI = shutil.which("gradcli")


def exact(expr: sympy.Expr, wrt: list[sympy.Symbol], point: dict[sympy.Symbol, float]) -> float:
    """The oracle: sympy's derivative at the point, evaluated with 40 digits."""
    d = sympy.diff(expr, *wrt)
    return float(d.evalf(40, subs={k: sympy.Float(v, 40) for k, v in point.items()}))


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def floats(text: str) -> list[float]:
    return [float(v) for v in text.split()]


# ---- reading ------------------------------------------------------------------------------------------
def test_csv_file_gives_one_value_per_row_in_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pts = [(1.0, 2.0), (-0.5, 3.25), (2.0, -1.0)]
    path = write(tmp_path, "p.csv", "x,y\n" + "".join(f"{a},{b}\n" for a, b in pts))
    code, out, err = run(capsys, "d", "x**2*sin(y)", "--wrt", "x,y", "--points", path, "--format", "plain")
    assert code == 0 and err == ""
    expected = [exact(x**2 * sympy.sin(y), [x, y], {x: a, y: b}) for a, b in pts]
    got = floats(out)
    assert len(got) == 3 and all(close(g, e, 1e-14) for g, e in zip(got, expected))


def test_jsonl_file_detected_by_content(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "points.txt", '{"x": 1, "y": 2}\n\n{"y": 0.5, "x": 3, "label": "a"}\n')
    code, out, _ = run(capsys, "d", "x*y**2", "--wrt", "y", "--points", path, "--format", "plain")
    assert code == 0
    assert floats(out) == [exact(x * y**2, [y], {x: 1, y: 2}), exact(x * y**2, [y], {x: 3, y: 0.5})]


def test_jsonl_extension_decides_the_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "p.jsonl", "x,y\n1,2\n")
    code, _, err = run(capsys, "d", "x*y", "--wrt", "x", "--points", path)
    assert code == 2 and "line 1: invalid JSON" in err


def test_csv_from_stdin_through_the_installed_command() -> None:
    assert GRADCLI, "gradcli is not installed"
    proc = subprocess.run([GRADCLI, "d", "exp(2*x)", "--wrt", "x:3", "--points", "-"],
                          input="x\n0\n0.5\n", capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == ""
    want = [exact(sympy.exp(2 * x), [x, x, x], {x: v}) for v in (0.0, 0.5)]
    assert all(close(g, w, 1e-13) for g, w in zip(floats(proc.stdout), want))
    assert len(floats(proc.stdout)) == 2


def test_jsonl_from_stdin_through_the_installed_command() -> None:
    assert GRADCLI
    proc = subprocess.run([GRADCLI, "grad", "x*y", "--points", "-", "--format", "plain"],
                          input='{"x": 2, "y": 3}\n{"x": -1, "y": 5}\n', capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0
    assert proc.stdout == "3.0 2.0\n5.0 -1.0\n"  # d/dx xy = y, d/dy xy = x: the points themselves


def test_at_supplies_a_column_the_file_lacks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "p.csv", "x\n1\n2\n")
    code, out, _ = run(capsys, "d", "x**2*y", "--wrt", "x", "--points", path, "--at", "y=pi/4")
    assert code == 0
    assert floats(out) == [pytest.approx(exact(x**2 * y, [x], {x: v, y: math.pi / 4}), rel=1e-15) for v in (1, 2)]


def test_file_value_wins_over_at_row_by_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "p.jsonl", '{"x": 1, "y": 10}\n{"x": 1}\n')
    code, out, _ = run(capsys, "d", "x*y", "--wrt", "x", "--points", path, "--at", "y=2")
    assert code == 0 and floats(out) == [10.0, 2.0]  # d/dx xy = y: the file's 10, then --at's 2


def test_extra_columns_are_ignored_even_when_not_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "p.csv", "id,x,note\n7,1.5,first\n8,-2,second\n")
    code, out, _ = run(capsys, "d", "x**3", "--points", path)
    assert code == 0 and floats(out) == [3 * 1.5**2, 3 * 4.0]


def test_cells_may_be_constant_expressions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "p.csv", 'x\npi/4\n"atan2(1, 1)"\n')
    code, out, _ = run(capsys, "d", "sin(x)", "--points", path)
    assert code == 0 and floats(out) == [math.cos(math.pi / 4)] * 2


def test_header_only_file_is_zero_points(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "d", "x**2", "--points", write(tmp_path, "p.csv", "x\n"))
    assert (code, out, err) == (0, "", "")


def test_crlf_bom_and_blank_lines_keep_line_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "p.csv"
    path.write_bytes(b"\xef\xbb\xbfx\r\n1\r\n\r\n2\r\n")
    code, out, _ = run(capsys, "d", "x**2", "--points", str(path), "--format", "json")
    assert code == 0
    assert [json.loads(line)["line"] for line in out.splitlines()] == [2, 4]


def test_reader_yields_small_chunks_first_then_larger() -> None:
    body = "x,y\n" + "".join(f"{i},{i + 0.5}\n" for i in range(60_000))
    chunks = list(PointsReader(io.BytesIO(body.encode()), ["x", "y"], {}, ops.F64))
    sizes = [c.size for c in chunks]
    assert sum(sizes) == 60_000 and sizes[0] <= FIRST_CHUNK_BYTES // 8 and sizes[0] * 20 < max(sizes)
    lines = np.concatenate([np.array(c.lines) for c in chunks])
    xs = np.concatenate([c.values["x"] for c in chunks])
    assert (lines == np.arange(2, 60_002)).all() and (xs == np.arange(60_000)).all()


def test_many_rows_keep_input_order_and_match_closed_form(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pts = np.random.default_rng(3).uniform(-3, 3, 20_000)
    path = write(tmp_path, "p.csv", "x\n" + "\n".join(map(repr, pts.tolist())) + "\n")
    code, out, _ = run(capsys, "d", "x**3", "--points", path, "--no-check")
    got = np.array(floats(out))
    assert code == 0 and got.shape == (20_000,)
    assert np.allclose(got, 3 * pts**2, rtol=1e-15, atol=0)


# ---- every command and format --------------------------------------------------------------------------
POINTS_XY = "x,y\n1,2\n0.5,-1\n"
XY = [(1.0, 2.0), (0.5, -1.0)]


def test_grad_hessian_jacobian_taylor_take_points(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "p.csv", POINTS_XY)
    f = x**2 * y + sympy.sin(x * y)
    code, out, _ = run(capsys, "grad", "x**2*y+sin(x*y)", "--points", path)
    assert code == 0
    for line, (a, b) in zip(out.splitlines(), XY):
        want = [exact(f, [v], {x: a, y: b}) for v in (x, y)]
        assert all(close(g, w, 1e-13) for g, w in zip(floats(line), want))
    code, out, _ = run(capsys, "hessian", "x**2*y+sin(x*y)", "--points", path)
    assert code == 0
    for line, (a, b) in zip(out.splitlines(), XY):
        want = [exact(f, [u, v], {x: a, y: b}) for u in (x, y) for v in (x, y)]
        assert all(close(g, w, 1e-13) for g, w in zip(floats(line), want))
    code, out, _ = run(capsys, "jacobian", "x*y", "x+y**2", "--points", path)
    assert code == 0
    assert [floats(line) for line in out.splitlines()] == [[b, a, 1.0, 2 * b] for a, b in XY]
    code, out, _ = run(capsys, "taylor", "exp(x)*y", "--wrt", "x", "--order", "3", "--points", path)
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2  # one line per row: the 4 derivatives, then the 4 coefficients
    for (a, b), line in zip(XY, lines):
        derivs, coeffs = floats(line)[:4], floats(line)[4:]
        assert len(coeffs) == 4
        assert all(close(g, math.exp(a) * b, 1e-14) for g in derivs)
        assert all(close(g, math.exp(a) * b / math.factorial(k), 1e-14) for k, g in enumerate(coeffs))


def test_json_format_is_one_object_per_row_with_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "p.csv", POINTS_XY)
    code, out, _ = run(capsys, "d", "x*y**2", "--wrt", "y", "--points", path, "--json")
    objs = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [o["line"] for o in objs] == [2, 3]
    for o, (a, b) in zip(objs, XY):
        assert o["at"] == {"x": a, "y": b} and o["value"] == exact(x * y**2, [y], {x: a, y: b})
        assert o["check"]["ok"] is True
    # the symbolic derivative once, on the first row; null after (README "JSON schema")
    assert [o["check"]["symbolic"] for o in objs] == ["2*x*y", None]


def test_csv_format_writes_header_once_and_the_point(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "p.csv", POINTS_XY)
    code, out, _ = run(capsys, "grad", "x*y", "--points", path, "--format", "csv")
    lines = out.splitlines()
    assert code == 0 and lines[0].split(",")[:4] == ["x", "y", "d_x", "d_y"] and len(lines) == 3
    for line, (a, b) in zip(lines[1:], XY):
        cells = line.split(",")
        assert [float(c) for c in cells[:4]] == [a, b, b, a] and cells[4] == "true"


def test_table_format_lists_every_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "p.csv", POINTS_XY)
    code, out, _ = run(capsys, "d", "x*y", "--wrt", "x", "--points", path, "--format", "table")
    assert code == 0 and "2.0" in out and "-1.0" in out and out.count("✓") == 2


def test_digits_reads_cells_in_full_precision(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "p.csv", "x\n0.1\n")
    code, out, _ = run(capsys, "d", "x**3", "--points", path, "--digits", "30")
    with mpmath.workdps(40):
        want = mpmath.nstr(3 * mpmath.mpf("0.1") ** 2, 30, strip_zeros=False)
    assert code == 0 and out.strip() == want


def test_expect_names_each_failing_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "p.csv", "x\n1\n2\n")
    code, out, err = run(capsys, "d", "x**2", "--points", path, "--expect", "2")
    assert code == 1 and floats(out) == [2.0, 4.0]
    assert "line 3: --expect failed" in err and "line 2" not in err


# ---- bad input ------------------------------------------------------------------------------------------
BAD = [
    ("missing column", "p.csv", "x,z\n1,2\n", 1, "no column for 'y'", 0),
    ("non-numeric cell", "p.csv", "x,y\n1,2\n3,abc\n", 3, "not a number: 'abc'", 1),
    ("empty cell", "p.csv", "x,y\n1,2\n3,\n", 3, "empty", 1),
    ("ragged row", "p.csv", "x,y\n1,2\n1,2\n3,4,5\n", 4, "3 cells", 2),
    ("empty file", "p.csv", "", 1, "empty", 0),
    ("blank file", "p.csv", "\n \n", 1, "empty", 0),
    ("header is data", "p.csv", "1,2\n3,4\n", 1, "header row missing", 0),
    ("duplicate header", "p.csv", "x,y,x\n1,2,3\n", 1, "'x' twice", 0),
    ("empty header name", "p.csv", "x,,y\n1,2,3\n", 1, "empty column name", 0),
    ("nan cell", "p.csv", "x,y\n1,2\nnan,1\n", 3, "not finite", 1),
    ("infinite cell", "p.csv", "x,y\n1,2\n1,-inf\n", 3, "not finite", 1),
    ("overflowing cell", "p.csv", "x,y\n1,2\n1,1e999\n", 3, "not finite", 1),
    ("invalid json", "p.jsonl", '{"x": 1, "y": 2}\n{"x": 1, "y": 2\n', 2, "invalid JSON", 1),
    ("json not an object", "p.jsonl", '{"x": 1, "y": 2}\n[1, 2]\n', 2, "JSON object", 1),
    ("json string value", "p.jsonl", '{"x": 1, "y": 2}\n{"x": "1", "y": 2}\n', 2, "must be a number", 1),
    ("json null value", "p.jsonl", '{"x": 1, "y": 2}\n{"x": null, "y": 2}\n', 2, "must be a number", 1),
    ("json boolean value", "p.jsonl", '{"x": 1, "y": 2}\n{"x": true, "y": 2}\n', 2, "must be a number", 1),
    ("json missing key", "p.jsonl", '{"x": 1, "y": 2}\n{"x": 1}\n', 2, "no value for 'y'", 1),
    ("json NaN", "p.jsonl", '{"x": 1, "y": 2}\n{"x": NaN, "y": 2}\n', 2, "not finite", 1),
]


@pytest.mark.parametrize(("kind", "name", "text", "line", "fragment", "rows_before"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_exits_2_naming_the_line_after_earlier_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, name: str, text: str, line: int, fragment: str,
    rows_before: int,
) -> None:
    path = write(tmp_path, name, text)
    code, out, err = run(capsys, "d", "x*y", "--wrt", "x", "--points", path, "--format", "plain")
    assert code == 2
    assert err.count("\n") == 1 and f"line {line}:" in err and fragment in err and "Traceback" not in err
    assert len(out.splitlines()) == rows_before


def test_bad_row_deep_in_a_big_chunk_comes_after_every_earlier_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [f"{i}.5" for i in range(30_000)]
    rows[25_000] = "oops"
    path = write(tmp_path, "p.csv", "x\n" + "\n".join(rows) + "\n")
    code, out, err = run(capsys, "d", "x**2", "--points", path, "--no-check")
    assert code == 2 and "line 25002:" in err
    got = floats(out)
    assert len(got) == 25_000 and got[-1] == 2 * 24_999.5


def test_unreadable_points_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "d", "x", "--points", str(tmp_path / "nope.csv"))
    assert code == 2 and out == "" and "cannot read" in err


# ---- outside the domain, check failures -----------------------------------------------------------------
def test_point_outside_domain_is_written_and_exits_3_at_the_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "p.csv", "x\n1\n-1\n2\n-3\n")
    code, out, err = run(capsys, "d", "log(x)", "--points", path)
    assert code == 3
    assert out.splitlines() == ["1.0", "nan", "0.5", "nan"]
    assert err.count("\n") == 1 and "line 3:" in err and "log" in err and "2 such rows" in err


def test_point_outside_domain_in_json_is_null_with_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "p.csv", "x\n4\n-1\n")
    code, out, _ = run(capsys, "d", "sqrt(x)", "--points", path, "--json")
    first, second = (json.loads(line) for line in out.splitlines())
    assert code == 3 and first["value"] == 0.25 and first["error"] is None
    assert second["value"] is None and "not finite" in second["error"]
    assert second["check"]["ok"] is None and second["check"]["symbolic_value"] is None


def test_bad_input_after_a_domain_error_still_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "p.csv", "x\n-1\nzz\n")
    code, out, err = run(capsys, "d", "log(x)", "--points", path)
    assert code == 2 and out == "nan\n" and "line 3:" in err


def test_check_mismatch_names_the_row_and_keeps_every_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import gradcli.commands as commands
    from gradcli.certify import Outcome

    real = commands.certify

    def corrupt_row_3(group, point, *args, **kwargs):  # noqa: ANN001, ANN202 - certify's own signature
        out = real(group, point, *args, **kwargs)
        if point["x"] == 2:  # line 3
            out = [Outcome(o.value * 1.001, o.cert, o.error, o.culprit) for o in out]
        return out

    monkeypatch.setattr(commands, "certify", corrupt_row_3)
    path = write(tmp_path, "p.csv", "x\n1\n2\n3\n")
    code, out, err = run(capsys, "d", "x**2", "--points", path)
    assert code == 1 and floats(out) == [2.0, 4 * 1.001, 6.0]
    assert err.count("\n") == 1 and "line 3: check failed" in err


def test_domain_error_outranks_check_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import gradcli.commands as commands
    from gradcli.certify import Outcome

    real = commands.certify

    def corrupt_first(group, point, *args, **kwargs):  # noqa: ANN001, ANN202
        out = real(group, point, *args, **kwargs)
        if point["x"] == 1:  # line 2
            out = [Outcome(o.value + 1, o.cert, o.error, o.culprit) for o in out]
        return out

    monkeypatch.setattr(commands, "certify", corrupt_first)
    code, out, err = run(capsys, "d", "log(x)", "--points", write(tmp_path, "p.csv", "x\n1\n-1\n"))
    assert code == 3 and "line 2: check failed" in err and "line 3:" in err


# ---- streaming -----------------------------------------------------------------------------------------
def _readline(stream: io.BufferedReader, timeout: float) -> bytes:
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, f"no output within {timeout} s"
    return stream.readline()


def test_output_starts_before_input_ends() -> None:
    assert GRADCLI
    proc = subprocess.Popen([GRADCLI, "d", "x**2", "--points", "-", "--format", "plain"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin and proc.stdout
    try:
        proc.stdin.write(b"x\n3\n")
        proc.stdin.flush()
        assert _readline(proc.stdout, 30) == b"6.0\n"  # stdin is still open
        proc.stdin.write(b"5\n")
        proc.stdin.flush()
        assert _readline(proc.stdout, 30) == b"10.0\n"
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()


def test_head_closes_the_pipe_quietly(tmp_path: Path) -> None:
    assert GRADCLI
    path = write(tmp_path, "p.csv", "x\n" + "\n".join(str(i) for i in range(200_000)) + "\n")
    t0 = time.monotonic()
    proc = subprocess.Popen([GRADCLI, "d", "x**2", "--points", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout and proc.stderr
    head = [proc.stdout.readline() for _ in range(5)]
    proc.stdout.close()  # like `| head -n 5`
    code = proc.wait(timeout=60)
    assert head == [f"{2.0 * i}\n".encode() for i in range(5)]
    assert code == 0 and proc.stderr.read() == b"" and time.monotonic() - t0 < 60


_PEAK_RSS = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
sys.stderr.write(f"peak_rss_kb {usage.ru_maxrss}\\n")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_memory_stays_flat_while_streaming() -> None:
    """A million rows through a pipe: peak RSS far below what holding them (or their output) would take."""
    assert GRADCLI
    gen = ("import sys\nsys.stdout.write('x\\n')\n"
           "for i in range(10):\n    sys.stdout.write(''.join(f'{j * 1e-6!r}\\n' for j in range(100_000)))\n")
    producer = subprocess.Popen([sys.executable, "-c", gen], stdout=subprocess.PIPE)
    # Linux counts a forked child's peak RSS from its parent's at the fork (exec keeps the high-water
    # mark), and this test process grows to hundreds of MB over the suite: gradcli is forked from a small
    # wrapper, which reports the child's own peak on stderr
    consumer = subprocess.Popen([sys.executable, "-c", _PEAK_RSS, GRADCLI, "d", "x**2", "--points", "-",
                                 "--no-check"], stdin=producer.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert producer.stdout and consumer.stdout
    producer.stdout.close()
    lines = sum(block.count(b"\n") for block in iter(lambda: consumer.stdout.read(1 << 20), b""))
    _, err = consumer.communicate()
    producer.wait()
    assert consumer.returncode == 0 and lines == 1_000_000, err
    peak_kb = int(err.decode().split()[-1])
    assert peak_kb < 400 * 1024  # KB: the bound; the interpreter with numpy and sympy is ~120 MB


# ---- the vectorised check -------------------------------------------------------------------------------
def _domain(name: str) -> tuple[float, float]:
    prim = ops.REGISTRY.get(name)  # the registry's sample domain; sqrt, min and max are not entries
    return prim.sample if prim is not None and prim.sample else {"sqrt": (0.2, 3.0)}.get(name, (-2.0, 2.0))


def _call(name: str) -> sympy.Expr:
    fn = syntax.FUNCTIONS[name]
    prim = ops.REGISTRY.get(name)
    if prim is not None and prim.params:  # besselj(nu, x): the sample's constant parameters first
        return fn.build(*(sympy.sympify(v) for _, v in prim.sample_params), x)
    args = [x, (x + 3) / 2][: max(fn.min_args, 1)]  # second arguments kept positive (atan2, log base)
    if fn.min_args == 2 and name in ("min", "max"):
        args = [x, 2 * x - sympy.Rational(1, 3)]
    return fn.build(*args)


@pytest.mark.parametrize("name", sorted(syntax.FUNCTIONS))
def test_vectorised_check_agrees_with_pointwise_evalf(name: str) -> None:
    lo, hi = _domain(name)
    pts = np.random.default_rng(abs(hash(name)) % 2**32).uniform(lo, hi, 6)
    expr = _call(name)
    for order in (1, 2, 3):
        oracle = Oracle(expr, lower(expr), ["x"] * order, 10.0)
        precise = [oracle.check({"x": p}, 0.0, tol=1e-8) for p in pts]
        truth = np.array([float(c.value) for c in precise])
        finite = np.isfinite(truth)
        batch = oracle.check_many({"x": pts}, truth, tol=1e-10, mask=finite)
        assert not batch.failed.any(), (name, order, truth, batch.value)
        assert all(batch[i].ok is True for i in np.flatnonzero(finite))
        wrong = oracle.check_many({"x": pts}, truth + 1e-6 * (1 + np.abs(truth)), tol=1e-10, mask=finite)
        assert wrong.failed[finite].all(), (name, order)


def test_float64_oracle_mismatch_is_rechecked_precisely_before_reporting() -> None:
    # d/dx (exp(x) - x) = exp(x) - 1: sympy's formula in float64 cancels near 0 (1e-9: 8 digits lost),
    # far beyond tol; the oracle re-evaluates such rows precisely before it reports a mismatch
    expr = sympy.exp(x) - x
    oracle = Oracle(expr, lower(expr), ["x"], 10.0)
    pts = np.array([0.5, 1e-9, -3e-10, 2.0])
    truth = np.array([float(mpmath.expm1(mpmath.mpf(p))) for p in pts])
    assert abs((np.exp(pts[1]) - 1) / truth[1] - 1) > 1e-9  # float64's own evaluation is that far off
    batch = oracle.check_many({"x": pts}, truth, tol=1e-12)
    assert not batch.failed.any() and all(batch[i].ok is True for i in range(4))
    assert all(abs(batch[i].value - truth[i]) <= 1e-15 * abs(truth[i]) for i in range(4))
    wrong = oracle.check_many({"x": pts}, truth * (1 + 1e-10), tol=1e-12)  # and a wrong value still fails
    assert wrong.failed.all()


def test_high_orders_are_checked_at_raised_precision(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "p.csv", "x\n0.3\n1.1\n")
    code, out, err = run(capsys, "d", "sin(x)*exp(x)", "--wrt", "x:12", "--points", path, "--json")
    objs = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and err == "" and all(o["check"]["ok"] for o in objs)
    for o in objs:
        assert close(o["value"], exact(sympy.sin(x) * sympy.exp(x), [x] * 12, {x: o["at"]["x"]}), 1e-12)


def test_check_many_of_one_row_uses_the_precise_check() -> None:
    expr = x**3
    batch = Oracle(expr, lower(expr), ["x"], 5.0).check_many({"x": np.array([2.0])}, np.array([12.0]), tol=1e-8)
    assert batch[0].ok is True and isinstance(batch[0].value, mpmath.mpf)


def test_progress_bar_only_for_a_regular_file_when_stderr_is_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import rich.progress

    import gradcli.cli as cli

    made: list[int] = []

    class Recording(rich.progress.Progress):
        def add_task(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201 - rich's signature
            made.append(kwargs["total"])
            return super().add_task(*args, **kwargs)

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    class Reader:
        total: int | None = 1000
        bytes_read = 500

    monkeypatch.setattr(rich.progress, "Progress", Recording)
    with cli._progress(Reader()) as advance:  # stderr is not a terminal under pytest
        advance()
    assert made == []
    monkeypatch.setattr(sys, "stderr", Tty())
    stdin = Reader()
    stdin.total = None  # a pipe: size unknown
    with cli._progress(stdin) as advance:
        advance()
    assert made == []
    with cli._progress(Reader()) as advance:
        advance()
    assert made == [1000]


def test_check_budget_skips_rows_with_one_note_not_one_per_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "p.csv", "x\n" + "\n".join(str(0.1 + i * 1e-3) for i in range(3000)) + "\n")
    code, out, err = run(capsys, "d", "exp(sin(x))*log(1+x^2)", "--wrt", "x:12", "--points", path,
                         "--check-timeout", "0.05")
    assert code == 0 and len(out.splitlines()) == 3000
    notes = err.splitlines()
    # one note for the run, not one per row: why depends on how far sympy got in the budget (taking the
    # derivative, or evaluating it chunk by chunk), which depends on the machine; the values are certified
    assert 1 <= len(notes) <= 3 and any("check skipped for" in n for n in notes)


def test_expect_with_points_compares_every_entry_of_every_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "p.csv", "x,y\n1,2\n2,3\n")
    # grad x*y = (y, x): row 1 is (2, 1); row 2 is (3, 2)
    code, out, err = run(capsys, "grad", "x*y", "--points", path, "--expect", "2,1", "--format", "plain")
    assert code == 1 and out == "2.0 1.0\n3.0 2.0\n"
    assert err.count("\n") == 1 and "line 3: --expect failed: entry 1" in err
    code, _, _ = run(capsys, "hessian", "x*y", "--points", path, "--expect", "0,1,1,0", "--format", "plain")
    assert code == 0


# ---- --threads (issue 14): the fused evaluator's pool, from the option or $GRADCLI_THREADS -----------------
def test_threads_give_the_same_values_as_one_thread(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(5)
    xy = rng.uniform(-2, 2, (30_000, 2))  # several blocks of the fused evaluator
    path = tmp_path / "p.csv"
    path.write_text("x,y\n" + "\n".join(f"{a!r},{b!r}" for a, b in xy.tolist()) + "\n")
    outs = []
    for args in (["--threads", "1"], ["--threads", "2"], []):
        if not args:
            monkeypatch.setenv("GRADCLI_THREADS", "2")
        code, out, err = run(capsys, "grad", "x*exp(-(x^2+y^2))*sin(3*y)", "--points", str(path), "--no-check",
                             *args)
        assert (code, err) == (0, "")
        outs.append(out)
    assert outs[0] == outs[1] == outs[2]
    got = np.array([[float(v) for v in line.split()] for line in outs[0].splitlines()])
    x, y = xy[:, 0], xy[:, 1]
    e = np.exp(-(x * x + y * y))
    want = np.stack([e * np.sin(3 * y) * (1 - 2 * x * x), x * e * (3 * np.cos(3 * y) - 2 * y * np.sin(3 * y))], 1)
    assert np.allclose(got, want, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_a_bad_thread_count_is_exit_2(capsys: pytest.CaptureFixture[str], value: str) -> None:
    code, out, err = run(capsys, "grad", "x*y", "--at", "x=1,y=2", "--threads", value)
    assert code == 2 and out == "" and "--threads" in err and len(err.strip().splitlines()) == 1
