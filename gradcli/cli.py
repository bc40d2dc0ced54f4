"""The command line: click options in, rows out. The one place where errors become exit codes.

Everything it computes comes from the library modules (parse, derive, commands, check, render), which
the Python API uses too.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO, TextIO

import click
import numpy as np

from . import __version__
from .errors import GradcliError, InputError, NotFinite

EXIT_INTERNAL = 70
_EXPR_HINT = (
    "an EXPR that starts with '-' goes after '--', options before it "
    "(gradcli d --at x=1 -- \"-x**2\"), or in parentheses (\"(-x**2)\")"
)


# ---- parameter types: parsing belongs in types, so errors name the option ----------------------------
class WrtType(click.ParamType):
    name = "SPEC"

    def convert(self, value: Any, param: Any, ctx: Any) -> list[str]:
        from .parse import parse_wrt

        if isinstance(value, list):
            return value
        try:
            return parse_wrt(value)
        except InputError as exc:
            self.fail(exc.message, param, ctx)


class AtType(click.ParamType):
    name = "POINT"

    def convert(self, value: Any, param: Any, ctx: Any) -> dict[str, Any]:
        from .parse import parse_at

        if isinstance(value, dict):
            return value
        try:
            return parse_at(value)
        except InputError as exc:
            self.fail(exc.message, param, ctx)


class ConstantType(click.ParamType):
    name = "VALUE"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        from .parse import parse_constant

        if not isinstance(value, str):
            return value
        try:
            return parse_constant(value, what=f"--{param.name}" if param else "value")
        except InputError as exc:
            self.fail(exc.message, param, ctx)


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
    from .api import MAX_DIGITS

    return click.IntRange(1, MAX_DIGITS)


FORMATS = ("table", "plain", "json", "csv")


def common_options(*, expect: bool = False, check: bool = True) -> Callable[[Any], Any]:
    """The options every command shares, stacked once."""

    def decorate(f: Any) -> Any:
        opts = [
            click.option("--at", "at", type=AtType(), default=None,
                         help="Point: NAME=VALUE,... with constant VALUEs (2, -1.5, pi/4, sqrt(2))."),
            click.option("--points", "points", type=str, default=None, metavar="FILE|-",
                         help="Evaluate at every row of FILE (- reads stdin): CSV with a header row of "
                              "variable names, or JSON lines ({\"x\": 1, \"y\": 2} a line); streamed, one "
                              "result per row in input order; --at fills in variables the file lacks."),
            click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
                         help="Output format (default: table on a terminal, plain otherwise)."),
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
        ]
        if expect:
            opts.append(click.option("--expect", type=ConstantType(), default=None,
                                     help="Exit 1 unless the value matches VALUE within --tol (CI checks)."))
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
         show_symbolic: bool, expect: Any = None, order: int = 0, points: str | None = None) -> int:
    from .api import precision
    from .commands import Chunk, Job, evaluate_chunk, expect_mismatch
    from .derive import point_arrays, prepare, resolve_point, resolve_wrt
    from .render import Renderer, number

    fmt = _default_format(fmt, as_json)
    preps = [prepare(e) for e in exprs]
    if command == "d":
        names, notes = resolve_wrt(preps[0], wrt)
        for n in notes:
            _note(n)
    elif command == "taylor":
        names, notes = resolve_wrt(preps[0], wrt)
        if len(names) != 1:
            raise InputError("--wrt must name exactly one variable for taylor")
        for n in notes:
            _note(n)
    else:
        names = _matrix_wrt(preps, wrt)
    at = dict(at or {})
    variables = sorted({v for p in preps for v in p.variables} | ({names[0]} if command == "taylor" else set()))
    for p in preps if points is None else ():  # with --points the file supplies what --at lacks
        resolve_point(p, names, {k: v for k, v in at.items() if k in p.variables or k in names})
    unknown = [k for k in at if k not in variables and k not in names]
    if unknown:
        raise InputError(f"--at names '{unknown[0]}', which is neither in EXPR nor in --wrt")
    missing = [v for v in variables if v not in at]
    if missing and points is None:
        raise InputError(f"--at is missing a value for {', '.join(repr(m) for m in missing)}")
    status = 0
    with precision(digits) as bk:
        job = Job(command, tuple(preps), tuple(names), bk, digits=digits, check=check, tol=tol,
                  check_timeout=check_timeout, order=order)
        if points is not None:
            renderer = Renderer(job, fmt, _stdout(), show_symbolic=show_symbolic, variables=variables)
            return _run_points(job, points, at, variables, renderer, expect=expect)
        values, size = point_arrays(at, bk)
        chunk = Chunk(values, size, (None,) * size)
        renderer = Renderer(job, fmt, _stdout(), show_symbolic=show_symbolic, variables=variables)
        rows = list(evaluate_chunk(job, chunk))
        for row in rows:
            if row.error is not None:
                raise row.error
        for row in rows:
            renderer.row(row)
        renderer.close()
        for row in rows:
            status = max(status, _report_checks(row, tol, lambda v: number(v if digits else float(v), digits)))
            if expect is not None and command == "d":
                bad = expect_mismatch(row.value, bk.scalar(expect), tol)
                if bad:
                    _note(f"--expect failed: {bad}")
                    status = 1
    return status


#: At most this many rows are named on stderr for each kind of per-row finding (check, --expect).
_MAX_ROW_NOTES = 10


def _open_points(points: str) -> tuple[BinaryIO, bool]:
    """The binary stream behind --points, and whether it is ours to close."""
    if points == "-":
        return click.get_binary_stream("stdin"), False
    try:
        return open(points, "rb"), True  # noqa: SIM115 - closed by the caller
    except OSError as exc:
        raise InputError(f"--points: cannot read '{points}': {exc.strerror or exc}") from None


@contextmanager
def _progress(reader: Any) -> Iterator[Callable[[], None]]:
    """A rich progress bar on stderr (bytes read of a regular file) when stderr is a terminal."""
    if reader.total is None or not sys.stderr.isatty():
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("points"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("points", total=reader.total)
        yield lambda: progress.update(task, completed=reader.bytes_read)


def _run_points(job: Any, points: str, at: dict[str, Any], variables: list[str], renderer: Any,
                *, expect: Any = None) -> int:
    """--points: read, evaluate and write chunk by chunk (the tape and the oracle are built once).

    Every row is written, in input order; a row outside the domain as nan (JSON: null with "error").
    At the end: exit 3 naming the first such row, else exit 1 if a row failed the check or --expect
    (the first few named on stderr as they come). A bad input row stops the run (exit 2) after every
    earlier row has been written.
    """
    from .commands import evaluate_block
    from .points import PointsReader
    from .render import number

    bk, tol = job.bk, job.tol
    fmt_number = (lambda v: number(v, job.digits)) if job.digits else (lambda v: number(float(v), None))
    defaults = {k: bk.scalar(v) for k, v in at.items() if k in variables}
    expected = bk.scalar(expect) if expect is not None and job.command == "d" else None
    stream, ours = _open_points(points)
    failed_rows, notes, bad_rows = 0, 0, 0
    first_error: tuple[Any, Any] | None = None
    skipped: dict[str, list[Any]] = {}
    try:
        reader = PointsReader(stream, variables, defaults, bk, name=points)
        with _progress(reader) as advance:
            for chunk in reader:
                block = evaluate_block(job, chunk)
                renderer.block(block)
                advance()
                if first_error is None and block.bad.any():
                    first = int(np.argmax(block.bad))
                    first_error = (chunk.lines[first], block.error(first))
                bad_rows += int(block.bad.sum())
                _skipped_checks(block, skipped)
                failed = block.check_failed
                for i in np.flatnonzero(failed)[: max(_MAX_ROW_NOTES - notes, 0)]:
                    _report_checks(block.row(int(i)), tol, fmt_number)
                    notes += 1
                if expected is not None:
                    off = _expect_failed(block, expected, tol)
                    for i in np.flatnonzero(off)[: max(_MAX_ROW_NOTES - notes, 0)]:
                        _note(f"line {chunk.lines[i]}: --expect failed: {_expect_text(block.values[i], expected, tol)}")
                        notes += 1
                    failed = failed | off
                failed_rows += int(failed.sum())
        renderer.close()
    except BrokenPipeError:
        # `| head -n 5` has all it wants; click would turn this into exit 1, so it stops here
        _reader_gone()
        return 0
    finally:
        if ours:
            stream.close()
    if failed_rows > notes:
        _note(f"{failed_rows} rows failed the check or --expect in all (the first {notes} are named above)")
    for why, (c, count) in skipped.items():
        rows = f"{count} row{'s' if count > 1 else ''}"
        if c.ok is not None:
            _note(f"note: symbolic check skipped for {rows} ({why}); checked by {c.method} instead")
        else:
            _note(f"note: check skipped for {rows}: {why}")
    if first_error is not None:
        line, exc = first_error
        more = f" ({bad_rows} such rows in all)" if bad_rows > 1 else ""
        raise NotFinite(f"line {line}: {exc.message}{more}")
    return 1 if failed_rows else 0


def _skipped_checks(block: Any, seen: dict[str, list[Any]]) -> None:
    """Count the rows whose check was skipped, per reason (each reason is reported once, at the end)."""
    for batch in block.checks or []:
        for c in (batch[i] for i in batch.single):
            if c is not None and c.skipped:
                seen.setdefault(c.skipped, [c, 0])[1] += 1
        if batch.skipped[0]:
            unchecked = (batch.status < 0) & ~batch.excluded
            unchecked[list(batch.single)] = False
            if unchecked.any():
                seen.setdefault(batch.skipped[0], [batch[int(np.argmax(unchecked))], 0])[1] += int(unchecked.sum())


def _expect_failed(block: Any, expected: Any, tol: float) -> np.ndarray:
    """Rows (inside the domain) whose value misses --expect."""
    from .check import close, rel_err_many

    if block.values.dtype == object:
        off = np.array([not close(v, expected, tol) for v in block.values], dtype=bool)
    else:
        off = rel_err_many(block.values, np.full(block.chunk.size, float(expected))) > tol
    return off & ~block.bad


def _expect_text(value: Any, expected: Any, tol: float) -> str:
    from .commands import expect_mismatch

    return expect_mismatch(value, expected, tol) or ""


def _matrix_wrt(preps: list[Any], wrt: list[str] | None) -> list[str]:
    if wrt is None:
        names = sorted({v for p in preps for v in p.variables})
        if not names:
            raise InputError("EXPR has no variables to differentiate by")
        return names
    if len(set(wrt)) != len(wrt):
        raise InputError("--wrt lists a variable twice; grad, hessian and jacobian take distinct variables")
    for name in wrt:
        if all(name not in p.variables for p in preps):
            _note(f"note: EXPR does not depend on '{name}', so its derivatives are 0 (a typo?)")
    return wrt


def _report_checks(row: Any, tol: float, fmt_number: Callable[[Any], str]) -> int:
    status = 0
    where = f"line {row.line}: " if row.line is not None else ""
    for c in row.checks or []:
        if c.ok is False:
            _note(f"{where}check failed: the engine's value disagrees with {c.method} "
                  f"({fmt_number(c.value)}), rel_err {c.rel_err:.3g} > --tol {tol:g}")
            status = 1
    skipped = {c.skipped for c in row.checks or [] if c.skipped}
    for why in sorted(skipped):
        extra = next((c for c in row.checks or [] if c.skipped == why), None)
        if extra is not None and extra.ok is not None:
            _note(f"{where}note: symbolic check skipped ({why}); checked by mpmath numerical differentiation "
                  f"instead, rel_err {extra.rel_err:.3g}")
        else:
            _note(f"{where}note: check skipped: {why}")
    return status


# ---- commands --------------------------------------------------------------------------------------
@cli.command("d")
@click.argument("expr")
@click.option("--wrt", type=WrtType(), default=None,
              help="Variables in differentiation order: x,y or x:3 (= x,x,x); default: EXPR's only variable.")
@common_options(expect=True)
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
    sys.exit(_run("d", [expr], wrt, **kw))


@cli.command("grad")
@click.argument("expr")
@click.option("--wrt", type=WrtType(), default=None, help="Variables and their order (default: sorted by name).")
@common_options()
def grad_command(expr: str, wrt: list[str] | None, **kw: Any) -> None:
    """The gradient (one reverse sweep), variables sorted by name unless --wrt.

    \b
    Examples:
      gradcli grad "2*x**3+5*y**2+11*x+5" --at x=5,y=2       # 161.0 20.0
      gradcli grad "x*exp(y)" --wrt y,x --at x=1,y=0 --json
    """
    sys.exit(_run("grad", [expr], wrt, **kw))


@cli.command("hessian")
@click.argument("expr")
@click.option("--wrt", type=WrtType(), default=None, help="Variables and their order (default: sorted by name).")
@common_options()
def hessian_command(expr: str, wrt: list[str] | None, **kw: Any) -> None:
    """The Hessian matrix (forward-over-reverse), row-major in plain output.

    \b
    Examples:
      gradcli hessian "2*x**3+5*y**2+11*x*y+5" --at x=5,y=2  # 60.0 11.0 11.0 10.0
      gradcli hessian "sin(x*y)" --at x=1,y=2 --format table
    """
    sys.exit(_run("hessian", [expr], wrt, **kw))


@cli.command("jacobian")
@click.argument("exprs", nargs=-1, required=True)
@click.option("--wrt", type=WrtType(), default=None, help="Variables and their order (default: sorted by name).")
@common_options()
def jacobian_command(exprs: tuple[str, ...], wrt: list[str] | None, **kw: Any) -> None:
    """The Jacobian: one row per expression, one column per variable.

    \b
    Examples:
      gradcli jacobian "x*y" "x+y" --at x=2,y=3               # 3.0 2.0 1.0 1.0
      gradcli jacobian "r*cos(t)" "r*sin(t)" --wrt r,t --at r=2,t=pi/3 --format table
    """
    sys.exit(_run("jacobian", list(exprs), wrt, **kw))


@cli.command("taylor")
@click.argument("expr")
@click.option("--wrt", type=WrtType(), required=True, help="The expansion variable.")
@click.option("--order", type=click.IntRange(0, 100_000), required=True, help="The highest derivative N.")
@common_options()
def taylor_command(expr: str, wrt: list[str], order: int, **kw: Any) -> None:
    """f(A), f'(A), ..., f^(N)(A) and the Taylor coefficients f^(k)(A)/k!.

    \b
    Examples:
      gradcli taylor "exp(2*x)" --wrt x --order 5 --at x=0
      gradcli taylor "1/(1+exp(-x))" --wrt x --order 200 --at x=0.3 --no-check
      gradcli taylor "exp(2*x)" --wrt x --order 300 --at x=1 --digits 50 --json
    """
    sys.exit(_run("taylor", [expr], wrt, order=order, **kw))


# ---- the error boundary -----------------------------------------------------------------------------
def _reader_gone() -> None:
    """The reader of stdout went away (`| head`): not an error; silence the flush at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _one_line(text: str, limit: int = 400) -> str:
    """One line, and not a screenful: a 100k-character EXPR is not echoed back whole."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else f"{line[: limit - 60]} ... {line[-40:]} ({len(line)} characters)"


def main(argv: list[str] | None = None, prog_name: str = "gradcli") -> int:
    """Run the CLI: every outcome is an exit code, every error one line on stderr."""
    try:
        rv = cli.main(args=argv, prog_name=prog_name, standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.exceptions.NoSuchOption as exc:
        # -x**2, -1 or ---x is an EXPR, not a misspelt option like --bogus
        looks_like_option = re.fullmatch(r"--[A-Za-z][A-Za-z0-9-]*", exc.option_name or "") is not None
        hint = "" if looks_like_option else f"; {_EXPR_HINT}"
        _note(f"error: {_one_line(exc.format_message())}{hint}")
        code = 2
    except click.ClickException as exc:
        _note(f"error: {_one_line(exc.format_message())}")
        code = 2 if isinstance(exc, click.UsageError) else exc.exit_code
    except click.exceptions.Abort:
        _note("aborted")
        code = 130
    except GradcliError as exc:
        _note(f"error: {_one_line(exc.message)}")
        code = exc.exit_code
    except BrokenPipeError:
        _reader_gone()
        code = 0
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
