"""Rows per second over generated Parquet: one process versus a Dask LocalCluster of 1 and 2 workers (issue 13).

    python bench/bench_dask.py                       # 4x10^6 rows: a few minutes on the 2-core CI machine
    python bench/bench_dask.py --rows 20000000       # the issue's size (2x10^7 rows, about 360 MB of Parquet)
    python bench/bench_dask.py --sinks dir,file      # also --output FILE.parquet (every row through the client)

Every configuration runs the CLI itself (``gradcli.cli.main``) on the same files: ``COMMAND EXPR --wrt ...
--points DIR --output OUT``, which reads the rows, evaluates them (float64 engines, ball-arithmetic
certification, the symbolic check) and writes the result table:

- ``p1``: one process with GRADCLI_THREADS=1 (one core: the fair baseline for scaling); ``pN``: one process
  with gradcli's thread pool on every core (what a user gets by default). Each in a fresh child process.
- ``w1``, ``w2``: ``--dask ADDRESS`` on a LocalCluster of 1 or 2 single-threaded worker processes (started
  with :data:`gradcli.dask.WORKER_ENV`, as ``--dask`` without an address starts them), the client in this
  process.

Sinks: ``dir`` is ``--output OUT/`` (a directory of Parquet files: with --dask each worker writes its own
pieces, no row passes through the client); ``file`` is ``--output OUT.parquet`` (one file: every row passes
through the one process that writes it). Times exclude starting processes, importing gradcli and
preparing the job (each configuration is warmed on a small file first). Configurations run in interleaved
rounds (``--repeats``) and each keeps its best round, since other tenants load the machine; the load average
is printed with every round. ``vs p1``: rows/s over one process with one thread. ``rows/CPU-s``: rows over the
CPU time of every process involved (the child; or the client with its scheduler plus the workers), so its
ratio to p1 is the per-core efficiency whatever else runs on the machine. Peak RSS: each process's VmHWM
during the timed run (Python, numpy, sympy, pandas, pyarrow included; client first, then the workers).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time

import numpy as np

EXPR = "x*exp(-y)*sin(x*y)+log(1+x^2)"
JOBS = {"d": ["d", EXPR, "--wrt", "x"], "hessian": ["hessian", EXPR, "--wrt", "x,y"]}


def generate(directory: str, rows: int, files: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(13)
    per = -(-rows // files)
    for k in range(files):
        n = min(per, rows - k * per)
        if n <= 0:
            break
        pq.write_table(pa.table({"x": rng.uniform(0.1, 2.0, n), "y": rng.uniform(-1.0, 1.0, n)}),
                       os.path.join(directory, f"part-{k:03d}.parquet"), row_group_size=1 << 18)


def _cpu(usage) -> float:
    return usage.ru_utime + usage.ru_stime


def _peak_kb() -> int:
    """This process's peak RSS (VmHWM, which a fork and an exec do not inherit, unlike ru_maxrss)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _reset_peak() -> None:
    """Start VmHWM again from the current RSS (Linux: 5 to clear_refs), so a peak is this run's."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _argv(command: str, points: str, out: str, extra: list[str]) -> list[str]:
    return [*JOBS[command], "--points", points, "--output", out, *extra]


def _fresh(out: str) -> None:
    """No output left from an earlier run (a dataset directory must not exist)."""
    if out.endswith("/"):
        shutil.rmtree(out, ignore_errors=True)
    elif os.path.exists(out):
        os.unlink(out)


def _one_process(argv: list[str], warm: list[str], threads: str, queue, barrier) -> None:
    os.environ["GRADCLI_THREADS"] = threads
    from gradcli.cli import main

    _fresh(warm[warm.index("--output") + 1])
    assert main(warm) == 0  # imports, the parsed job, sympy's derivative
    barrier.wait()  # the timed runs start together
    _fresh(argv[argv.index("--output") + 1])
    _reset_peak()
    cpu0 = _cpu(resource.getrusage(resource.RUSAGE_SELF))
    t0 = time.perf_counter()
    code = main(argv)
    seconds = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    queue.put((code, seconds, _cpu(usage) - cpu0, [_peak_kb()]))


#: This process's environment before any LocalCluster: Dask's nanny writes MALLOC_TRIM_THRESHOLD_ (and
#: OMP_NUM_THREADS) into its parent's environment and leaves them there, and a child spawned later would
#: start with glibc's malloc in that mode (every chunk's column a fresh mmap: 1.5-2x the CPU per row).
_CLEAN_ENV = dict(os.environ)


def one_process(argv: list[str], warm: list[str], threads: int) -> tuple[int, float, float, list[int]]:
    return processes([argv], warm, threads)


def processes(argvs: list[list[str]], warm: list[str], threads: int) -> tuple[int, float, float, list[int]]:
    """One child process per argv, all at once (each warmed first): the slowest one's time, the CPU of all."""
    ctx = multiprocessing.get_context("spawn")
    queue, barrier = ctx.Queue(), ctx.Barrier(len(argvs))
    warms = [[*warm[:-1], warm[-1].rstrip("/") + f"-{i}/" if warm[-1].endswith("/") else f"{warm[-1]}.{i}"]
             for i in range(len(argvs))]
    children = [ctx.Process(target=_one_process, args=(argv, w, str(threads), queue, barrier))
                for argv, w in zip(argvs, warms)]
    dirty = dict(os.environ)
    os.environ.clear()
    os.environ.update(_CLEAN_ENV)
    try:
        for p in children:
            p.start()
    finally:
        os.environ.clear()
        os.environ.update(dirty)
    results = [queue.get() for _ in children]
    for p in children:
        p.join()
    return (max(r[0] for r in results), max(r[1] for r in results), sum(r[2] for r in results),
            [r[3][0] for r in results])


class Cluster:
    """A LocalCluster as ``--dask`` starts one (single-threaded worker processes, WORKER_ENV), kept for a round."""

    def __init__(self, workers: int) -> None:
        import distributed

        from gradcli.dask import WORKER_ENV

        self.cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                dashboard_address=":0", silence_logs=50, env=dict(WORKER_ENV))
        self.client = distributed.Client(self.cluster)

    def run(self, argv: list[str], warm: list[str]) -> tuple[int, float, float, list[int]]:
        from gradcli.cli import main

        address = ["--dask", self.cluster.scheduler_address]
        _fresh(warm[warm.index("--output") + 1])
        assert main([*warm, *address]) == 0
        _fresh(argv[argv.index("--output") + 1])
        _reset_peak()
        self.client.run(_reset_peak)
        before = self.client.run(resource.getrusage, resource.RUSAGE_SELF)
        me0 = _cpu(resource.getrusage(resource.RUSAGE_SELF))
        t0 = time.perf_counter()
        code = main([*argv, *address])
        seconds = time.perf_counter() - t0
        me = resource.getrusage(resource.RUSAGE_SELF)
        after = self.client.run(resource.getrusage, resource.RUSAGE_SELF)
        cpu = _cpu(me) - me0 + sum(_cpu(after[w]) - _cpu(before[w]) for w in after)
        return code, seconds, cpu, [_peak_kb(), *self.client.run(_peak_kb).values()]

    def close(self) -> None:
        self.client.close()
        self.cluster.close()


def _size(path: str) -> int:
    """A file's size, or the sum over a directory's files."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))


def _halves(command: str, data: str, out: str) -> list[list[str]]:
    """Two CLI runs, on the first and the second half of the files, to two outputs (``out-0``, ``out-1``)."""
    files = sorted(os.listdir(data))
    half = len(files) // 2
    runs = []
    for i, part in enumerate((files[:half], files[half:])):
        subset = os.path.join(os.path.dirname(data), f"half-{i}")
        if not os.path.isdir(subset):
            os.mkdir(subset)
            for f in part:
                os.symlink(os.path.join(data, f), os.path.join(subset, f))
        runs.append(_argv(command, subset, out.rstrip("/") + f"-{i}/" if out.endswith("/") else f"{out}.{i}", []))
    return runs


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=float, default=4e6, help="rows of generated Parquet (the issue's: 2e7)")
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--commands", default="d,hessian")
    parser.add_argument("--sinks", default="dir", help="dir: --output OUT/ (workers write); file: OUT.parquet")
    parser.add_argument("--repeats", type=int, default=2, help="rounds; each configuration's best round is kept")
    parser.add_argument("--configs", default="p1,pN,2p1,w1,w2",
                        help="p1: one process, 1 thread; pN: one process, every core; 2p1: two one-thread processes "
                             "at once, each on half the files (no Dask: what two cores give here); w1, w2: "
                             "LocalCluster workers")
    parser.add_argument("--dir", default=None, help="where to write the Parquet data (default: a temporary one)")
    args = parser.parse_args()
    rows = int(args.rows)
    cores = os.cpu_count() or 1
    known = {"p1": ("one process, 1 thread", 0, 1), "pN": (f"one process, {cores} threads", 0, cores),
             "2p1": ("2 processes, half each", 0, 1),
             "w1": ("LocalCluster 1 worker", 1, 1), "w2": ("LocalCluster 2 workers", 2, 1)}
    configs = [known[c] for c in args.configs.split(",")]
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        data, small = os.path.join(tmp, "data"), os.path.join(tmp, "small")
        os.mkdir(data)
        os.mkdir(small)
        t0 = time.perf_counter()
        generate(data, rows, args.files)
        generate(small, 140_000, 2)  # the warm-up: full chunks (65,536 rows), which take other paths than small ones
        size = sum(os.path.getsize(os.path.join(data, f)) for f in os.listdir(data))
        print(f"{rows:,} rows in {args.files} Parquet files ({size / 1e6:.0f} MB, {size / rows:.1f} bytes/row), "
              f"generated in {time.perf_counter() - t0:.1f} s; {cores} cores; load average {_load()}", flush=True)
        for command in args.commands.split(","):
            for sink in args.sinks.split(","):
                out = os.path.join(tmp, "out/" if sink == "dir" else "out.parquet")
                warm_out = os.path.join(tmp, "warm/" if sink == "dir" else "warm.parquet")
                argv, warm = _argv(command, data, out, []), _argv(command, small, warm_out, [])
                best: dict[str, tuple[float, float, list[int]]] = {}
                per_cpu: dict[str, float] = {}
                for rnd in range(args.repeats):  # interleaved rounds: a burst of load elsewhere hits every one
                    for name, workers, threads in configs:
                        if workers:
                            cluster = Cluster(workers)
                            try:
                                code, seconds, cpu, rss = cluster.run(argv, warm)
                            finally:
                                cluster.close()
                        elif name == known["2p1"][0]:
                            code, seconds, cpu, rss = processes(_halves(command, data, out), warm, 1)
                        else:
                            code, seconds, cpu, rss = one_process(argv, warm, threads)
                        assert code == 0, (name, code)
                        outputs = [out] if os.path.exists(out) else [
                            o for o in (out.rstrip("/") + "-0/", out.rstrip("/") + "-1/", f"{out}.0", f"{out}.1")
                            if os.path.exists(o)]
                        written = sum(_size(o) for o in outputs)
                        for o in outputs:
                            _fresh(o)
                        per_cpu[name] = max(per_cpu.get(name, 0.0), rows / cpu)
                        print(f"  round {rnd + 1} {command:<8} {sink:<5} {name:<24} {rows / seconds:>12,.0f} rows/s "
                              f"{rows / cpu:>12,.0f} rows/CPU-s  {seconds:6.2f} s  output {written / rows:.1f} "
                              f"bytes/row  (load {_load()})", flush=True)
                        if name not in best or rows / seconds > best[name][0]:
                            best[name] = (rows / seconds, seconds, rss)
                base = best.get(known["p1"][0], (None,))[0]
                cpu_base = per_cpu.get(known["p1"][0])
                print(f"{'job':<8} {'sink':<5} {'configuration':<24} {'rows/s':>12} {'seconds':>8} {'vs p1':>6} "
                      f"{'rows/CPU-s':>11} {'vs p1':>6}  peak RSS per process (MB; client first)")
                for name, _, _ in configs:
                    rate, seconds, rss = best[name]
                    ratio = rate / base if base else float("nan")
                    eff = per_cpu[name] / cpu_base if cpu_base else float("nan")
                    mb = ", ".join(f"{r / 1024:.0f}" for r in rss)
                    print(f"{command:<8} {sink:<5} {name:<24} {rate:>12,.0f} {seconds:>8.2f} {ratio:>5.2f}x "
                          f"{per_cpu[name]:>11,.0f} {eff:>5.2f}x  {mb}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
