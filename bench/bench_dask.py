"""Rows per second over generated Parquet: one process versus a Dask LocalCluster of 1 and 2 workers (issue 13).

    python bench/bench_dask.py                   # 2x10^7 rows (about 320 MB of Parquet in a temporary directory)
    python bench/bench_dask.py --rows 2000000    # scaled down

Every configuration runs the same job: read the Parquet rows, evaluate (float64 engines, ball-arithmetic
certification, the symbolic check) and build the result table of each chunk (:func:`gradcli.parquet.results_frame`).
One process is the CLI's loop (ParquetReader -> evaluate_block -> results_frame) in a child process, with
GRADCLI_THREADS=1 (one core: the baseline) and with every core (gradcli.batch's thread pool); the cluster runs
``map_partitions(evaluate_partition)`` and counts the rows of each result table on the workers (as a
``to_parquet`` on the workers would keep them there), one single-threaded worker process per core. Times
exclude starting the cluster and importing gradcli (both warmed first). Peak RSS: each process's ru_maxrss,
which includes Python, numpy, sympy and pandas.
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
    t0 = time.perf_counter()
    rows = 0
    for chunk in ParquetReader(directory, ["x", "y"], {}):
        rows += len(results_frame(evaluate_block(job, chunk)))
    queue.put((rows, time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))


def one_process(directory: str, command: str, threads: int) -> tuple[int, float, list[int]]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    p = ctx.Process(target=_one_process, args=(directory, command, str(threads), queue))
    p.start()
    rows, seconds, rss = queue.get()
    p.join()
    return rows, seconds, [rss]


def _warm(spec) -> int:
    """Import gradcli and prepare the job (parse, tape, the sympy oracle) on a worker, as one process is warmed."""
    import pandas as pd

    from gradcli.dask import evaluate_partition

    evaluate_partition(pd.DataFrame({"x": np.linspace(0.5, 1.5, 100), "y": np.linspace(-0.5, 0.5, 100)}), spec)
    return os.getpid()


def cluster(directory: str, command: str, workers: int) -> tuple[int, float, list[int]]:
    import dask.dataframe as dd
    import distributed

    from gradcli.dask import JobSpec, _meta, evaluate_partition
    from gradcli.parquet import pieces, read_piece

    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=50, env={"GRADCLI_THREADS": "1"}) as lc, \
            distributed.Client(lc) as client:
        spec = JobSpec.of(_job(command), ["x", "y"])
        client.run(_warm, spec)
        parts = pieces(directory, ["x", "y"], keep_columns=False)
        meta_in = read_piece(parts[0]).iloc[:0]
        ddf = dd.from_map(read_piece, parts, meta=meta_in, enforce_metadata=False)
        result = ddf.map_partitions(evaluate_partition, spec, meta=_meta(spec, meta_in))
        t0 = time.perf_counter()
        rows = int(result.map_partitions(len).sum().compute())
        seconds = time.perf_counter() - t0
        rss = [r.ru_maxrss for r in client.run(resource.getrusage, resource.RUSAGE_SELF).values()]
    return rows, seconds, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=float, default=2e7)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--commands", default="d,hessian")
    parser.add_argument("--dir", default=None, help="where to write the Parquet data (default: a temporary one)")
    args = parser.parse_args()
    rows = int(args.rows)
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        t0 = time.perf_counter()
        generate(directory, rows, args.files)
        size = sum(os.path.getsize(os.path.join(directory, f)) for f in os.listdir(directory))
        print(f"{rows:,} rows in {args.files} Parquet files ({size / 1e6:.0f} MB), generated in "
              f"{time.perf_counter() - t0:.1f} s; {os.cpu_count()} cores", flush=True)
        print(f"{'job':<9} {'configuration':<24} {'rows/s':>12} {'seconds':>9} {'speed-up':>9}  "
              "peak RSS per process (MB)")
        for command in args.commands.split(","):
            base = None
            cores = os.cpu_count() or 1
            for name, workers, threads in (("one process, 1 thread", 0, 1), (f"one process, {cores} threads", 0, cores),
                                           ("LocalCluster 1 worker", 1, 1), ("LocalCluster 2 workers", 2, 1)):
                if workers:
                    n, seconds, rss = cluster(directory, command, workers)
                else:
                    n, seconds, rss = one_process(directory, command, threads)
                assert n == rows, (n, rows)
                rate = n / seconds
                base = base or rate
                mb = ", ".join(f"{r / 1024:.0f}" for r in rss)
                print(f"{command:<9} {name:<24} {rate:>12,.0f} {seconds:>9.1f} {rate / base:>8.2f}x  {mb}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
