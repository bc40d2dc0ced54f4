"""Lazy start-up (issue 11, item 5): ``--help``, ``--version`` and a shell-completion call import neither
sympy nor numpy (nor mpmath). Checked with CPython's import log (PYTHONPROFILEIMPORTTIME) on the real
executable, not with a timer: ``bench/bench_startup.py`` measures the time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

GRADCLI = shutil.which("gradcli")
ARGV0 = [GRADCLI] if GRADCLI else [sys.executable, "-m", "gradcli"]
HEAVY = ("sympy", "numpy", "mpmath")

CALLS = {
    "--help": (["--help"], {}),
    "--version": (["--version"], {}),
    "d --help": (["d", "--help"], {}),
    "complete a command": ([], {"_GRADCLI_COMPLETE": "bash_complete", "COMP_WORDS": "gradcli h", "COMP_CWORD": "1"}),
    "complete after --at": ([], {"_GRADCLI_COMPLETE": "bash_complete",
                                 "COMP_WORDS": "gradcli d sin(x) --wrt x:2 --at x=pi/4 --f", "COMP_CWORD": "6"}),
    "complete --points": ([], {"_GRADCLI_COMPLETE": "zsh_complete",
                               "COMP_WORDS": "gradcli grad x*y --at x=1 --points ", "COMP_CWORD": "6"}),
}


def imported(argv: list[str], env: dict[str, str]) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    """The top-level packages the call imported, from CPython's import-time log on stderr."""
    proc = subprocess.run([*ARGV0, *argv], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env, "PYTHONPROFILEIMPORTTIME": "1"})
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names, proc


@pytest.mark.parametrize("call", sorted(CALLS))
def test_help_version_and_completion_import_neither_sympy_nor_numpy(call: str) -> None:
    argv, env = CALLS[call]
    names, proc = imported(argv, env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "click" in names  # the log is really there
    assert not names & set(HEAVY), f"{call} imported {sorted(names & set(HEAVY))}"


def test_a_real_command_does_import_them() -> None:  # the check above can fail
    names, proc = imported(["d", "x**2", "--at", "x=1", "--no-check"], {})
    assert proc.returncode == 0 and proc.stdout == "2.0\n"
    assert {"sympy", "numpy"} <= names


def test_points_completes_file_names() -> None:
    env = {"_GRADCLI_COMPLETE": "bash_complete", "COMP_WORDS": "gradcli d x --points ", "COMP_CWORD": "4"}
    proc = subprocess.run(ARGV0, capture_output=True, text=True, timeout=60, env={**os.environ, **env})
    assert proc.stdout.split() == ["file,"]  # the shell lists the files


def test_import_gradcli_is_lazy_and_complete() -> None:
    program = (
        "import sys, gradcli\n"
        f"assert not [m for m in {HEAVY!r} if m in sys.modules], 'import gradcli loaded a heavy module'\n"
        "missing = [n for n in gradcli.__all__ if not hasattr(gradcli, n)]\n"
        "assert not missing, missing\n"
        "import gradcli.taylor as module  # the submodule does not hide the function\n"
        "assert callable(gradcli.taylor) and gradcli.taylor.__module__ == 'gradcli.api'\n"
        "assert gradcli.derivative('x**2', wrt='x', at={'x': 3}) == 6.0\n"
    )
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_the_clis_digits_bound_is_the_apis() -> None:
    from gradcli import api, cli

    assert cli.MAX_DIGITS == api.MAX_DIGITS
