"""What each CLI command computes, as library code: a :class:`Job` evaluated chunk by chunk into
:class:`Row` records that :mod:`gradcli.render` writes. No click, no rich, no printing here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import mpmath
import numpy as np
import sympy

from . import ops
from .certify import Certificate, Group, Outcome, beyond_bound, certify, estimate_flags, perturb
from .check import CheckBatch, CheckResult, Oracle, TaylorChain, close, rel_err
from .derive import (
    Prepared,
    derivative_values,
    gradient_values,
    hessian_values,
    resolve_wrt,
    taylor_values,
)
from .errors import InputError, NotFinite
from .graph import finite_mask, rows_all
from .parse import Wrt

__all__ = ["COMMANDS", "Command", "Entry", "Job", "Row", "Chunk", "Block", "evaluate_block",
           "superscript", "partial_label"]

_SUP = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def superscript(n: int) -> str:
    return str(n).translate(_SUP)


def partial_label(wrt: list[str], f: str = "f") -> str:
    """``∂³f/∂x²∂y`` for ["x", "x", "y"]: consecutive repeats grouped, in differentiation order."""
    from .check import runs

    groups = runs(wrt)
    n = len(wrt)
    top = f"∂{superscript(n) if n > 1 else ''}{f}"
    bottom = "".join(f"∂{name}{superscript(k) if k > 1 else ''}" for name, k in groups)
    return f"{top}/{bottom}"


@dataclass(frozen=True, slots=True)
class Entry:
    """One derivative a command computes at each point: the check's cache key, the expression, and the
    differentiation sequence. Entries are in row-major order of the command's value."""

    key: Any
    prep: Prepared
    wrt: list[str]


class Command:
    """What one command computes and how its value is shaped: the single place that knows a command.

    One instance per command (:data:`COMMANDS`). The engines, the certification, the check and the
    renderer ask it; nothing else dispatches on a command's name."""

    #: the command's name on the command line and in JSON
    name: str = ""
    #: the shape of one point's value: "scalar" (d), "vector" (grad, taylor) or "matrix" (hessian, jacobian)
    kind: str = "vector"
    #: taylor: each row also carries the Taylor coefficients f^(k)/k!, certified with the derivatives
    series: bool = False
    #: what a matrix row is called in messages ("row 2, column 1")
    row_noun: str = "row"

    def __repr__(self) -> str:
        return f"<command {self.name}>"

    def names(self, preps: list[Prepared], wrt: Any) -> tuple[list[str], list[str]]:
        """The variables to differentiate by (from ``wrt``, or the expression's when None), and notes
        for names no expression contains."""
        if wrt is None:
            names = sorted({v for p in preps for v in p.variables})
            if not names:
                raise InputError("EXPR has no variables to differentiate by")
            return names, []
        names = list(resolve_wrt(preps[0], wrt)[0])
        if len(set(names)) != len(names):
            raise InputError(f"--wrt lists a variable twice; {self.name} takes distinct variables")
        notes = [f"note: EXPR does not depend on '{n}', so its derivatives are 0 (a typo?)"
                 for n in names if all(n not in p.variables for p in preps)]
        return names, notes

    def shape(self, job: Job) -> tuple[int, ...]:
        """One row's value shape (entries in row-major order)."""
        return (len(job.wrt),)

    def order(self, job: Job) -> int:
        """The derivative order (JSON's "order")."""
        return 1

    def labels(self, job: Job) -> list[str]:
        """One label per entry of a vector value, or per column of a matrix."""
        return [partial_label([w]) for w in job.wrt]

    def entry_labels(self, job: Job) -> list[str]:
        """One label per entry, row-major (a table's rows)."""
        return self.labels(job)

    def column_names(self, job: Job) -> list[str]:
        """CSV and Parquet column names, one per value (row-major)."""
        return [f"d_{w}" for w in job.wrt]

    def entries(self, job: Job) -> list[Entry]:
        """Every derivative computed per point, row-major: what the check compares, entry by entry."""
        raise NotImplementedError

    def groups(self, job: Job) -> list[Group]:
        """What the ball engine computes, in the order of :meth:`entries`."""
        return [Group(e.prep.graph, Wrt(e.wrt).counts) for e in self.entries(job)]

    def compute(self, job: Job, chunk: Chunk) -> tuple[np.ndarray, list[Any], dict[str, np.ndarray]]:
        """The float64 engines over a chunk: values of shape (P, *shape), per-expression failures, extras."""
        raise NotImplementedError


class _Derivative(Command):
    name, kind = "d", "scalar"

    def names(self, preps: list[Prepared], wrt: Any) -> tuple[list[str], list[str]]:
        return resolve_wrt(preps[0], wrt)

    def shape(self, job: Job) -> tuple[int, ...]:
        return ()

    def order(self, job: Job) -> int:
        return len(job.wrt)

    def labels(self, job: Job) -> list[str]:
        return [partial_label(list(job.wrt))]

    def column_names(self, job: Job) -> list[str]:
        return ["value"]

    def entries(self, job: Job) -> list[Entry]:
        return [Entry(("d",), job.preps[0], list(job.wrt))]

    def compute(self, job: Job, chunk: Chunk) -> tuple[np.ndarray, list[Any], dict[str, np.ndarray]]:
        prep = job.preps[0]
        vals, fail = derivative_values(prep.graph, list(job.wrt), _only(prep, chunk.values), job.bk, chunk.size,
                                       job.engine, threads=job.threads)
        return vals, [(prep, fail)], {}


class _Gradient(Command):
    name = "grad"

    def entries(self, job: Job) -> list[Entry]:
        return [Entry(("g", w), job.preps[0], [w]) for w in job.wrt]

    def compute(self, job: Job, chunk: Chunk) -> tuple[np.ndarray, list[Any], dict[str, np.ndarray]]:
        prep = job.preps[0]
        vals, fail = gradient_values(prep.graph, list(job.wrt), _only(prep, chunk.values), job.bk, chunk.size,
                                     threads=job.threads)
        return vals, [(prep, fail)], {}


class _Hessian(Command):
    name, kind = "hessian", "matrix"

    def shape(self, job: Job) -> tuple[int, ...]:
        return (len(job.wrt), len(job.wrt))

    def order(self, job: Job) -> int:
        return 2

    def entry_labels(self, job: Job) -> list[str]:
        return [f"∂²f/∂{a}∂{b}" if a != b else f"∂²f/∂{a}²" for a in job.wrt for b in job.wrt]

    def column_names(self, job: Job) -> list[str]:
        return [f"d_{a}_{b}" for a in job.wrt for b in job.wrt]

    def entries(self, job: Job) -> list[Entry]:
        # one oracle per unordered pair: d2f/dxdy and d2f/dydx share sympy's derivative
        return [Entry(("h", *sorted((a, b))), job.preps[0], sorted([a, b])) for a in job.wrt for b in job.wrt]

    def compute(self, job: Job, chunk: Chunk) -> tuple[np.ndarray, list[Any], dict[str, np.ndarray]]:
        prep = job.preps[0]
        vals, fail = hessian_values(prep.graph, list(job.wrt), _only(prep, chunk.values), job.bk, chunk.size,
                                    threads=job.threads)
        return vals, [(prep, fail)], {}

    def matrix_labels(self, job: Job) -> tuple[str, list[str], list[str]]:
        """The corner, row and column labels of the matrix table: entry (i, j) is d(row i)/d(column j)."""
        return "∂²f", [f"∂f/∂{w}" for w in job.wrt], [f"∂/∂{w}" for w in job.wrt]


class _Jacobian(Command):
    name, kind, row_noun = "jacobian", "matrix", "expression"

    def shape(self, job: Job) -> tuple[int, ...]:
        return (len(job.preps), len(job.wrt))

    def entry_labels(self, job: Job) -> list[str]:
        return [f"∂f{i + 1}/∂{w}" for i in range(len(job.preps)) for w in job.wrt]

    def column_names(self, job: Job) -> list[str]:
        return [f"d{i}_{w}" for i in range(len(job.preps)) for w in job.wrt]

    def entries(self, job: Job) -> list[Entry]:
        return [Entry(("j", i, w), p, [w]) for i, p in enumerate(job.preps) for w in job.wrt]

    def compute(self, job: Job, chunk: Chunk) -> tuple[np.ndarray, list[Any], dict[str, np.ndarray]]:
        rows, fails = [], []
        for prep in job.preps:
            vals, fail = gradient_values(prep.graph, list(job.wrt), _only(prep, chunk.values), job.bk, chunk.size,
                                         threads=job.threads)
            rows.append(vals)
            fails.append((prep, fail))
        return np.stack(rows, axis=1), fails, {}

    def matrix_labels(self, job: Job) -> tuple[str, list[str], list[str]]:
        cols = [f"∂/∂{w}" for w in job.wrt]
        if len(job.preps) == 1:
            return "J", [f"f = {job.preps[0].text}"], cols
        return "J", [f"f{_sub(i + 1)} = {p.text}" for i, p in enumerate(job.preps)], cols


class _Taylor(Command):
    name, series = "taylor", True

    def names(self, preps: list[Prepared], wrt: Any) -> tuple[list[str], list[str]]:
        names, notes = resolve_wrt(preps[0], wrt)
        if len(names) != 1:
            raise InputError("--wrt must name exactly one variable for taylor")
        return names, notes

    def shape(self, job: Job) -> tuple[int, ...]:
        return (job.order + 1,)

    def order(self, job: Job) -> int:
        return job.order

    def labels(self, job: Job) -> list[str]:
        primes = ["f", "f′", "f″", "f‴"]
        return [primes[k] if k < 4 else f"f⁽{superscript(k)}⁾" for k in range(job.order + 1)]

    def column_names(self, job: Job) -> list[str]:
        return [f"d{k}" for k in range(job.order + 1)] + [f"c{k}" for k in range(job.order + 1)]

    def entries(self, job: Job) -> list[Entry]:
        return [Entry(("t", k), job.preps[0], [job.wrt[0]] * k) for k in range(job.order + 1)]

    def groups(self, job: Job) -> list[Group]:
        # every order from one series (derivatives, then coefficients, each certified)
        return [Group(job.preps[0].graph, {job.wrt[0]: job.order}, taylor=job.wrt[0])]

    def compute(self, job: Job, chunk: Chunk) -> tuple[np.ndarray, list[Any], dict[str, np.ndarray]]:
        prep, pts, n = job.preps[0], chunk.values, chunk.size
        p = _only(prep, pts)
        p.setdefault(job.wrt[0], pts.get(job.wrt[0], job.bk.zeros((n,))))
        derivs, coeffs, fail = taylor_values(prep.graph, job.wrt[0], job.order, p, job.bk, n)
        return derivs, [(prep, fail)], {"coefficients": coeffs}


#: Every command, by its name.
COMMANDS: dict[str, Command] = {c.name: c for c in (_Derivative(), _Gradient(), _Hessian(), _Jacobian(), _Taylor())}


def _sub(n: int) -> str:
    return str(n).translate(str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉"))


@dataclass(eq=False, slots=True)
class Job:
    """One command's work: which derivatives of which expressions, how checked and at what precision.

    Built once per run and shared by its chunks: its ball-engine :attr:`plan` is fixed at construction;
    the :attr:`entries` (taylor --order N has N+1 of them, so they are not built before the work limits
    are checked) and the symbolic oracles (sympy's derivatives: a run without a check or
    --show-symbolic never needs them) are built on first use."""

    command: Command  # a Command, or its name ("d", "grad", ...)
    preps: tuple[Prepared, ...]
    wrt: tuple[str, ...]
    bk: ops.Backend
    digits: int | None = None
    check: bool = True
    tol: float = 1e-8
    check_timeout: float = 5.0
    order: int = 0  # taylor
    engine: str = "auto"  # d: auto, taylor or reverse (the Python API's engine=)
    #: also find the symbolic derivatives without a check (--show-symbolic --no-check)
    symbolic: bool = False
    #: worker threads of the fused evaluator at many points (None: $GRADCLI_THREADS, else one per core)
    threads: int | None = None
    #: what the ball engine computes per entry group, in the order of the entries
    plan: list[Group] = field(init=False, repr=False)
    _entries: list[Entry] | None = field(init=False, repr=False, default=None)
    _oracles: dict[Any, Oracle | TaylorChain] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.command, str):
            self.command = COMMANDS[self.command]
        self.wrt = tuple(self.wrt)
        self.preps = tuple(self.preps)
        self.plan = self.command.groups(self)

    @property
    def entries(self) -> list[Entry]:
        """Every derivative the command computes per point, row-major (see :meth:`Command.entries`)."""
        if self._entries is None:
            self._entries = self.command.entries(self)
        return self._entries

    @property
    def labels(self) -> list[str]:
        """One label per entry of a vector value (grad, taylor) or per column (hessian, jacobian)."""
        return self.command.labels(self)

    def oracle(self, entry: Entry) -> Oracle:
        """The symbolic derivative for one entry, computed once per job (cached across chunks)."""
        found = self._oracles.get(entry.key)
        if found is None and self.command.series:
            # every order shares one incremental differentiation and one numerical run per point
            chain = self._oracles.get(("t-chain",))
            if chain is None:
                prep = entry.prep
                chain = self._oracles[("t-chain",)] = TaylorChain(prep.expr, prep.graph, self.wrt[0], self.order,
                                                                  self.check_timeout)
            found = self._oracles[entry.key] = chain.oracle(len(entry.wrt))
        if found is None:
            found = self._oracles[entry.key] = Oracle(entry.prep.expr, entry.prep.graph, entry.wrt,
                                                      self.check_timeout)
        return found

    def symbolic_derivatives(self) -> list[Any]:
        """sympy's derivative of each entry (None where sympy did not finish in time)."""
        return [self.oracle(e).symbolic for e in self.entries]


class Unnumbered(Sequence[None]):
    """The line numbers of rows that came from no file (``--at``, arrays in the API): None for each, without
    a tuple of a million Nones (8 MB, 3 ms to build at 10^6 points)."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return Unnumbered(len(range(*i.indices(self.size))))
        if not -self.size <= i < self.size:
            raise IndexError(i)
        return None


@dataclass(frozen=True, slots=True)
class Chunk:
    """Rows of points: name -> backend array (P,), and each row's input line number (or None)."""

    values: dict[str, np.ndarray]
    size: int
    lines: Sequence[int | None]
    #: the exact values behind ``values`` where the user typed constants (``--at x=pi/2``): sympy
    #: numbers or ints, used by the ball engine so that a pole at pi/2 is seen as a pole
    exact: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Row:
    """One point's result. ``value`` is a number, a list or a list of rows; ``checks`` one per entry."""

    line: int | None
    at: dict[str, Any]
    value: Any
    checks: list[CheckResult] | None
    extra: dict[str, Any] = field(default_factory=dict)
    error: NotFinite | None = None
    certs: list[Certificate] | None = None  # one per entry, what the ball engine proved
    #: sympy's derivative of each entry (None where sympy did not finish); None when not asked for
    symbolic: list[Any] | None = None

    @property
    def check_ok(self) -> bool | None:
        """False if any entry disagreed, True if every entry agreed, None if none was checked."""
        if not self.checks:
            return None
        oks = [c.ok for c in self.checks]
        if any(o is False for o in oks):
            return False
        return True if all(o is True for o in oks) else None


def _only(prep: Prepared, pts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v for k, v in pts.items() if k in prep.variables}


@dataclass(frozen=True, slots=True)
class Block:
    """One chunk's results as arrays: ``values`` of shape (P, entries...), the ``bad`` rows (not finite:
    their values are nan), and one :class:`~gradcli.check.CheckBatch` per checked entry (None without
    --check). :meth:`row` turns a row into a :class:`Row`; fast writers read the arrays directly."""

    job: Job
    chunk: Chunk
    values: np.ndarray
    extra: dict[str, np.ndarray]
    bad: np.ndarray  # (P,) bool
    fails: list[Any]
    checks: list[CheckBatch] | None
    #: rows the ball engine saw, one certificate per entry; the other rows passed ``vouched``
    certs: dict[int, list[Certificate]] = field(default_factory=dict)
    errors: dict[int, NotFinite] = field(default_factory=dict)  # rows the ball engine found undefined
    #: sympy's derivative of each entry, with --check or --show-symbolic (see :attr:`Row.symbolic`)
    symbolic: list[Any] | None = None
    #: the certificate of the rows the ball engine did not see: their rounding-error bound (method
    #: "bound") or the estimate of a second run (method "estimate") showed them within tol
    vouched: Certificate = field(default_factory=lambda: _ESTIMATE)

    def certificates(self, i: int) -> list[Certificate]:
        """Row ``i``'s certificates, one per entry."""
        found = self.certs.get(i)
        if found is not None:
            return found
        return [self.vouched] * (self.values[0].size if self.values.shape[0] else 0)

    @property
    def uncertified(self) -> list[int]:
        """Rows with a value no ball could prove (exit 1), in order."""
        return sorted(i for i, row in self.certs.items() if any(not c.ok for c in row) and not self.bad[i])

    @property
    def check_failed(self) -> np.ndarray:
        """True for each row where some entry's check disagreed."""
        out = np.zeros(self.chunk.size, dtype=bool)
        for batch in self.checks or []:
            out |= batch.failed
        return out

    def error(self, i: int) -> NotFinite | None:
        """Row ``i``'s NotFinite (naming the failing function and the point), or None."""
        from .derive import raise_not_finite

        if not self.bad[i]:
            return None
        if i in self.errors:
            return self.errors[i]
        n = self.chunk.size
        culprits = [(p, f) for p, f in self.fails if np.broadcast_to(f.bad, (n,))[i]] or self.fails[:1]
        for prep, fail in culprits:
            fail = type(fail)(np.broadcast_to(fail.bad, (n,)), np.broadcast_to(fail.culprit, (n,)))
            try:
                raise_not_finite(prep.graph, fail, self.values[i], _only(prep, self.chunk.values), i,
                                 digits=self.job.bk.is_mp)
            except NotFinite as exc:
                return exc
        return NotFinite("the result is not finite")

    def row(self, i: int) -> Row:
        """Row ``i`` as a :class:`Row` record."""
        error = self.error(i)
        checks = None if self.checks is None or error is not None else [b[i] for b in self.checks]
        return Row(
            line=self.chunk.lines[i],
            at={k: v[i] for k, v in self.chunk.values.items()},
            value=_tolist(self.values[i]),
            checks=checks,
            extra={k: _tolist(v[i]) for k, v in self.extra.items()},
            error=error,
            certs=self.certificates(i) if error is None else None,
            symbolic=self.symbolic,
        )


_ESTIMATE = Certificate(True, method="estimate")
_BOUND = Certificate(True, method="bound")
#: Chunks up to this many rows put every row through the ball engine; larger ones (``--points``,
#: arrays in the API) use the engines' rounding-error bounds (or the vectorised estimate where an engine
#: has none), a sample, and balls for the flagged rows. This is where the two cost the same: a row of
#: balls is 70 us of H's gradient and 170 us of its Hessian, the other way about 0.9 ms and 2.0 ms
#: whatever the size up to 10^3 (mostly the sample's balls), so they meet at 12 rows (bench_batch's
#: "no size dearer than 1000 points" checks it; 64 rows of balls took 4.3 and 10.8 ms).
DIRECT_ROWS = 12
#: Unflagged rows certified by balls in every larger chunk, to test the bound or the estimate.
SAMPLE_ROWS = 8


def _exact_column(chunk: Chunk, name: str, values: np.ndarray) -> np.ndarray:
    exact = chunk.exact.get(name)
    if exact is None or not isinstance(exact, sympy.Basic) or exact.is_Float:
        return values
    out = np.empty(1, dtype=object)
    out[0] = exact
    return out


def _point(job: Job, chunk: Chunk, i: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in chunk.values.items():
        if k in chunk.exact:
            out[k] = chunk.exact[k]
        else:
            x = v[i]
            out[k] = x if isinstance(x, (int, mpmath.mpf)) else float(x)
    return out


def _certify_rows(job: Job, chunk: Chunk, rows: Any, values: np.ndarray, extra: dict[str, np.ndarray],
                  certs: dict[int, list[Certificate]], outcomes: dict[int, list[Outcome]], *,
                  candidates: bool = True, only: dict[int, np.ndarray] | None = None,
                  vouched: Certificate | None = None) -> None:
    """Put ``rows`` through the ball engine: their outcomes go to ``outcomes``, values and certificates
    are updated in place. ``candidates``: ``values`` hold float64's values, for the balls to confirm
    (else the balls give the values). ``only``: for some rows, which of their entries (flat, row-major)
    need balls; the others keep their values, certified by ``vouched``."""
    flat = values.reshape(chunk.size, -1)
    coeffs = extra.get("coefficients")
    only = only or {}
    for i in rows:
        i = int(i)
        pt = _point(job, chunk, i)
        row: list[Outcome] = []
        col = 0
        done: dict[Any, list[Outcome]] = {}  # a Hessian's (x, y) and (y, x): one group, certified once
        wanted = only.get(i)
        for g in job.plan:
            if wanted is not None and not g.taylor and not wanted[col]:
                row.append(Outcome(float(flat[i, col]), vouched))
                col += 1
                continue
            cands = None
            if candidates and flat.dtype != object:
                cands = [float(x) for x in flat[i, col : col + g.order + 1 if g.taylor else col + 1]]
                if g.taylor:
                    cands += [float(x) for x in coeffs[i]] if coeffs is not None else [None] * (g.order + 1)
            key = (id(g.graph), tuple(sorted(g.counts.items())), g.taylor, None if cands is None else tuple(cands))
            if key not in done:
                done[key] = certify(g, {k: v for k, v in pt.items() if k in g.graph.variables or k in g.counts},
                                    cands, tol=job.tol, digits=job.digits)
            row.extend(done[key])
            col += g.order + 1 if g.taylor else 1
        if job.command.series:  # derivatives, then coefficients (each certified)
            half = job.order + 1
            row, tail = row[:half], row[half:]
            coeffs[i] = [o.value for o in tail]
            row = [d if t.cert.ok else Outcome(d.value, t.cert, t.error or d.error, d.culprit)
                   for d, t in zip(row, tail)]
        outcomes[i] = row
        for e, out in enumerate(row):
            flat[i, e] = out.value
        certs[i] = [o.cert for o in row]


def _errors(job: Job, chunk: Chunk, outcomes: dict[int, list[Outcome]]) -> dict[int, NotFinite]:
    from .derive import describe_failure

    errors: dict[int, NotFinite] = {}
    for i, row in outcomes.items():
        bad = next((o for o in row if o.error is not None), None)
        if bad is None:
            continue
        graph = job.entries[min(row.index(bad), len(job.entries) - 1)].prep.graph
        errors[i] = describe_failure(graph, bad.error, bad.culprit, _only_point(job, chunk, i),
                                     digits=job.digits is not None)
    return errors


def _only_point(job: Job, chunk: Chunk, i: int) -> dict[str, Any]:
    return {k: v[i] for k, v in chunk.values.items()}


def _unvouched(job: Job, chunk: Chunk, values: np.ndarray, fails: list[Any]) -> tuple[np.ndarray, Certificate]:
    """The rows whose float64 values may be further than a fraction of ``tol`` from the true ones, and
    the certificate of the others: by the engines' rounding-error bounds where they traced one (the
    fused evaluator), else by the estimate of a second run at the points moved by a few ulps
    (:func:`~gradcli.certify.estimate_flags`)."""
    bounds = [fail.bound for _, fail in fails]
    if bounds and all(b is not None for b in bounds):
        return beyond_bound(bounds, job.tol), _BOUND
    perturbed, _, _ = job.command.compute(job, Chunk(perturb(chunk.values), chunk.size, chunk.lines))
    return estimate_flags(values, perturbed, job.tol), _ESTIMATE


def _entries_beyond(job: Job, fails: list[Any], rows: np.ndarray) -> dict[int, np.ndarray]:
    """For rows whose summed bound is beyond ``tol``: which of their entries (flat, row-major) are, by the
    engines' bound of each value (a Hessian's row is often off in one entry, near that entry's zero)."""
    if not rows.size or any(fail.entry_bounds is None for _, fail in fails):
        return {}
    parts = [fail.entry_bounds(rows) for _, fail in fails]  # jacobian: one per expression, its row of J
    per = (np.stack(parts, axis=1) if len(parts) > 1 else parts[0]).reshape(rows.size, -1)
    return dict(zip(rows.tolist(), beyond_bound([per], job.tol)))


def _sample(flagged: np.ndarray, k: int) -> np.ndarray:
    """Up to ``k`` unflagged rows spread over the chunk: from each of ``k`` evenly spaced rows, the first
    unflagged one at or after it (found in a short window; the whole chunk only when the window has none)."""
    n = flagged.size
    picks: set[int] = set()
    for p in np.linspace(0, n - 1, k).astype(int):
        window = flagged[p : p + 4096]
        j = int(np.argmin(window))  # the first False
        if not window[j]:
            picks.add(int(p) + j)
        else:
            rest = np.flatnonzero(~flagged)
            return rest[np.linspace(0, rest.size - 1, min(k, rest.size)).astype(int)] if rest.size else rest
    return np.array(sorted(picks), dtype=np.intp)


def _owned(raw: Any, chunk: Chunk) -> np.ndarray:
    """The engine's values as an array the block may write into: the array itself when the engine made
    it for this call (the fused evaluator does), else a copy (a broadcast view, a point's own array)."""
    if (isinstance(raw, np.ndarray) and raw.flags.owndata and raw.flags.writeable
            and not any(np.may_share_memory(raw, v) for v in chunk.values.values())):
        return raw
    return np.array(raw)


def evaluate_block(job: Job, chunk: Chunk) -> Block:
    """Evaluate one chunk of points: values (float64 engines, then certified by balls, or balls alone
    with ``--digits``), the rows that left the domain, and the check (vectorised over the chunk:
    :meth:`~gradcli.check.Oracle.check_many`)."""
    n = chunk.size
    balls_only = job.digits is not None or (n <= DIRECT_ROWS and job.engine == "auto")
    vouched = _ESTIMATE
    only: dict[int, np.ndarray] = {}  # rows of which only some entries need balls
    if balls_only:
        # a few points: the ball engine alone (it gives the double nearest the true value); float64's
        # engines serve larger chunks, where balls only confirm them
        values = np.empty((n, *job.command.shape(job)), dtype=object if job.digits else np.float64)
        values.fill(mpmath.mpf("nan") if job.digits else np.nan)
        fails: list[Any] = [(job.preps[0], None)]
        extra: dict[str, np.ndarray] = {}
        if job.command.series:
            extra["coefficients"] = values.copy()
        bad = np.zeros(n, dtype=bool)
        rows = range(n)
    else:
        raw, fails, extra = job.command.compute(job, chunk)
        values = _owned(raw, chunk)
        extra = {k: np.array(v) for k, v in extra.items()}
        bad = np.zeros(n, dtype=bool)
        for _, fail in fails:
            bad |= np.broadcast_to(np.asarray(fail.bad, dtype=bool), (n,))
        if not all(fail.complete for _, fail in fails):
            bad |= ~rows_all(finite_mask(values).reshape(n, -1))
        if n <= DIRECT_ROWS:
            rows = range(n)
        else:
            flagged, vouched = _unvouched(job, chunk, values, fails)
            marked = np.flatnonzero(flagged)
            any_bad = bool(bad.any())
            if vouched is _BOUND:
                only = _entries_beyond(job, fails, marked[~bad[marked]] if any_bad else marked)
            if any_bad:
                flagged |= bad
                marked = np.flatnonzero(flagged)
            sample = _sample(flagged, SAMPLE_ROWS)
            rows = np.union1d(marked, sample)
    certs: dict[int, list[Certificate]] = {}
    outcomes: dict[int, list[Outcome]] = {}
    _certify_rows(job, chunk, rows, values, extra, certs, outcomes, candidates=not balls_only, only=only,
                  vouched=vouched)
    if not balls_only and n > DIRECT_ROWS:
        missed = [i for i in sample if not all(c.ok and not c.replaced for c in certs[int(i)])]
        if missed:  # the estimate let a wrong row through: certify every row of this chunk
            _certify_rows(job, chunk, np.setdiff1d(np.arange(n), rows), values, extra, certs, outcomes)
    errors = _errors(job, chunk, outcomes) if any(o.error is not None for row in outcomes.values() for o in row) else {}
    bad = np.zeros(n, dtype=bool) if balls_only else bad
    for i, row in outcomes.items():
        bad[i] = any(o.error is not None for o in row)
    if bad.any():
        # a row outside the domain is still written, explicitly as nan (its message comes from `errors`)
        nan = mpmath.mpf("nan") if values.dtype == object else np.nan
        values[bad] = nan
        extra = {k: np.array(v) for k, v in extra.items()}
        for v in extra.values():
            v[bad] = nan
    checks = None
    if job.check:
        flat = values.reshape(n, -1)
        dps = max(30, (job.digits or 0) + 10)
        # with --digits N the printed value is rounded to N digits: compare within that rounding
        tol = max(job.tol, 10.0 ** (1 - job.digits)) if job.digits else job.tol
        checks = []
        for j, entry in enumerate(job.entries):
            pts = {k: v for k, v in chunk.values.items() if k in entry.prep.variables or k in entry.wrt}
            if n == 1:  # one point: the witness sees the exact values the certificate saw
                pts = {k: _exact_column(chunk, k, v) for k, v in pts.items()}
            oracle = job.oracle(entry)
            checks.append(oracle.check_many(pts, flat[:, j], tol=tol, dps=dps, mask=~bad))
    symbolic = job.symbolic_derivatives() if job.check or job.symbolic else None
    return Block(job, chunk, values, extra, bad, fails, checks, certs, errors, symbolic, vouched)


def _tolist(a: Any) -> Any:
    arr = np.asarray(a, dtype=object)
    if arr.ndim == 0:
        v = arr[()]
        return v if not isinstance(v, (np.floating, np.integer)) else float(v)
    return [_tolist(x) for x in arr]


def expect_mismatch(value: Any, expected: Any, tol: float) -> str | None:
    """The --expect message, or None when ``value`` matches ``expected`` within ``tol``."""
    if close(value, expected, tol):
        return None
    return f"expected {expected}, got {value} (rel_err {rel_err(value, expected):.3g} > tol {tol:g})"

