"""Issue 12: plot, explain, grids in --at (the --points path)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import sympy
from click.testing import CliRunner

from gradcli.cli import main
from gradcli.explain import explain


def run(*argv: str) -> tuple[int, str, str]:
    """The CLI through its error boundary (main), in CliRunner's isolated streams."""
    with CliRunner().isolation() as streams:
        code = main(list(argv))
    return code, streams[0].getvalue().decode(), streams[1].getvalue().decode()


# ---- grids: --at x=START:STOP:STEP and linspace(a,b,n) ------------------------------------------------
def test_grid_in_at_evaluates_every_point_as_points_would() -> None:
    code, out, _ = run("d", "x**2", "--at", "x=0:1:0.25", "--format", "csv", "--no-check")
    assert code == 0
    assert out == "x,value\n0.0,0.0\n0.25,0.5\n0.5,1.0\n0.75,1.5\n1.0,2.0\n"


def test_grid_values_are_the_doubles_nearest_the_exact_grid() -> None:
    code, out, _ = run("d", "x", "--at", "x=0:1:0.1", "--format", "csv", "--no-check")
    assert code == 0
    assert [line.split(",")[0] for line in out.splitlines()[1:]] == [repr(float(sympy.Rational(k, 10)))
                                                                       for k in range(11)]


def test_linspace_grid_with_another_variable_numbers_rows_from_1() -> None:
    code, out, _ = run("d", "x*y", "--wrt", "x", "--at", "x=linspace(0,1,3),y=2", "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["line"], r["at"], r["value"]) for r in rows] == [
        (1, {"x": 0.0, "y": 2.0}, 2.0), (2, {"x": 0.5, "y": 2.0}, 2.0), (3, {"x": 1.0, "y": 2.0}, 2.0)]


def test_a_grid_point_outside_the_domain_is_nan_and_exit_3() -> None:
    code, out, err = run("d", "log(x)", "--at", "x=-1:1:1", "--no-check")
    assert (code, out) == (3, "nan\nnan\n1.0\n")
    assert "line 1" in err


def test_a_grid_going_the_wrong_way_is_exit_2() -> None:
    code, _, err = run("d", "x", "--at", "x=0:1:-1")
    assert code == 2 and "step" in err


# ---- plot --------------------------------------------------------------------------------------------------
def test_plot_csv_is_the_grid_with_gaps_outside_the_domain() -> None:
    code, out, _ = run("plot", "log(x)", "--range", "-1:3", "--orders", "0,1", "--points", "5", "--format", "csv")
    assert code == 0
    assert out == ("x,d0,d1\n-1.0,,\n0.0,,\n1.0,0.0,1.0\n2.0,0.6931471805599453,0.5\n"
                   "3.0,1.0986122886681098,0.3333333333333333\n")


def test_plot_json_is_one_schema_object_per_grid_point() -> None:
    from test_json_schema import validate

    code, out, _ = run("plot", "x**3", "--range", "0:2", "--orders", "0,2", "--points", "3", "--format", "json")
    assert code == 0
    objs = [validate(line) for line in out.splitlines()]
    assert [(o["command"], o["order"], o["line"], o["at"], o["value"]) for o in objs] == [
        ("plot", 2, 1, {"x": 0.0}, [0.0, 0.0, 0.0]), ("plot", 2, 2, {"x": 1.0}, [1.0, 3.0, 6.0]),
        ("plot", 2, 3, {"x": 2.0}, [8.0, 12.0, 12.0])]
    assert all(o["check"]["certified"] is True and o["coefficients"] is None for o in objs)


def test_plot_json_gap_has_null_values_and_the_reason() -> None:
    from test_json_schema import validate

    code, out, _ = run("plot", "log(x)*y", "--at", "y=2", "--wrt", "x", "--range", "-1:1", "--points", "3",
                       "--format", "json")
    assert code == 0
    objs = [validate(line) for line in out.splitlines()]
    assert [o["value"] for o in objs] == [[None, None], [None, None], [0.0, 2.0]]
    assert "log" in objs[0]["error"] and objs[2]["error"] is None
    assert objs[2]["at"] == {"x": 1.0, "y": 2.0} and objs[0]["check"]["ok"] is None


def test_plot_values_match_sympy_on_the_grid() -> None:
    code, out, _ = run("plot", "sin(x)*exp(-y*x)", "--at", "y=0.5", "--wrt", "x", "--range", "0:3", "--orders",
                       "1,3", "--points", "7", "--format", "csv")
    assert code == 0
    x, y = sympy.symbols("x y")
    f = sympy.sin(x) * sympy.exp(-y * x)
    for line in out.splitlines()[1:]:
        xv, d1, d3 = (float(c) for c in line.split(","))
        for k, got in ((1, d1), (3, d3)):
            want = float(sympy.diff(f, x, k).subs({x: sympy.nsimplify(xv), y: sympy.Rational(1, 2)}).evalf(30))
            assert got == pytest.approx(want, rel=1e-12, abs=1e-14)


def test_plot_in_the_terminal_draws_a_legend_and_the_title() -> None:
    code, out, _ = run("plot", "sin(x)", "--range", "0:6", "--orders", "0,1")
    assert code == 0
    assert "sin(x)" in out.splitlines()[0]
    assert "f′" in out and "┌" in out


def test_plot_output_writes_a_png(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    target = tmp_path / "fig.png"
    code, out, err = run("plot", "x*exp(-x^2)", "--range", "-3:3", "--orders", "0,1,2", "--output", str(target))
    assert code == 0 and out == ""
    data = target.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1200, 750)  # 8 x 5 inches at 150 dpi


def test_plot_output_svg_has_one_line_per_order(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    target = tmp_path / "fig.svg"
    code, _, _ = run("plot", "x**2", "--range", "-1:1", "--orders", "0,1,2", "--output", str(target))
    assert code == 0
    text = target.read_text()
    assert text.count('id="line2d_') >= 3 and "f(x) = x**2" in text.replace("&lt;", "<")


def test_plot_output_with_a_wrong_suffix_is_exit_2() -> None:
    code, _, err = run("plot", "x", "--range", "0:1", "--output", "fig.gif")
    assert code == 2 and ".png" in err


def test_plot_range_must_be_increasing() -> None:
    code, _, err = run("plot", "x", "--range", "1:0")
    assert code == 2 and "--range" in err


# ---- explain -----------------------------------------------------------------------------------------------
X, Y = sympy.symbols("x y")
SEED = 2 * X**3 + 5 * Y**2 + 11 * X * Y + 5


def test_explain_adjoints_of_the_variables_are_sympys_partials() -> None:
    e = explain("2*x**3+5*y**2+11*x*y+5", "x", {"x": 5, "y": 2})
    at = {X: 5, Y: 2}
    assert e.partials == {"x": float(sympy.diff(SEED, X).subs(at)), "y": float(sympy.diff(SEED, Y).subs(at))}
    assert e.value == 172.0 and e.engine == "reverse"


def test_explain_forward_values_and_adjoints_of_every_step_match_sympy() -> None:
    e = explain("2*x**3+5*y**2+11*x*y+5", "x", {"x": 5, "y": 2})
    by_name = {s.out: s for s in e.tape}
    at = {X: 5, Y: 2}
    v = sympy.Symbol("v")
    # each recorded node is a subexpression of f; its forward value and its adjoint df/dv against sympy
    for node, sub in (("v8", X**3), ("v5", Y**2), ("v2", X * Y)):
        s = by_name[node]
        assert s.value == float(sub.subs(at))
        assert s.adjoint == float(sympy.diff(SEED.subs(sub, v), v).subs(at))
    assert e.tape[-1].value == float(SEED.subs(at)) and e.tape[-1].adjoint == 1.0


def test_explain_second_order_shows_the_nested_tape() -> None:
    e = explain("2*x**3+5*y**2+11*x*y+5", "x,y", {"x": 5, "y": 2})
    at = {X: 5, Y: 2}
    assert e.nested is not None
    inner = {s.out: s for s in e.nested}
    assert inner["∂f/∂x"].value == float(sympy.diff(SEED, X).subs(at))
    assert e.value == float(sympy.diff(SEED, X, Y).subs(at)) == 11.0
    assert "11.0" in e.nested_note


def test_explain_high_order_uses_taylor_mode_with_its_coefficients() -> None:
    e = explain("exp(sin(x))", "x:3", {"x": 0.5})
    assert e.engine == "taylor"
    node, op, coeffs = e.taylor[-1]
    f = sympy.exp(sympy.sin(X))
    want = [float(sympy.diff(f, X, k).subs(X, sympy.Rational(1, 2)) / sympy.factorial(k)) for k in range(4)]
    assert op == "exp" and coeffs == pytest.approx(want, rel=1e-13)


def test_explain_json_is_one_object() -> None:
    code, out, _ = run("explain", "x**3", "--wrt", "x,x", "--at", "x=3", "--json")
    obj = json.loads(out)
    assert code == 0 and obj["value"] == 18.0 and obj["engine"]["name"] == "taylor"
    assert obj["tape"][0]["op"] == "pow" and obj["tape"][0]["value"] == 27.0


def test_explain_table_on_80_columns_shows_every_number() -> None:
    code, out, _ = run("explain", "exp(sin(x))", "--wrt", "x:3", "--at", "x=0.5")
    assert code == 0 and "…" not in out
    assert "-0.3940735734758669" in out


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_explain_dot_renders_with_graphviz() -> None:
    code, out, _ = run("explain", "2*x**3+5*y**2+11*x*y+5", "--wrt", "x,y", "--at", "x=5,y=2", "--format", "dot")
    assert code == 0
    proc = subprocess.run(["dot", "-Tsvg"], input=out, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.lstrip().startswith("<?xml") and "<svg" in proc.stdout


def test_explain_outside_the_domain_is_exit_3() -> None:
    code, _, err = run("explain", "log(x)", "--at", "x=-1")
    assert code == 3 and "log" in err
