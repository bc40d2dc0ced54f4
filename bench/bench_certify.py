"""Certification benchmark (issue 9): what the ball engine costs, at one point and over many.

    python bench/bench_certify.py                  # single-point figures, then --points at 10^6 rows
    python bench/bench_certify.py --rows 100000    # a quicker --points run
    python bench/bench_certify.py --skip-points    # single-point figures only

Single point, F1 = exp(sin(x))*log(1+x^2) at x = 0.5, engine time (parsing and lowering done once,
median of repeated runs, no symbolic check):
  * the float64 Taylor engine alone (uncertified, what gradcli printed before certification);
  * the whole evaluation stage, float64 engine + ball certificate (``commands.evaluate_block``);
  * ``--digits 50`` at k = 300 (balls alone).
Targets: certified k=100 within 3 ms, k=1000 within 100 ms, --digits 50 at k=300 within 30 ms; a
compiled call (``gradcli.compile(F1).derivative``, issue 10) within 100 us at k=8 and 300 us at k=64.

--points: ``bench_pipeline.py``'s task (10^6 random rows of d/dx d/dy of x*exp(-(x^2+y^2))*sin(3*y)) run
against its numpy + lambdify baseline in the same run: gradcli with --no-check (certificates only)
and with the symbolic check on. Targets: within 1.5x and 2.5x of the baseline.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

F1 = "exp(sin(x))*log(1+x^2)"


def _times(fn, repeat: int) -> list[float]:
    fn()  # warm
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def _median_ms(fn, repeat: int) -> float:
    return statistics.median(_times(fn, repeat)) * 1e3


def compiled_calls(repeat: int) -> dict[tuple[int, bool], tuple[float, float]]:
    """(order, check) -> (median, best) in us of ``gradcli.compile(F1).derivative("x:k", at={"x": 0.7})``,
    the whole API call: every value certified by balls, and with check=True sympy's witness evaluated."""
    import gradcli

    f = gradcli.compile(F1)
    out = {}
    for check in (False, True):
        for k in (8, 64):
            times = _times(lambda k=k, check=check: f.derivative(f"x:{k}", at={"x": 0.7}, check=check), repeat)
            out[k, check] = (statistics.median(times) * 1e6, min(times) * 1e6)
    return out


def single_point(repeat: int) -> dict[str, float]:
    from gradcli import ops
    from gradcli.api import precision
    from gradcli.commands import Chunk, Job, evaluate_block
    from gradcli.derive import derivative_values, point_arrays, prepare

    prep = prepare(F1)
    at = {"x": 0.5}
    out: dict[str, float] = {}
    for k in (100, 1000):
        pts, n = point_arrays(at, ops.F64)
        out[f"float64 k={k}"] = _median_ms(
            lambda k=k, pts=pts, n=n: derivative_values(prep.graph, ["x"] * k, pts, ops.F64, n), repeat)
        job = Job("d", (prep,), ("x",) * k, ops.F64, check=False)
        chunk = Chunk(pts, n, (None,), exact=dict(at))
        out[f"certified k={k}"] = _median_ms(lambda job=job, chunk=chunk: evaluate_block(job, chunk), repeat)
        block = evaluate_block(job, chunk)
        out[f"value k={k}"] = float(block.values[0])
        out[f"bits k={k}"] = block.certs[0][0].bits
    with precision(50) as bk:
        pts, n = point_arrays(at, bk)
        job = Job("d", (prep,), ("x",) * 300, bk, digits=50, check=False)
        chunk = Chunk(pts, n, (None,), exact=dict(at))
        out["digits 50 k=300"] = _median_ms(lambda: evaluate_block(job, chunk), repeat)
    return out


def points(rows: int, repeat: int = 3) -> dict[str, float]:
    import bench_pipeline as bp

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pts = work / "points.csv"
        bp.write_points(pts, rows)
        (work / "baseline.py").write_text(bp.BASELINE)
        gradcli = [sys.executable, "-m", "gradcli"]
        cmd = [*gradcli, "d", bp.EXPR, "--wrt", "x,y", "--points", str(pts), "--format", "plain"]
        runs = {"base": [sys.executable, str(work / "baseline.py"), str(pts)], "nocheck": [*cmd, "--no-check"],
                "check": cmd}
        best = {name: float("inf") for name in runs}
        for _ in range(repeat):  # interleaved, best of each: the machine's load hits all three alike
            for name, argv in runs.items():
                best[name] = min(best[name], bp.timed(argv, work / f"{name}.txt")[0])
        base, nocheck, check = best["base"], best["nocheck"], best["check"]
        ours = np.loadtxt(work / "nocheck.txt")
        theirs = np.loadtxt(work / "base.txt")
        with np.errstate(all="ignore"):
            rel = np.abs(ours - theirs) / np.maximum(np.abs(theirs), 1e-12)
    return {"baseline s": base, "no-check s": nocheck, "check s": check, "max rel diff": float(np.nanmax(rel))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--skip-points", action="store_true")
    ap.add_argument("--points-repeat", type=int, default=3, help="--points runs of each command (best is kept)")
    args = ap.parse_args()
    sp = single_point(args.repeat)
    print(f"F1 = {F1} at x = 0.5 (engine time, median of {args.repeat})")
    for k in (100, 1000):
        print(f"  k={k:<5} float64 only {sp[f'float64 k={k}']:8.2f} ms   certified {sp[f'certified k={k}']:8.2f} ms"
              f"   ({sp[f'bits k={k}']} bits)   f^(k) = {sp[f'value k={k}']:.6e}")
    print(f"  --digits 50, k=300: {sp['digits 50 k=300']:.2f} ms")
    calls = compiled_calls(20 * args.repeat)
    print(f"gradcli.compile(F1).derivative('x:k', at={{'x': 0.7}}), the whole API call, certified "
          f"(median / best of {20 * args.repeat}):")
    for check in (False, True):
        print(f"  check={check!s:<5}  " + "   ".join(f"k={k} {calls[k, check][0]:7.0f} / {calls[k, check][1]:.0f} us"
                                              for k in (8, 64)))
    targets = [
        ("certified k=100 within 3 ms", sp["certified k=100"], 3.0),
        ("certified k=1000 within 100 ms", sp["certified k=1000"], 100.0),
        ("--digits 50 at k=300 within 30 ms", sp["digits 50 k=300"], 30.0),
        ("compiled call k=8 within 100 us (median)", calls[8, False][0], 100.0),
        ("compiled call k=64 within 300 us (median)", calls[64, False][0], 300.0),
    ]
    if not args.skip_points:
        pr = points(args.rows, args.points_repeat)
        base = pr["baseline s"]
        print(f"--points, {args.rows} rows: baseline {base:.2f} s, gradcli --no-check {pr['no-check s']:.2f} s "
              f"({pr['no-check s'] / base:.2f}x), with the check {pr['check s']:.2f} s ({pr['check s'] / base:.2f}x); "
              f"max rel diff vs baseline {pr['max rel diff']:.2e}")
        targets += [("--points --no-check within 1.5x", pr["no-check s"] / base, 1.5),
                    ("--points with the check within 2.5x", pr["check s"] / base, 2.5)]
    print("Targets")
    for name, got, limit in targets:
        print(f"  {name:<40} {got:10.2f}   {'PASS' if got <= limit else 'MISS'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
