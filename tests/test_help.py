"""--version, --help with examples for the group and every command, and the README covering them all."""

from __future__ import annotations

import importlib.metadata
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run

import gradcli
from gradcli.cli import cli

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = sorted(cli.commands)


def examples(help_text: str) -> list[tuple[list[str], str | None]]:
    """The ``gradcli ...`` example lines of a help text: (argv after 'gradcli', documented output or None)."""
    found = []
    for line in help_text.splitlines():
        line = line.strip()
        if not line.startswith("gradcli "):
            continue
        command, _, comment = line.partition("  #")
        argv = shlex.split(command)[1:]
        documented = comment.strip() if re.fullmatch(r"[-0-9.e ]+", comment.strip() or "x") else None
        found.append((argv, documented))
    return found


def test_the_commands_are_the_contracts() -> None:
    assert COMMANDS == ["d", "explain", "grad", "hessian", "jacobian", "plot", "taylor"]


def test_version_prints_gradcli_and_the_package_version(capsys) -> None:
    code, out, err = run(capsys, "--version")
    assert (code, out, err) == (0, f"gradcli {gradcli.__version__}\n", "")
    assert out == "gradcli 0.1.0\n"


def test_package_version_matches_the_installed_metadata() -> None:
    assert importlib.metadata.version("gradcli") == gradcli.__version__


@pytest.mark.skipif(shutil.which("gradcli") is None, reason="the gradcli executable is not installed")
def test_installed_executable_prints_its_version() -> None:
    proc = subprocess.run([shutil.which("gradcli"), "--version"], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"gradcli {gradcli.__version__}\n", "")


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_group_help_lists_every_command_with_examples(capsys, flag: str) -> None:
    code, out, err = run(capsys, flag)
    assert (code, err) == (0, "")
    assert "Examples:" in out
    for name in COMMANDS:
        assert re.search(rf"^\s+{name}\s", out, re.MULTILINE), name


def test_no_arguments_shows_usage_not_a_traceback(capsys) -> None:
    code, out, err = run(capsys)
    assert "Usage: gradcli" in out + err
    assert "Traceback" not in out + err
    assert code in (0, 2)


def test_every_command_has_help_text_with_examples() -> None:
    for name, command in cli.commands.items():
        assert command.help and "Example" in command.help, name
        assert command.get_short_help_str().strip(), name
        assert examples(command.help), f"{name}: no 'gradcli {name} ...' example line"


@pytest.mark.parametrize("name", COMMANDS)
def test_command_help_shows_usage_examples_and_every_option(capsys, name: str) -> None:
    code, out, err = run(capsys, name, "--help")
    assert (code, err) == (0, "")
    assert out.startswith(f"Usage: gradcli {name} [OPTIONS]")
    assert "Examples:" in out
    assert f"gradcli {name} " in out
    for param in cli.commands[name].params:
        for opt in param.opts:
            if opt.startswith("-"):
                assert opt in out, f"{name} --help does not mention {opt}"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_help_example_runs_and_prints_what_its_comment_says(capsys, name: str) -> None:
    for argv, documented in examples(cli.commands[name].help):
        assert argv[0] == name
        plain = [a for a in argv if a not in ("--json",)]
        if "--format" in plain:
            i = plain.index("--format")
            del plain[i : i + 2]
        code, out, err = run(capsys, *plain[:1], "--format", "plain", *plain[1:])
        assert code == 0, (argv, err)
        if documented is not None:
            assert out.split() == documented.split(), argv


def test_group_help_examples_run(capsys) -> None:
    for argv, documented in examples(cli.help):
        code, out, err = run(capsys, *argv[:1], "--format", "plain", *argv[1:])
        assert code == 0, (argv, err)
        if documented is not None:
            assert out.split() == documented.split(), argv


def test_python_m_gradcli_runs_the_same_cli() -> None:
    proc = subprocess.run([sys.executable, "-m", "gradcli", "--version"], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout) == (0, f"gradcli {gradcli.__version__}\n")


# ---- the README documents every command ----------------------------------------------------------------------
def readme() -> str:
    path = ROOT / "README.md"
    assert path.exists(), "README.md is missing"
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", COMMANDS)
def test_readme_mentions_every_command(name: str) -> None:
    assert re.search(rf"gradcli {name}\b", readme()), f"README.md does not show `gradcli {name}`"


def test_readme_mentions_version_help_and_completion_for_each_shell() -> None:
    text = readme()
    assert "gradcli --version" in text
    assert "--help" in text
    for script in ("completions/gradcli.bash", "completions/_gradcli", "completions/gradcli.fish"):
        assert script in text, script
