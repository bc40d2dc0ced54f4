"""Start-up time of the calls that need no mathematics: ``gradcli --help``, ``gradcli --version`` and one
shell-completion call (what every TAB runs), against ``python -c "import click"``, the floor for a click
program, and a real ``gradcli d`` call for scale. Median wall time of 7 runs each, in ms.

    python bench/bench_startup.py [--runs N]

Not a test (timings depend on the machine); ``tests/test_startup.py`` checks the cause instead:
that these calls import neither sympy nor numpy.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

GRADCLI = shutil.which("gradcli")
ARGV0 = [GRADCLI] if GRADCLI else [sys.executable, "-m", "gradcli"]
COMPLETE = {"_GRADCLI_COMPLETE": "bash_complete", "COMP_WORDS": "gradcli d x --fo", "COMP_CWORD": "3"}

CASES = [
    ('python -c "import click"', [sys.executable, "-c", "import click"], {}),
    ("gradcli --help", [*ARGV0, "--help"], {}),
    ("gradcli --version", [*ARGV0, "--version"], {}),
    ("completion (bash_complete)", ARGV0, COMPLETE),
    ('gradcli d "x**2" --at x=1', [*ARGV0, "d", "x**2", "--at", "x=1"], {}),
]


def median_ms(argv: list[str], env: dict[str, str], runs: int) -> float:
    times = []
    for _ in range(runs + 1):  # one warm-up run (file cache), not counted
        start = time.perf_counter()
        subprocess.run(argv, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=True)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    results = {name: median_ms(argv, env, runs) for name, argv, env in CASES}
    floor = results['python -c "import click"']
    print(f"median of {runs} runs, wall time")
    for name, ms in results.items():
        print(f"  {name:<30} {ms:8.1f} ms  {ms / floor:5.2f}x import click")


if __name__ == "__main__":
    main()
