"""Hessian of f = sum_{i=1}^{n-1} x_i^2 sin(x_{i+1}) at a random point: gradcli against sympy.

For each n it times, in one run,

* ``engine``   derive.hessian_values on the lowered graph (forward-over-reverse, all n directions at once),
* ``api``      gradcli.hessian(text, at) end to end (parse, lower, engine, finiteness checks),
* ``tape``     reverse-over-reverse with gradcli.Tape as user code writes it (one outer sweep per row),
* ``sympy``    sympy.hessian(f, vars) plus its evaluation at the point (lambdify),

checks that every entry agrees with sympy's within 1e-10 (relative, absolute below 1), and prints the
ratios. Once (for the smallest n) it also runs the installed ``gradcli hessian`` command end to end,
with and without ``--check``.

    python bench/bench_hessian.py                 # n = 10, 50, 200 (sympy needs about a minute at 200)
    python bench/bench_hessian.py --sizes 10,50   # quicker
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import sympy

import gradcli
from gradcli import ops
from gradcli.derive import hessian_values, point_arrays, prepare

TOL = 1e-10


def names(n: int) -> list[str]:
    """x001, x002, ...: zero-padded, so that sorting by name keeps the numeric order."""
    width = len(str(n))
    return [f"x{i:0{width}d}" for i in range(1, n + 1)]


def expression(n: int) -> str:
    v = names(n)
    return " + ".join(f"{v[i]}**2*sin({v[i + 1]})" for i in range(n - 1))


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    """The best wall time of ``repeat`` runs, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def tape_hessian(values: list[float]) -> np.ndarray:
    """Reverse-over-reverse as a gradcli.Tape user writes it: a recorded gradient, then a sweep per row."""
    xs = [gradcli.Variable(v) for v in values]
    with gradcli.Tape(persistent=True) as outer:
        with gradcli.Tape() as inner:
            f = xs[0] ** 2 * gradcli.sin(xs[1])
            for i in range(1, len(xs) - 1):
                f = f + xs[i] ** 2 * gradcli.sin(xs[i + 1])
        grads = inner.gradient(f, xs)
    n = len(xs)
    out = np.zeros((n, n))
    for i, g in enumerate(grads):
        row = outer.gradient(g, xs[i:], unconnected_gradients="zero")
        for j, h in enumerate(row, start=i):
            out[i, j] = out[j, i] = float(h)
    return out


def sympy_hessian(n: int, point: dict[str, float]) -> tuple[float, float, np.ndarray]:
    syms = sympy.symbols(names(n))
    f = sum(syms[i] ** 2 * sympy.sin(syms[i + 1]) for i in range(n - 1))
    t_diff, hess = timed(lambda: sympy.hessian(f, syms))
    t_eval, values = timed(lambda: np.array(sympy.lambdify(syms, hess, "numpy")(*(point[str(s)] for s in syms)),
                                            dtype=float))
    return t_diff, t_eval, values


def max_rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b))))


def cli_run(n: int, point: dict[str, float], check: bool) -> tuple[float, np.ndarray]:
    exe = shutil.which("gradcli")
    argv = [exe] if exe else [sys.executable, "-m", "gradcli"]
    at = ",".join(f"{k}={v!r}" for k, v in point.items())
    argv += ["hessian", expression(n), "--at", at, "--format", "json", "--check" if check else "--no-check"]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"gradcli hessian failed ({proc.returncode}): {proc.stderr.strip()}")
    obj = json.loads(proc.stdout)
    if check and obj["check"]["ok"] is not True:
        raise SystemExit(f"gradcli's own --check did not pass: {obj['check']}")
    return elapsed, np.array(obj["value"], dtype=float)


def bench_one(n: int, point: dict[str, float], repeat: int) -> tuple[str, float]:
    """One table line for n variables, and the largest relative difference from sympy."""
    text = expression(n)
    prep = prepare(text)
    wrt = list(prep.variables)
    arrays, npts = point_arrays(point, ops.F64)
    t_engine, (engine_h, _) = timed(lambda: hessian_values(prep.graph, wrt, arrays, ops.F64, npts), repeat)
    t_api, api_h = timed(lambda: gradcli.hessian(text, at=point), repeat)
    t_tape, tape_h = timed(lambda: tape_hessian([point[k] for k in names(n)]))
    t_diff, t_eval, sym_h = sympy_hessian(n, point)
    err = max(max_rel(h, sym_h) for h in (engine_h[0], api_h, tape_h))
    t_sym = t_diff + t_eval
    line = (f"{n:>4} {t_engine:>9.4f} {t_api:>9.4f} {t_tape:>9.4f} {t_diff:>12.3f} {t_eval:>12.3f} "
            f"{t_sym / t_engine:>12.0f} {t_sym / t_api:>10.0f} {t_tape / t_engine:>11.1f} {err:>12.2e}")
    return line, err


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,50,200", help="comma-separated n (default 10,50,200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many gradcli runs")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    rng = np.random.default_rng(args.seed)

    header = (f"{'n':>4} {'engine s':>9} {'api s':>9} {'tape s':>9} {'sympy diff s':>12} {'sympy eval s':>12} "
              f"{'sympy/engine':>12} {'sympy/api':>10} {'tape/engine':>11} {'max rel diff':>12}")
    print("Hessian of sum_i x_i^2 sin(x_{i+1}) at a random point in [-2, 2]^n")
    print(header)
    print("-" * len(header))
    failed = False
    cli_point: dict[str, float] = {}
    for n in sizes:
        point = {name: float(v) for name, v in zip(names(n), rng.uniform(-2, 2, n))}
        cli_point = cli_point or point
        line, err = bench_one(n, point, args.repeat)
        failed |= err > TOL
        print(line)

    n_cli = len(cli_point)
    if n_cli:
        sym_h = sympy_hessian(n_cli, cli_point)[2]
        print(f"\nCLI end to end, n = {n_cli} (`gradcli hessian EXPR --at ... --format json`):")
        for check in (False, True):
            elapsed, values = cli_run(n_cli, cli_point, check)
            err = max_rel(values, sym_h)
            failed |= err > TOL
            flag = "--check   " if check else "--no-check"
            print(f"  {flag} {elapsed:8.3f} s   max rel diff vs sympy {err:.2e}")
    if failed:
        print(f"\nFAILED: some entry differs from sympy's by more than {TOL:g}")
        return 1
    print(f"\nall entries agree with sympy's within {TOL:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
