"""Input friction and linear-time reading (issue 11, items 7 and 9): a headerless column, TSV and
whitespace-separated points, EXPR from stdin or a file, and the line and header limits."""

from __future__ import annotations

import io
import math
import os
import shutil
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from gradcli import ops
from gradcli.cli import main
from gradcli.errors import InputError
from gradcli.points import MAX_COLUMNS, MAX_LINE_BYTES, PointsReader

GRADCLI = shutil.which("gradcli")
ARGV0 = [GRADCLI] if GRADCLI else [sys.executable, "-m", "gradcli"]


def invoke(args: list[str], stdin: str | bytes | None = None) -> tuple[int, str, str]:
    """``main`` (the error boundary) with ``stdin`` as standard input, as CliRunner isolates it."""
    with CliRunner().isolation(input=stdin) as (out, err, _):
        code = main([*args, "--format", "plain", "--no-check"])
    return code, out.getvalue().decode(), err.getvalue().decode()


def values(out: str) -> list[float]:
    return [float(v) for v in out.split()]


# ---- 7. formats ----------------------------------------------------------------------------------------
def test_a_headerless_column_on_stdin_is_the_only_variable() -> None:
    code, out, err = invoke(["d", "x**2", "--points", "-"], "0\n0.5\n1\n1.5\n2\n")
    assert code == 0, err
    assert values(out) == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_seq_piped_into_points_works() -> None:
    proc = subprocess.run(["sh", "-c", f"seq 0 0.5 2 | {' '.join(ARGV0)} d 'sin(x)' --points - --no-check"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.split()) == 5 and float(proc.stdout.split()[0]) == 1.0


def test_a_headerless_column_is_the_variable_at_does_not_give() -> None:
    code, out, _ = invoke(["d", "x*y", "--wrt", "x", "--at", "y=3", "--points", "-"], "1\n2\n")
    assert code == 0 and values(out) == [3.0, 3.0]


def test_a_headerless_column_with_two_free_variables_says_the_header_is_missing() -> None:
    code, out, err = invoke(["d", "x*y", "--wrt", "x", "--points", "-"], "1\n2\n")
    assert code == 2 and out == "" and "line 1" in err and "header row missing" in err


def test_a_headerless_column_keeps_line_numbers() -> None:
    code, out, err = invoke(["d", "x**2", "--points", "-"], "1\n\n2\nabc\n")
    assert code == 2 and values(out) == [2.0, 4.0] and "line 4" in err


@pytest.mark.parametrize("text", [
    "x\ty\n1\t2\n3\t4\n",
    "x y\n1 2\n3 4\n",
    "  x   y  \n1    2\n\t3 4\n",
    "x\ty\tlabel\n1\t2\ta, b\n3\t4\tc\n",
    "x y label\n1 2 a\n3 4 b\n",
])
def test_tsv_and_whitespace_separated_columns_are_read(text: str) -> None:
    code, out, err = invoke(["grad", "x*y", "--points", "-"], text)
    assert code == 0, err
    assert values(out) == [2.0, 1.0, 4.0, 3.0]


@pytest.mark.parametrize(("text", "line", "what"), [
    ("x y\n1 2\n3\n", 3, "1 cells"),
    ("x\ty\n1\t2\n3\t\n", 3, "empty"),
    ("x y\n1 2\n3 abc\n", 3, "not a number"),
])
def test_a_bad_tsv_or_whitespace_row_names_its_line(text: str, line: int, what: str) -> None:
    code, out, err = invoke(["grad", "x*y", "--points", "-"], text)
    assert code == 2 and values(out) == [2.0, 1.0]
    assert f"line {line}" in err and what in err


def test_expr_dash_reads_the_expression_from_stdin() -> None:
    code, out, _ = invoke(["d", "-", "--at", "x=2"], "x**3\n")
    assert code == 0 and values(out) == [12.0]


def test_expr_at_file_reads_it(tmp_path) -> None:
    (tmp_path / "f.txt").write_text("sin(x)*y\n")
    code, out, _ = invoke(["grad", f"@{tmp_path / 'f.txt'}", "--at", "x=0,y=2"])
    assert code == 0 and values(out) == [2.0, 0.0]


def test_expr_from_a_file_is_parsed_safely(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f.txt").write_text("__import__('os').system('touch F')")
    code, _, err = invoke(["d", "@f.txt", "--at", "x=1"])
    assert code == 2 and not (tmp_path / "F").exists()


@pytest.mark.parametrize(("args", "stdin", "code", "needle"), [
    (["d", "-", "--points", "-"], "x\n", 2, "stdin can be read once"),
    (["jacobian", "-", "-", "--at", "x=1"], "x\n", 2, "stdin can be read once"),
    (["d", "@no/such/file", "--at", "x=1"], None, 2, "no/such/file"),
    (["d", "-", "--at", "x=1"], "\n\n", 2, "empty"),
])
def test_expr_source_errors(args, stdin, code, needle) -> None:
    got, out, err = invoke(args, stdin)
    assert got == code and out == "" and needle in err, err


def test_expr_dash_with_stdin_closed_is_exit_74() -> None:
    proc = subprocess.run(["sh", "-c", f"{' '.join(ARGV0)} d - --at x=1 <&-"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 74 and len(proc.stderr.splitlines()) == 1, proc.stderr


# ---- 9. linear-time readers and their limits -----------------------------------------------------------------
def read_all(data: bytes, needed=("x",)) -> list:
    return list(PointsReader(io.BytesIO(data), list(needed), {}, ops.F64))


def test_a_line_beyond_the_limit_is_exit_2_naming_it_after_earlier_rows(capsys, tmp_path) -> None:
    path = tmp_path / "p.csv"
    path.write_bytes(b"x\n1\n2\n" + b"3" * (MAX_LINE_BYTES + 10) + b"\n4\n")
    code = main(["d", "x**2", "--points", str(path), "--format", "plain", "--no-check"])
    out, err = capsys.readouterr()
    assert code == 2 and out.split() == ["2.0", "4.0"]
    assert "line 4" in err and "1 MiB" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("end", [b"\n", b""])
def test_a_line_at_the_limit_is_read(end: bytes) -> None:
    line = b" " * (MAX_LINE_BYTES - 1) + b"7"
    chunks = read_all(b"x\n1\n" + line + end + b"2\n" * bool(end))
    assert [v for c in chunks for v in c.values["x"].tolist()] == [1.0, 7.0] + [2.0] * bool(end)
    with pytest.raises(InputError, match="line 3: the line is longer"):
        read_all(b"x\n1\n " + line + end)


def test_long_lines_read_in_linear_time() -> None:
    def cpu(n: int) -> float:  # CPU seconds, the least of three runs: other processes do not count
        data = b"x\n1\n" + b" " * n + b"2\n"  # one long line (spaces around a number)
        best = math.inf
        for _ in range(3):
            start = time.process_time()
            with pytest.raises(InputError):
                read_all(data + b"y" * (MAX_LINE_BYTES + 1))
            best = min(best, time.process_time() - start)
        return best

    small, large = cpu(1 << 16), cpu(1 << 19)
    assert large < 24 * small + 0.05  # linear: 8x the bytes, not 64x the time


def test_dev_zero_ends_within_a_second() -> None:
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    start = time.process_time()  # CPU time: what the reader spends, whatever else the machine runs
    with open("/dev/zero", "rb") as f, pytest.raises(InputError, match="line 1: the line is longer than 1 MiB"):
        list(PointsReader(f, ["x"], {}, ops.F64, name="/dev/zero"))
    assert time.process_time() - start < 1.0


def test_dev_zero_through_the_cli_is_exit_2() -> None:
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    proc = subprocess.run([*ARGV0, "d", "x", "--points", "/dev/zero"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "line 1" in proc.stderr and len(proc.stderr.splitlines()) == 1


def test_a_header_beyond_the_column_limit_is_exit_2() -> None:
    header = ",".join(f"c{i}" for i in range(MAX_COLUMNS)) + ",x\n"
    with pytest.raises(InputError, match=f"line 1: the header has {MAX_COLUMNS + 1} columns"):
        read_all(header.encode() + b"1\n")


def _wide(columns: int) -> float:
    """CPU seconds to refuse a duplicate in a header of ``columns`` names and to read one such row."""
    header = ",".join(f"c{i}" for i in range(columns - 1))
    start = time.process_time()
    with pytest.raises(InputError, match="'c0' twice"):
        read_all((header + ",c0\n").encode())
    chunks = read_all((header + ",x\n" + "1," * (columns - 1) + "5\n").encode())
    assert chunks[0].values["x"].tolist() == [5.0]
    return time.process_time() - start


def test_a_wide_header_and_its_duplicate_check_are_linear() -> None:
    # ten times the columns costs about ten times the CPU (a quadratic check would cost a hundred times);
    # CPU time and a ratio, best of three, so that a loaded machine does not decide it
    small = min(_wide(MAX_COLUMNS // 10) for _ in range(3))
    large = min(_wide(MAX_COLUMNS) for _ in range(3))
    assert large < 40 * max(small, 1e-3)
