"""`gradcli d` end to end: the contract's formats, options and exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import sympy
from conftest import run

from gradcli.parse import symbol

x, y = symbol("x"), symbol("y")


def exact(expr: sympy.Expr, wrt: list[sympy.Symbol], **at: float) -> float:
    """The independent oracle: sympy's derivative evaluated at 30 digits."""
    subs = {symbol(k): sympy.Float(v, 30) for k, v in at.items()}
    return float(sympy.diff(expr, *wrt).evalf(30, subs=subs))


# ---- the contract's seed numbers, as one table ------------------------------------------------------------
SEED = [
    ("x**2", "x", "x=3", x**2, [x], {"x": 3}),
    ("x**3", "x", "x=3", x**3, [x], {"x": 3}),
    ("x**3", "x,x", "x=3", x**3, [x, x], {"x": 3}),
    ("2*x**3+5*y**2+11*x+5", "x", "x=5,y=2", 2 * x**3 + 5 * y**2 + 11 * x + 5, [x], {"x": 5, "y": 2}),
    ("2*x**3+5*y**2+11*x+5", "y", "x=5,y=2", 2 * x**3 + 5 * y**2 + 11 * x + 5, [y], {"x": 5, "y": 2}),
    ("2*x**3+5*y**2+11*x*y+5", "x", "x=5,y=2", 2 * x**3 + 5 * y**2 + 11 * x * y + 5, [x], {"x": 5, "y": 2}),
    ("2*x**3+5*y**2+11*x*y+5", "y", "x=5,y=2", 2 * x**3 + 5 * y**2 + 11 * x * y + 5, [y], {"x": 5, "y": 2}),
    ("2*x**3+5*y**2+11*x*y+5", "x,x", "x=5,y=2", 2 * x**3 + 5 * y**2 + 11 * x * y + 5, [x, x], {"x": 5, "y": 2}),
    ("2*x**3+5*y**2+11*x*y+5", "y,y", "x=5,y=2", 2 * x**3 + 5 * y**2 + 11 * x * y + 5, [y, y], {"x": 5, "y": 2}),
    ("2*x**3+5*y**2+11*x*y+5", "x,y", "x=5,y=2", 2 * x**3 + 5 * y**2 + 11 * x * y + 5, [x, y], {"x": 5, "y": 2}),
    ("2*x**3+5*y**2+11*x*y+5", "y,x", "x=5,y=2", 2 * x**3 + 5 * y**2 + 11 * x * y + 5, [y, x], {"x": 5, "y": 2}),
    ("2*x**3+5*y**2", "x,x", "x=5,y=2", 2 * x**3 + 5 * y**2, [x, x], {"x": 5, "y": 2}),
]


@pytest.mark.parametrize(("expr", "wrt", "at", "sym", "sym_wrt", "point"), SEED)
def test_seed_examples_plain(capsys, expr, wrt, at, sym, sym_wrt, point) -> None:
    code, out, err = run(capsys, "d", expr, "--wrt", wrt, "--at", at, "--format", "plain")
    assert code == 0, err
    assert out == f"{exact(sym, sym_wrt, **point)!r}\n"


def test_piped_default_is_plain_60(capsys) -> None:
    code, out, _ = run(capsys, "d", "2*x**3+5*y**2", "--wrt", "x,x", "--at", "x=5,y=2")
    assert (code, out) == (0, f"{exact(2 * x**3 + 5 * y**2, [x, x], x=5, y=2)!r}\n")
    assert out == "60.0\n"


def test_json_shape_is_the_contracts(capsys) -> None:
    # the one schema (README "JSON schema"; gradcli.render.JSON_SCHEMA, validated for every command in
    # tests/test_json_schema.py); the certificate's keys are checked for shape, not for their numbers
    code, out, _ = run(capsys, "d", "2*x**3+5*y**2", "--wrt", "x,x", "--at", "x=5,y=2", "--format", "json")
    assert code == 0
    obj = json.loads(out)
    check = obj.pop("check")
    assert obj == {
        "command": "d",
        "expr": ["2*x**3+5*y**2"],
        "wrt": "x:2",
        "order": 2,
        "at": {"x": 5.0, "y": 2.0},
        "value": 60.0,
        "coefficients": None,
        "line": None,
        "error": None,
    }
    assert set(check) == {"method", "bits", "radius", "certified", "symbolic", "symbolic_value", "rel_err",
                          "skipped", "ok"}
    assert {k: check[k] for k in ("symbolic", "symbolic_value", "rel_err", "skipped", "ok")} == {
        "symbolic": "12*x", "symbolic_value": 60.0, "rel_err": 0.0, "skipped": None, "ok": True}


def test_json_flag_is_short_for_format_json(capsys) -> None:
    _, a, _ = run(capsys, "d", "sin(x)", "--at", "x=1", "--json")
    _, b, _ = run(capsys, "d", "sin(x)", "--at", "x=1", "--format", "json")
    assert a == b and json.loads(a)["value"] == pytest.approx(exact(sympy.sin(x), [x], x=1), rel=1e-15)


def test_csv_has_header_and_one_row(capsys) -> None:
    code, out, _ = run(capsys, "d", "x*y", "--wrt", "x", "--at", "x=2,y=3", "--format", "csv", "--no-check")
    assert code == 0
    assert out.splitlines() == ["x,y,value", f"2.0,3.0,{exact(x * y, [x], x=2, y=3)!r}"]


def test_table_shows_partial_notation_value_and_agreement(capsys) -> None:
    code, out, _ = run(capsys, "d", "x**3*y", "--wrt", "x:2,y", "--at", "x=1,y=2", "--format", "table")
    assert code == 0
    assert "∂³f/∂x²∂y" in out and "✓" in out
    assert repr(exact(x**3 * y, [x, x, y], x=1, y=2)) in out


def test_wrt_repeat_syntax_equals_the_long_form(capsys) -> None:
    _, a, _ = run(capsys, "d", "exp(x)*sin(y)", "--wrt", "x:2,y", "--at", "x=0.5,y=0.25")
    _, b, _ = run(capsys, "d", "exp(x)*sin(y)", "--wrt", "x,x,y", "--at", "x=0.5,y=0.25")
    assert a == b
    assert float(a) == pytest.approx(exact(sympy.exp(x) * sympy.sin(y), [x, x, y], x=0.5, y=0.25), rel=1e-14)


def test_mixed_partials_in_both_orders_agree(capsys) -> None:
    f = "sin(x*y)*exp(x)"
    _, a, _ = run(capsys, "d", f, "--wrt", "x,y", "--at", "x=0.3,y=0.7")
    _, b, _ = run(capsys, "d", f, "--wrt", "y,x", "--at", "x=0.3,y=0.7")
    oracle = exact(sympy.sin(x * y) * sympy.exp(x), [x, y], x=0.3, y=0.7)
    assert float(a) == pytest.approx(oracle, rel=1e-13) and float(b) == pytest.approx(oracle, rel=1e-13)


@pytest.mark.parametrize("order", [1, 2, 3, 4, 5, 6])
def test_orders_up_to_6(capsys, order: int) -> None:
    code, out, _ = run(capsys, "d", "exp(sin(x))/(1+x^2)", "--wrt", f"x:{order}", "--at", "x=0.4")
    assert code == 0
    assert float(out) == pytest.approx(exact(sympy.exp(sympy.sin(x)) / (1 + x**2), [x] * order, x=0.4), rel=1e-12)


def test_at_accepts_constant_expressions(capsys) -> None:
    code, out, _ = run(capsys, "d", "sin(x)", "--at", "x=pi/4")
    assert code == 0 and float(out) == pytest.approx(float(sympy.cos(sympy.pi / 4)), rel=1e-15)


def test_default_wrt_is_the_only_variable(capsys) -> None:
    code, out, _ = run(capsys, "d", "x**3", "--at", "x=3")
    assert (code, float(out)) == (0, exact(x**3, [x], x=3))


def test_default_wrt_with_several_variables_exits_2(capsys) -> None:
    code, out, err = run(capsys, "d", "x*y", "--at", "x=1,y=2")
    assert code == 2 and out == "" and len(err.splitlines()) == 1 and "--wrt" in err


def test_variable_not_in_expr_gives_0_and_a_note(capsys) -> None:
    code, out, err = run(capsys, "d", "x**2", "--wrt", "z", "--at", "x=1")
    assert (code, out) == (0, "0.0\n")
    assert "does not depend on 'z'" in err


@pytest.mark.parametrize("wrt", ["x:0", "x:-1", "x:1.5", "1x", "x:", "x,,y", "pi", "sin"])
def test_bad_wrt_exits_2(capsys, wrt: str) -> None:
    code, out, err = run(capsys, "d", "x*y", "--wrt", wrt, "--at", "x=1,y=2")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1


def test_missing_variable_names_it(capsys) -> None:
    code, _, err = run(capsys, "d", "x*y", "--wrt", "x", "--at", "x=1")
    assert code == 2 and "'y'" in err


def test_missing_e_hints_at_E(capsys) -> None:
    code, _, err = run(capsys, "d", "x*e", "--wrt", "x", "--at", "x=1")
    assert code == 2 and "E" in err


def test_unknown_variable_names_it(capsys) -> None:
    code, _, err = run(capsys, "d", "x**2", "--at", "x=1,q=2")
    assert code == 2 and "'q'" in err


def test_repeated_variable_names_it(capsys) -> None:
    code, _, err = run(capsys, "d", "x**2", "--at", "x=1,x=2")
    assert code == 2 and "x" in err


def test_forgotten_double_dash_explains_it(capsys) -> None:
    code, _, err = run(capsys, "d", "-x**2", "--at", "x=1")
    assert code == 2 and "--" in err and len(err.strip().splitlines()) == 1


def test_double_dash_expression_works(capsys) -> None:
    code, out, _ = run(capsys, "d", "--at", "x=1", "--", "-x**2")
    assert (code, float(out)) == (0, exact(-(x**2), [x], x=1))


def test_parenthesised_negative_expression_works(capsys) -> None:
    code, out, _ = run(capsys, "d", "(-x**2)", "--at", "x=1")
    assert (code, float(out)) == (0, exact(-(x**2), [x], x=1))


def test_outside_domain_exits_3_naming_point_and_function(capsys) -> None:
    code, out, err = run(capsys, "d", "log(x)", "--at", "x=-1")
    assert code == 3 and out == ""
    assert "x=-1.0" in err and "log" in err and len(err.strip().splitlines()) == 1


def test_expect_match_exits_0(capsys) -> None:
    code, out, _ = run(capsys, "d", "x**3", "--wrt", "x:2", "--at", "x=3", "--expect", "18")
    assert code == 0 and float(out) == exact(x**3, [x, x], x=3)


def test_expect_mismatch_exits_1(capsys) -> None:
    code, out, err = run(capsys, "d", "x**3", "--wrt", "x:2", "--at", "x=3", "--expect", "19")
    assert code == 1 and out.strip() == repr(exact(x**3, [x, x], x=3)) and "expected" in err


def test_expect_takes_constant_expressions(capsys) -> None:
    code, _, _ = run(capsys, "d", "sin(x)", "--at", "x=0", "--expect", "cos(0)")
    assert code == 0


def test_a_wrong_float64_value_is_replaced_by_the_certified_one(capsys, monkeypatch, tmp_path) -> None:
    # corrupt the float64 engine (it serves --points chunks): the ball engine proves the true values,
    # which are printed with one note (exit 0)
    import gradcli.commands as commands

    real = commands.derivative_values

    def off_by_one(*a, **k):
        vals, fail = real(*a, **k)
        return vals + 1.0, fail

    monkeypatch.setattr(commands, "derivative_values", off_by_one)
    points = tmp_path / "p.csv"
    xs = [i / 10 for i in range(1, 101)]
    points.write_text("x\n" + "\n".join(map(repr, xs)) + "\n")
    code, out, err = run(capsys, "d", "x**3", "--points", str(points), "--format", "plain", "--no-check")
    assert code == 0
    assert [float(v) for v in out.split()] == [exact(x**3, [x], x=v) for v in xs]
    assert "float64 lost digits in 100 rows" in err


def test_check_mismatch_exits_1(capsys, monkeypatch) -> None:
    # A wrong certified value must be caught by the symbolic check: corrupt the certificate stage.
    import gradcli.commands as commands
    from gradcli.certify import Outcome

    real = commands.certify

    def off_by_one(*a, **k):
        return [Outcome(o.value + 1.0, o.cert, o.error, o.culprit) for o in real(*a, **k)]

    monkeypatch.setattr(commands, "certify", off_by_one)
    code, out, err = run(capsys, "d", "x**3", "--at", "x=3", "--format", "json")
    assert code == 1
    obj = json.loads(out)
    assert obj["check"]["ok"] is False and obj["check"]["symbolic_value"] == exact(x**3, [x], x=3)
    assert "check failed" in err


def test_no_check_keeps_the_check_keys_and_says_why(capsys) -> None:
    _, out, _ = run(capsys, "d", "x**3", "--at", "x=3", "--json", "--no-check")
    check = json.loads(out)["check"]
    assert check["skipped"] == "--no-check"
    assert check["symbolic"] is None and check["symbolic_value"] is None and check["rel_err"] is None


def test_tol_loosens_the_comparison(capsys) -> None:
    code, _, _ = run(capsys, "d", "x**3", "--at", "x=3", "--expect", "27.1", "--tol", "0.01")
    assert code == 0


@pytest.mark.parametrize("tol", ["0", "-1", "abc", "nan", "inf"])
def test_bad_tol_exits_2(capsys, tol: str) -> None:
    code, _, err = run(capsys, "d", "x", "--at", "x=1", "--tol", tol)
    assert code == 2 and "--tol" in err


def test_high_order_check_is_bounded_and_says_what_ran(capsys) -> None:
    code, out, _ = run(capsys, "d", "exp(sin(x))*log(1+x^2)", "--wrt", "x:60", "--at", "x=0.5", "--json",
                       "--check-timeout", "2")
    obj = json.loads(out)
    check = obj["check"]
    # sympy's witness finished (and agreed) or says why it was skipped; the certificate stands either way
    assert code == 0 and check["certified"] is True and check["method"] == "ball"
    assert check["symbolic"] or check["skipped"]


def test_show_symbolic_prints_the_derivative(capsys) -> None:
    code, out, _ = run(capsys, "d", "x**3", "--at", "x=3", "--show-symbolic")
    # plain: one line per point, the symbolic derivative after " ; "
    assert code == 0 and out == f"27.0 ; {sympy.sstr(sympy.diff(x**3, x))}\n"


def test_internal_error_exits_70_with_one_line(capsys, monkeypatch) -> None:
    import gradcli.commands as commands

    def boom(*a, **k):
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr(commands, "certify", boom)
    code, out, err = run(capsys, "d", "x**3", "--at", "x=3")
    assert code == 70 and out == "" and len(err.strip().splitlines()) == 1 and "report" in err


def test_version(capsys) -> None:
    import gradcli

    code, out, _ = run(capsys, "--version")
    assert (code, out) == (0, f"gradcli {gradcli.__version__}\n")


# ---- the installed executable -----------------------------------------------------------------------------
def _exe() -> list[str]:
    found = shutil.which("gradcli")
    return [found] if found else [sys.executable, "-m", "gradcli"]


def test_installed_executable_prints_60_when_piped(tmp_path) -> None:
    proc = subprocess.run(_exe() + ["d", "2*x**3+5*y**2", "--wrt", "x,x", "--at", "x=5,y=2"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "60.0\n", "")


def test_installed_executable_error_is_one_line_without_traceback(tmp_path) -> None:
    proc = subprocess.run(_exe() + ["d", "__import__('os').system('touch pwned')", "--at", "x=1"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_table_on_a_terminal_by_default(tmp_path) -> None:
    pty = pytest.importorskip("pty")
    import select

    pid, fd = pty.fork()
    if pid == 0:  # child: a terminal on stdout
        os.execv(_exe()[0], _exe() + ["d", "2*x**3+5*y**2", "--wrt", "x,x", "--at", "x=5,y=2"])
    chunks = []
    while True:
        ready, _, _ = select.select([fd], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.waitpid(pid, 0)
    text = b"".join(chunks).decode("utf-8", "replace")
    assert "∂²f/∂x²" in text and "60.0" in text
