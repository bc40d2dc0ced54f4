"""`gradcli grad`, `gradcli hessian`, `gradcli jacobian` end to end, in every format, against sympy."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess

import mpmath
import numpy as np
import pytest
import sympy
from conftest import run

from gradcli import commands, ops
from gradcli.check import close
from gradcli.commands import Chunk, Job, evaluate_block
from gradcli.derive import point_arrays, prepare

X, Y, Z = sympy.symbols("x y z", real=True)
SYMS = {"x": X, "y": Y, "z": Z}
SEED_F = 2 * X**3 + 5 * Y**2 + 11 * X + 5
SEED_G = 2 * X**3 + 5 * Y**2 + 11 * X * Y + 5


def value(expr: sympy.Expr, wrt: list[str], point: dict[str, float]) -> float:
    """The oracle: sympy's derivative at the point, 30 digits, rounded to float."""
    subs = {SYMS[k]: sympy.Float(v, 30) for k, v in point.items()}
    return float(sympy.diff(expr, *(SYMS[w] for w in wrt)).evalf(30, subs=subs))


def grad_oracle(expr: sympy.Expr, wrt: list[str], point: dict[str, float]) -> list[float]:
    return [value(expr, [w], point) for w in wrt]


def hessian_oracle(expr: sympy.Expr, wrt: list[str], point: dict[str, float]) -> list[list[float]]:
    return [[value(expr, [a, b], point) for b in wrt] for a in wrt]


def plain_line(values: list[float]) -> str:
    return " ".join(repr(v) for v in values) + "\n"


def flat(v: object) -> list[object]:
    return [x for item in v for x in flat(item)] if isinstance(v, list) else [v]


# ---- plain: row-major on one line -----------------------------------------------------------------------------
def test_hessian_plain_prints_the_seed_matrix_row_major(capsys) -> None:
    code, out, err = run(capsys, "hessian", "2*x**3+5*y**2+11*x*y+5", "--at", "x=5,y=2", "--format", "plain")
    assert (code, err) == (0, "")
    assert out == plain_line(flat(hessian_oracle(SEED_G, ["x", "y"], {"x": 5, "y": 2})))
    assert out == "60.0 11.0 11.0 10.0\n"


def test_grad_plain_prints_the_seed_gradient(capsys) -> None:
    code, out, err = run(capsys, "grad", "2*x**3+5*y**2+11*x+5", "--at", "x=5,y=2", "--format", "plain")
    assert (code, err) == (0, "")
    assert out == plain_line(grad_oracle(SEED_F, ["x", "y"], {"x": 5, "y": 2})) == "161.0 20.0\n"


def test_jacobian_plain_prints_one_row_per_expression_row_major(capsys) -> None:
    code, out, err = run(capsys, "jacobian", "x*y", "x+y", "sin(x)*y", "--at", "x=2,y=3", "--format", "plain")
    assert (code, err) == (0, "")
    point = {"x": 2, "y": 3}
    rows = [grad_oracle(e, ["x", "y"], point) for e in (X * Y, X + Y, sympy.sin(X) * Y)]
    assert [float(v) for v in out.split()] == pytest.approx(flat(rows), rel=1e-15)
    assert out.count("\n") == 1


def test_piped_default_format_is_plain(capsys) -> None:
    code, out, _ = run(capsys, "grad", "x*y", "--at", "x=2,y=3")
    assert (code, out) == (0, plain_line(grad_oracle(X * Y, ["x", "y"], {"x": 2, "y": 3})))


def test_variables_are_sorted_by_name_unless_wrt_orders_them(capsys) -> None:
    expr = "b**2*a + c*exp(a)"
    a, b, c = sympy.symbols("a b c", real=True)
    sym = b**2 * a + c * sympy.exp(a)
    point = {"a": 0.5, "b": 2.0, "c": -1.0}
    at = "c=-1,a=0.5,b=2"

    def oracle(order: str) -> list[float]:
        s = {k: sympy.Float(v, 30) for k, v in zip((a, b, c), point.values())}
        syms = {"a": a, "b": b, "c": c}
        return [float(sympy.diff(sym, syms[w]).evalf(30, subs=s)) for w in order]

    assert run(capsys, "grad", expr, "--at", at)[1] == plain_line(oracle("abc"))
    assert run(capsys, "grad", expr, "--at", at, "--wrt", "c,a,b")[1] == plain_line(oracle("cab"))


def test_hessian_follows_wrt_order(capsys) -> None:
    code, out, _ = run(capsys, "hessian", "x**3*y**2+z*x", "--at", "x=1.5,y=-2,z=3", "--wrt", "z,y,x")
    point = {"x": 1.5, "y": -2, "z": 3}
    assert (code, out) == (0, plain_line(flat(hessian_oracle(X**3 * Y**2 + Z * X, ["z", "y", "x"], point))))


def test_wrt_naming_an_absent_variable_gives_zeros_and_a_note(capsys) -> None:
    code, out, err = run(capsys, "grad", "x**2", "--at", "x=3", "--wrt", "x,q")
    assert code == 0
    assert out == plain_line([value(X**2, ["x"], {"x": 3}), 0.0])
    assert "'q'" in err and err.count("\n") == 1


# ---- json -------------------------------------------------------------------------------------------------------
def test_hessian_json_has_the_contract_keys_and_a_list_of_rows(capsys) -> None:
    code, out, err = run(capsys, "hessian", "2*x**3+5*y**2+11*x*y+5", "--at", "x=5,y=2", "--json")
    assert (code, err) == (0, "")
    obj = json.loads(out)
    assert obj["expr"] == ["2*x**3+5*y**2+11*x*y+5"]
    assert obj["wrt"] == "x,y" and obj["order"] == 2
    assert obj["at"] == {"x": 5.0, "y": 2.0}
    assert obj["value"] == hessian_oracle(SEED_G, ["x", "y"], {"x": 5, "y": 2})
    check = obj["check"]
    assert check["ok"] is True and check["rel_err"] == 0.0
    assert check["symbolic_value"] == obj["value"]  # nested the same way
    assert len(check["symbolic"]) == 2 and len(flat(check["symbolic"])) == 4


def test_grad_json_value_is_a_list_and_check_has_one_entry_per_component(capsys) -> None:
    code, out, _ = run(capsys, "grad", "x*exp(y)", "--wrt", "y,x", "--at", "x=1,y=0", "--format", "json")
    obj = json.loads(out)
    assert code == 0
    assert obj["value"] == grad_oracle(X * sympy.exp(Y), ["y", "x"], {"x": 1, "y": 0})
    assert obj["wrt"] == "y,x"
    assert obj["check"]["ok"] is True
    assert [sympy.sympify(s) for s in obj["check"]["symbolic"]] == [
        sympy.sympify(str(sympy.diff(sympy.Symbol("x") * sympy.exp(sympy.Symbol("y")), v))) for v in "yx"]


def test_jacobian_json_lists_the_expressions_and_rows(capsys) -> None:
    code, out, _ = run(capsys, "jacobian", "x*y", "x+y", "--at", "x=2,y=3", "--format", "json")
    obj = json.loads(out)
    assert code == 0
    assert obj["expr"] == ["x*y", "x+y"]
    assert obj["value"] == [grad_oracle(X * Y, ["x", "y"], {"x": 2, "y": 3}),
                            grad_oracle(X + Y, ["x", "y"], {"x": 2, "y": 3})]
    assert obj["check"]["ok"] is True


def test_no_check_json_keeps_the_check_keys(capsys) -> None:
    code, out, _ = run(capsys, "hessian", "x*y", "--at", "x=2,y=3", "--json", "--no-check")
    assert code == 0
    check = json.loads(out)["check"]
    assert check["skipped"] == "--no-check" and check["symbolic"] is None
    assert check["symbolic_value"] == [[None, None], [None, None]]


def test_hessian_with_digits_prints_that_many_digits(capsys) -> None:
    code, out, _ = run(capsys, "hessian", "exp(x*y)", "--at", "x=1/3,y=2", "--digits", "30", "--format", "json")
    assert code == 0
    obj = json.loads(out)
    hess = sympy.hessian(sympy.exp(X * Y), [X, Y])
    with mpmath.workdps(40):
        for i in range(2):
            for j in range(2):
                text = obj["value"][i][j]
                assert isinstance(text, str)
                want = mpmath.mpf(str(hess[i, j].evalf(40, subs={X: sympy.Rational(1, 3), Y: 2})))
                assert abs(mpmath.mpf(text) - want) <= abs(want) * mpmath.mpf("1e-29")


# ---- csv ----------------------------------------------------------------------------------------------------------
def test_grad_csv_has_a_header_and_one_row(capsys) -> None:
    code, out, _ = run(capsys, "grad", "2*x**3+5*y**2+11*x+5", "--at", "x=5,y=2", "--format", "csv")
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["x", "y", "d_x", "d_y", "check_ok", "check_rel_err"]
    assert len(rows) == 2
    assert [float(v) for v in rows[1][:4]] == [5.0, 2.0, *grad_oracle(SEED_F, ["x", "y"], {"x": 5, "y": 2})]
    assert rows[1][4] == "true"


def test_hessian_csv_names_every_entry(capsys) -> None:
    code, out, _ = run(capsys, "hessian", "2*x**3+5*y**2+11*x*y+5", "--at", "x=5,y=2", "--format", "csv", "--no-check")
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["x", "y", "d_x_x", "d_x_y", "d_y_x", "d_y_y"]
    assert [float(v) for v in rows[1][2:]] == flat(hessian_oracle(SEED_G, ["x", "y"], {"x": 5, "y": 2}))


def test_jacobian_csv_names_every_entry(capsys) -> None:
    code, out, _ = run(capsys, "jacobian", "x*y", "x+y", "--at", "x=2,y=3", "--format", "csv", "--no-check")
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["x", "y", "d0_x", "d0_y", "d1_x", "d1_y"]
    point = {"x": 2, "y": 3}
    want = grad_oracle(X * Y, ["x", "y"], point) + grad_oracle(X + Y, ["x", "y"], point)
    assert [float(v) for v in rows[1][2:]] == want


# ---- the table: a matrix with row and column labels -------------------------------------------------------------
def table_lines(out: str) -> list[list[str]]:
    """The table's body rows as lists of cells (rich's box characters stripped)."""
    rows = []
    for line in out.splitlines():
        if "│" in line or "┃" in line:
            cells = [c.strip() for c in line.replace("┃", "│").split("│")[1:-1]]
            rows.append(cells)
    return rows


def test_hessian_table_is_a_labelled_matrix_with_check_marks(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    code, out, err = run(capsys, "hessian", "2*x**3+5*y**2+11*x*y+5", "--at", "x=5,y=2", "--format", "table")
    assert (code, err) == (0, "")
    assert "\x1b[" not in out  # no colour when stdout is not a terminal
    rows = table_lines(out)
    assert rows[0] == ["∂²f", "∂/∂x", "∂/∂y"]
    want = hessian_oracle(SEED_G, ["x", "y"], {"x": 5, "y": 2})
    assert rows[1] == ["∂f/∂x", f"{want[0][0]!r} ✓", f"{want[0][1]!r} ✓"]
    assert rows[2] == ["∂f/∂y", f"{want[1][0]!r} ✓", f"{want[1][1]!r} ✓"]
    assert "x = 5.0, y = 2.0" in out


def test_jacobian_table_labels_rows_by_expression(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    code, out, _ = run(capsys, "jacobian", "x*y", "x+y", "--at", "x=2,y=3", "--format", "table", "--no-check")
    assert code == 0
    rows = table_lines(out)
    assert rows[0] == ["J", "∂/∂x", "∂/∂y"]
    point = {"x": 2, "y": 3}
    assert rows[1] == ["f₁ = x*y", *(repr(v) for v in grad_oracle(X * Y, ["x", "y"], point))]
    assert rows[2] == ["f₂ = x+y", *(repr(v) for v in grad_oracle(X + Y, ["x", "y"], point))]


def test_hessian_table_with_show_symbolic_adds_the_symbolic_matrix(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    code, out, _ = run(capsys, "hessian", "x**2*y", "--at", "x=1,y=2", "--format", "table", "--show-symbolic")
    assert code == 0
    assert "symbolic derivatives" in out
    rows = table_lines(out)
    sym_rows = rows[rows.index(["∂²f", "∂/∂x", "∂/∂y"], 1):]
    assert [sympy.sympify(c) for c in sym_rows[1][1:]] == [2 * sympy.Symbol("y"), 2 * sympy.Symbol("x")]


def test_grad_table_lists_each_partial_with_its_check(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    code, out, _ = run(capsys, "grad", "2*x**3+5*y**2+11*x+5", "--at", "x=5,y=2", "--format", "table")
    assert code == 0
    rows = table_lines(out)
    want = grad_oracle(SEED_F, ["x", "y"], {"x": 5, "y": 2})
    assert rows[1][:3] == ["∂f/∂x", repr(want[0]), repr(want[0])]
    assert rows[2][:3] == ["∂f/∂y", repr(want[1]), repr(want[1])]
    assert all(r[3] == "✓" for r in rows[1:])


# ---- --check, entry by entry --------------------------------------------------------------------------------------
def test_a_wrong_hessian_entry_fails_the_check_with_exit_1(capsys, monkeypatch) -> None:
    # corrupt one certified entry (d2f/dxdy): the symbolic witness must catch it
    from gradcli.certify import Outcome

    real = commands.certify

    def corrupted(group, *args, **kwargs):
        out = real(group, *args, **kwargs)
        if group.counts == {"x": 1, "y": 1}:
            out = [Outcome(o.value + 1.0, o.cert, o.error, o.culprit) for o in out]
        return out

    monkeypatch.setattr(commands, "certify", corrupted)
    code, out, err = run(capsys, "hessian", "x**2*y", "--at", "x=1,y=2", "--format", "json")
    assert code == 1
    obj = json.loads(out)
    assert obj["check"]["ok"] is False
    assert "check failed" in err
    assert err.count("\n") == 2  # the two corrupted entries, d2f/dxdy and d2f/dydx


def test_hessian_check_builds_one_oracle_per_unordered_pair() -> None:
    prep = prepare("x**2*y*z + exp(x*z)")
    job = Job("hessian", (prep,), ("x", "y", "z"), ops.F64, check=True)
    values, size = point_arrays({"x": 0.5, "y": 2, "z": -1}, ops.F64)
    row = evaluate_block(job, Chunk(values, size, (None,))).row(0)
    assert len({id(job.oracle(e)) for e in job.entries}) == 6  # 3 diagonal + 3 off-diagonal pairs, not 9
    assert len(row.checks) == 9 and all(c.ok for c in row.checks)
    sym = X**2 * Y * Z + sympy.exp(X * Z)
    want = hessian_oracle(sym, ["x", "y", "z"], {"x": 0.5, "y": 2, "z": -1})
    assert all(close(c.value, w, 1e-15) for c, w in zip(row.checks, flat(want)))


def test_check_compares_every_entry_with_sympy(capsys) -> None:
    code, out, _ = run(capsys, "hessian", "atan2(y, x)*exp(x)", "--at", "x=0.3,y=-1.2", "--json")
    obj = json.loads(out)
    assert code == 0
    want = hessian_oracle(sympy.atan2(Y, X) * sympy.exp(X), ["x", "y"], {"x": 0.3, "y": -1.2})
    assert all(close(a, b, 1e-14) for a, b in zip(flat(obj["check"]["symbolic_value"]), flat(want)))
    assert all(close(a, b, 1e-13) for a, b in zip(flat(obj["value"]), flat(want)))


# ---- errors -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["grad", "hessian", "jacobian"])
def test_a_repeated_wrt_variable_exits_2_with_one_line(capsys, command: str) -> None:
    code, out, err = run(capsys, command, "x*y", "--wrt", "x,x", "--at", "x=1,y=2")
    assert (code, out) == (2, "")
    assert "twice" in err and err.count("\n") == 1


@pytest.mark.parametrize("command", ["grad", "hessian", "jacobian"])
def test_a_missing_value_exits_2_naming_the_variable(capsys, command: str) -> None:
    code, out, err = run(capsys, command, "x*y", "--at", "x=1")
    assert (code, out) == (2, "")
    assert "'y'" in err and err.count("\n") == 1


@pytest.mark.parametrize("command", ["grad", "hessian", "jacobian"])
def test_a_point_outside_the_domain_exits_3(capsys, command: str) -> None:
    code, out, err = run(capsys, command, "log(x)*y", "--at", "x=-1,y=2")
    assert code == 3
    assert "not finite" in err and err.count("\n") == 1


# ---- the installed executable ---------------------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("gradcli") is None, reason="the gradcli executable is not installed")
def test_installed_gradcli_hessian_prints_the_seed_matrix() -> None:
    proc = subprocess.run([shutil.which("gradcli"), "hessian", "2*x**3+5*y**2+11*x*y+5", "--at", "x=5,y=2"],
                          capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout == plain_line(flat(hessian_oracle(SEED_G, ["x", "y"], {"x": 5, "y": 2})))


@pytest.mark.skipif(shutil.which("gradcli") is None, reason="the gradcli executable is not installed")
def test_installed_gradcli_grad_reads_points_from_stdin() -> None:
    proc = subprocess.run([shutil.which("gradcli"), "grad", "x*y**2", "--points", "-", "--format", "plain"],
                          input="x,y\n1,2\n3,-1\n", capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    want = [grad_oracle(X * Y**2, ["x", "y"], {"x": a, "y": b}) for a, b in ((1, 2), (3, -1))]
    assert proc.stdout == "".join(plain_line(w) for w in want)


def test_hessian_values_match_numpy_float64_exactly_for_a_polynomial(capsys) -> None:
    # integer-valued polynomial: every entry is exact in float64, so plain text is exact too
    code, out, _ = run(capsys, "hessian", "x**4*y**3 - 3*x*y + 7*y**2", "--at", "x=2,y=-3", "--format", "plain")
    sym = X**4 * Y**3 - 3 * X * Y + 7 * Y**2
    want = hessian_oracle(sym, ["x", "y"], {"x": 2, "y": -3})
    assert (code, out) == (0, plain_line(flat(want)))
    assert np.array(out.split(), dtype=float).reshape(2, 2).tolist() == want
