"""gradcli on a real terminal: a pseudo-terminal at 40, 60 and 100 columns (and COLUMNS=1, COLUMNS=0).

Every digit of every value must reach the screen: no number is truncated ("…"), folded or wrapped by
rich, at any width; where a table cannot fit, the vertical key/value layout takes its place. Also: the
"checking…" status on a slow check, one table for a --points run, and no progress-bar text in the
output. The screen-level test runs the command in tmux and reads the screen back.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[=>]")
GRADCLI = [sys.executable, "-m", "gradcli"]


def on_terminal(argv: list[str], columns: int, env: dict[str, str] | None = None,
                timeout: float = 60) -> tuple[int, str]:
    """Run gradcli with stdin, stdout and stderr on a pty of ``columns`` x 50; (exit code, text seen)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    environ = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR")}
    environ.update({"TERM": "xterm-256color", **(env or {})})
    proc = subprocess.Popen(GRADCLI + argv, stdin=slave, stdout=slave, stderr=slave, env=environ,
                            close_fds=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    code = proc.wait(timeout=10)
    return code, ANSI.sub("", b"".join(chunks).decode("utf-8", "replace")).replace("\r", "")


def plain_values(argv: list[str]) -> list[str]:
    """Every number the command prints, from its plain (piped) output."""
    proc = subprocess.run(GRADCLI + argv + ["--format", "plain"], capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    return [v for line in proc.stdout.splitlines() for v in line.split(" ")]


CASES = {
    "taylor": ["taylor", "exp(x)", "--wrt", "x", "--order", "10", "--at", "x=0"],
    "digits": ["d", "exp(2*x)", "--wrt", "x:300", "--at", "x=1", "--digits", "40"],
    "grad": ["grad", "sin(x*y)*exp(x)", "--at", "x=0.3,y=-1.7"],
    "hessian": ["hessian", "sin(x*y)*exp(x)", "--at", "x=0.3,y=-1.7"],
    "jacobian": ["jacobian", "r*cos(t)", "r*sin(t)", "--wrt", "r,t", "--at", "r=2,t=pi/3"],
}


@pytest.mark.parametrize("columns", [40, 60, 100])
@pytest.mark.parametrize("case", sorted(CASES))
def test_every_digit_reaches_the_terminal(case: str, columns: int) -> None:
    argv = CASES[case]
    values = plain_values(argv)
    code, seen = on_terminal(argv, columns)
    assert code == 0, seen
    assert "…" not in seen
    missing = [v for v in values if v not in seen]
    assert not missing, (missing, seen)


@pytest.mark.parametrize("columns_env", ["1", "0"])
def test_columns_1_and_0_still_show_every_value(columns_env: str) -> None:
    argv = CASES["taylor"]
    values = plain_values(argv)
    code, seen = on_terminal(argv, 80, env={"COLUMNS": columns_env})
    assert code == 0
    assert [v for v in values if v not in seen] == []
    assert "coefficient" in seen  # the vertical key/value layout


def test_a_wide_terminal_gets_a_table_and_a_narrow_one_the_vertical_layout() -> None:
    argv = ["d", "sin(x)", "--wrt", "x:3", "--at", "x=pi/4"]
    _, wide = on_terminal(argv, 120)
    _, narrow = on_terminal(argv, 40)
    assert "┃ derivative" in wide and "┃" not in narrow
    assert re.search(r"^  value +-0\.70710678118654", narrow, re.M), narrow


def test_points_table_is_one_table_with_every_value(tmp_path: Path) -> None:
    rows = [(i / 7, -i / 3) for i in range(1, 301)]  # three chunks of input
    path = tmp_path / "p.csv"
    path.write_text("x,y\n" + "".join(f"{a!r},{b!r}\n" for a, b in rows))
    argv = ["grad", "x*exp(-(x^2+y^2))", "--points", str(path)]
    values = plain_values(argv)
    code, seen = on_terminal(argv, 140)
    assert code == 0
    assert seen.count("┏") == 1 and seen.count("f = x*exp") == 1  # one table, one title
    assert [v for v in values if v not in seen] == []
    assert "points ━" not in seen and "━━ " not in seen.split("f = ")[0]
    assert seen.lstrip().startswith("f = x*exp")


def test_points_beyond_the_table_limit_are_plain_rows(tmp_path: Path) -> None:
    from gradcli.render import TABLE_MAX_ROWS

    n = TABLE_MAX_ROWS + 5
    path = tmp_path / "p.csv"
    path.write_text("x\n" + "".join(f"{i / 100!r}\n" for i in range(n)))
    code, seen = on_terminal(["d", "x**2", "--points", str(path), "--no-check"], 100)
    assert code == 0
    lines = [line for line in seen.splitlines() if line.strip()]
    assert lines[0] == "f = x**2" and lines[1].split() == ["line", "x", "∂f/∂x"]
    assert len(lines) == n + 2 and "┃" not in seen
    assert lines[-1].split() == [str(n + 1), repr((n - 1) / 100), repr(2 * ((n - 1) / 100))]  # d/dx x**2


def test_a_slow_check_shows_checking_on_the_terminal() -> None:
    # the symbolic check of a 14th derivative takes well over half a second
    argv = ["d", "exp(sin(x))*log(1+x^2)*atan(x)", "--wrt", "x:14", "--at", "x=0.5"]
    code, seen = on_terminal(argv, 100)
    assert code == 0
    assert "checking…" in seen


def test_a_quick_run_shows_no_status() -> None:
    code, seen = on_terminal(["d", "x**2", "--at", "x=3", "--no-check"], 100)
    assert code == 0 and "checking" not in seen


def test_no_status_when_stderr_is_not_a_terminal() -> None:
    argv = ["d", "exp(sin(x))*log(1+x^2)*atan(x)", "--wrt", "x:14", "--at", "x=0.5"]
    proc = subprocess.run(GRADCLI + argv, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0 and "checking" not in proc.stderr


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
@pytest.mark.parametrize("columns", [40, 60, 100])
def test_the_screen_in_tmux_shows_every_digit(tmp_path: Path, columns: int) -> None:
    argv = CASES["digits"]
    values = plain_values(argv)
    done = tmp_path / "done"
    session = f"gradcli-test-{os.getpid()}-{columns}"
    command = " ".join(f"'{a}'" for a in GRADCLI + argv) + f"; echo $? > '{done}'; sleep 30"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", str(columns), "-y", "50", command],
                   check=True, env={**os.environ, "TERM": "xterm-256color"})
    try:
        deadline = time.monotonic() + 60
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        screen = subprocess.run(["tmux", "capture-pane", "-p", "-J", "-t", session], capture_output=True,
                                text=True, check=True).stdout
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    assert done.read_text().strip() == "0"
    assert [v for v in values if v not in screen] == [], screen
