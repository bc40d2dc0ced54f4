"""What each CLI command computes, as library code: a :class:`Job` evaluated chunk by chunk into
:class:`Row` records that :mod:`gradcli.render` writes. No click, no rich, no printing here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import mpmath
import numpy as np
import sympy

from . import ops
from .certify import Certificate, Group, Outcome, certify, estimate_flags, perturb
from .check import CheckBatch, CheckResult, Oracle, TaylorChain, close, rel_err
from .derive import (
    Prepared,
    derivative_values,
    gradient_values,
    hessian_values,
    taylor_values,
)
from .errors import NotFinite
from .graph import finite_mask
from .parse import Wrt

__all__ = ["Job", "Row", "Chunk", "Block", "evaluate_block", "evaluate_chunk", "superscript", "partial_label"]

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
class Job:
    """One command's work: which derivatives of which expressions, how checked and at what precision."""

    command: str  # "d", "grad", "hessian", "jacobian" or "taylor"
    preps: tuple[Prepared, ...]
    wrt: tuple[str, ...]
    bk: ops.Backend
    digits: int | None = None
    check: bool = True
    tol: float = 1e-8
    check_timeout: float = 5.0
    order: int = 0  # taylor
    engine: str = "auto"  # d: auto, taylor or reverse (the Python API's engine=)
    oracles: dict[Any, Oracle | TaylorChain] = field(default_factory=dict)
    #: what the ball engine computes per entry (see :func:`groups`), built on first use
    plan: list[Group] = field(default_factory=list, repr=False, compare=False)

    @property
    def labels(self) -> list[str]:
        """One label per entry of a vector value (grad, taylor) or per column (hessian, jacobian)."""
        if self.command == "d":
            return [partial_label(list(self.wrt))]
        if self.command == "taylor":
            primes = ["f", "f′", "f″", "f‴"]
            return [primes[k] if k < 4 else f"f⁽{superscript(k)}⁾" for k in range(self.order + 1)]
        return [partial_label([w]) for w in self.wrt]

    def oracle(self, key: Any, prep: Prepared, wrt: list[str]) -> Oracle:
        """The symbolic derivative for one entry, computed once per job (cached across chunks)."""
        found = self.oracles.get(key)
        if found is None and self.command == "taylor":
            # every order shares one incremental differentiation and one numerical run per point
            chain = self.oracles.get(("t-chain",))
            if chain is None:
                chain = self.oracles[("t-chain",)] = TaylorChain(prep.expr, prep.graph, self.wrt[0], self.order,
                                                                 self.check_timeout)
            found = self.oracles[key] = chain.oracle(len(wrt))
        if found is None:
            found = self.oracles[key] = Oracle(prep.expr, prep.graph, wrt, self.check_timeout)
        return found


@dataclass(frozen=True, slots=True)
class Chunk:
    """Rows of points: name -> backend array (P,), and each row's input line number (or None)."""

    values: dict[str, np.ndarray]
    size: int
    lines: tuple[int | None, ...]
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

    @property
    def check_ok(self) -> bool | None:
        """False if any entry disagreed, True if every entry agreed, None if none was checked."""
        if not self.checks:
            return None
        oks = [c.ok for c in self.checks]
        if any(o is False for o in oks):
            return False
        return True if all(o is True for o in oks) else None


def _entries(job: Job) -> list[tuple[Any, Prepared, list[str]]]:
    """(cache key, expression, wrt) for every entry the check compares, row-major."""
    if job.command == "d":
        return [(("d",), job.preps[0], list(job.wrt))]
    if job.command == "grad":
        return [(("g", w), job.preps[0], [w]) for w in job.wrt]
    if job.command == "jacobian":
        return [(("j", i, w), p, [w]) for i, p in enumerate(job.preps) for w in job.wrt]
    if job.command == "hessian":
        # one oracle per unordered pair: d2f/dxdy and d2f/dydx share sympy's derivative
        return [(("h", *sorted((a, b))), job.preps[0], sorted([a, b])) for a in job.wrt for b in job.wrt]
    return [(("t", k), job.preps[0], [job.wrt[0]] * k) for k in range(job.order + 1)]


def _compute(job: Job, chunk: Chunk) -> tuple[np.ndarray, list[Any], dict[str, np.ndarray]]:
    """Values of shape (P, entries...) plus per-expression failures."""
    bk, n, pts = job.bk, chunk.size, chunk.values
    extra: dict[str, np.ndarray] = {}
    if job.command == "d":
        prep = job.preps[0]
        vals, fail = derivative_values(prep.graph, list(job.wrt), _only(prep, pts), bk, n, job.engine)
        return vals, [(prep, fail)], extra
    if job.command == "grad":
        prep = job.preps[0]
        vals, fail = gradient_values(prep.graph, list(job.wrt), _only(prep, pts), bk, n)
        return vals, [(prep, fail)], extra
    if job.command == "hessian":
        prep = job.preps[0]
        vals, fail = hessian_values(prep.graph, list(job.wrt), _only(prep, pts), bk, n)
        return vals, [(prep, fail)], extra
    if job.command == "jacobian":
        rows, fails = [], []
        for prep in job.preps:
            vals, fail = gradient_values(prep.graph, list(job.wrt), _only(prep, pts), bk, n)
            rows.append(vals)
            fails.append((prep, fail))
        return np.stack(rows, axis=1), fails, extra
    prep = job.preps[0]
    p = _only(prep, pts)
    p.setdefault(job.wrt[0], pts.get(job.wrt[0], bk.zeros((n,))))
    derivs, coeffs, fail = taylor_values(prep.graph, job.wrt[0], job.order, p, bk, n)
    extra["coefficients"] = coeffs
    return derivs, [(prep, fail)], extra


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
    #: rows the ball engine saw, one certificate per entry; the other rows passed the estimate
    certs: dict[int, list[Certificate]] = field(default_factory=dict)

    def certificates(self, i: int) -> list[Certificate]:
        """Row ``i``'s certificates, one per entry."""
        found = self.certs.get(i)
        if found is not None:
            return found
        return [_ESTIMATE] * (self.values[0].size if self.values.shape[0] else 0)

    @property
    def uncertified(self) -> list[int]:
        """Rows with a value no ball could prove (exit 1), in order."""
        return sorted(i for i, row in self.certs.items() if any(not c.ok for c in row) and not self.bad[i])
    errors: dict[int, NotFinite] = field(default_factory=dict)  # rows the ball engine found undefined

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
        )


def groups(job: Job) -> list[Group]:
    """What the ball engine computes for each entry, in the order of :func:`_entries` (row-major);
    built once per job."""
    if not job.plan:
        job.plan.extend(_groups(job))
    return job.plan


def _groups(job: Job) -> list[Group]:
    if job.command == "d":
        return [Group(job.preps[0].graph, Wrt(job.wrt).counts)]
    if job.command == "grad":
        return [Group(job.preps[0].graph, {w: 1}) for w in job.wrt]
    if job.command == "jacobian":
        return [Group(p.graph, {w: 1}) for p in job.preps for w in job.wrt]
    if job.command == "hessian":
        return [Group(job.preps[0].graph, {a: 2} if a == b else {a: 1, b: 1}) for a in job.wrt for b in job.wrt]
    return [Group(job.preps[0].graph, {job.wrt[0]: job.order}, taylor=job.wrt[0])]


_ESTIMATE = Certificate(True, method="estimate")
#: Chunks up to this many rows put every row through the ball engine; larger ones (``--points``,
#: arrays in the API) use the vectorised estimate, a sample, and balls for the flagged rows.
DIRECT_ROWS = 64
#: Unflagged rows certified by balls in every larger chunk, to test the estimate.
SAMPLE_ROWS = 8


def _exact_column(chunk: Chunk, name: str, values: np.ndarray) -> np.ndarray:
    exact = chunk.exact.get(name)
    if exact is None or not isinstance(exact, sympy.Basic) or exact.is_Float:
        return values
    out = np.empty(1, dtype=object)
    out[0] = exact
    return out


def _shape(job: Job) -> tuple[int, ...]:
    """One row's value shape: () for d, (n,) for grad and taylor, (m, n) for hessian and jacobian."""
    k = len(job.wrt)
    return {"d": (), "grad": (k,), "hessian": (k, k), "jacobian": (len(job.preps), k),
            "taylor": (job.order + 1,)}[job.command]


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
                  certs: dict[int, list[Certificate]], outcomes: dict[int, list[Outcome]]) -> None:
    """Put ``rows`` through the ball engine: their outcomes go to ``outcomes``, values and certificates
    are updated in place."""
    flat = values.reshape(chunk.size, -1)
    coeffs = extra.get("coefficients")
    for i in rows:
        i = int(i)
        pt = _point(job, chunk, i)
        row: list[Outcome] = []
        col = 0
        for g in groups(job):
            cands = None
            if flat.dtype != object:
                cands = [float(x) for x in flat[i, col : col + g.order + 1 if g.taylor else col + 1]]
                if g.taylor:
                    cands += [float(x) for x in coeffs[i]] if coeffs is not None else [None] * (g.order + 1)
            row.extend(certify(g, {k: v for k, v in pt.items() if k in g.graph.variables or k in g.counts},
                               cands, tol=job.tol, digits=job.digits))
            col += g.order + 1 if g.taylor else 1
        if job.command == "taylor":  # derivatives, then coefficients (each certified)
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
        g = groups(job)[0] if job.command != "jacobian" else None
        graph = g.graph if g is not None else job.preps[min(row.index(bad) // max(len(job.wrt), 1),
                                                             len(job.preps) - 1)].graph
        errors[i] = describe_failure(graph, bad.error, bad.culprit, _only_point(job, chunk, i),
                                     digits=job.digits is not None)
    return errors


def _only_point(job: Job, chunk: Chunk, i: int) -> dict[str, Any]:
    return {k: v[i] for k, v in chunk.values.items()}


def evaluate_block(job: Job, chunk: Chunk) -> Block:
    """Evaluate one chunk of points: values (float64 engines, then certified by balls, or balls alone
    with ``--digits``), the rows that left the domain, and the check (vectorised over the chunk:
    :meth:`~gradcli.check.Oracle.check_many`)."""
    n = chunk.size
    balls_only = job.digits is not None or (n <= DIRECT_ROWS and job.engine == "auto")
    if balls_only:
        # a few points: the ball engine alone (it gives the double nearest the true value); float64's
        # engines serve larger chunks, where balls only confirm them
        values = np.empty((n, *_shape(job)), dtype=object if job.digits else np.float64)
        values.fill(mpmath.mpf("nan") if job.digits else np.nan)
        fails: list[Any] = [(job.preps[0], None)]
        extra: dict[str, np.ndarray] = {}
        if job.command == "taylor":
            extra["coefficients"] = values.copy()
        bad = np.zeros(n, dtype=bool)
        rows = range(n)
    else:
        raw, fails, extra = _compute(job, chunk)
        values = np.array(raw)  # writable, whatever the engine returned (a broadcast view, say)
        extra = {k: np.array(v) for k, v in extra.items()}
        bad = ~finite_mask(values).reshape(n, -1).all(axis=1)
        for _, fail in fails:
            bad |= np.broadcast_to(np.asarray(fail.bad, dtype=bool), (n,))
        if n <= DIRECT_ROWS:
            rows = range(n)
        else:
            perturbed, _, _ = _compute(job, Chunk(perturb(chunk.values), n, chunk.lines))
            flagged = estimate_flags(values, perturbed, job.tol) | bad
            clean = np.flatnonzero(~flagged)
            picks = np.linspace(0, clean.size - 1, min(SAMPLE_ROWS, clean.size)).astype(int)
            sample = clean[picks] if clean.size else clean
            rows = np.union1d(np.flatnonzero(flagged), sample)
    certs: dict[int, list[Certificate]] = {}
    outcomes: dict[int, list[Outcome]] = {}
    _certify_rows(job, chunk, rows, values, extra, certs, outcomes)
    if not balls_only and n > DIRECT_ROWS:
        missed = [i for i in sample if not all(c.ok and not c.replaced for c in certs[int(i)])]
        if missed:  # the estimate let a wrong row through: certify every row of this chunk
            _certify_rows(job, chunk, np.setdiff1d(np.arange(n), rows), values, extra, certs, outcomes)
    errors = _errors(job, chunk, outcomes)
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
        for j, (key, prep, wrt) in enumerate(_entries(job)):
            pts = {k: v for k, v in chunk.values.items() if k in prep.variables or k in wrt}
            if n == 1:  # one point: the witness sees the exact values the certificate saw
                pts = {k: _exact_column(chunk, k, v) for k, v in pts.items()}
            oracle = job.oracle(key, prep, wrt)
            checks.append(oracle.check_many(pts, flat[:, j], tol=tol, dps=dps, mask=~bad))
    return Block(job, chunk, values, extra, bad, fails, checks, certs, errors)


def evaluate_chunk(job: Job, chunk: Chunk) -> Iterator[Row]:
    """Evaluate one chunk of points and yield a :class:`Row` per point, in order."""
    block = evaluate_block(job, chunk)
    for i in range(chunk.size):
        yield block.row(i)


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

