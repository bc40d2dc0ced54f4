"""Output layout: plain is one line per point for every command; --show-symbolic splits back apart;
tables never cut a number at any COLUMNS (README "Output formats")."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sympy
from conftest import run

from gradcli.render import SYMBOLIC_SEP

COMMANDS = [
    (["d", "x**2*y", "--wrt", "x,y"], 1),
    (["grad", "x**2*y"], 2),
    (["hessian", "x**2*y"], 4),
    (["jacobian", "x**2*y", "x+y"], 4),
    (["taylor", "x**2*y", "--wrt", "x", "--order", "3"], 8),  # 4 derivatives, then 4 coefficients
]


@pytest.mark.parametrize(("argv", "count"), COMMANDS, ids=lambda a: a[0] if isinstance(a, list) else str(a))
def test_plain_is_one_line_per_point(tmp_path: Path, capsys, argv: list[str], count: int) -> None:
    code, out, err = run(capsys, *argv, "--at", "x=1.5,y=2", "--format", "plain")
    assert code == 0, err
    (line,) = out.splitlines()
    assert len(line.split(" ")) == count
    path = tmp_path / "p.csv"
    path.write_text("x,y\n1.5,2\n0.5,3\n-1,1\n")
    for digits in ([], ["--digits", "20"]):
        code, out, err = run(capsys, *argv, "--points", str(path), "--format", "plain", *digits)
        assert code == 0, err
        lines = out.splitlines()
        assert len(lines) == 3 and all(len(x.split(" ")) == count for x in lines)


def test_taylor_plain_is_the_derivatives_then_the_coefficients(capsys) -> None:
    code, out, _ = run(capsys, "taylor", "exp(2*x)", "--wrt", "x", "--order", "3", "--at", "x=0", "--format", "plain")
    assert code == 0 and out == "1.0 2.0 4.0 8.0 1.0 2.0 2.0 1.3333333333333333\n"


def test_grad_show_symbolic_splits_back_into_its_components(capsys) -> None:
    code, out, _ = run(capsys, "grad", "x**2*y+sin(x*y)", "--at", "x=1,y=2", "--show-symbolic", "--format", "plain")
    assert code == 0
    (line,) = out.splitlines()
    values, *symbolic = line.split(SYMBOLIC_SEP)
    assert len(values.split(" ")) == 2 and len(symbolic) == 2
    x, y = sympy.symbols("x y")
    f = x**2 * y + sympy.sin(x * y)
    assert [sympy.simplify(sympy.sympify(s) - sympy.diff(f, v)) for s, v in zip(symbolic, (x, y))] == [0, 0]


def test_hessian_show_symbolic_with_points_is_one_line_per_point(tmp_path: Path, capsys) -> None:
    path = tmp_path / "p.csv"
    path.write_text("x,y\n1,2\n3,4\n")
    code, out, _ = run(capsys, "hessian", "x**2*y", "--points", str(path), "--show-symbolic", "--format", "plain")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2
    assert [line.split(SYMBOLIC_SEP)[1:] for line in lines] == [["2*y", "2*x", "2*x", "0"]] * 2


# ---- tables at any width (through the renderer, no terminal: COLUMNS decides the width) ---------------------------
LONG = ["taylor", "exp(x)", "--wrt", "x", "--order", "10", "--at", "x=0"]


@pytest.mark.parametrize("columns", ["0", "1", "20", "40", "60", "80", "100", "200"])
def test_table_shows_every_value_whole_at_any_columns(capsys, monkeypatch, columns: str) -> None:
    _, plain, _ = run(capsys, *LONG, "--format", "plain")
    monkeypatch.setenv("COLUMNS", columns)
    code, out, _ = run(capsys, *LONG, "--format", "table")
    assert code == 0 and out.strip()
    assert "…" not in out
    assert [v for v in plain.split() if not re.search(rf"(^|[\s│]){re.escape(v)}($|[\s│])", out)] == []
    if int(columns) >= 100:
        assert "┃ derivative" in out and "symbolic value" in out
    if int(columns) == 80:  # the optional columns go first
        assert "┃ derivative" in out and "symbolic value" not in out
    if int(columns) <= 40:
        last = re.escape(plain.split()[-1])  # f⁽¹⁰⁾(0)/10!, on its own key/value line
        assert "┃" not in out and re.search(rf"^  coefficient f⁽ᵏ⁾/k!  {last}$", out, re.M)


@pytest.mark.parametrize("columns", ["0", "40", "100"])
def test_matrix_tables_keep_every_number_whole(capsys, monkeypatch, columns: str) -> None:
    argv = ["hessian", "sin(x*y)*exp(x)", "--at", "x=0.3,y=-1.7"]
    _, plain, _ = run(capsys, *argv, "--format", "plain")
    monkeypatch.setenv("COLUMNS", columns)
    code, out, _ = run(capsys, *argv, "--format", "table")
    assert code == 0 and "…" not in out
    assert all(v in out for v in plain.split())


def test_digits_value_keeps_its_exponent_at_80_and_100_columns(capsys, monkeypatch) -> None:
    argv = ["d", "exp(2*x)", "--wrt", "x:300", "--at", "x=1", "--digits", "40"]
    _, plain, _ = run(capsys, *argv, "--format", "plain")
    assert plain.strip().endswith("e+91")
    for columns in ("80", "100"):
        monkeypatch.setenv("COLUMNS", columns)
        code, out, _ = run(capsys, *argv, "--format", "table")
        assert code == 0 and plain.strip() in out
