"""gradcli over Dask: the same job, partition by partition, on a cluster (issue 13).

Each partition runs the one evaluation path (:func:`gradcli.commands.evaluate_block`: float64 engines, ball
arithmetic certification, the symbolic check) on a worker, over chunks of :data:`~gradcli.parquet.BATCH_ROWS`
rows, and returns the table :func:`gradcli.parquet.results_frame` makes: so a cluster's rows equal one
process's rows.

What is sent to the workers is a :class:`JobSpec`: the expression TEXT, the variable names and the options
(numbers and strings), never a parsed expression, a tape or pickled code from the client. Each worker parses
the text itself with gradcli's parser (the same whitelist as the CLI) and keeps the prepared job for later
partitions. Functions travel by reference (``gradcli.dask.evaluate_partition``), so gradcli must be installed
on the workers.

The Python API returns lazy dask objects::

    import dask.dataframe as dd, gradcli.dask
    ddf = dd.read_parquet("points/")
    d = gradcli.dask.derivative("x*exp(-y)", ddf, wrt="x,y")      # a dask Series, nothing computed yet
    g = gradcli.dask.gradient("x*exp(-y)", ddf)                   # a dask DataFrame: d_x, d_y
    d.compute()
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

from .errors import GradcliError, InputError, IOFault, NotFinite, Uncertified
from .parquet import (
    BATCH_ROWS,
    FILE_COLUMN,
    ROW_COLUMN,
    OutputSink,
    Piece,
    arrow_chunk,
    pieces,
    read_table,
    require,
    result_names,
    results_frame,
    validated_chunk,
)

__all__ = ["JobSpec", "evaluate_partition", "evaluate_piece", "piece_table", "worker_setup", "WORKER_ENV", "table",
           "derivative", "gradient", "hessian", "run_cluster_job", "connect"]


@dataclass(frozen=True, slots=True)
class JobSpec:
    """Everything a worker needs, as plain data: what is pickled and sent (text, names, numbers)."""

    command: str
    exprs: tuple[str, ...]
    wrt: tuple[str, ...]
    variables: tuple[str, ...]  # every row needs a value for each (from its columns or ``defaults``)
    defaults: tuple[tuple[str, float], ...] = ()  # --at values for variables the data lacks
    check: bool = True
    tol: float = 1e-8
    check_timeout: float = 5.0
    order: int = 0
    strict: bool = False  # the API: a row outside the domain raises instead of being reported

    @classmethod
    def of(cls, job: Any, variables: Sequence[str], defaults: dict[str, Any] | None = None, *,
           strict: bool = False) -> JobSpec:
        """The spec of a :class:`~gradcli.commands.Job` (its expressions' text, never their objects)."""
        if job.digits is not None:
            raise InputError("--digits cannot run on Dask (its tables hold float64)")
        return cls(job.command, tuple(p.text for p in job.preps), tuple(job.wrt), tuple(variables),
                   tuple((k, float(v)) for k, v in (defaults or {}).items() if k in variables),
                   bool(job.check), float(job.tol), float(job.check_timeout), int(job.order), strict)


# A worker keeps the jobs it has prepared (parsed text, tape, the sympy oracle) for its next partitions;
# keyed by the spec's plain values, so this cache holds nothing a client sent but text and numbers.
@functools.lru_cache(maxsize=8)
def _job(spec: JobSpec) -> Any:
    from . import ops
    from .commands import Job
    from .derive import prepare

    preps = tuple(prepare(text) for text in spec.exprs)
    return Job(spec.command, preps, spec.wrt, ops.F64, check=spec.check, tol=spec.tol,
               check_timeout=spec.check_timeout, order=spec.order)


#: What a worker process is set up with (:func:`worker_setup`; also the LocalCluster's environment): one
#: gradcli thread per Dask thread, and glibc's malloc left to keep its freed blocks. Dask's nanny sets
#: MALLOC_TRIM_THRESHOLD_=65536, which also freezes malloc's mmap threshold at 128 KiB: every column of a
#: chunk (512 KiB) is then a fresh mmap, page-faulted in and unmapped again, and a worker evaluates about
#: 1.5x slower than one process. Peaks stay bounded: freed blocks are reused for the next chunk.
WORKER_ENV = {"GRADCLI_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(64 << 20)}
_set_up = False


def worker_setup() -> None:
    """Once per worker process (a no-op elsewhere): :data:`WORKER_ENV` for a worker started by someone
    else (``dask worker``): GRADCLI_THREADS=1 unless set, and malloc's thresholds through ``mallopt``."""
    global _set_up
    if _set_up:
        return
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        return  # not on a distributed worker: the caller's process is left as it is
    _set_up = True
    os.environ.setdefault("GRADCLI_THREADS", WORKER_ENV["GRADCLI_THREADS"])
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(-3, int(WORKER_ENV["MALLOC_MMAP_THRESHOLD_"]))  # M_MMAP_THRESHOLD
            libc.mallopt(-1, int(WORKER_ENV["MALLOC_TRIM_THRESHOLD_"]))  # M_TRIM_THRESHOLD
        except (OSError, AttributeError):  # not glibc
            pass


def _chunk_result(job: Any, spec: JobSpec, chunk: Any, inputs: Any, where: Any) -> Any:
    """One chunk's result table (the input's columns, then value, check and certificate columns); with a
    strict spec, the first bad row raises, named by ``where``."""
    from .commands import evaluate_block

    if chunk.size == 0:
        return _empty(job, inputs)
    block = evaluate_block(job, chunk)
    if spec.strict:
        _raise_first(block, where)
    return results_frame(block, inputs)


def evaluate_piece(piece: Piece, spec: JobSpec) -> Any:
    """One ``--points`` partition, read AND evaluated in one task on a worker: the piece's rows are read
    with pyarrow, a chunk of :data:`~gradcli.parquet.BATCH_ROWS` rows at a time (the chunks one process
    reads), and only the result table leaves the worker (the piece's columns, then the value, check and
    certificate columns: :func:`gradcli.parquet.results_frame`). No hidden columns: the client names a row
    by its piece (``piece.path``, row ``piece.first_row + i + 1``). A bad input row raises an InputError
    naming its file and row."""

    worker_setup()
    pd = require("pandas")
    job = _job(spec)
    defaults = dict(spec.defaults)
    table = read_table(piece)
    frames = []
    for start in range(0, max(table.num_rows, 1), BATCH_ROWS):
        part = table.slice(start, BATCH_ROWS)
        first = piece.first_row + start

        def where(i: int, first: int = first) -> str:
            return f"{piece.path}, row {first + i + 1}"

        chunk = arrow_chunk(part, spec.variables, defaults, where, range(first + 1, first + part.num_rows + 1))
        frames.append(_chunk_result(job, spec, chunk, part.to_pandas(), where))
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def piece_table(spec: JobSpec, parts: Sequence[Piece]) -> Any:
    """The lazy result table over ``parts``: a dask DataFrame, one :func:`evaluate_piece` task per piece."""
    dd = require("dask.dataframe")
    meta = _meta(spec, read_table(parts[0]).slice(0, 0).to_pandas())
    return dd.from_map(evaluate_piece, parts, args=(spec,), meta=meta, label="gradcli", enforce_metadata=False)


def evaluate_partition(frame: Any, spec: JobSpec, partition_info: dict[str, Any] | None = None) -> Any:
    """One partition's result table (runs on a worker): the input's columns, the values, the check and
    certificate columns, and ``error`` (see :func:`gradcli.parquet.results_frame`).

    A bad input row (null, not a number, not finite) raises an InputError naming its file and row (or the
    partition and row, for a dataframe that does not come from ``--points``)."""

    worker_setup()
    pd = require("pandas")
    job = _job(spec)
    defaults = dict(spec.defaults)
    number = (partition_info or {}).get("number")
    named = FILE_COLUMN in frame.columns and ROW_COLUMN in frame.columns
    frames = []
    for start in range(0, max(len(frame), 1), BATCH_ROWS):
        part = frame.iloc[start : start + BATCH_ROWS]
        if named:
            files = part[FILE_COLUMN].to_numpy()
            rows = part[ROW_COLUMN].to_numpy()
            lines: Sequence[int | None] = rows.tolist()

            def where(i: int, files: Any = files, rows: Any = rows) -> str:
                return f"{files[i]}, row {rows[i]}" if len(rows) else str(files)

        else:
            lines = [None] * len(part)

            def where(i: int, start: int = start) -> str:
                return f"partition {number if number is not None else '?'}, row {start + i + 1}"

        chunk = validated_chunk(part, spec.variables, defaults, where, lines)
        frames.append(_chunk_result(job, spec, chunk, part, where))
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def _raise_first(block: Any, where: Callable[[int], str]) -> None:
    bad = np.flatnonzero(block.bad)
    if bad.size:
        exc = block.error(int(bad[0])) or NotFinite("the result is not finite")
        raise type(exc)(f"{where(int(bad[0]))}: {exc.message}")
    for i in block.uncertified[:1]:
        cert = next(c for c in block.certs[i] if not c.ok)
        raise Uncertified(f"{where(i)}: the value could not be certified: {cert.reason}")


def _empty(job: Any, inputs: Any) -> Any:
    """The result table's columns and types, with no rows (Dask's ``meta``)."""
    pd = require("pandas")
    out = inputs.iloc[:0].reset_index(drop=True).copy()
    for name in result_names(job):
        dtype = {"check_ok": "boolean", "certified": "boolean", "error": "string"}.get(name, "float64")
        out[name] = pd.Series([], dtype=dtype)
    return out


def _meta(spec: JobSpec, meta_in: Any) -> Any:
    return _empty(_job(spec), meta_in)


# ---- lazy results over any dask dataframe (the Python API) ------------------------------------------------
def table(spec: JobSpec, ddf: Any) -> Any:
    """The lazy result table of ``spec`` over ``ddf`` (``map_partitions`` of :func:`evaluate_partition`)."""
    return ddf.map_partitions(evaluate_partition, spec, meta=_meta(spec, ddf._meta))


def _spec(command: str, expr: Any, ddf: Any, wrt: Any, at: dict[str, Any] | None, check: bool, tol: float,
          order: int = 0) -> JobSpec:
    from . import api
    from .derive import resolve_wrt

    exprs = [expr] if isinstance(expr, str) else list(expr)
    preps = [api._prepared(e) for e in exprs]
    if command == "d":
        names, _ = resolve_wrt(preps[0], wrt)
    else:
        names = api._sorted_wrt(preps[0], wrt)
    variables = sorted({v for p in preps for v in p.variables})
    values = api._values(at)
    from . import ops

    defaults = {k: ops.F64.scalar(v) for k, v in values.items()}
    missing = [v for v in variables if v not in ddf.columns and v not in defaults]
    if missing:
        raise InputError(f"the dataframe has no column '{missing[0]}', and at gives no value for it")
    job = api._job(command, preps, names, ops.F64, None, check=check, tol=tol, order=order)
    return JobSpec.of(job, variables, defaults, strict=True)


def derivative(expr: str, ddf: Any, wrt: str | list[str] | None = None, at: dict[str, Any] | None = None, *,
               check: bool = False, tol: float = 1e-8) -> Any:
    """d^n f / d wrt[0] ... d wrt[n-1] at every row of ``ddf``: a lazy dask Series named ``value``.

    Columns named like EXPR's variables give the points; ``at`` gives the others. Each value is certified
    as :func:`gradcli.derivative`'s are; computing raises the first row's error (a NotFinite naming the
    partition and row), as the plain function does. ``check=True`` also runs the symbolic check (a row
    that disagrees raises CheckMismatch).
    """
    return _values_of(_spec("d", expr, ddf, wrt, at, check, tol), ddf)["value"]


def gradient(expr: str, ddf: Any, wrt: str | list[str] | None = None, at: dict[str, Any] | None = None, *,
             check: bool = False, tol: float = 1e-8) -> Any:
    """The gradient at every row of ``ddf``: a lazy dask DataFrame with columns ``d_x``, ``d_y``, ..."""
    return _values_of(_spec("grad", expr, ddf, wrt, at, check, tol), ddf)


def hessian(expr: str, ddf: Any, wrt: str | list[str] | None = None, at: dict[str, Any] | None = None, *,
            check: bool = False, tol: float = 1e-8) -> Any:
    """The Hessian at every row of ``ddf``: a lazy dask DataFrame with columns ``d_x_x``, ``d_x_y``, ..."""
    return _values_of(_spec("hessian", expr, ddf, wrt, at, check, tol), ddf)


def _values_of(spec: JobSpec, ddf: Any) -> Any:
    job = _job(spec)
    names = [n for n in result_names(job) if n not in ("check_ok", "check_rel_err", "certified", "error")]
    meta = _meta(spec, ddf._meta)[names]
    return ddf.map_partitions(_strict_values, spec, names, meta=meta)


def _strict_values(frame: Any, spec: JobSpec, names: list[str], partition_info: dict[str, Any] | None = None) -> Any:
    from .errors import CheckMismatch

    out = evaluate_partition(frame, spec, partition_info)
    if spec.check and "check_ok" in out.columns:
        failed = (out["check_ok"] == False).fillna(False).to_numpy()  # noqa: E712 - a nullable boolean column
        if failed.any():
            i = int(np.argmax(failed))
            raise CheckMismatch(f"partition {(partition_info or {}).get('number', '?')}, row {i + 1}: the value "
                                f"disagrees with the symbolic check (rel_err {out['check_rel_err'].iloc[i]:.3g})")
    values = out[names]
    values.index = frame.index
    return values


# ---- the CLI's --dask --------------------------------------------------------------------------------------
def connect(address: str, stack: ExitStack) -> Any:
    """A distributed Client: to the scheduler at ``address``, or to a new LocalCluster (``"local"``:
    one single-threaded worker process per core)."""
    distributed = require("distributed")
    if address == "local":
        cluster = stack.enter_context(distributed.LocalCluster(
            n_workers=os.cpu_count() or 1, threads_per_worker=1, processes=True, dashboard_address=":0",
            silence_logs=logging.ERROR, env=dict(WORKER_ENV)))  # one core each: no thread pool per worker
        return stack.enter_context(distributed.Client(cluster))
    try:
        return stack.enter_context(distributed.Client(address, timeout="10s"))
    except (OSError, TimeoutError, ValueError) as exc:
        raise IOFault(f"--dask: cannot reach the Dask scheduler at {address}: {exc}") from None


def run_cluster_job(job: Any, points: str, at: dict[str, Any], variables: list[str], address: str,
                    output: str | None, fmt: str, expect: Any, *, stdout: TextIO,
                    note: Callable[[str], None], progress: Callable[[int, int], None] | None = None,
                    client: Any = None) -> int:
    """Run ``job`` over the Parquet rows of ``points`` on a cluster; write the results in input order (to
    ``output`` atomically, else to ``stdout`` in ``fmt``); return the exit code as on one machine (or raise
    the GradcliError that ends the run: a bad row, exit 2; rows outside the domain, exit 3, after writing).

    ``progress(done, total)`` is called as partitions finish."""
    distributed = require("distributed")
    spec = JobSpec.of(job, variables, {k: job.bk.scalar(v) for k, v in at.items()})
    parts = pieces(points, variables, keep_columns=output is not None)
    result = piece_table(spec, parts)
    sink = OutputSink(output) if output is not None else None
    state = _Findings(job, note, expect)
    try:
        with ExitStack() as stack:
            client = client or connect(address, stack)
            futures = client.compute(result.to_delayed())
            done, total, next_i = set(), len(futures), 0
            for future in distributed.as_completed(futures):
                done.add(futures.index(future))
                if progress is not None:
                    progress(len(done), total)
                while next_i < total and next_i in done:
                    frame = _result(futures[next_i])
                    futures[next_i].release()
                    state.add(frame, parts[next_i])
                    if sink is not None:
                        sink.frame(frame)
                    else:
                        _write(frame, job, variables, fmt, stdout, first=next_i == 0)
                    next_i += 1
        if sink is not None:
            sink.close()
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    return state.finish(sink)


def _result(future: Any) -> Any:
    """A partition's table; a lost cluster becomes an IOFault (exit 74), a user error stays itself."""
    try:
        return future.result()
    except GradcliError:
        raise
    except Exception as exc:  # noqa: BLE001 - only the cluster's own failures are translated; the rest re-raised
        name = type(exc).__name__
        if name == "KilledWorker":
            raise IOFault(f"--dask: workers kept dying while running a partition ({exc}); no output was written"
                          ) from None
        if isinstance(exc, (OSError, TimeoutError)) or name in ("CommClosedError", "FutureCancelledError"):
            raise IOFault(f"--dask: the cluster failed: {name}: {exc}") from None
        raise


class _Findings:
    """Exit-code bookkeeping over result tables: rows outside the domain, failed checks, --expect."""

    MAX_NOTES = 10

    def __init__(self, job: Any, note: Callable[[str], None], expect: Any) -> None:
        self.job, self.note = job, note
        self.expected = float(job.bk.scalar(expect)) if expect is not None and job.command == "d" else None
        self.bad = self.failed = self.notes = 0
        self.first_error: str | None = None

    def add(self, frame: Any, piece: Piece | None = None) -> None:
        from .check import rel_err_many

        def where(i: int) -> str:
            if piece is not None:
                return f"{piece.path}, row {piece.first_row + i + 1}"
            if FILE_COLUMN in frame.columns:
                return f"{frame[FILE_COLUMN].iloc[i]}, row {frame[ROW_COLUMN].iloc[i]}"
            return f"row {i + 1}"

        errors = frame["error"].notna().to_numpy()
        if errors.any():
            i = int(np.argmax(errors))
            self.bad += int(errors.sum())
            if self.first_error is None:
                self.first_error = f"{where(i)}: {frame['error'].iloc[i]}"
        failed = np.zeros(len(frame), dtype=bool)
        if "check_ok" in frame.columns:
            failed |= (frame["check_ok"] == False).fillna(False).to_numpy(dtype=bool)  # noqa: E712
        uncertified = (frame["certified"] == False).fillna(False).to_numpy(dtype=bool)  # noqa: E712
        for i in np.flatnonzero(failed | uncertified)[: max(self.MAX_NOTES - self.notes, 0)]:
            what = ("error: the value could not be certified" if uncertified[i] else
                    f"check failed: the engine's value disagrees with sympy, rel_err "
                    f"{frame['check_rel_err'].iloc[i]:.3g} > --tol {self.job.tol:g}")
            self.note(f"{where(int(i))}: {what}")
            self.notes += 1
        failed |= uncertified
        if self.expected is not None:
            off = (rel_err_many(frame["value"].to_numpy(), np.full(len(frame), self.expected)) > self.job.tol) & ~errors
            for i in np.flatnonzero(off)[: max(self.MAX_NOTES - self.notes, 0)]:
                self.note(f"{where(int(i))}: --expect failed: expected {self.expected!r}, got "
                          f"{frame['value'].iloc[i]!r}")
                self.notes += 1
            failed |= off
        self.failed += int(failed.sum())

    def finish(self, sink: OutputSink | None) -> int:
        if self.failed > self.notes:
            self.note(f"{self.failed} rows failed the check or --expect in all "
                      f"(the first {self.notes} are named above)")
        if self.first_error is not None:
            more = f" ({self.bad} such rows in all)" if self.bad > 1 else ""
            raise NotFinite(f"{self.first_error}{more}")
        return 1 if self.failed else 0


def _write(frame: Any, job: Any, variables: list[str], fmt: str, stream: TextIO, *, first: bool) -> None:
    """A result table on stdout: plain (the values, row-major, one line a row), CSV (the variables, the
    values, check_ok, check_rel_err: the columns ``--format csv`` writes) or JSON lines (the table's rows)."""
    import json

    from .parquet import _json_value

    names = [n for n in result_names(job) if n not in ("check_ok", "check_rel_err", "certified", "error")]
    if fmt == "plain":
        values = frame[names].to_numpy(dtype=np.float64)
        if len(values):
            stream.write("\n".join(" ".join(map(repr, row)) for row in values.tolist()) + "\n")
    elif fmt == "csv":
        cols = [v for v in variables if v in frame.columns] + names
        cols += ["check_ok", "check_rel_err"] if job.check else []
        out = frame[cols].copy()
        if job.check:
            out["check_ok"] = out["check_ok"].map({True: "true", False: "false"}).astype("object")
        out.to_csv(stream, header=first, index=False, lineterminator="\n", na_rep="")
    else:
        visible = [c for c in frame.columns if c not in (FILE_COLUMN, ROW_COLUMN)]
        for rec in frame[visible].to_dict("records"):
            stream.write(json.dumps({k: _json_value(v) for k, v in rec.items()}, allow_nan=False) + "\n")
    stream.flush()
