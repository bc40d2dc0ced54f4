"""What each CLI command computes, as library code: a :class:`Job` evaluated chunk by chunk into
:class:`Row` records that :mod:`gradcli.render` writes. No click, no rich, no printing here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import mpmath
import numpy as np

from . import ops
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
    oracles: dict[Any, Oracle | TaylorChain] = field(default_factory=dict)

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


@dataclass(frozen=True, slots=True)
class Row:
    """One point's result. ``value`` is a number, a list or a list of rows; ``checks`` one per entry."""

    line: int | None
    at: dict[str, Any]
    value: Any
    checks: list[CheckResult] | None
    extra: dict[str, Any] = field(default_factory=dict)
    error: NotFinite | None = None

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
        vals, fail = derivative_values(prep.graph, list(job.wrt), _only(prep, pts), bk, n)
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
        )


def evaluate_block(job: Job, chunk: Chunk) -> Block:
    """Evaluate one chunk of points with numpy: values, the rows that left the domain, and the check
    (vectorised over the chunk: :meth:`~gradcli.check.Oracle.check_many`)."""
    values, fails, extra = _compute(job, chunk)
    n = chunk.size
    values = np.array(values)  # writable, whatever the engine returned (a broadcast view, say)
    bad = ~finite_mask(values).reshape(n, -1).all(axis=1)
    for _, fail in fails:
        bad |= np.broadcast_to(np.asarray(fail.bad, dtype=bool), (n,))
    if bad.any():
        # a row outside the domain is still written, explicitly as nan (its message comes from `fails`)
        nan = mpmath.mpf("nan") if values.dtype == object else np.nan
        values[bad] = nan
        extra = {k: np.array(v) for k, v in extra.items()}
        for v in extra.values():
            v[bad] = nan
    checks = None
    if job.check:
        flat = values.reshape(n, -1)
        dps = max(30, (job.digits or 0) + 10)
        checks = []
        for j, (key, prep, wrt) in enumerate(_entries(job)):
            pts = {k: v for k, v in chunk.values.items() if k in prep.variables or k in wrt}
            oracle = job.oracle(key, prep, wrt)
            checks.append(oracle.check_many(pts, flat[:, j], tol=job.tol, dps=dps, mask=~bad))
    return Block(job, chunk, values, extra, bad, fails, checks)


def evaluate_chunk(job: Job, chunk: Chunk, deadline: float | None = None) -> Iterator[Row]:
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


def now() -> float:
    return time.monotonic()
