"""Shell completion: the committed scripts are what click generates, and completing really works."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = {"bash": "gradcli.bash", "zsh": "_gradcli", "fish": "gradcli.fish"}
GRADCLI = shutil.which("gradcli")


def _gradcli_argv() -> list[str]:
    """The installed executable (as users run it), else the module (same prog name)."""
    return [GRADCLI] if GRADCLI else [sys.executable, "-m", "gradcli"]


def _complete(env_extra: dict[str, str]) -> str:
    env = {**os.environ, **env_extra}
    proc = subprocess.run(_gradcli_argv(), env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc.stdout


@pytest.mark.parametrize("shell", sorted(SCRIPTS))
def test_committed_completion_script_matches_what_click_generates(shell: str) -> None:
    generated = _complete({"_GRADCLI_COMPLETE": f"{shell}_source"})
    committed = (ROOT / "completions" / SCRIPTS[shell]).read_text()
    assert generated == committed, (
        f"completions/{SCRIPTS[shell]} is stale; regenerate it with "
        f"_GRADCLI_COMPLETE={shell}_source gradcli > completions/{SCRIPTS[shell]}"
    )


@pytest.mark.parametrize(("shell", "registration"), [
    ("bash", "complete -o nosort -F _gradcli_completion gradcli"),
    ("zsh", "compdef _gradcli_completion gradcli"),
    ("fish", "complete --no-files --command gradcli"),
])
def test_completion_script_registers_for_the_gradcli_command(shell: str, registration: str) -> None:
    text = (ROOT / "completions" / SCRIPTS[shell]).read_text()
    assert f"_GRADCLI_COMPLETE={shell}_complete" in text
    assert registration in text


def test_bash_complete_protocol_completes_h_to_hessian() -> None:
    out = _complete({"_GRADCLI_COMPLETE": "bash_complete", "COMP_WORDS": "gradcli h", "COMP_CWORD": "1"})
    assert out.split() == ["plain,hessian"]


def test_bash_complete_protocol_lists_every_command_for_an_empty_word() -> None:
    from gradcli.cli import cli

    out = _complete({"_GRADCLI_COMPLETE": "bash_complete", "COMP_WORDS": "gradcli ", "COMP_CWORD": "1"})
    assert [line.split(",", 1)[1] for line in out.split()] == sorted(cli.commands)


def test_bash_complete_protocol_completes_options_and_format_choices() -> None:
    opts = _complete({"_GRADCLI_COMPLETE": "bash_complete", "COMP_WORDS": "gradcli hessian --fo", "COMP_CWORD": "2"})
    assert opts.split() == ["plain,--format"]
    choices = _complete({"_GRADCLI_COMPLETE": "bash_complete", "COMP_WORDS": "gradcli d --format ", "COMP_CWORD": "3"})
    assert [line.split(",", 1)[1] for line in choices.split()] == ["table", "plain", "json", "csv"]


def test_zsh_complete_protocol_gives_hessian_with_its_help() -> None:
    out = _complete({"_GRADCLI_COMPLETE": "zsh_complete", "COMP_WORDS": "gradcli h", "COMP_CWORD": "1"})
    kind, value, descr = out.splitlines()
    assert (kind, value) == ("plain", "hessian")
    assert descr.startswith("The Hessian matrix")


def test_fish_complete_protocol_gives_hessian() -> None:
    out = _complete({"_GRADCLI_COMPLETE": "fish_complete", "COMP_WORDS": "gradcli h", "COMP_CWORD": "h"})
    lines = out.splitlines()
    # click < 8.5 answers "plain" and "hessian" on two lines; 8.5 answers "plain,hessian<TAB>help"
    assert lines[:2] == ["plain", "hessian"] or lines[0].split("\t")[0] == "plain,hessian"


def _bash_env() -> dict[str, str]:
    """PATH with the directory of the gradcli executable first, so the script's `$1` call finds it."""
    env = dict(os.environ)
    if GRADCLI:
        env["PATH"] = os.path.dirname(GRADCLI) + os.pathsep + env.get("PATH", "")
    return env


@pytest.mark.skipif(shutil.which("bash") is None or GRADCLI is None, reason="needs bash and the installed gradcli")
@pytest.mark.parametrize(("words", "cword", "expected"), [
    ("gradcli h", 1, ["hessian"]),
    ("gradcli j", 1, ["jacobian"]),
    ("gradcli hessian --ch", 2, ["--check", "--check-timeout"]),
])
def test_bash_really_completes_with_the_committed_script(words: str, cword: int, expected: list[str]) -> None:
    script = ROOT / "completions" / "gradcli.bash"
    array = " ".join(f"'{w}'" for w in words.split(" ")) + (" ''" if words.endswith(" ") else "")
    program = (
        f"source '{script}'\n"
        f"COMP_WORDS=({array}); COMP_CWORD={cword}\n"
        # bash calls the function with the command name, the current word and the previous word
        f"_gradcli_completion gradcli \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    proc = subprocess.run(["bash", "--norc", "--noprofile", "-c", program], env=_bash_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == expected


@pytest.mark.skipif(shutil.which("bash") is None or GRADCLI is None, reason="needs bash and the installed gradcli")
def test_bash_script_registers_a_complete_spec_for_gradcli() -> None:
    script = ROOT / "completions" / "gradcli.bash"
    proc = subprocess.run(["bash", "--norc", "--noprofile", "-c", f"source '{script}'; complete -p gradcli"],
                          env=_bash_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "-F _gradcli_completion" in proc.stdout
