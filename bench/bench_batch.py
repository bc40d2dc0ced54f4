"""Issue 14: gradients and Hessians of H = x*exp(-(x^2+y^2))*sin(3*y) at 10^6 points, warm, median.

    python bench/bench_batch.py [--points 1000000] [--repeat 7] [--threads N]

Measures, in one run: gradcli's fused evaluator (derive.gradient_values / hessian_values), the public
API (gradcli.gradient / gradcli.hessian, which adds certification of a sample), a hand-written numpy
baseline (whole arrays, one block, one thread), and jax (jit) and torch (eager) when importable (they
are not dependencies). Peak memory of the evaluator and of the baseline comes from tracemalloc in a
fresh subprocess each. Prints the ratios against the issue's targets.
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


def median_ms(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # warm
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


# ---- hand-written numpy: the gradient and Hessian of H, whole arrays --------------------------------
def numpy_gradient(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    e = np.exp(-(x * x + y * y))
    s, c = np.sin(3 * y), np.cos(3 * y)
    out = np.empty((x.size, 2))
    out[:, 0] = e * s * (1 - 2 * x * x)
    out[:, 1] = x * e * (3 * c - 2 * y * s)
    return out


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
    from gradcli import ops
    from gradcli.derive import gradient_values, hessian_values, prepare

    x, y = points(n)
    graph = prepare(EXPR).graph
    pts = {"x": x, "y": y}
    return {
        "gradcli grad": lambda: gradient_values(graph, ["x", "y"], pts, ops.F64, n, threads=threads),
        "gradcli hess": lambda: hessian_values(graph, ["x", "y"], pts, ops.F64, n, threads=threads),
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

    return {"torch grad": grad, "torch hess": hess}


def peak(kind: str, n: int, threads: int | None) -> float:
    """Peak traced allocation (MiB) of one warm call, in a fresh interpreter."""
    code = f"""
import sys, tracemalloc
sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
import bench_batch as b
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=10**6)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = ap.parse_args()
    from gradcli import batch

    n = args.points
    x, y = points(n)
    fns: dict[str, Callable[[], Any]] = {
        "numpy grad": lambda: numpy_gradient(x, y),
        "numpy hess": lambda: numpy_hessian(x, y),
        **gradcli_fns(n, args.threads),
        **jax_fns(n),
        **torch_fns(n),
    }
    ms = {name: median_ms(fn, args.repeat) for name, fn in fns.items()}
    mem = {k: peak(k, n, args.threads) for k in ("numpy grad", "gradcli grad", "numpy hess", "gradcli hess")}
    threads = batch.threads_from(args.threads)
    if args.json:
        print(json.dumps({"ms": ms, "peak_mib": mem, "threads": threads, "block": batch.BLOCK}))
        return
    print(f"H = {EXPR}, {n} points, warm median of {args.repeat}; gradcli threads={threads} block={batch.BLOCK}")
    for name, t in ms.items():
        print(f"  {name:26s} {t:9.1f} ms")
    for k, v in mem.items():
        print(f"  peak {k:21s} {v:9.1f} MiB")
    print("targets:")

    def ratio(what: str, a: str, b: str, target: str, ok: Callable[[float], bool]) -> None:
        if a in ms and b in ms:
            r = ms[a] / ms[b]
            print(f"  {what:44s} {r:6.2f}  (target {target}: {'met' if ok(r) else 'MISSED'})")
        else:
            print(f"  {what:44s}   skipped ({b.split()[0]} not importable)")

    ratio("gradient: gradcli / jax-jit", "gradcli grad", "jax grad", "<= 2.5", lambda r: r <= 2.5)
    ratio("gradient: gradcli / torch eager", "gradcli grad", "torch grad", "<= 1.2", lambda r: r <= 1.2)
    ratio("Hessian: gradcli / jax-jit", "gradcli hess", "jax hess", "<= 3", lambda r: r <= 3)
    ratio("Hessian: gradcli / torch eager", "gradcli hess", "torch hess", "<= 1", lambda r: r <= 1)
    ratio("gradient: numpy baseline / gradcli", "numpy grad", "gradcli grad", ">= 1.5", lambda r: r >= 1.5)
    ratio("Hessian: numpy baseline / gradcli", "numpy hess", "gradcli hess", ">= 1.5", lambda r: r >= 1.5)
    for k in ("grad", "hess"):
        a, b = mem[f"gradcli {k}"], mem[f"numpy {k}"]
        print(f"  peak memory {k}: gradcli / baseline {a / b:5.2f}  (target <= 1: {'met' if a <= b else 'MISSED'})")


if __name__ == "__main__":
    main()
