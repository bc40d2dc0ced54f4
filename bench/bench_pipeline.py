"""Pipeline benchmark for ``--points`` (issue 4): gradcli against a numpy + sympy.lambdify baseline.

    python bench/bench_pipeline.py                 # 10^6 rows timed, plus the 10^7-row stdin memory run
    python bench/bench_pipeline.py --skip-big      # without the 10^7-row run
    python bench/bench_pipeline.py --rows 100000 --big-rows 1000000 --repeat 1   # a quick look

What it does, all in one run:
1. writes a CSV of ``--rows`` random (x, y) points (uniform in [-2, 2], ``repr`` floats) to a temp dir;
2. times (wall clock, each a subprocess, best of ``--repeat``) the baseline script -- numpy reads the
   file (``np.loadtxt``), sympy's lambdified symbolic derivative evaluates it, values are written with
   ``repr(float)`` -- and ``gradcli d EXPR --wrt x,y --points FILE --format plain``, with --no-check and
   with the check on;
3. verifies every gradcli row against the baseline's (relative 1e-12, absolute below 1e-12: the
   ``--tol`` rule), and evaluates the rows that differ by more at 50 digits to see whose float64
   evaluation lost the digits (near a zero of the derivative, cancellation costs both sides);
4. pipes ``--big-rows`` rows, generated on the fly by a second process, through gradcli's stdin and
   measures gradcli's peak RSS (``os.wait4``) and that every row came out.

gradcli runs as ``python -m gradcli`` with this interpreter (the installed console script minus any
shim such as pyenv's), the baseline with the same interpreter.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

EXPR = "x*exp(-(x^2+y^2))*sin(3*y)"

BASELINE = textwrap.dedent(
    '''
    """Baseline: numpy reads the points, sympy's lambdified derivative evaluates them, repr writes them."""
    import sys

    import numpy as np
    import sympy

    x, y = sympy.symbols("x y", real=True)
    f = x * sympy.exp(-(x**2 + y**2)) * sympy.sin(3 * y)
    fn = sympy.lambdify((x, y), sympy.diff(f, x, y), "numpy")
    data = np.loadtxt(sys.argv[1], delimiter=",", skiprows=1, ndmin=2)
    values = fn(data[:, 0], data[:, 1])
    sys.stdout.write("\\n".join(map(repr, values.tolist())) + "\\n")
    '''
)

GENERATOR = textwrap.dedent(
    '''
    """Writes a header and N random (x, y) rows to stdout, 100,000 at a time."""
    import sys

    import numpy as np

    n = int(sys.argv[1])
    rng = np.random.default_rng(1)
    out = sys.stdout
    out.write("x,y\\n")
    while n > 0:
        k = min(n, 100_000)
        pts = rng.uniform(-2.0, 2.0, size=(k, 2)).tolist()
        out.write("".join(f"{a!r},{b!r}\\n" for a, b in pts))
        n -= k
    out.flush()
    '''
)


def write_points(path: Path, rows: int) -> None:
    """A CSV of ``rows`` random points, written in slices (repr formatting, like any Python producer)."""
    rng = np.random.default_rng(0)
    with path.open("w") as f:
        f.write("x,y\n")
        left = rows
        while left:
            k = min(left, 200_000)
            f.write("".join(f"{a!r},{b!r}\n" for a, b in rng.uniform(-2.0, 2.0, size=(k, 2)).tolist()))
            left -= k


def timed(cmd: list[str], out: Path) -> tuple[float, int]:
    """Wall time of ``cmd`` with stdout to ``out``; its exit code."""
    with out.open("wb") as f:
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.PIPE)
        elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr.decode(errors="replace"))
    return elapsed, proc.returncode


def compare(ours: Path, theirs: Path, points: Path) -> dict[str, float]:
    """gradcli's rows against the baseline's under the --tol rule (relative 1e-12, absolute below 1e-12).

    Rows that differ by more are evaluated once more at 50 digits (sympy's derivative with mpmath), to
    show which side float64 cancellation hurt: near a zero of the derivative neither can hold 1e-12.
    """
    import mpmath
    import sympy

    a = np.loadtxt(ours, ndmin=1)
    b = np.loadtxt(theirs, ndmin=1)
    if a.shape != b.shape:
        return {"rows": max(a.size, b.size), "off": max(a.size, b.size), "worst": float("inf")}
    err = _rel(a, b)
    off = np.flatnonzero(err > 1e-12)
    out = {"rows": a.size, "off": off.size, "worst": float(err.max(initial=0.0)), "closer": 0,
           "ours_vs_truth": 0.0, "base_vs_truth": 0.0}
    if off.size:
        pts = np.loadtxt(points, delimiter=",", skiprows=1, ndmin=2)[off]
        x, y = sympy.symbols("x y", real=True)
        d = sympy.diff(x * sympy.exp(-(x**2 + y**2)) * sympy.sin(3 * y), x, y)
        fn = sympy.lambdify((x, y), d, "mpmath")
        with mpmath.workdps(50):
            truth = np.array([float(fn(mpmath.mpf(p), mpmath.mpf(q))) for p, q in pts.tolist()])
        ours_err, base_err = _rel(a[off], truth), _rel(b[off], truth)
        out.update(closer=int((ours_err <= base_err).sum()), ours_vs_truth=float(ours_err.max()),
                   base_vs_truth=float(base_err.max()))
    return out


def _rel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    diff = np.abs(a - b)
    scale = np.maximum(np.abs(a), np.abs(b))
    return np.where(scale >= 1e-12, diff / np.where(scale == 0, 1, scale), diff)


def big_run(gradcli: list[str], rows: int, workdir: Path) -> tuple[float, float, int, int]:
    """Pipe ``rows`` generated rows through gradcli's stdin: (seconds, peak RSS in MB, lines out, exit)."""
    gen_script = workdir / "generate.py"
    gen_script.write_text(GENERATOR)
    t0 = time.perf_counter()
    gen = subprocess.Popen([sys.executable, str(gen_script), str(rows)], stdout=subprocess.PIPE)
    proc = subprocess.Popen([*gradcli, "d", EXPR, "--wrt", "x,y", "--points", "-", "--format", "plain"],
                            stdin=gen.stdout, stdout=subprocess.PIPE)
    assert gen.stdout is not None and proc.stdout is not None
    gen.stdout.close()  # gradcli holds the read end now
    lines = 0
    while block := proc.stdout.read(1 << 20):
        lines += block.count(b"\n")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    gen.wait()
    elapsed = time.perf_counter() - t0
    return elapsed, usage.ru_maxrss / 1024, lines, proc.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows of the timed file (default 10^6)")
    ap.add_argument("--big-rows", type=int, default=10_000_000, help="rows of the stdin run (default 10^7)")
    ap.add_argument("--skip-big", action="store_true", help="skip the stdin memory run")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of each command; the best counts")
    args = ap.parse_args()

    gradcli = [sys.executable, "-m", "gradcli"]
    with tempfile.TemporaryDirectory(prefix="gradcli-bench-") as tmp:
        work = Path(tmp)
        points = work / "points.csv"
        t0 = time.perf_counter()
        write_points(points, args.rows)
        print(f"wrote {args.rows:,} rows ({points.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s")
        baseline_script = work / "baseline.py"
        baseline_script.write_text(BASELINE)

        runs = {
            "baseline (numpy + lambdify)": [sys.executable, str(baseline_script), str(points)],
            "gradcli --no-check": [*gradcli, "d", EXPR, "--wrt", "x,y", "--points", str(points),
                                   "--format", "plain", "--no-check"],
            "gradcli (check on)": [*gradcli, "d", EXPR, "--wrt", "x,y", "--points", str(points),
                                   "--format", "plain"],
        }
        outs = {name: work / f"out{i}.txt" for i, name in enumerate(runs)}
        best = {name: float("inf") for name in runs}
        codes = {}
        for _ in range(args.repeat):  # interleaved, so drifts in machine load hit every command alike
            for name, cmd in runs.items():
                elapsed, codes[name] = timed(cmd, outs[name])
                best[name] = min(best[name], elapsed)

        base = best["baseline (numpy + lambdify)"]
        targets = {"gradcli --no-check": 1.5, "gradcli (check on)": 2.5}
        print(f"\n{'command':<30} {'wall s':>8} {'ratio':>7} {'target':>8} {'exit':>5}  verdict")
        for name in runs:
            ratio = best[name] / base
            target = targets.get(name)
            verdict = "" if target is None else ("PASS" if ratio <= target and codes[name] == 0 else "FAIL")
            shown = f"<= {target}x" if target else ""
            print(f"{name:<30} {best[name]:>8.3f} {ratio:>6.2f}x {shown:>8} {codes[name]:>5}  {verdict}")

        print("\nvalues against the baseline (relative 1e-12, absolute below 1e-12):")
        for name in ("gradcli --no-check", "gradcli (check on)"):
            c = compare(outs[name], outs["baseline (numpy + lambdify)"], points)
            verdict = "PASS" if c["off"] == 0 and c["rows"] == args.rows else "FAIL"
            print(f"  {name:<28} {c['rows']:,} rows, {c['off']} off, largest difference {c['worst']:.2e}  {verdict}")
            if c["off"]:
                print(f"    at those rows, against 50 digits: gradcli's largest error {c['ours_vs_truth']:.2e}, "
                      f"the baseline's {c['base_vs_truth']:.2e}; gradcli is at least as close in "
                      f"{c['closer']} of {c['off']}")

        if not args.skip_big:
            elapsed, rss, lines, code = big_run(gradcli, args.big_rows, work)
            verdict = "PASS" if rss < 400 and lines == args.big_rows and code == 0 else "FAIL"
            print(f"\n{args.big_rows:,} rows through stdin (check on): {elapsed:.1f} s, peak RSS {rss:.0f} MB "
                  f"(target < 400 MB), {lines:,} lines out, exit {code}  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
