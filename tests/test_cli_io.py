"""The command line's edges (issue 11): help and usage, repeated options, --expect for every command,
and I/O faults (exit 74). In-process through ``main`` where the process does not matter; a subprocess
where it does (closed descriptors, /dev/full, the encoding of stdout, SIGPIPE).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from conftest import run

GRADCLI = shutil.which("gradcli")
ARGV0 = [GRADCLI] if GRADCLI else [sys.executable, "-m", "gradcli"]


def shell(command: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``command`` in sh, with ``gradcli`` the installed executable (or the module)."""
    exe = " ".join(ARGV0)
    return subprocess.run(["sh", "-c", command.replace("gradcli", exe, 1)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env})


# ---- 2. help and usage ----------------------------------------------------------------------------------
def test_bare_gradcli_shows_the_whole_help_on_stderr_with_exit_2_as_click_does(capsys) -> None:
    code, out, err = run(capsys)
    assert code == 2 and out == ""
    assert err.startswith("Usage: gradcli [OPTIONS] COMMAND [ARGS]...\n")
    assert "Commands:" in err and "\n  hessian " in err and len(err.splitlines()) > 10


@pytest.mark.parametrize(("argv", "usage", "error"), [
    (["d"], "Usage: gradcli d [OPTIONS] EXPR", "Missing argument 'EXPR'"),
    (["taylor", "exp(x)", "--order", "2"], "Usage: gradcli taylor [OPTIONS] EXPR", "Missing option '--wrt'"),
    (["d", "x", "--bogus"], "Usage: gradcli d [OPTIONS] EXPR", "No such option '--bogus'"),
    (["d", "x", "y"], "Usage: gradcli d [OPTIONS] EXPR", "unexpected extra argument"),
    (["dd"], "Usage: gradcli [OPTIONS] COMMAND [ARGS]...", "No such command 'dd'"),
])
def test_usage_mistake_shows_usage_line_and_try_h(capsys, argv, usage, error) -> None:
    code, out, err = run(capsys, *argv)
    lines = err.splitlines()
    command = "gradcli" + ("" if argv[0] == "dd" else f" {argv[0]}")
    assert code == 2 and out == ""
    assert lines[0] == usage
    assert lines[1] == f"Try '{command} -h' for help."
    assert lines[2] == "" and lines[3].startswith("gradcli: error: ") and error in lines[3]
    assert len(lines) == 4


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_h_is_help_for_every_command(capsys, flag) -> None:
    code, out, _ = run(capsys, "grad", flag)
    assert code == 0 and out.startswith("Usage: gradcli grad [OPTIONS] EXPR")


@pytest.mark.parametrize("argv", [
    ["d", "x", "--at", "x=__import__"],  # a bad option value: one line naming the option
    ["d", "x", "--tol", "-1", "--at", "x=1"],
    ["d", "sinn(x)", "--at", "x=1"],  # an input error
    ["d", "-x**2"],  # a forgotten '--': one line with the hint
])
def test_other_errors_stay_one_line(capsys, argv) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("gradcli: error: "), err


# ---- 3. repeated options -------------------------------------------------------------------------------
def test_repeated_at_merges(capsys) -> None:
    code, out, _ = run(capsys, "d", "x*y", "--wrt", "x", "--at", "x=1", "--at", "y=2", "--format", "plain")
    assert code == 0 and out == "2.0\n"


def test_repeated_at_merges_grids_and_constants_for_every_command(capsys) -> None:
    code, out, _ = run(capsys, "hessian", "x**2*y", "--at", "x=1", "--at", "y=pi/pi", "--format", "plain")
    assert code == 0 and out.split() == ["2.0", "2.0", "2.0", "0.0"]


@pytest.mark.parametrize(("at", "name"), [
    (["--at", "x=1", "--at", "x=2"], "x"),
    (["--at", "x=1,y=2", "--at", "y=3"], "y"),
    (["--at", "x=1,x=2"], "x"),
])
def test_a_name_given_twice_in_at_is_exit_2_naming_it(capsys, at, name) -> None:
    code, out, err = run(capsys, "d", "x*y", "--wrt", "x", *at)
    assert code == 2 and out == "" and f"'{name}' given twice" in err and "--at" in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("command", [["d", "x*y"], ["grad", "x*y"], ["taylor", "x*y", "--order", "1"]])
def test_a_repeated_wrt_is_exit_2(capsys, command) -> None:
    code, out, err = run(capsys, *command, "--wrt", "x", "--wrt", "y", "--at", "x=1,y=2")
    assert code == 2 and out == "" and "--wrt" in err and "more than once" in err


# ---- 10. --expect for every command ----------------------------------------------------------------------
@pytest.mark.parametrize(("argv", "expect"), [
    (["d", "x*y", "--wrt", "x,y", "--at", "x=1,y=2"], "1"),
    (["grad", "2*x**3+5*y**2+11*x+5", "--at", "x=5,y=2"], "161,20"),
    (["grad", "2*x**3+5*y**2+11*x+5", "--at", "x=5,y=2"], "161 20"),
    (["hessian", "2*x**3+5*y**2+11*x*y+5", "--at", "x=5,y=2"], "60, 11, 11, 10"),
    (["jacobian", "x*y", "x+y", "--at", "x=2,y=3"], "3 2 1 1"),
    (["taylor", "exp(2*x)", "--wrt", "x", "--order", "3", "--at", "x=0"], "1,2,4,8"),
    (["grad", "sin(x)+y", "--at", "x=pi/3,y=0"], "cos(pi/3),atan2(1,1)*4/pi"),
])
def test_expect_matching_every_entry_exits_0(capsys, argv, expect) -> None:
    code, _, err = run(capsys, *argv, "--expect", expect, "--format", "plain")
    assert code == 0, err
    assert "--expect" not in err


@pytest.mark.parametrize(("argv", "expect", "where"), [
    (["grad", "2*x**3+5*y**2+11*x+5", "--at", "x=5,y=2"], "161,21", "entry 2 (∂f/∂y)"),
    (["hessian", "2*x**3+5*y**2+11*x*y+5", "--at", "x=5,y=2"], "60 11 12 10", "row 2, column 1 (∂f/∂x)"),
    (["jacobian", "x*y", "x+y", "--at", "x=2,y=3"], "3,2,1,2", "expression 2, column 2 (∂f/∂y)"),
    (["taylor", "exp(2*x)", "--wrt", "x", "--order", "3", "--at", "x=0"], "1,2,5,8", "entry 3 (f″)"),
])
def test_expect_names_the_first_mismatching_entry_and_exits_1(capsys, argv, expect, where) -> None:
    code, out, err = run(capsys, *argv, "--expect", expect, "--format", "plain")
    assert code == 1 and out  # the value is still printed
    assert f"--expect failed at {where}" in err, err


def test_expect_uses_the_tolerance(capsys) -> None:
    argv = ["grad", "x**2", "--at", "x=1", "--format", "plain", "--expect", "2.001"]
    assert run(capsys, *argv)[0] == 1
    assert run(capsys, *argv, "--tol", "1e-2")[0] == 0


@pytest.mark.parametrize(("argv", "expect"), [
    (["grad", "x*y", "--at", "x=1,y=2"], "2"),
    (["hessian", "x*y", "--at", "x=1,y=2"], "0,1,1"),
    (["d", "x*y", "--wrt", "x", "--at", "x=1,y=2"], "2,1"),
])
def test_expect_with_the_wrong_number_of_values_is_exit_2(capsys, argv, expect) -> None:
    code, out, err = run(capsys, *argv, "--expect", expect)
    assert code == 2 and out == "" and "--expect" in err


def test_expect_refuses_code(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "grad", "x*y", "--at", "x=1,y=2", "--expect", "1,__import__('os').system('touch F')")
    assert code == 2 and list(tmp_path.iterdir()) == []


# ---- 8. I/O faults: one line, exit 74; SIGPIPE quiet --------------------------------------------------------
@pytest.mark.parametrize("command", [
    "gradcli --help >&-",
    "gradcli d x --at x=1 >&-",
    "gradcli --help > /dev/full",
    "gradcli --version > /dev/full",
    "gradcli d 'x**2' --at x=1 > /dev/full",
    "gradcli grad 'x*y' --at x=1,y=2 --json > /dev/full",
    "gradcli d 'x**2' --points - <&-",
])
def test_closed_or_full_stdout_and_closed_stdin_are_exit_74_in_one_line(command) -> None:
    if "/dev/full" in command and not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    proc = shell(command)
    assert proc.returncode == 74, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("gradcli: error: "), proc.stderr
    assert "Traceback" not in proc.stderr and "bug" not in proc.stderr


def test_a_table_the_encoding_cannot_show_is_exit_74_naming_the_encoding() -> None:
    proc = shell("gradcli d 'x**2' --at x=1 --format table", PYTHONIOENCODING="ascii")
    assert proc.returncode == 74, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "ascii" in lines[0] and "--format plain" in lines[0], proc.stderr


def test_points_full_stdout_is_exit_74() -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    proc = shell("seq 1 2000 | (echo x; cat) | gradcli d 'x**2' --points - --no-check > /dev/full")
    assert proc.returncode == 74, proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr


@pytest.mark.parametrize("command", [
    "seq 1 200000 | (echo x; cat) | gradcli d 'x**2' --points - --no-check | head -1",
    "gradcli --help | head -1",
    "gradcli jacobian x y x+y x*y --at x=1,y=2 --format table | head -1",
])
def test_sigpipe_is_quiet_exit_0(command) -> None:
    program = command.replace("gradcli", " ".join(ARGV0), 1) + "; exit ${PIPESTATUS[-2]}"  # gradcli, before head
    proc = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.count("\n") == 1


def test_a_missing_points_file_is_exit_2_and_an_unreadable_one_74(capsys, tmp_path) -> None:
    code, _, err = run(capsys, "d", "x", "--points", str(tmp_path / "nope.csv"))
    assert code == 2 and "nope.csv" in err
    locked = tmp_path / "locked.csv"
    locked.write_text("x\n1\n")
    locked.chmod(0)
    if os.access(locked, os.R_OK):  # root reads anything
        pytest.skip("running as root")
    code, _, err = run(capsys, "d", "x", "--points", str(locked))
    assert code == 74 and "locked.csv" in err and len(err.splitlines()) == 1
