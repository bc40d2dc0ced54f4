"""Issue 12 on a real terminal: `gradcli plot` and `gradcli explain` through a pseudo-terminal (and tmux's
screen) at 60 and 100 columns. Nothing is cut: no "…", every forward value, adjoint and Taylor coefficient
of the explain tables reaches the screen whole, and the plot's lines fit the terminal's width.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import pytest
from test_terminal import GRADCLI, on_terminal

from gradcli.explain import explain

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")

EXPLAIN = {
    "first order": ("2*x**3+5*y**2+11*x*y+5", "x", {"x": 5, "y": 2}, "x=5,y=2"),
    "nested second order": ("2*x**3+5*y**2+11*x*y+5", "x,y", {"x": 5, "y": 2}, "x=5,y=2"),
    "nested x,x": ("x**3", "x,x", {"x": 3}, "x=3"),
    "taylor": ("exp(sin(x))", "x:3", {"x": 0.5}, "x=0.5"),
}


def explain_values(expr: str, wrt: str, at: dict[str, float]) -> list[str]:
    """Every number the explain tables and tree show, as gradcli writes it (repr)."""
    e = explain(expr, wrt, at)
    values = [e.value, *e.partials.values()]
    for steps in (e.tape, e.nested or []):
        values += [v for s in steps for v in (s.value, s.adjoint)]
    values += [c for _, _, coeffs in (e.taylor or []) for c in coeffs]
    return sorted({repr(float(v)) for v in values})


def width(line: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in line)


@pytest.mark.parametrize("columns", [60, 100])
@pytest.mark.parametrize("case", sorted(EXPLAIN))
def test_explain_shows_every_value_whole(case: str, columns: int) -> None:
    expr, wrt, at, at_text = EXPLAIN[case]
    values = explain_values(expr, wrt, at)
    code, seen = on_terminal(["explain", expr, "--wrt", wrt, "--at", at_text], columns)
    assert code == 0, seen
    assert "…" not in seen
    assert [v for v in values if v not in seen] == [], seen
    # the names too: every recorded operation's output name is on screen
    e = explain(expr, wrt, at)
    assert [s.out for s in (*e.tape, *(e.nested or [])) if s.out not in seen] == []


@pytest.mark.parametrize("columns", [60, 100])
def test_explain_tables_fit_or_turn_vertical(columns: int) -> None:
    expr, wrt, _, at_text = EXPLAIN["nested second order"]
    code, seen = on_terminal(["explain", expr, "--wrt", wrt, "--at", at_text], columns)
    assert code == 0
    table_lines = [line for line in seen.splitlines() if line[:1] in "┏┃┡│└"]
    assert all(width(line) <= columns for line in table_lines), [line for line in table_lines if width(line) > columns]
    if columns == 60:  # the outer tape is wider than 60 columns: its cells as key/value lines
        assert "  adjoint ∂(∂f/∂x)/∂v  " in seen
    else:
        assert "┃ adjoint ∂(∂f/∂x)/∂v ┃" in seen


PLOT = ["plot", "sin(x)*exp(-x/4)", "--range", "0:10", "--orders", "0,1,2"]


@pytest.mark.parametrize("columns", [60, 100])
def test_plot_fits_the_terminal_with_its_title_and_legend(columns: int) -> None:
    code, seen = on_terminal(PLOT, columns)
    assert code == 0, seen
    lines = [line.rstrip() for line in seen.splitlines() if line.strip()]
    assert "…" not in seen
    assert lines[0].strip() == "sin(x)*exp(-x/4)  (x from 0 to 10)"
    assert [line for line in lines if width(line) > columns] == []
    assert all(label in seen for label in ("f", "f′", "f″"))
    frame = [line for line in lines if "┌" in line or "└" in line]
    assert frame and all(width(line) > columns - 20 for line in frame)  # the plot uses the width it has


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
@pytest.mark.parametrize("columns", [60, 100])
def test_explain_screen_in_tmux_shows_every_value(tmp_path: Path, columns: int) -> None:
    expr, wrt, at, at_text = EXPLAIN["taylor"]
    values = explain_values(expr, wrt, at)
    done = tmp_path / "done"
    session = f"gradcli-see-{os.getpid()}-{columns}"
    argv = GRADCLI + ["explain", expr, "--wrt", wrt, "--at", at_text]
    command = " ".join(f"'{a}'" for a in argv) + f"; echo $? > '{done}'; sleep 30"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", str(columns), "-y", "80", command],
                   check=True, env={**os.environ, "TERM": "xterm-256color"})
    try:
        deadline = time.monotonic() + 60
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        screen = subprocess.run(["tmux", "capture-pane", "-p", "-J", "-S", "-", "-t", session],
                                capture_output=True, text=True, check=True).stdout
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    assert done.read_text().strip() == "0"
    assert "…" not in screen
    assert [v for v in values if v not in screen] == [], screen
