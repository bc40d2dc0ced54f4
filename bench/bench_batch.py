"""Issue 14: gradients and Hessians of H = x*exp(-(x^2+y^2))*sin(3*y) at 10^6 points, warm, median.

    python bench/bench_batch.py [--points 1000000] [--repeat 7] [--threads N] [--block B] [--json]

Measures, in one run: gradcli's fused evaluator alone (gradcli.batch, no rounding-error bound), as the
engines run it (derive.gradient_values / hessian_values: with the rows' rounding-error bound, on the
threads asked for and on one; the Hessian also with its tangent directions stacked along an axis, the
layout not used by default), the public API (gradcli.gradient / gradcli.hessian: every value certified,
the rows the bound cannot vouch for and a sample of the others by balls), a hand-written numpy baseline
(whole arrays, one block, one thread), and
jax (jit) and torch (eager; at its default thread count and on one thread, the targets taking the
faster) when importable (they are not dependencies). Every system is called once
per round, round after round, so a change of load on a shared machine falls on all of them alike; the
figure is the median over the rounds. Peak memory of the evaluator and of the baseline comes from
tracemalloc in a fresh subprocess each. One-shot cost: ``gradcli.gradient`` at one point, warm (median)
and cold (a fresh interpreter: import and first call), and whether that call imported the fused
evaluator (it must not). Values: the fused gradient against the plain engine's bit for bit, the
Hessian's largest relative difference, at the same points. Prints PASS/FAIL per target of issue 14 for
each of the three (evaluator alone, with its bound, API), with the threads and block size.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

EXPR = "x*exp(-(x^2+y^2))*sin(3*y)"


def points(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(14)
    return rng.uniform(-2, 2, n), rng.uniform(-2, 2, n)


def median_ms(fns: dict[str, Callable[[], Any]], repeat: int) -> dict[str, tuple[float, float]]:
    """Median wall time and median CPU time of the process (all its threads), in ms, of each function,
    called once per round after one warm call each. On a loaded machine the CPU time is the steadier
    figure of the work done; the wall time is the one the targets speak of."""
    for fn in fns.values():
        fn()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            times[name].append((time.perf_counter() - t0, time.process_time() - c0))
    return {name: (statistics.median(t for t, _ in ts) * 1e3, statistics.median(c for _, c in ts) * 1e3)
            for name, ts in times.items()}


# ---- hand-written numpy: the gradient and Hessian of H, whole arrays --------------------------------
def numpy_gradient(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    e = np.exp(-(x * x + y * y))
    s, c = np.sin(3 * y), np.cos(3 * y)
    out = np.empty((x.size, 2))
    out[:, 0] = e * s * (1 - 2 * x * x)
    out[:, 1] = x * e * (3 * c - 2 * y * s)
    return out


def sin_cos_floor(y: np.ndarray, block: int, threads: int) -> Callable[[], Any]:
    """np.sin and np.cos of 3*y, block by block on ``threads`` threads: the part of H's gradient no
    evaluator bit-identical to gradcli's engine (libm's sin and cos, as numpy calls them) can skip.
    On one thread it bounds what any such evaluator can gain on one core; the ratio of the one-thread
    and two-thread figures is the parallel speed-up the machine offers at this moment."""
    from concurrent.futures import ThreadPoolExecutor

    t = 3 * y
    s, c = np.empty_like(t), np.empty_like(t)

    def part(k: int) -> None:
        for p0 in range(k * block, t.size, threads * block):
            np.sin(t[p0:p0 + block], out=s[p0:p0 + block])
            np.cos(t[p0:p0 + block], out=c[p0:p0 + block])

    def run() -> None:
        if threads == 1:
            part(0)
            return
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(part, range(threads)))

    return run


def numpy_hessian(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    e = np.exp(-(x * x + y * y))
    s, c = np.sin(3 * y), np.cos(3 * y)
    x2 = x * x
    out = np.empty((x.size, 2, 2))
    out[:, 0, 0] = e * s * x * (4 * x2 - 6)
    xy = e * (1 - 2 * x2) * (3 * c - 2 * y * s)
    out[:, 0, 1] = xy
    out[:, 1, 0] = xy
    out[:, 1, 1] = x * e * ((4 * y * y - 11) * s - 12 * y * c)
    return out


def gradcli_fns(n: int, threads: int | None) -> dict[str, Callable[[], Any]]:
    import gradcli
    from gradcli import batch, ops
    from gradcli.derive import gradient_values, hessian_values, prepare

    x, y = points(n)
    graph = prepare(EXPR).graph
    pts = {"x": x, "y": y}
    return {
        # the fused evaluator alone, and as the engines run it: with the rows' rounding-error bound
        "gradcli grad, no bound": lambda: batch.gradient(graph, ["x", "y"], pts, n, threads=threads, bound=False),
        "gradcli hess, no bound": lambda: batch.hessian(graph, ["x", "y"], pts, n, threads=threads, bound=False),
        "gradcli grad": lambda: gradient_values(graph, ["x", "y"], pts, ops.F64, n, threads=threads),
        "gradcli hess": lambda: hessian_values(graph, ["x", "y"], pts, ops.F64, n, threads=threads),
        "gradcli grad, 1 thread": lambda: gradient_values(graph, ["x", "y"], pts, ops.F64, n, threads=1),
        "gradcli hess, 1 thread": lambda: hessian_values(graph, ["x", "y"], pts, ops.F64, n, threads=1),
        # the other layout of the Hessian's tangents (gradcli.batch.compile_hessian), evaluator alone
        "gradcli hess, stacked": lambda: batch.hessian(graph, ["x", "y"], pts, n, threads=threads, stacked=True),
        "gradcli.gradient (API)": lambda: gradcli.gradient(EXPR, wrt=["x", "y"], at=pts),
        "gradcli.hessian (API)": lambda: gradcli.hessian(EXPR, wrt=["x", "y"], at=pts),
    }


def jax_fns(n: int) -> dict[str, Callable[[], Any]]:
    try:
        os.environ.setdefault("JAX_ENABLE_X64", "1")
        import jax
        import jax.numpy as jnp
    except ImportError:
        return {}
    jax.config.update("jax_enable_x64", True)

    def h(v: Any) -> Any:
        return v[0] * jnp.exp(-(v[0] ** 2 + v[1] ** 2)) * jnp.sin(3 * v[1])

    g = jax.jit(jax.vmap(jax.grad(h)))
    hh = jax.jit(jax.vmap(jax.hessian(h)))
    x, y = points(n)
    v = jnp.stack([jnp.asarray(x), jnp.asarray(y)], axis=1)
    return {"jax grad": lambda: g(v).block_until_ready(), "jax hess": lambda: hh(v).block_until_ready()}


def torch_fns(n: int) -> dict[str, Callable[[], Any]]:
    try:
        import torch
    except ImportError:
        return {}
    x, y = (torch.from_numpy(a) for a in points(n))

    def grad() -> Any:
        xs, ys = x.clone().requires_grad_(), y.clone().requires_grad_()
        f = xs * torch.exp(-(xs**2 + ys**2)) * torch.sin(3 * ys)
        return torch.autograd.grad(f.sum(), (xs, ys))

    def hess() -> Any:
        xs, ys = x.clone().requires_grad_(), y.clone().requires_grad_()
        f = xs * torch.exp(-(xs**2 + ys**2)) * torch.sin(3 * ys)
        gx, gy = torch.autograd.grad(f.sum(), (xs, ys), create_graph=True)
        hxx, hxy = torch.autograd.grad(gx.sum(), (xs, ys), retain_graph=True)
        _, hyy = torch.autograd.grad(gy.sum(), (xs, ys))
        return hxx, hxy, hyy

    def one_thread(fn: Callable[[], Any]) -> Callable[[], Any]:
        # torch's default intra-op pool spins and collapses when the cores are shared; one thread is
        # its better configuration on a loaded machine, so the targets take the faster of the two
        def call() -> Any:
            before = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                return fn()
            finally:
                torch.set_num_threads(before)

        return call

    return {"torch grad": grad, "torch hess": hess,
            "torch grad, 1 thread": one_thread(grad), "torch hess, 1 thread": one_thread(hess)}


def peak(kind: str, n: int, threads: int | None, block: int) -> float:
    """Peak traced allocation (MiB) of one warm call, in a fresh interpreter."""
    code = f"""
import sys, tracemalloc
sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
import bench_batch as b
from gradcli import batch
batch.BLOCK = {block}
x, y = b.points({n})
fns = b.gradcli_fns({n}, {threads!r})
fn = {{"numpy grad": lambda: b.numpy_gradient(x, y), "numpy hess": lambda: b.numpy_hessian(x, y),
       "gradcli grad": fns["gradcli grad"], "gradcli hess": fns["gradcli hess"]}}[{kind!r}]
fn()
tracemalloc.start()
fn()
print(tracemalloc.get_traced_memory()[1])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 2**20


def against_plain(n: int) -> tuple[bool, float, int]:
    """The fused values against the plain engine's (the tape and gradcli.dual, with the fused
    evaluator switched off, in pieces of 4096 points) at the same n points: gradient bit for bit; the
    Hessian's largest difference relative to its row's largest entry, and how many rows differ at all."""
    from gradcli import derive, ops
    from gradcli.derive import gradient_values, hessian_values, prepare

    x, y = points(n)
    graph = prepare(EXPR).graph
    piece = 4096

    def plain(fn: Callable[..., Any]) -> np.ndarray:
        fused, derive.FUSED_MIN_POINTS = derive.FUSED_MIN_POINTS, piece + 1
        try:
            return np.concatenate([fn(graph, ["x", "y"], {"x": x[a:a + piece], "y": y[a:a + piece]},
                                      ops.F64, min(n, a + piece) - a)[0] for a in range(0, n, piece)])
        finally:
            derive.FUSED_MIN_POINTS = fused

    grad = gradient_values(graph, ["x", "y"], {"x": x, "y": y}, ops.F64, n)[0]
    hess = hessian_values(graph, ["x", "y"], {"x": x, "y": y}, ops.F64, n)[0]
    ref = plain(hessian_values)
    diff = np.abs(hess - ref).reshape(n, 4).max(axis=1)
    rel = diff / np.maximum(np.abs(ref).reshape(n, 4).max(axis=1), 1e-300)
    return bool(np.array_equal(grad, plain(gradient_values))), float(rel.max()), int((diff > 0).sum())


ONE_POINT = {"x": 0.3, "y": 0.4}
_COLD = f"""
import sys, time
t0 = time.perf_counter()
import gradcli
gradcli.gradient({EXPR!r}, wrt=["x", "y"], at={ONE_POINT!r})
print(time.perf_counter() - t0, "gradcli.batch" in sys.modules)
"""


def one_point(repeat: int) -> tuple[float, float, bool]:
    """``gradcli.gradient`` at one point: warm median (ms), cold median (ms: a fresh interpreter's
    import and first call), and whether the call imported the fused evaluator."""
    import gradcli

    def call() -> Any:
        return gradcli.gradient(EXPR, wrt=["x", "y"], at=ONE_POINT)

    warm = median_ms({"one point": call}, max(repeat, 25))["one point"][0]
    cold, imported = [], False
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", _COLD], capture_output=True, text=True, check=True)
        seconds, flag = out.stdout.split()
        cold.append(float(seconds) * 1e3)
        imported |= flag == "True"
    return warm, statistics.median(cold), imported


FEW = (1, 8, 12, 13, 32, 64, 65, 1000)


def few_points(repeat: int) -> dict[str, dict[int, float]]:
    """``gradcli.gradient`` and ``gradcli.hessian`` at a few points to a thousand, warm median (ms): small
    chunks go through the balls row by row, larger ones the vectorised way (gradcli.commands.DIRECT_ROWS),
    and no size should cost more than a thousand points do."""
    import gradcli

    def call(fn: Callable[..., Any], at: dict[str, np.ndarray]) -> Callable[[], Any]:
        return lambda: fn(EXPR, wrt=["x", "y"], at=at)

    rng = np.random.default_rng(3)
    out: dict[str, dict[int, float]] = {"gradient": {}, "hessian": {}}
    for n in FEW:
        at = {"x": rng.uniform(-2, 2, n), "y": rng.uniform(-2, 2, n)}
        fns = {k: call(getattr(gradcli, k), at) for k in out}
        for k, (wall, _) in median_ms(fns, max(repeat, 15)).items():
            out[k][n] = wall
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=10**6)
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--threads", type=int, default=None, help="gradcli's worker threads (default: one per core)")
    ap.add_argument("--block", type=int, default=None, help="points per block (default: gradcli.batch.BLOCK)")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = ap.parse_args()
    from gradcli import batch

    if args.block:
        batch.BLOCK = args.block  # read at every call
    block, threads = batch.BLOCK, batch.threads_from(args.threads)
    load0 = os.getloadavg()[0]
    warm, cold, imported = one_point(args.repeat)  # first: nothing large is imported or cached yet
    few = few_points(args.repeat)
    n = args.points
    x, y = points(n)
    fns: dict[str, Callable[[], Any]] = {
        "numpy grad": lambda: numpy_gradient(x, y),
        "numpy hess": lambda: numpy_hessian(x, y),
        "sin+cos alone, 1 thread": sin_cos_floor(y, block, 1),
        f"sin+cos alone, {threads} threads": sin_cos_floor(y, block, threads),
        **gradcli_fns(n, args.threads),
        **jax_fns(n),
        **torch_fns(n),
    }
    both = median_ms(fns, args.repeat)
    ms = {name: wall for name, (wall, _) in both.items()}
    for k in ("torch grad", "torch hess"):  # the targets: torch at its faster thread count in this run
        if k in ms:
            ms[k] = min(ms[k], ms[f"{k}, 1 thread"])
    mem = {k: peak(k, n, args.threads, block) for k in ("numpy grad", "gradcli grad", "numpy hess", "gradcli hess")}
    same_grad, hess_rel, hess_rows = against_plain(n)
    load1 = os.getloadavg()[0]
    if args.json:
        cpu = {name: c for name, (_, c) in both.items()}
        print(json.dumps({"ms": ms, "cpu_ms": cpu, "peak_mib": mem, "threads": threads, "block": block,
                          "one_point_ms": warm, "few_points_ms": few,
                          "cold_ms": cold, "one_point_imports_batch": imported, "load": [load0, load1],
                          "gradient_bit_identical": same_grad, "hessian_max_rel_diff": hess_rel,
                          "hessian_rows_differing": hess_rows}))
        return
    print(f"H = {EXPR}, {n} points, warm, median of {args.repeat} rounds (each system once per round)")
    print(f"gradcli: threads={threads} block={block} points; cores={os.cpu_count()}, "
          f"load average {load0:.2f} at start, {load1:.2f} at end")
    print(f"  {'':26s} {'wall':>9s}    {'CPU':>9s}")
    for name, (wall, cpu) in both.items():
        print(f"  {name:26s} {wall:9.1f} ms {cpu:9.1f} ms")
    for k, v in mem.items():
        print(f"  peak {k:21s} {v:9.1f} MiB")
    print(f"  gradcli.gradient, one point: {warm * 1e3:7.0f} us warm; {cold:6.0f} ms cold (import + first call)")
    for k, by in few.items():
        print(f"  gradcli.{k}, ms at n points:  " + "  ".join(f"{n}: {t:.2f}" for n, t in by.items()))
    floor1, floorn = ms["sin+cos alone, 1 thread"], ms[f"sin+cos alone, {threads} threads"]
    print(f"  parallel speed-up the machine gives now (sin+cos alone, {threads} threads): {floor1 / floorn:.2f}x")
    print(f"  on one core, numpy baseline / any bit-identical gradient <= {ms['numpy grad'] / floor1:.2f}"
          " (the baseline over sin+cos alone)")
    print(f"targets ({n} points, warm):")

    def target(what: str, value: str, ok: bool | None) -> None:
        verdict = "skipped" if ok is None else ("PASS" if ok else "FAIL")
        print(f"  {what:46s} {value:>22s}  {verdict}")

    def ratio(what: str, a: str, b: str, bound: str, ok: Callable[[float], bool]) -> None:
        if a in ms and b in ms:
            r = ms[a] / ms[b]
            target(what, f"{r:.2f} (target {bound})", ok(r))
        else:
            target(what, f"({(b if a in ms else a).split()[0]} not importable)", None)

    for what, grad, hess in (("the evaluator alone", "gradcli grad, no bound", "gradcli hess, no bound"),
                             ("the evaluator with its error bound", "gradcli grad", "gradcli hess"),
                             ("the API, every value certified", "gradcli.gradient (API)", "gradcli.hessian (API)")):
        print(f"  gradcli as {what}:")
        ratio("gradient: gradcli / jax-jit", grad, "jax grad", "<= 2.5", lambda r: r <= 2.5)
        ratio("gradient: gradcli / torch eager (best)", grad, "torch grad", "<= 1.2", lambda r: r <= 1.2)
        ratio("Hessian: gradcli / jax-jit", hess, "jax hess", "<= 3", lambda r: r <= 3)
        ratio("Hessian: gradcli / torch eager (best)", hess, "torch hess", "< 1", lambda r: r < 1)
        ratio("gradient: numpy baseline / gradcli", "numpy grad", grad, ">= 1.5", lambda r: r >= 1.5)
        ratio("Hessian: numpy baseline / gradcli", "numpy hess", hess, ">= 1.5", lambda r: r >= 1.5)
    for k, what in (("grad", "gradient"), ("hess", "Hessian")):
        a, b = mem[f"gradcli {k}"], mem[f"numpy {k}"]
        target(f"peak memory {what}: gradcli / baseline", f"{a / b:.2f} (target <= 1)", a <= b)
    target("one-point call does not import gradcli.batch", "imported" if imported else "not imported", not imported)
    for k, by in few.items():
        worst = max(by, key=lambda m: by[m] / by[1000])
        r = by[worst] / by[1000]
        target(f"{k}: no size <= 1000 dearer than 1000 pts", f"{r:.2f} at {worst} (<= 1.25)", r <= 1.25)
    target(f"gradient = plain engine bit for bit, {n} pts", "identical" if same_grad else "differs", same_grad)
    target("Hessian vs plain engine (other formulas)", f"{hess_rel:.1e} (<= 1e-13)", hess_rel <= 1e-13)
    print(f"  ({hess_rows} of {n} Hessian rows differ from the plain engine's at all; relative to the row's"
          " largest entry)")


if __name__ == "__main__":
    main()
