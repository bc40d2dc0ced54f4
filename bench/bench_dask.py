"""Rows per second over generated Parquet: one process versus a Dask LocalCluster of 1 and 2 workers (issue 13).

    python bench/bench_dask.py                   # 2x10^7 rows (about 320 MB of Parquet in a temporary directory)
    python bench/bench_dask.py --rows 2000000    # scaled down

Every configuration runs the same job: read the Parquet rows, evaluate (float64 engines, ball-arithmetic
certification, the symbolic check) and build the result table of each chunk (:func:`gradcli.parquet.results_frame`).
One process is the CLI's loop (ParquetReader -> evaluate_block -> results_frame) in a child process, with
GRADCLI_THREADS=1 (one core: the baseline) and with every core (gradcli.batch's thread pool); the cluster runs
the CLI's ``--dask`` graph (:func:`gradcli.dask.piece_table`: one task per piece of a file, which reads the rows
with pyarrow and evaluates them on the worker) and counts the rows of each result table on the workers (as a
``to_parquet`` on the workers would keep them there), one single-threaded worker process per core, started
with :data:`gradcli.dask.WORKER_ENV`. Times exclude starting the cluster and importing gradcli (both warmed
first). The configurations run in interleaved rounds (``--repeats``) and each keeps its best round, since
other processes may load the machine; the load average is printed. ``vs p1``: rows/s over one process with
one thread; ``per core``: that ratio per worker (or thread), 1.00x when a worker loses nothing to Dask.
``rows/CPU-s``: rows over the CPU time the process (or the workers, summed) spent in the timed part: its
ratio to one process is the per-core efficiency even on a machine that others load. Peak
RSS: each process's ru_maxrss, which includes Python, numpy, sympy and pandas.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import tempfile
import time

import numpy as np

JOBS = {"d": ("x*exp(-y)*sin(x*y)+log(1+x^2)", ("x",)), "hessian": ("x*exp(-y)*sin(x*y)+log(1+x^2)", ("x", "y"))}


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


def _job(command: str):
    from gradcli import ops
    from gradcli.commands import Job
    from gradcli.derive import prepare

    expr, wrt = JOBS[command]
    return Job(command, (prepare(expr),), wrt, ops.F64)


def _one_process(directory: str, command: str, threads: str, queue) -> None:
    os.environ["GRADCLI_THREADS"] = threads
    from gradcli.commands import evaluate_block
    from gradcli.parquet import ParquetReader, results_frame

    job = _job(command)
    for chunk in ParquetReader(directory, ["x", "y"], {}):  # warm: imports, the tape, the oracle
        evaluate_block(job, chunk)
        break
    cpu0 = _cpu(resource.getrusage(resource.RUSAGE_SELF))
    t0 = time.perf_counter()
    rows = 0
    for chunk in ParquetReader(directory, ["x", "y"], {}):
        rows += len(results_frame(evaluate_block(job, chunk)))
    seconds = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    queue.put((rows, seconds, _cpu(usage) - cpu0, usage.ru_maxrss))


def _cpu(usage) -> float:
    return usage.ru_utime + usage.ru_stime


def one_process(directory: str, command: str, threads: int) -> tuple[int, float, float, list[int]]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    p = ctx.Process(target=_one_process, args=(directory, command, str(threads), queue))
    p.start()
    rows, seconds, cpu, rss = queue.get()
    p.join()
    return rows, seconds, cpu, [rss]


def _warm(spec) -> int:
    """Import gradcli and prepare the job (parse, tape, the sympy oracle) on a worker, as one process is warmed."""
    import pandas as pd

    from gradcli.dask import evaluate_partition

    evaluate_partition(pd.DataFrame({"x": np.linspace(0.5, 1.5, 100), "y": np.linspace(-0.5, 0.5, 100)}), spec)
    return os.getpid()


def cluster(directory: str, command: str, workers: int) -> tuple[int, float, float, list[int]]:
    """The CLI's --dask path: one task per piece (read with pyarrow and evaluate on the worker), counted there."""
    import distributed

    from gradcli.dask import WORKER_ENV, JobSpec, piece_table
    from gradcli.parquet import pieces

    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=50, env=dict(WORKER_ENV)) as lc, distributed.Client(lc) as client:
        spec = JobSpec.of(_job(command), ["x", "y"])
        client.run(_warm, spec)
        result = piece_table(spec, pieces(directory, ["x", "y"], keep_columns=False))
        before = client.run(resource.getrusage, resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        rows = int(result.map_partitions(len).sum().compute())
        seconds = time.perf_counter() - t0
        after = client.run(resource.getrusage, resource.RUSAGE_SELF)
        cpu = sum(_cpu(after[w]) - _cpu(before[w]) for w in after)
        rss = [r.ru_maxrss for r in after.values()]
    return rows, seconds, cpu, rss


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=float, default=2e7)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--commands", default="d,hessian")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; each configuration's best round is kept")
    parser.add_argument("--configs", default="p1,pN,w1,w2",
                        help="p1: one process, 1 thread; pN: one process, every core; w1, w2: LocalCluster workers")
    parser.add_argument("--dir", default=None, help="where to write the Parquet data (default: a temporary one)")
    args = parser.parse_args()
    rows = int(args.rows)
    cores = os.cpu_count() or 1
    known = {"p1": ("one process, 1 thread", 0, 1), "pN": (f"one process, {cores} threads", 0, cores),
             "w1": ("LocalCluster 1 worker", 1, 1), "w2": ("LocalCluster 2 workers", 2, 1)}
    configs = [known[c] for c in args.configs.split(",")]
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        t0 = time.perf_counter()
        generate(directory, rows, args.files)
        size = sum(os.path.getsize(os.path.join(directory, f)) for f in os.listdir(directory))
        print(f"{rows:,} rows in {args.files} Parquet files ({size / 1e6:.0f} MB), generated in "
              f"{time.perf_counter() - t0:.1f} s; {cores} cores; load average {_load()}", flush=True)
        for command in args.commands.split(","):
            best: dict[str, tuple[float, float, list[int]]] = {}
            per_cpu: dict[str, float] = {}
            for rnd in range(args.repeats):  # interleaved rounds: a burst of load from elsewhere hits every one
                for name, workers, threads in configs:
                    if workers:
                        n, seconds, cpu, rss = cluster(directory, command, workers)
                    else:
                        n, seconds, cpu, rss = one_process(directory, command, threads)
                    assert n == rows, (n, rows)
                    per_cpu[name] = max(per_cpu.get(name, 0.0), n / cpu)
                    print(f"  round {rnd + 1} {command:<8} {name:<24} {n / seconds:>12,.0f} rows/s "
                          f"{n / cpu:>12,.0f} rows/CPU-s  (load {_load()})", flush=True)
                    if name not in best or n / seconds > best[name][0]:
                        best[name] = (n / seconds, seconds, rss)
            base = best.get(known["p1"][0], (None,))[0]
            cpu_base = per_cpu.get(known["p1"][0])
            print(f"{'job':<9} {'configuration':<24} {'rows/s':>12} {'seconds':>9} {'vs p1':>7} {'per core':>9} "
                  f"{'rows/CPU-s':>11} {'vs p1':>6}  peak RSS per process (MB)")
            for name, workers, threads in configs:
                rate, seconds, rss = best[name]
                ratio = rate / base if base else float("nan")
                mb = ", ".join(f"{r / 1024:.0f}" for r in rss)
                eff = per_cpu[name] / cpu_base if cpu_base else float("nan")
                print(f"{command:<9} {name:<24} {rate:>12,.0f} {seconds:>9.2f} {ratio:>6.2f}x "
                      f"{ratio / (workers or threads):>8.2f}x {per_cpu[name]:>11,.0f} {eff:>5.2f}x  {mb}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
