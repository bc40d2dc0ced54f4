"""The command line: click options in, rows out. The one place where errors become exit codes.

Everything it computes comes from the library modules (parse, derive, commands, check, render), which
the Python API uses too.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO, TextIO

import click

from . import __version__
from .errors import GradcliError, InputError, IOFault

EXIT_INTERNAL = 70
EXIT_IOERR = 74  # EX_IOERR (sysexits.h): stdout closed or full, stdin closed, an unreadable file
#: --digits' upper bound; api.MAX_DIGITS is the same (a test checks), not imported: it loads sympy
MAX_DIGITS = 10_000


class _LazyNumpy:
    """numpy, imported on first use: --help, --version and shell completion never load it."""

    def __getattr__(self, name: str) -> Any:
        import numpy

        return getattr(numpy, name)


np: Any = _LazyNumpy()
_EXPR_HINT = (
    "an EXPR that starts with '-' goes after '--', options before it "
    "(gradcli d --at x=1 -- \"-x**2\"), or in parentheses (\"(-x**2)\")"
)


# ---- parameter types: parsing belongs in types, so errors name the option ----------------------------
def _completing(ctx: Any) -> bool:
    """Shell completion parses the command line resiliently: values are left unparsed there, so that a
    TAB never imports sympy (the parser's) and a half-typed value is no error."""
    return ctx is not None and ctx.resilient_parsing


def _unprefixed(message: str, param: Any) -> str:
    """The parser's message without its leading '--at: ', which click's 'Invalid value for' repeats."""
    prefix = f"--{param.name}: " if param is not None else ""
    return message[len(prefix):] if prefix and message.startswith(prefix) else message


class WrtType(click.ParamType):
    name = "SPEC"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if isinstance(value, (list, tuple)) or _completing(ctx):  # already a parse.Wrt (or a list)
            return value
        from .parse import parse_wrt

        try:
            return parse_wrt(value)
        except InputError as exc:
            self.fail(_unprefixed(exc.message, param), param, ctx)


class AtType(click.ParamType):
    name = "POINT"

    def convert(self, value: Any, param: Any, ctx: Any) -> dict[str, Any]:
        if isinstance(value, dict) or _completing(ctx):
            return value
        from .parse import parse_at
        from .sweep import split_sweeps

        try:
            rest, grids = split_sweeps(value)  # x=0:1:0.1 or x=linspace(0,1,11): a grid (issue 12)
            point: dict[str, Any] = parse_at(rest) if rest.strip() or not grids else {}
        except InputError as exc:
            self.fail(_unprefixed(exc.message, param), param, ctx)
        for name in grids:
            if name in point:
                self.fail(f"'{name}' given twice", param, ctx)
        return {**point, **grids}


def _merge_at(ctx: click.Context, param: click.Parameter, value: Any) -> dict[str, Any] | None:
    """--at is repeatable: ``--at x=1 --at y=2`` is ``--at x=1,y=2``; a name given twice is an error."""
    if not value or _completing(ctx):
        return None
    point: dict[str, Any] = {}
    for part in value:
        for name, v in part.items():
            if name in point:
                raise click.BadParameter(f"'{name}' given twice", ctx, param)
            point[name] = v
    return point


def _single_wrt(ctx: click.Context, param: click.Parameter, value: Any) -> list[str] | None:
    """--wrt once: a second --wrt would silently replace the first (``--wrt x,y`` says both)."""
    if not value or _completing(ctx):
        return None
    if len(value) > 1:
        raise click.BadParameter("given more than once; list every variable in one --wrt (x,y or x:2,y)",
                                 ctx, param)
    return value[0]


class ConstantType(click.ParamType):
    name = "VALUE"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if not isinstance(value, str) or _completing(ctx):
            return value
        from .parse import parse_constant

        try:
            return parse_constant(value, what=f"--{param.name}" if param else "value")
        except InputError as exc:
            self.fail(_unprefixed(exc.message, param), param, ctx)


class ExpectType(click.ParamType):
    """--expect: one value (d) or several, comma- or space-separated, row-major for a matrix
    (``--expect "161,20"``, ``--expect "60 11 11 10"``); each a constant expression, so ``pi/4`` and
    ``atan2(1,2)`` work (commas split only outside parentheses; spaces only when there is no comma)."""

    name = "VALUE"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if not isinstance(value, str) or _completing(ctx):
            return value
        from .parse import parse_constant

        parts = _split_values(value)
        if not parts:
            self.fail("no value given", param, ctx)
        try:
            return tuple(parse_constant(p, what=f"--expect value {i}" if len(parts) > 1 else "--expect")
                         for i, p in enumerate(parts, start=1))
        except InputError as exc:
            self.fail(_unprefixed(exc.message, param), param, ctx)


def _split_values(text: str) -> list[str]:
    """Split on commas outside brackets, or, without such a comma, on whitespace outside brackets."""
    depth, parts, current, sep = 0, [], [], None
    for ch in text:
        depth += (ch in "([{") - (ch in ")]}")
        if depth == 0 and ch == ",":
            sep = ","
    depth = 0
    for ch in text:
        depth += (ch in "([{") - (ch in ")]}")
        if depth == 0 and (ch == "," if sep else ch.isspace()):
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    stripped = [p.strip() for p in parts]
    return [p for p in stripped if p] if sep is None else stripped


class PositiveFloat(click.ParamType):
    name = "FLOAT"

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        try:
            f = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not (f > 0 and f < float("inf")):
            self.fail(f"{value!r} must be a positive finite number", param, ctx)
        return f


def _digits_range() -> click.IntRange:
    return click.IntRange(1, MAX_DIGITS)


FORMATS = ("table", "plain", "json", "csv")


def common_options(*, expect: bool = True, check: bool = True,
                   formats: tuple[str, ...] = FORMATS) -> Callable[[Any], Any]:
    """The options every command shares, stacked once (``formats``: taylor adds latex, for --poly)."""

    def decorate(f: Any) -> Any:
        opts = [
            click.option("--at", "at", type=AtType(), multiple=True, callback=_merge_at,
                         help="Point: NAME=VALUE,... with constant VALUEs (2, -1.5, pi/4, sqrt(2)); "
                              "repeatable (--at x=1 --at y=2)."),
            click.option("--points", "points", type=click.Path(allow_dash=True), default=None,
                         metavar="FILE|-",
                         help="Evaluate at every row of FILE (- reads stdin): CSV or TSV with a header row of "
                              "variable names, whitespace-separated columns, one headerless column (EXPR of "
                              "one variable), or JSON lines ({\"x\": 1, \"y\": 2} a line); streamed, one "
                              "result per row in input order; --at fills in variables the file lacks. Also "
                              "Parquet: a .parquet file, a directory of them, or a glob."),
            click.option("--output", "output", type=click.Path(dir_okay=False), default=None, metavar="FILE",
                         help="With --points: write the input's columns plus value, check and certificate "
                              "columns to FILE (.parquet, .csv or .jsonl), or to DIR/ (a new directory of "
                              "Parquet files, which --dask workers write themselves), atomically; needs "
                              "gradcli[dask]."),
            click.option("--dask", "dask", is_flag=False, flag_value="local", default=None,
                         metavar="[ADDRESS]",
                         help="Run --points (Parquet) on a Dask cluster: the scheduler at ADDRESS "
                              "(tcp://host:8786), or a LocalCluster without one; needs gradcli[dask]."),
            click.option("--threads", "threads", type=click.IntRange(1, 1024), default=None, metavar="N",
                         help="Worker threads for many points (--points, grids): default $GRADCLI_THREADS, "
                              "else one per core."),
            click.option("--format", "fmt", type=click.Choice(formats), default=None,
                         help="Output format (default: table on a terminal, plain otherwise)"
                              + ("; latex: the Taylor polynomial (--poly) in LaTeX." if "latex" in formats else ".")),
            click.option("--json", "as_json", is_flag=True, help="Short for --format json."),
        ]
        if check:
            opts += [
                click.option("--check/--no-check", default=True, show_default=True,
                             help="Cross-check against sympy's symbolic derivative."),
                click.option("--tol", type=PositiveFloat(), default=1e-8, show_default=True,
                             help="Relative tolerance of --check and --expect (absolute below 1e-12)."),
                click.option("--check-timeout", type=PositiveFloat(), default=5.0, show_default=True,
                             help="Seconds the symbolic check may take before it is skipped."),
            ]
        opts += [
            click.option("--digits", type=_digits_range(), default=None,
                         help="Compute in N significant digits (arbitrary precision) instead of float64."),
            click.option("--show-symbolic", is_flag=True, help="Also print the symbolic derivative."),
            click.option("--symbolic-format", type=click.Choice(("text", "pretty", "latex")), default=None,
                         help="How --show-symbolic prints it (implies --show-symbolic): text (sympy's str, the "
                              "default), pretty (sympy's 2-D drawing: multi-line, so --format table or json "
                              "only) or latex; JSON's check.symbolic follows it."),
        ]
        if expect:
            opts.append(click.option("--expect", type=ExpectType(), default=None,
                                     help="Exit 1 unless the value matches VALUE within --tol (CI checks); "
                                          "a vector or matrix as its entries, comma- or space-separated, "
                                          "row-major (\"161,20\")."))
        for opt in reversed(opts):
            f = opt(f)
        return f

    return decorate


# ---- the group ------------------------------------------------------------------------------------
@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="gradcli", message="%(prog)s %(version)s")
def cli() -> None:
    """Derivative values of any order, checked against sympy.

    \b
    Examples:
      gradcli d "2*x**3+5*y**2" --wrt x,x --at x=5,y=2      # 60.0
      gradcli d "exp(sin(x))" --wrt x:100 --at x=0.5        # the 100th derivative
      gradcli grad "x*y+sin(x)" --at x=1,y=2
      gradcli taylor "exp(2*x)" --wrt x --order 5 --at x=0
    """


def _stdout() -> TextIO:
    return sys.stdout


def _default_format(fmt: str | None, as_json: bool) -> str:
    if as_json:
        if fmt not in (None, "json"):
            raise InputError(f"--json conflicts with --format {fmt}")
        return "json"
    if fmt is not None:
        return fmt
    return "table" if _stdout().isatty() else "plain"


def _note(message: str) -> None:
    click.echo(f"gradcli: {message}", err=True)


def _run(command: str, exprs: list[str], wrt: list[str] | None, at: dict[str, Any] | None, fmt: str | None,
         as_json: bool, check: bool, tol: float, check_timeout: float, digits: int | None,
         show_symbolic: bool, expect: Any = None, order: int = 0, points: str | None = None,
         symbolic_format: str | None = None, poly: bool = False, output: str | None = None,
         dask: str | None = None, threads: int | None = None) -> int:
    from .api import precision
    from .commands import COMMANDS, Chunk, Job, Unnumbered
    from .derive import point_arrays, prepare, resolve_point
    from .render import Renderer

    fmt = _default_format(fmt, as_json)
    if fmt == "latex" and not poly:
        raise InputError("--format latex is for the Taylor polynomial: add --poly "
                         "(for the symbolic derivative in LaTeX, use --symbolic-format latex)")
    if symbolic_format is not None:
        show_symbolic = True
    if symbolic_format == "pretty" and fmt not in ("table", "json"):
        raise InputError(f"--symbolic-format pretty draws on several lines, and --format {fmt} is one line per "
                         "point: use it with --format table or json (or --symbolic-format text or latex)")
    styles = {"symbolic_format": symbolic_format or "text", "poly": poly}
    preps = [prepare(e) for e in exprs]
    cmd = COMMANDS[command]
    names, notes = cmd.names(preps, wrt)
    for n in notes:
        _note(n)
    at = dict(at or {})
    grids = _grids(at, points)  # --at x=0:1:0.1: evaluated as --points would (issue 12)
    if grids:
        at = {k: v for k, v in at.items() if k not in grids}
    # a Taylor series is expanded around a value of its variable, even one EXPR does not contain
    variables = sorted({v for p in preps for v in p.variables} | (set(names) if cmd.series else set()))
    for p in preps if points is None and not grids else ():  # with --points the file supplies what --at lacks
        resolve_point(p, names, {k: v for k, v in at.items() if k in p.variables or k in names})
    unknown = [k for k in at if k not in variables and k not in names]
    if unknown:
        raise InputError(f"--at names '{unknown[0]}', which is neither in EXPR nor in --wrt")
    unknown = [k for k in grids if k not in variables and k not in names]
    if unknown:
        raise InputError(f"--at names '{unknown[0]}', which is neither in EXPR nor in --wrt")
    if grids:
        points = list(grids.values())
    if poly and fmt == "table" and points is not None:  # many points: one polynomial a line, no tables
        fmt = "plain"
    missing = [v for v in variables if v not in at and v not in grids]
    if missing and (points is None or grids):
        raise InputError(f"--at is missing a value for {', '.join(repr(m) for m in missing)}")
    with precision(digits) as bk:
        job = Job(cmd, tuple(preps), tuple(names), bk, digits=digits, check=check, tol=tol,
                  check_timeout=check_timeout, order=order, symbolic=show_symbolic, threads=threads)
        expect = _expected(job, expect, points)  # --expect for every command: checked and shaped (issue 11)
        if output is not None or dask is not None:  # issue 13: Parquet and --output, a Dask cluster
            _table_options(points, grids, digits, show_symbolic or poly)
            if dask is not None:
                return _run_dask(job, points, at, variables, dask, output, fmt, expect)
            from .parquet import OutputSink

            return _run_points(job, points, at, variables, OutputSink(output), expect=expect)
        renderer = Renderer(job, fmt, _stdout(), show_symbolic=show_symbolic, variables=variables, **styles)
        if points is not None:
            return _run_points(job, points, at, variables, renderer, expect=expect)
        values, size = point_arrays(at, bk)
        return _run_chunks(job, [Chunk(values, size, Unnumbered(size), exact=dict(at))], renderer, expect=expect)


def _grids(at: dict[str, Any], points: Any) -> dict[str, Any]:
    """The --at grids (``x=0:1:0.1``, ``x=linspace(0,1,11)``), by name; none with --points."""
    from .sweep import Sweep

    grids = {k: v for k, v in at.items() if isinstance(v, Sweep)}
    if grids and points is not None:
        raise InputError(f"--at {next(iter(grids))}=...: a grid and --points cannot be combined "
                         "(put the grid's values in the file)")
    return grids


# ---- --expect for every command (a scalar for d, entries row-major for the others) -----------------------
def _expected(job: Any, expect: tuple[Any, ...] | None, points: str | None) -> Any:
    """--expect's values checked against the command's shape: a constant for d, else a flat list."""
    if expect is None:
        return None
    name, shape = job.command.name, job.command.shape(job)
    if not shape:
        if len(expect) != 1:
            raise InputError(f"--expect: {name} has one value, got {len(expect)}")
        return expect[0]
    rows, cols = shape if len(shape) == 2 else (1, shape[0])
    if len(expect) != rows * cols:
        what = f"{rows}x{cols} matrix, row-major" if rows > 1 else f"{cols} entries"
        raise InputError(f"--expect: {name} has {rows * cols} values ({what}), got {len(expect)}")
    return list(expect)


def _expect_status(job: Any, value: Any, expect: Any) -> int:
    """0, or 1 after naming the first entry that misses --expect within --tol."""
    from .commands import expect_mismatch

    if job.command.kind == "scalar":
        entries = [("", value, expect)]
    else:
        flat = [v for row in value for v in row] if job.command.kind == "matrix" else list(value)
        cols = len(job.labels)
        entries = [(_entry_name(job, i, cols), v, e) for i, (v, e) in enumerate(zip(flat, expect))]
    for name, v, e in entries:
        bad = expect_mismatch(v, job.bk.scalar(e), job.tol)
        if bad:
            _note(f"--expect failed{name}: {bad}")
            return 1
    return 0


def _entry_name(job: Any, i: int, cols: int) -> str:
    """' at entry 2 (∂f/∂y)', or ' at row 1, column 2 (∂f/∂y)' for a matrix (1-based)."""
    label = job.labels[i % cols]
    if job.command.kind != "matrix":
        return f" at entry {i + 1} ({label})"
    return f" at {job.command.row_noun} {i // cols + 1}, column {i % cols + 1} ({label})"




def _stdin_bytes() -> BinaryIO:
    """Standard input as bytes (its buffer; a test may have put a binary stream there itself)."""
    return getattr(sys.stdin, "buffer", sys.stdin)


def _open_points(points: str) -> tuple[BinaryIO, bool]:
    """The binary stream behind --points, and whether it is ours to close."""
    if points == "-":
        if sys.stdin is None:  # started with stdin closed (`<&-`)
            raise IOFault("--points -: stdin is closed")
        return _stdin_bytes(), False
    try:
        return open(points, "rb"), True  # noqa: SIM115 - closed by the caller
    except FileNotFoundError:  # a wrong name: bad input (exit 2); an unreadable file is an I/O error (74)
        raise InputError(f"--points: cannot read '{points}': no such file") from None
    except OSError as exc:
        raise IOFault(f"--points: cannot read '{points}': {exc.strerror or exc}") from None


@contextmanager
def _progress(reader: Any, renderer: Any = None) -> Iterator[Callable[[], None]]:
    """A rich progress bar on stderr (bytes read of a regular file) when stderr is a terminal.

    Never on the terminal the rows are being written to: when stdout is a terminal too, the bar is
    shown only while a table is being collected (nothing else is written then) and is removed
    before the first row is written (``renderer.before_streaming``)."""
    streams_now = renderer is None or renderer.fmt != "table"
    if getattr(reader, "total", None) is None or not sys.stderr.isatty() or (_stdout().isatty() and streams_now):
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("points"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    progress = Progress(*columns, console=Console(stderr=True), transient=True)
    task = progress.add_task("points", total=reader.total)
    # shown only once the run has taken half a second (a short run leaves nothing on the screen)
    state = {"on": False, "done": False, "since": time.monotonic()}

    def advance() -> None:
        if state["done"]:
            return
        if not state["on"] and time.monotonic() - state["since"] > 0.5:
            state["on"] = True
            progress.start()
        progress.update(task, completed=reader.bytes_read)

    def stop() -> None:
        state["done"] = True
        if state["on"]:
            state["on"] = False
            progress.stop()

    if renderer is not None and _stdout().isatty():
        renderer.before_streaming = stop
    try:
        yield advance
    finally:
        stop()


def _run_points(job: Any, points: str, at: dict[str, Any], variables: list[str], renderer: Any,
                *, expect: Any = None) -> int:
    """--points (a file, stdin, Parquet) and --at grids: the rows, read chunk by chunk, through
    :func:`_run_chunks` (the tape and the oracle are built once)."""
    bk = job.bk
    defaults = {k: bk.scalar(v) for k, v in at.items() if k in variables}
    parquet = isinstance(points, str) and _is_parquet(points)  # issue 13: a file, directory or glob
    stream, ours = _open_points(points) if isinstance(points, str) and not parquet else (None, False)
    try:
        if parquet:
            from .parquet import ParquetReader

            reader: Any = ParquetReader(points, variables, defaults, keep_columns=hasattr(renderer, "inputs"))
        elif stream is None:  # --at grids (gradcli.sweep): the chunks a file of those rows would give
            from .sweep import GridReader

            reader = GridReader(points, variables, defaults, bk)
        else:
            from .points import PointsReader

            reader = PointsReader(stream, variables, defaults, bk, name=points)
        if hasattr(renderer, "inputs"):  # --output: the sink copies the input's columns of each chunk
            renderer.inputs = reader
        return _run_chunks(job, reader, renderer, expect=expect, many=True,
                           where=reader.where if parquet else None)
    finally:
        if ours:
            stream.close()


def _run_chunks(job: Any, chunks: Any, renderer: Any, *, expect: Any = None, many: bool = False,
                where: Callable[[Any], str] | None = None) -> int:
    """The one run loop of d, grad, hessian, jacobian and taylor: each chunk of points is evaluated
    (:func:`gradcli.commands.evaluate_block`), written, and its findings reported (what they say is
    :mod:`gradcli.report`'s, as on a Dask cluster); returns the exit code.

    One point (``at``) is one chunk: a value outside the domain is an error before anything is written
    (exit 3), and the point's notes are its own. Over many points (``many``: --points, grids) every row is
    written, in input order, a row outside the domain as nan (JSON: null with "error"); at the end: exit
    3 naming the first such row (by line, or by ``where(line)``: a Parquet file and row), else exit 1 if a
    row failed the check or --expect (the first few named on stderr as they come). A bad input row stops
    the run (exit 2) after every earlier row has been written.
    """
    from .commands import evaluate_block
    from .render import waiting
    from .report import Findings, row_failed, row_notes

    bk, tol = job.bk, job.tol
    expected = None
    if expect is not None and many:  # d: one value; the others: every entry, row-major (checked by _expected)
        expected = bk.scalar(expect) if job.command.kind == "scalar" else [bk.scalar(e) for e in expect]
    findings = Findings()
    written: list[Any] = []  # one point's rows, reported once they are written
    try:
        with _progress(chunks, renderer) as advance:
            for chunk in chunks:
                if not many:  # one point: "checking…" on a terminal after half a second
                    with waiting():
                        block = evaluate_block(job, chunk)
                    for i in np.flatnonzero(block.bad)[:1]:
                        raise block.error(int(i))
                    point_rows = [block.row(i) for i in range(chunk.size)]
                    for row in point_rows:
                        renderer.row(row)
                    written += point_rows
                    continue
                block = evaluate_block(job, chunk)
                renderer.block(block)
                advance()
                lines = chunk.lines

                def name(i: int, lines: Any = lines) -> str:
                    return where(lines[i]) if where is not None else f"line {lines[i]}"

                for notes in findings.add(block, name, tol, expected, job.digits):
                    for line in notes:
                        _note(line)
        renderer.close()
    except BrokenPipeError:
        # `| head -n 5` has all it wants; click would turn this into exit 1, so it stops here
        _reader_gone()
        return 0
    except BaseException:
        if hasattr(renderer, "abort"):  # --output: a run that stops early leaves no file
            renderer.abort()
        raise
    status = 0
    for row in written:
        for line in row_notes(row, tol, job.digits):
            _note(line)
        status = max(status, int(row_failed(row)))
        if expect is not None:
            status = max(status, _expect_status(job, row.value, expect))
    return max(status, findings.finish(_note))


def _is_parquet(points: str) -> bool:
    from .parquet import is_parquet

    return is_parquet(points)


def _table_options(points: Any, grids: Any, digits: Any, styled: bool) -> None:
    """--output and --dask take rows from --points, in float64, without the symbolic text."""
    if points is None or grids:
        raise InputError("--output and --dask need --points (a file of rows)")
    if digits is not None:
        raise InputError("--digits cannot be combined with --output or --dask (their tables hold float64)")
    if styled:
        raise InputError("--show-symbolic, --symbolic-format and --poly cannot be combined with --output or --dask")


def _run_dask(job: Any, points: str, at: dict[str, Any], variables: list[str], address: str, output: str | None,
              fmt: str, expect: Any) -> int:
    """--dask: the job over a Dask dataframe of the Parquet rows; results written in input order (to
    --output, or to stdout as plain values, CSV or JSON lines), diagnostics and exit codes as on one
    machine."""
    from .dask import run_cluster_job

    if not _is_parquet(points):
        raise InputError("--dask reads Parquet --points (a .parquet file, a directory of them, or a glob)")
    if fmt == "table" and output is None:
        fmt = "plain"
    with _partition_progress(output is None and _stdout().isatty()) as progress:
        return run_cluster_job(job, points, at, variables, address, output, fmt, expect, stdout=_stdout(),
                               note=_note, progress=progress)


@contextmanager
def _partition_progress(rows_on_terminal: bool) -> Iterator[Any]:
    """--dask: partitions done, a rich bar on stderr when it is a terminal (not the one rows go to)."""
    if not sys.stderr.isatty() or rows_on_terminal:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("partitions"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=Console(stderr=True), transient=True)
    task = bar.add_task("partitions", total=None)
    bar.start()
    try:
        yield lambda done, total: bar.update(task, completed=done, total=total)
    finally:
        bar.stop()


# ---- EXPR from stdin (-) or a file (@FILE) ------------------------------------------------------------
def _expr_texts(exprs: list[str], points: str | None) -> list[str]:
    """Each EXPR as given, or read: ``-`` from stdin, ``@FILE`` from FILE (surrounding whitespace and a
    final newline dropped). The parser's length limit applies to what is read."""
    from_stdin = [e for e in exprs if e == "-"]
    if from_stdin and (len(from_stdin) > 1 or points == "-"):
        raise InputError("stdin can be read once: EXPR - and --points - (or two EXPR -) cannot both read it")
    return [_read_expr(e) if e == "-" or e.startswith("@") else e for e in exprs]


#: More than this is refused by the parser anyway (10,000 characters); reading stops here.
_EXPR_READ_LIMIT = 1 << 20


def _read_expr(source: str) -> str:
    if source == "-":
        if sys.stdin is None:
            raise IOFault("EXPR -: stdin is closed")
        where, data = "stdin", _stdin_bytes().read(_EXPR_READ_LIMIT)
    else:
        where = source[1:]
        try:
            with open(where, "rb") as f:
                data = f.read(_EXPR_READ_LIMIT)
        except FileNotFoundError:
            raise InputError(f"EXPR {source}: no such file '{where}'") from None
        except IsADirectoryError:
            raise InputError(f"EXPR {source}: '{where}' is a directory") from None
        except OSError as exc:
            raise IOFault(f"EXPR {source}: cannot read '{where}': {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig").strip()
    except UnicodeDecodeError:
        raise InputError(f"EXPR from {where} is not UTF-8 text") from None
    if not text:
        raise InputError(f"EXPR from {where} is empty")
    return text


# ---- commands --------------------------------------------------------------------------------------
@cli.command("d")
@click.argument("expr")
@click.option("--wrt", type=WrtType(), multiple=True, callback=_single_wrt,
              help="Variables in differentiation order: x,y or x:3 (= x,x,x); default: EXPR's only variable.")
@common_options()
def d_command(expr: str, wrt: list[str] | None, **kw: Any) -> None:
    """One derivative d^n f / d wrt1 ... d wrtn at a point.

    \b
    Examples:
      gradcli d "2*x**3+5*y**2" --wrt x,x --at x=5,y=2       # 60.0
      gradcli d "sin(x)" --wrt x:3 --at x=pi/4 --json
      gradcli d "exp(2*x)" --wrt x:300 --at x=1 --digits 30
      gradcli d --at x=1 -- "-x**2"                          # EXPR starting with '-'
      gradcli d "x*y" --wrt x,y --at x=1,y=2 --expect 1      # exit 1 unless 1
    """
    sys.exit(_run("d", _expr_texts([expr], kw["points"]), wrt, **kw))


@cli.command("grad")
@click.argument("expr")
@click.option("--wrt", type=WrtType(), multiple=True, callback=_single_wrt,
              help="Variables and their order (default: sorted by name).")
@common_options()
def grad_command(expr: str, wrt: list[str] | None, **kw: Any) -> None:
    """The gradient (one reverse sweep), variables sorted by name unless --wrt.

    \b
    Examples:
      gradcli grad "2*x**3+5*y**2+11*x+5" --at x=5,y=2       # 161.0 20.0
      gradcli grad "x*exp(y)" --wrt y,x --at x=1,y=0 --json
    """
    sys.exit(_run("grad", _expr_texts([expr], kw["points"]), wrt, **kw))


@cli.command("hessian")
@click.argument("expr")
@click.option("--wrt", type=WrtType(), multiple=True, callback=_single_wrt,
              help="Variables and their order (default: sorted by name).")
@common_options()
def hessian_command(expr: str, wrt: list[str] | None, **kw: Any) -> None:
    """The Hessian matrix (forward-over-reverse), row-major in plain output.

    \b
    Examples:
      gradcli hessian "2*x**3+5*y**2+11*x*y+5" --at x=5,y=2  # 60.0 11.0 11.0 10.0
      gradcli hessian "sin(x*y)" --at x=1,y=2 --format table
    """
    sys.exit(_run("hessian", _expr_texts([expr], kw["points"]), wrt, **kw))


@cli.command("jacobian")
@click.argument("exprs", nargs=-1, required=True)
@click.option("--wrt", type=WrtType(), multiple=True, callback=_single_wrt,
              help="Variables and their order (default: sorted by name).")
@common_options()
def jacobian_command(exprs: tuple[str, ...], wrt: list[str] | None, **kw: Any) -> None:
    """The Jacobian: one row per expression, one column per variable.

    \b
    Examples:
      gradcli jacobian "x*y" "x+y" --at x=2,y=3               # 3.0 2.0 1.0 1.0
      gradcli jacobian "r*cos(t)" "r*sin(t)" --wrt r,t --at r=2,t=pi/3 --format table
    """
    sys.exit(_run("jacobian", _expr_texts(list(exprs), kw["points"]), wrt, **kw))


@cli.command("taylor")
@click.argument("expr")
@click.option("--wrt", type=WrtType(), required=True, multiple=True, callback=_single_wrt,
              help="The expansion variable.")
@click.option("--order", type=click.IntRange(0, 100_000), required=True, help="The highest derivative N.")
@click.option("--poly", is_flag=True,
              help="Print the Taylor polynomial sum c_k (x-A)^k instead (the certified coefficients): sympy's "
                   "expression text, --format latex, a \"poly\" key in JSON or a poly column in CSV.")
@common_options(formats=(*FORMATS, "latex"))
def taylor_command(expr: str, wrt: list[str], order: int, poly: bool, **kw: Any) -> None:
    """f(A), f'(A), ..., f^(N)(A) and the Taylor coefficients f^(k)(A)/k!, or the Taylor polynomial.

    \b
    Examples:
      gradcli taylor "exp(2*x)" --wrt x --order 5 --at x=0
      gradcli taylor "exp(2*x)" --wrt x --order 3 --at x=0 --poly --no-check
      gradcli taylor "log(x)" --wrt x --order 3 --at x=1 --poly --format latex
      gradcli taylor "1/(1+exp(-x))" --wrt x --order 200 --at x=0.3 --no-check
      gradcli taylor "exp(2*x)" --wrt x --order 300 --at x=1 --digits 50 --json
    """
    sys.exit(_run("taylor", _expr_texts([expr], kw["points"]), wrt, order=order, poly=poly, **kw))


@cli.command("plot")
@click.argument("expr")
@click.option("--wrt", type=WrtType(), multiple=True, callback=_single_wrt,
              help="The variable on the horizontal axis (default: EXPR's only variable).")
@click.option("--range", "span", required=True, metavar="A:B",
              help="The interval of the variable, A:B with constant bounds (-1:2, 0:2*pi).")
@click.option("--orders", default="0,1", show_default=True, metavar="K,...",
              help="Derivative orders to draw, comma-separated (0 is f itself).")
@click.option("--at", "at", type=AtType(), multiple=True, callback=_merge_at,
              help="Values of EXPR's other variables: NAME=VALUE,... (repeatable).")
@click.option("--points", "npoints", type=click.IntRange(2, 1_000_000), default=None,
              help="Grid points over the range (default: 400 for a figure, the plot's width in the terminal).")
@click.option("--output", "-o", "output", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Write the figure to FILE (.png, .svg or .pdf; needs gradcli[plot], i.e. matplotlib).")
@click.option("--format", "fmt", type=click.Choice(["plot", "plain", "csv", "json"]), default=None,
              help="plot (the terminal drawing, the default without --output), or the grid: plain (one line "
                   "per point: the variable, then the values; nan for a gap), csv, or json (one object per grid "
                   "point in the JSON schema every command writes: value [f, f', ..., f^(K)] up to the highest "
                   "order K, null with an error for a gap).")
@click.option("--height", type=click.IntRange(4, 200), default=20, show_default=True,
              help="Rows of the terminal plot.")
def plot_command(expr: str, wrt: list[str] | None, span: str, orders: str, at: dict[str, Any] | None,
                 npoints: int | None, output: str | None, fmt: str | None, height: int) -> None:
    """f and its derivatives over a range: drawn in the terminal, written as a figure, or as a grid.

    Points outside the domain are gaps, not errors.

    \b
    Examples:
      gradcli plot "sin(x)*exp(-x/4)" --range 0:10 --orders 0,1,2
      gradcli plot "log(x)" --range -1:3 --orders 0,1 --format csv --points 5
      gradcli plot "x*exp(-y*x^2)" --wrt x --at y=0.5 --range -3:3 --orders 0,1,2 --format json
    """
    import shutil

    from .plot import evaluate_grid, grid_csv, grid_json, parse_orders, parse_range, terminal_plot, write_figure

    (text,) = _expr_texts([expr], None)
    lo, hi = parse_range(span)
    if output is not None and not output.lower().endswith((".png", ".svg", ".pdf")):
        raise InputError(f"--output: '{output}' must end in .png, .svg or .pdf")
    if output is not None:
        try:
            import matplotlib  # noqa: F401 - only whether it is there
        except ImportError:
            raise InputError("--output needs matplotlib: pip install 'gradcli[plot]'") from None
    width = shutil.get_terminal_size((80, 24)).columns
    n = npoints or (400 if output is not None or fmt in ("plain", "csv", "json") else max(2 * (width - 14), 20))
    grid = evaluate_grid(text, None if wrt is None else ",".join(wrt), parse_orders(orders), lo, hi, n, at)
    if grid.uncertified:
        _note(f"note: {grid.uncertified} grid points could not be certified and are left out (gaps)")
    if output is not None:
        write_figure(grid, output)
        _note(f"wrote {output}")
    if fmt == "csv":
        click.echo(grid_csv(grid), nl=False)
    elif fmt == "plain":
        from .plot import grid_plain

        click.echo(grid_plain(grid), nl=False)
    elif fmt == "json":
        click.echo(grid_json(grid), nl=False)
    elif fmt == "plot" or output is None:
        color = _stdout().isatty() and "NO_COLOR" not in os.environ or bool(os.environ.get("FORCE_COLOR"))
        click.echo(terminal_plot(grid, width=width, height=height, color=color), nl=False)


@cli.command("explain")
@click.argument("expr")
@click.option("--wrt", type=WrtType(), multiple=True, callback=_single_wrt,
              help="Variables in differentiation order: x,y or x:3 (default: EXPR's only variable).")
@click.option("--at", "at", type=AtType(), multiple=True, callback=_merge_at,
              help="The point: NAME=VALUE,... (repeatable).")
@click.option("--format", "fmt", type=click.Choice(["table", "plain", "json", "dot"]), default="table",
              show_default=True,
              help="table (rich tree and tables), plain (one line per recorded operation), json, or dot "
                   "(Graphviz: gradcli explain ... --format dot | dot -Tsvg > tape.svg).")
@click.option("--json", "as_json", is_flag=True, help="Short for --format json.")
def explain_command(expr: str, wrt: list[str] | None, at: dict[str, Any] | None, fmt: str, as_json: bool) -> None:
    """The tape: primitives in recording order with inputs, forward values and adjoints; the engine.

    A second order shows the nested tape (the outer tape records the inner reverse sweep); Taylor mode
    shows each primitive's coefficients.

    \b
    Examples:
      gradcli explain "2*x**3+5*y**2+11*x*y+5" --wrt x --at x=5,y=2
      gradcli explain "x**3" --wrt x,x --at x=3
      gradcli explain "exp(sin(x))" --wrt x:3 --at x=0.5 --json
      gradcli explain "x*y+sin(x)" --wrt x --at x=1,y=2 --format dot
    """
    from .explain import explain, to_dot, to_json

    if as_json:
        if fmt not in ("table", "json"):
            raise InputError(f"--json conflicts with --format {fmt}")
        fmt = "json"
    (text,) = _expr_texts([expr], None)
    if at and any(type(v).__name__ == "Sweep" for v in at.values()):
        raise InputError("explain takes one point (--at NAME=VALUE,...), not a grid")
    e = explain(text, wrt, at)
    if fmt == "json":
        click.echo(to_json(e), nl=False)
    elif fmt == "dot":
        click.echo(to_dot(e), nl=False)
    elif fmt == "plain":
        from .explain import to_plain

        click.echo(to_plain(e), nl=False)
    else:
        from rich.console import Console

        from .render import explain_rich

        explain_rich(e, Console(file=_stdout(), highlight=False, soft_wrap=False))


# ---- the error boundary -----------------------------------------------------------------------------
def _reader_gone() -> None:
    """The reader of stdout went away (`| head`), or stdout failed: send what is still buffered to
    /dev/null, so that the interpreter's flush at exit neither fails nor prints."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):
        pass


def _stdout_is_devnull() -> bool:
    """Whether file descriptor 1 is /dev/null (where a broken pipe's handlers move it)."""
    try:
        st, null = os.fstat(1), os.stat(os.devnull)
    except OSError:
        return False
    return (st.st_ino, st.st_dev, st.st_rdev) == (null.st_ino, null.st_dev, null.st_rdev)


def _one_line(text: str, limit: int = 400) -> str:
    """One line, and not a screenful: a 100k-character EXPR is not echoed back whole."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else f"{line[: limit - 60]} ... {line[-40:]} ({len(line)} characters)"


def _shows_usage(exc: click.UsageError) -> bool:
    """A usage mistake (a missing argument, an unknown option or command, an extra argument) is shown
    with the usage line, as click does; a bad option value names the option in one line."""
    return exc.ctx is not None and (not isinstance(exc, click.BadParameter) or isinstance(exc, click.MissingParameter))


def _usage_error(exc: click.UsageError, hint: str = "") -> int:
    """click's layout (usage line, 'Try ... -h', blank line, the error), with our error prefix."""
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):
        click.echo(exc.format_message(), err=True)  # bare `gradcli`: the help, on stderr, exit 2 (click's way)
        return exc.exit_code
    if _shows_usage(exc) and not hint:
        ctx = exc.ctx
        click.echo(f"{ctx.get_usage()}\nTry '{ctx.command_path} -h' for help.\n", err=True)
    _note(f"error: {_one_line(exc.format_message())}{hint}")
    return 2


def _io_fault(exc: OSError | UnicodeEncodeError) -> IOFault:
    """The IOFault (exit 74) for an OSError or an encoding failure that reached the boundary."""
    if isinstance(exc, UnicodeEncodeError):
        encoding = getattr(sys.stdout, "encoding", None) or exc.encoding
        return IOFault(f"stdout's encoding ({encoding}) cannot show {exc.object[exc.start:exc.end]!r}; "
                       "use --format plain or json, or set PYTHONIOENCODING=utf-8")
    where = f" ({exc.filename})" if exc.filename else ""
    return IOFault(f"I/O error{where}: {exc.strerror or exc}")


def main(argv: list[str] | None = None, prog_name: str = "gradcli") -> int:
    """Run the CLI: every outcome is an exit code, every error one line on stderr (a usage mistake
    adds click's usage line and 'Try ... -h' before it)."""
    try:
        if sys.stdout is None:  # started with stdout closed (`>&-`): every command writes there
            raise IOFault("stdout is closed")
        before = _stdout_is_devnull()
        try:
            rv = cli.main(args=argv, prog_name=prog_name, standalone_mode=False)
            code = rv if isinstance(rv, int) else 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0
            # click (a wrapper) and rich (stdout moved to /dev/null) answer a broken pipe with exit 1
            if code == 1 and (type(sys.stdout).__name__ == "_PacifyFlushWrapper"
                              or (_stdout_is_devnull() and not before)):
                raise BrokenPipeError from None
        sys.stdout.flush()  # a full disk shows here, not in the interpreter's flush at exit
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.exceptions.NoSuchOption as exc:
        # -x**2, -1 or ---x is an EXPR, not a misspelt option like --bogus
        looks_like_option = re.fullmatch(r"--[A-Za-z][A-Za-z0-9-]*", exc.option_name or "") is not None
        code = _usage_error(exc, "" if looks_like_option else f"; {_EXPR_HINT}")
    except click.UsageError as exc:
        code = _usage_error(exc)
    except click.ClickException as exc:
        _note(f"error: {_one_line(exc.format_message())}")
        code = exc.exit_code
    except click.exceptions.Abort:
        _note("aborted")
        code = 130
    except GradcliError as exc:
        _note(f"error: {_one_line(exc.message)}")
        code = exc.exit_code
    except BrokenPipeError:
        _reader_gone()
        code = 0
    except (OSError, UnicodeEncodeError) as exc:  # stdout full or gone, stdin closed, an unreadable file
        _reader_gone()
        fault = _io_fault(exc)
        _note(f"error: {_one_line(fault.message)}")
        code = fault.exit_code
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:  # noqa: BLE001 - the single boundary where bugs become exit 70
        if os.environ.get("GRADCLI_DEBUG") == "1":
            import traceback

            traceback.print_exc()
        _note(f"internal error ({type(exc).__name__}: {_one_line(str(exc))[:200]}); "
              "this is a bug in gradcli, please report it with the command line that caused it")
        code = EXIT_INTERNAL
    return code
