"""The fused float64 evaluator for many points: a graph lowered once to straight-line code, run per block.

Lowering traces the forward sweep and the reverse sweep (the registry's reverse rules, run on traced
values instead of Tensors) into one flat list of instructions over slots, each instruction a registry
kernel. On the way, constants are folded (``1.0 * g`` is ``g``), repeated instructions are shared (the
``cos(x)`` a reverse rule asks for is computed once, however many rules ask), instructions no output
needs are dropped, and slots get buffers by liveness, so a program needs a few buffers, not one per
node. For Hessians the reverse rules run on dual numbers whose tangent holds one traced value per
direction (all n directions in the one pass, structurally zero ones skipped), and only the entries
(i, j), i <= j, are kept: the symmetric ones are mirrored, never computed twice. (The directions can
also be stacked along an axis, one (n, block) buffer per tangent: fewer instructions, more arithmetic;
measured slower, see :func:`compile_hessian`.)

Running a program: the points are cut into cache-sized blocks (:data:`BLOCK` points); each worker
thread owns one set of preallocated buffers and runs the whole program block after block with in-place
kernels (``out=``), so a block allocates nothing and its temporaries stay in cache. numpy's ufuncs
release the GIL, so blocks shared between threads run in parallel.

Domain and finiteness are checked in the same pass, at the only places a non-finite value can vanish:
the inputs of instructions whose kernel can map a non-finite input to a finite output (exp(-inf) = 0,
found by probing the kernel at lowering), the graph's sinks and the results. Their sum is one array per
block whose non-finite rows are *suspects*; only those rows go through the exact failure analysis of
:func:`gradcli.derive._failure_of` (which names the first failing node), so a clean run pays one add per
checked value.

Each row's rounding-error bound is computed in the same pass (:func:`_rho`): while tracing, every
instruction is followed by the few that bound the relative error of its result from its arguments'
bounds, so the straight-line code carries a running error analysis beside the values. The sum of the
outputs' bounds, per row, is what :mod:`gradcli.commands` compares with the tolerance to decide which
rows need a closer look (``bound=False`` leaves it out, for measurement); for those few rows,
:func:`entry_bounds` runs the same trace with each output's own bound as an output, and the ball engine
certifies only the values beyond the tolerance.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache, partial
from types import SimpleNamespace
from typing import Any

import numpy as np

from . import ops
from .derive import FUSED_MIN_POINTS
from .errors import InputError
from .graph import Graph

__all__ = ["BLOCK", "MIN_POINTS", "Program", "compile_entry_bounds", "compile_gradient", "compile_hessian", "run",
           "threads_from"]

#: Points per block. Measured on the 2-core CI machine (H's gradient and Hessian at 10^6 points): the
#: CPU time is flat from 8k to 32k points and grows beyond (the buffers leave the cache); the time
#: workers spend waiting for the GIL between two kernels falls with the number of blocks (11% of their
#: time at 8k, 8.5% at 16k). So 16k: 128 KiB per buffer.
BLOCK = 1 << 14
#: Below this many points the fused evaluator is not used (see gradcli.derive).
MIN_POINTS = FUSED_MIN_POINTS


def threads_from(threads: int | None = None) -> int:
    """The number of worker threads: ``threads``, else $GRADCLI_THREADS, else os.cpu_count()."""
    if threads is None:
        env = os.environ.get("GRADCLI_THREADS", "").strip()
        if env:
            try:
                threads = int(env)
            except ValueError:
                raise InputError(f"GRADCLI_THREADS must be a whole number, got {env!r}") from None
        else:
            return max(1, os.cpu_count() or 1)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InputError(f"threads must be a whole number >= 1, got {threads!r}")
    return threads


# ---- tracing: values are slots, every operation an instruction ---------------------------------------
class _Sym:
    """A traced float64 array (one slot of the program); arithmetic records registry instructions."""

    __slots__ = ("tr", "id")
    bk = ops.F64  # what registry rules ask of a value (``_two_over_sqrt_pi``)
    __array_ufunc__ = None  # a constant array (a stacked seed) times a _Sym is traced, not an object array

    def __init__(self, tr: _Trace, slot: int) -> None:
        self.tr = tr
        self.id = slot

    def __add__(self, o: Any) -> Any:
        return self.tr.emit("add", (self, o))

    def __radd__(self, o: Any) -> Any:
        return self.tr.emit("add", (o, self))

    def __sub__(self, o: Any) -> Any:
        return self.tr.emit("sub", (self, o))

    def __rsub__(self, o: Any) -> Any:
        return self.tr.emit("sub", (o, self))

    def __mul__(self, o: Any) -> Any:
        return self.tr.emit("mul", (self, o))

    def __rmul__(self, o: Any) -> Any:
        return self.tr.emit("mul", (o, self))

    def __truediv__(self, o: Any) -> Any:
        return self.tr.emit("div", (self, o))

    def __rtruediv__(self, o: Any) -> Any:
        return self.tr.emit("div", (o, self))

    def __neg__(self) -> Any:
        return self.tr.emit("neg", (self,))


Value = Any  # a _Sym, or a folded constant: a python float, or an (n, 1) array (stacked directions)


def _key(a: Value) -> Any:
    if isinstance(a, _Sym):
        return a.id
    if isinstance(a, np.ndarray):
        return ("a", a.shape, a.tobytes())
    return ("c", float(a).hex())


def _const(a: Any) -> Value:
    return a if isinstance(a, (_Sym, np.ndarray)) else float(a)


def _is(a: Value, c: float) -> bool:
    return isinstance(a, float) and a == c


class _Trace:
    """Records instructions ``(primitive, out slot, argument slots or constants, params)``.

    ``bound``: also record, right after each instruction, the instructions of its rounding-error bound
    (:func:`_rho`), so the program computes one for every value it computes."""

    def __init__(self, bound: bool = False) -> None:
        self.instrs: list[tuple[ops.Primitive, int, tuple[Value, ...], tuple[tuple[str, Any], ...]]] = []
        self.memo: dict[Any, Value] = {}
        self.nslots = 0
        self.var_names: dict[int, str] = {}  # input slots: the variables
        self.widths: list[int] = []  # per slot: 1 (one value per point), or n (stacked directions)
        self.negated: dict[int, Value] = {}  # slot of an instruction neg(a) -> a
        self.rho: dict[int, Rho | None] | None = {} if bound else None  # slot -> its bound (None: none)
        self.nonneg: set[int] = set()  # slots known to hold values >= 0 (or nan)
        self.sums: dict[int, Value] = {}  # slot of a sum -> the numerator of its bound (see _absolute)
        self.bounding = False  # emitting a bound's own instructions (they get no bound)

    def variable(self, name: str) -> _Sym:
        s = self.slot(1)
        self.var_names[s.id] = name
        return s

    def slot(self, width: int) -> _Sym:
        self.nslots += 1
        self.widths.append(width)
        return _Sym(self, self.nslots - 1)

    def width(self, a: Value) -> int:
        if isinstance(a, _Sym):
            return self.widths[a.id]
        return a.shape[0] if isinstance(a, np.ndarray) else 1

    def emit(self, name: str, args: tuple[Any, ...], params: dict[str, Any] | None = None) -> Value:
        prim = ops.REGISTRY[name]
        args = tuple(_const(a) for a in args)
        ps = tuple(sorted((params or {}).items()))
        if not any(isinstance(a, _Sym) for a in args):  # constant folding, with the kernel itself
            with np.errstate(all="ignore"):
                folded = prim.f64(*(a if isinstance(a, np.ndarray) else np.float64(a) for a in args), **dict(ps))
            return folded if np.ndim(folded) else float(folded)
        # identities exact in IEEE arithmetic for every input, nan and inf included
        if name == "mul" and (_is(args[1], 1.0) or _is(args[0], 1.0)):
            return args[0] if _is(args[1], 1.0) else args[1]
        if name == "div" and _is(args[1], 1.0):
            return args[0]
        if name == "pow" and dict(ps).get("p") == 1:
            return args[0]
        if name == "pow" and dict(ps).get("p") == 0:  # x^0 = 1 even for nan and inf (IEEE pow)
            return 1.0
        if name == "abs" and isinstance(args[0], _Sym) and args[0].id in self.nonneg:  # |a| = a for a >= 0
            return args[0]
        folded = self._fold_negation(name, args, params)
        if folded is not None:
            return folded
        key = (name, tuple(_key(a) for a in args), ps)
        if name in ("add", "mul"):  # a + b and b + a are the same instruction (exactly, in IEEE arithmetic)
            key = (name, tuple(sorted(key[1], key=repr)), ps)
        found = self.memo.get(key)
        if found is None:
            found = self.slot(max(self.width(a) for a in args))
            self.instrs.append((prim, found.id, args, ps))
            self.memo[key] = found
            if name == "neg":
                self.negated[found.id] = args[0]
        if self.rho is not None and not self.bounding and found.id not in self.rho:
            # (an instruction first emitted for a bound gets its own once the program itself uses it)
            with self.bounds_only():
                self.rho[found.id] = _rho(self, prim, found, args, dict(ps))
        return found

    @contextmanager
    def bounds_only(self) -> Iterator[None]:
        """Instructions emitted meanwhile compute a bound, and get none of their own."""
        self.bounding = True
        try:
            yield
        finally:
            self.bounding = False

    def rho_of(self, a: Value) -> Rho | None:
        """The bound of a value: variables are exact; so are constants that are whole numbers."""
        if isinstance(a, _Sym):
            return (None, 0.0) if a.id in self.var_names else self.rho.get(a.id)  # type: ignore[union-attr]
        # a constant folded at lowering: a few roundings at most (sympy keeps EXPR's constants exact)
        exact = isinstance(a, np.ndarray) or (math.isfinite(a) and a == int(a) and abs(a) < 2.0**53)
        return (None, 0.0) if exact else (None, 4.0)

    def is_nonneg(self, a: Value) -> bool:
        if isinstance(a, _Sym):
            return a.id in self.nonneg
        return not isinstance(a, np.ndarray) and a >= 0

    def _fold_negation(self, name: str, args: tuple[Value, ...], params: dict[str, Any] | None) -> Value | None:
        """Negations moved out of products and into sums and differences, where they cost nothing (a
        reverse sweep makes many: cos' = -sin, d(a - b)/db = -g). Every rewrite is exact in IEEE
        arithmetic, signed zeros and nan included: negation is exact and rounding is symmetric, and
        a - b is defined as a + (-b). (-a) - b = -(a + b) is not (+0 against -0 when a = -b), so it
        is not used; a negation nothing absorbs stays an instruction, dropped if no one reads it."""
        neg = [self.negated.get(a.id) if isinstance(a, _Sym) else None for a in args]
        if name == "neg" and neg[0] is not None:  # -(-a) = a
            return neg[0]
        if name == "abs" and neg[0] is not None:  # |-a| = |a|
            return self.emit("abs", (neg[0],))
        if name in ("mul", "div") and (neg[0] is not None or neg[1] is not None):
            a, b = (args[0] if neg[0] is None else neg[0]), (args[1] if neg[1] is None else neg[1])
            if neg[0] is not None and neg[1] is not None:  # (-a)(-b) = ab
                return self.emit(name, (a, b), params)
            return self.emit("neg", (self.emit(name, (a, b), params),))  # (-a) b = a (-b) = -(ab)
        if name == "add" and neg[1] is not None:  # a + (-b) = a - b
            return self.emit("sub", (args[0], neg[1]))
        if name == "add" and neg[0] is not None:  # (-a) + b = b - a
            return self.emit("sub", (args[1], neg[0]))
        if name == "sub" and neg[1] is not None:  # a - (-b) = a + b
            return self.emit("add", (args[0], neg[1]))
        return None


# ---- the rounding-error bound ------------------------------------------------------------------------
#: A value's bound on its relative rounding error, in units of u = 2^-53: ``(dyn, st)`` stands for
#: ``dyn + st``, ``dyn`` a traced value (one per point) or None, ``st`` a number known at lowering.
Rho = tuple[Any, float]
#: A function kernel's own error, in ulps (numpy's and libm's are within one or two; the ones
#: evaluated through math or mpmath within a few).
KERNEL_ULPS = 16.0
#: Functions whose values are >= 0 (or nan), so sums of them cannot cancel.
_NONNEG = frozenset({"exp", "cosh", "erfc"})


#: The smallest subnormal, added to a value before dividing by it: an exact 0 (a sum of exact zeros,
#: sin(3y) at y = 0) then gives 0 / tiny = 0, not 0 / 0 = nan, which would send every row of a column of
#: zeros to the balls (75 us a row); a nonzero error over an exact 0 still gives inf (a cancellation).
#: Adding it leaves every normal value above 2^-1021 unchanged.
_TINY = math.ulp(0.0)


def _magnitude(v: Value) -> Value:
    return _SYM_T.abs(v) + _TINY


def _plus(a: Value | None, b: Value | None) -> Value | None:
    return b if a is None else a if b is None else a + b


def _absolute(tr: _Trace, a: Value, r: Rho) -> Value:
    """|a| times a's bound: the absolute error bound a sum weighs. For a sum a of terms that is its
    numerator plus its own rounding, |a|: then a chain of sums (a reverse sweep's adjoints) divides
    by |a| only where a product needs the relative bound (the unused divisions are dropped)."""
    num = tr.sums.get(a.id) if isinstance(a, _Sym) else None
    if num is not None and r == tr.rho_of(a):  # r = (num / (|a| + tiny), 1): |a| r <= num + |a|
        return num + _SYM_T.abs(a)
    return _SYM_T.abs(a) * _full(r)


def _full(r: Rho) -> Value:
    """``dyn + st`` as one value (a float when there is no ``dyn``)."""
    dyn, st = r
    if dyn is None:
        return st
    return dyn + st if st else dyn


def _rho(tr: _Trace, prim: ops.Primitive, out: _Sym, args: tuple[Value, ...], params: dict[str, Any]) -> Rho | None:
    """The bound of ``out = prim(*args)`` from its arguments' bounds: a first-order running error analysis
    (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., section 3.3), traced as
    instructions. Products and quotients add their arguments' relative errors; a sum or difference weighs
    them by |term| / |result| (cancellation is where errors grow), unless both terms are known to be
    >= 0; a function scales each argument's by its condition number |a df/da / f|, the partial taken from
    the registry's reverse rule (no rule of its own per function), and adds its kernel's own error. Each
    operation adds one rounding. None: no bound (a primitive without a reverse rule).

    The bound is what decides which rows the ball engine must certify (gradcli.commands): rows it
    cannot vouch for within the tolerance go to the balls; a sample of the others does too, to test it."""
    name = prim.name
    rs = [tr.rho_of(a) for a in args]
    if any(r is None for r in rs):
        return None
    nonneg = [tr.is_nonneg(a) for a in args]
    zero = (None, 0.0)
    if name in ("neg", "abs", "broadcast_to"):  # exact operations
        if name == "abs" or (name == "broadcast_to" and nonneg[0]):
            tr.nonneg.add(out.id)
        return rs[0]
    if name in ("mul", "div"):
        if all(nonneg) or (name == "mul" and _key(args[0]) == _key(args[1])):
            tr.nonneg.add(out.id)
        return (_plus(rs[0][0], rs[1][0]), rs[0][1] + rs[1][1] + 1.0)
    if name == "pow":  # |p|: the condition number of x^p, a constant
        p = abs(float(params["p"]))
        if nonneg[0] or (float(params["p"]) == int(params["p"]) and int(params["p"]) % 2 == 0):
            tr.nonneg.add(out.id)
        dyn = rs[0][0]
        return (None if dyn is None else dyn if p == 1 else dyn * p, p * rs[0][1] + 2.0)
    if name in ("add", "sub"):
        if name == "add" and all(nonneg):  # no cancellation: at most the larger bound
            tr.nonneg.add(out.id)
            return (_plus(rs[0][0], rs[1][0]), max(rs[0][1], rs[1][1]) + 1.0)
        (da, sa), (db, sb) = rs
        if sa and sb and (da is db or (da is not None and db is not None and _key(da) == _key(db))):
            # one dynamic part (it passes unchanged through products with exact factors, so sums
            # often share it): (|a| + |b|) (d + max(sa, sb)), two instructions fewer
            num = (_SYM_T.abs(args[0]) + _SYM_T.abs(args[1])) * _full((da, max(sa, sb)))
        else:
            # the weighted sum, not (|a| + |b|) max(rho_a, rho_b): that has fewer instructions but
            # flagged 101 of H's 10^6 Hessian rows instead of 28, and a flagged row costs a ball
            terms = [_absolute(tr, a, r) for a, r in zip(args, rs) if r != zero]
            if not terms:
                return (None, 1.0)
            num = _sum(terms)
        tr.sums[out.id] = num  # |out| rho_out <= num + |out|: what a sum of this sum weighs (_absolute)
        return (num / _magnitude(out), 1.0)
    if name == "sign":  # exact, unless the argument's error may reach its size: then unknown
        r = _full(rs[0])
        if isinstance(r, float):
            return zero if r * 2.0**-53 < 0.5 else (None, math.inf)
        return ((_SYM_T.sign(r * 2.0**-53 - 0.5) + 1.0) * 1e300, 0.0)
    if prim.vjp is None or name == "sum_to":
        return None
    partials = prim.vjp(_SYM_T, 1.0, out, *args, **params)
    terms = [_SYM_T.abs(a if _key(d) == _key(out) else a * d / (out + _TINY)) * _full(r)  # f' = f (exp): |a|
             for a, r, d in zip(args, rs, partials) if r != zero and d is not None]
    if name in _NONNEG:
        tr.nonneg.add(out.id)
    if prim.f64_ulps is not None:  # the kernel's own error, where it is not within KERNEL_ULPS everywhere
        terms.append(prim.f64_ulps(_SYM_T, out, *args, **params))
    return (_sum(terms), KERNEL_ULPS)


def _total(tr: _Trace, values: list[Value]) -> Rho | None:
    """The sum of the bounds of ``values`` (None without a bound)."""
    if tr.rho is None:
        return None
    with tr.bounds_only():
        rs = [tr.rho_of(v) for v in values]
        if any(r is None for r in rs):
            return None
        return (_sum([r[0] for r in rs if r[0] is not None]), sum(r[1] for r in rs))  # type: ignore[index]


def _namespace(apply: Callable[..., Any]) -> SimpleNamespace:
    """The ``T`` of the registry's reverse rules: one function per primitive, acting through ``apply``."""

    def make(name: str) -> Callable[..., Any]:
        def fn(*args: Any, **params: Any) -> Any:
            return apply(name, args, params)

        fn.__name__ = name
        return fn

    return SimpleNamespace(**{name: make(name) for name in ops.REGISTRY})


# ---- duals of traced values (forward-over-reverse) -----------------------------------------------------
class _Dual:
    """A traced value and its tangent along each direction (None: structurally zero)."""

    __slots__ = ("v", "t")
    bk = ops.F64
    __array_ufunc__ = None

    def __init__(self, v: Value, t: tuple[Value | None, ...]) -> None:
        self.v = v
        self.t = t

    def __add__(self, o: Any) -> _Dual:
        return _dual_apply("add", (self, o), {})

    def __radd__(self, o: Any) -> _Dual:
        return _dual_apply("add", (o, self), {})

    def __sub__(self, o: Any) -> _Dual:
        return _dual_apply("sub", (self, o), {})

    def __rsub__(self, o: Any) -> _Dual:
        return _dual_apply("sub", (o, self), {})

    def __mul__(self, o: Any) -> _Dual:
        return _dual_apply("mul", (self, o), {})

    def __rmul__(self, o: Any) -> _Dual:
        return _dual_apply("mul", (o, self), {})

    def __truediv__(self, o: Any) -> _Dual:
        return _dual_apply("div", (self, o), {})

    def __rtruediv__(self, o: Any) -> _Dual:
        return _dual_apply("div", (o, self), {})

    def __neg__(self) -> _Dual:
        return _dual_apply("neg", (self,), {})


def _sum(terms: list[Value]) -> Value | None:
    acc = None
    for t in terms:
        acc = t if acc is None else acc + t
    return acc


def _dual_apply(name: str, args: tuple[Any, ...], params: dict[str, Any]) -> _Dual:
    """A primitive on duals: its value by its kernel; its tangent by the order-1 rules of
    :mod:`gradcli.dual` for arithmetic, by the chain rule with the partials from the registry's reverse
    rule (seeded with 1.0) for every other primitive."""
    n = next(len(a.t) for a in args if isinstance(a, _Dual))
    ds = [a if isinstance(a, _Dual) else _Dual(float(a), (None,) * n) for a in args]
    tr = next(d.v.tr for d in ds if isinstance(d.v, _Sym)) if any(isinstance(d.v, _Sym) for d in ds) else None
    vs = [d.v for d in ds]
    if tr is None:
        v = _Trace().emit(name, tuple(vs), params)
    else:
        v = tr.emit(name, tuple(vs), params)
    t: list[Value | None] = []
    if name in ("add", "sub", "neg"):
        for k in range(n):
            a = ds[0].t[k]
            if name == "neg":
                t.append(None if a is None else -a)
                continue
            b = ds[1].t[k]
            if b is None:
                t.append(a)
            elif a is None:
                t.append(b if name == "add" else -b)
            else:
                t.append(a + b if name == "add" else a - b)
        return _Dual(v, tuple(t))
    if name == "mul":  # (a0 + a1 t)(b0 + b1 t): a0 b1 + a1 b0
        a, b = ds
        return _Dual(v, tuple(_sum([x for x in ((None if b.t[k] is None else a.v * b.t[k]),
                                                  (None if a.t[k] is None else a.t[k] * b.v)) if x is not None])
                              for k in range(n)))
    if name == "div":  # q1 = (a1 - b1 q0) / b0
        a, b = ds
        for k in range(n):
            a1, b1 = a.t[k], b.t[k]
            if b1 is None:
                t.append(None if a1 is None else a1 / b.v)
            else:
                num = -(b1 * v) if a1 is None else a1 - b1 * v
                t.append(num / b.v)
        return _Dual(v, tuple(t))
    if all(x is None for d in ds for x in d.t):
        return _Dual(v, (None,) * n)
    prim = ops.REGISTRY[name]
    if prim.vjp is None:
        raise InputError(f"{name} has no reverse rule")
    partials = prim.vjp(_SYM_T, 1.0, v, *vs, **params)
    for k in range(n):
        t.append(_sum([p * d.t[k] for p, d in zip(partials, ds) if p is not None and d.t[k] is not None]))
    return _Dual(v, tuple(t))


def _sym_apply(name: str, args: tuple[Any, ...], params: dict[str, Any]) -> Value:
    tr = next((a.tr for a in args if isinstance(a, _Sym)), None)
    return (tr or _Trace()).emit(name, args, params)


_SYM_T = _namespace(_sym_apply)
_DUAL_T = _namespace(_dual_apply)


# ---- the program -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Program:
    """Straight-line code over an environment: inputs, constants and buffers.

    ``env`` indices: ``inputs`` (the variables, copied into each worker's buffers block by block), then
    ``consts`` (python floats, or (n, 1) arrays: stacked seeds), then one buffer per entry of ``widths``
    (1: one value per point, shape (block,); n: n stacked directions, shape (n, block)). Output k is
    ``env[outputs[k]]``, or its row ``rows[k]`` when that is not None. Each instruction is ``(kernel, how, out, args,
    params)``: ``how`` is :data:`UFUNC` (``kernel(*args, out)``, a numpy ufunc without parameters),
    :data:`INTO` (``kernel(*args, out=out, **params)``) or :data:`VALUE` (``out[...] = kernel(*args,
    **params)``).
    """

    inputs: tuple[str, ...]
    consts: tuple[Any, ...]
    widths: tuple[int, ...]
    code: tuple[tuple[Callable[..., Any], int, int, tuple[int, ...], dict[str, Any]], ...]
    outputs: tuple[int, ...]  # env index per result entry
    rows: tuple[int | None, ...]
    check: int  # env index of the sum of every checked value (non-finite in any row: a suspect point)
    bound: int | None = None  # env index of the outputs' rounding-error bound (see _rho), if traced,
    bound_static: float = 0.0  # less this part known at lowering (added when the bound is stored)


UFUNC, INTO, VALUE = 0, 1, 2


def _probe_absorbs(prim: ops.Primitive, params: dict[str, Any], slot: int) -> bool:
    """Can the kernel map a non-finite value in argument ``slot`` to a finite result? (exp(-inf) = 0,
    1/inf = 0, atan(inf) = pi/2.) Probed with non-finite values against a spread of partners."""
    bad = np.array([np.nan, np.inf, -np.inf])
    partners = np.array([0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 3.0, 1e-300, -1e300, 1e300, np.inf, -np.inf, np.nan])
    cols = []
    for i in range(prim.arity):
        cols.append(bad[:, None] if i == slot else partners[None, :])
    args = np.broadcast_arrays(*cols) if prim.arity > 1 else [bad]
    with np.errstate(all="ignore"):
        out = np.asarray(prim.f64(*args, **params), dtype=np.float64)
    return bool(np.isfinite(out).any())


def _lower(tr: _Trace, outputs: list[Value], checks: list[Value], guarded: list[Value],
           rows: list[int | None] | None = None, bounded: list[Value] | None = None) -> Program:
    """Dead-code elimination, the finiteness sum, and buffers by liveness; ``bounded``: the outputs
    whose rounding-error bounds the program sums (when the trace has bounds)."""
    check_terms = list(dict.fromkeys(c for c in [*guarded, *checks] if isinstance(c, _Sym)))
    chk = _sum(check_terms) if check_terms else 0.0
    total = _total(tr, outputs if bounded is None else bounded)
    bound = None if total is None else 0.0 if total[0] is None else total[0]
    instrs = tr.instrs
    producer = {out: k for k, (_, out, _, _) in enumerate(instrs)}
    roots = [o.id for o in [*outputs, chk, bound] if isinstance(o, _Sym)]
    live = set()
    stack = list(roots)
    while stack:
        s = stack.pop()
        if s in live:
            continue
        live.add(s)
        k = producer.get(s)
        if k is not None:
            stack.extend(a.id for a in instrs[k][2] if isinstance(a, _Sym))
    kept = [ins for ins in instrs if ins[1] in live]
    inputs = sorted(tr.var_names)
    return _assemble(tr, kept, inputs, outputs, chk, rows or [None] * len(outputs), bound,
                     0.0 if total is None else total[1])


def _assemble(tr: _Trace, kept: list[Any], var_slots: list[int], outputs: list[Value], chk: Value,
              rows: list[int | None], bound: Value | None, bound_static: float) -> Program:
    names = tr.var_names
    env: dict[Any, int] = {}
    inputs = []
    for s in var_slots:
        env[s] = len(inputs)
        inputs.append(names[s])
    consts: list[Any] = []

    def const_index(c: Value) -> int:
        key = _key(c)
        if key not in env:
            env[key] = -1 - len(consts)  # fixed below
            consts.append(c)
        return env[key]

    for _, _, args, _ in kept:
        for a in args:
            if not isinstance(a, _Sym):
                const_index(a)
    for o in [*outputs, chk, bound]:
        if o is not None and not isinstance(o, _Sym):
            const_index(o)
    base = len(inputs)
    for key, idx in list(env.items()):
        if idx < 0:
            env[key] = base + (-1 - idx)
    first_buf = base + len(consts)
    last_use: dict[int, int] = {}
    for k, (_, _, args, _) in enumerate(kept):
        for a in args:
            if isinstance(a, _Sym):
                last_use[a.id] = k
    pinned = {o.id for o in [*outputs, chk, bound] if isinstance(o, _Sym)}
    free: dict[int, list[int]] = {}  # by width
    widths: list[int] = []
    code = []
    for k, (prim, out, args, ps) in enumerate(kept):
        idx = tuple(env[_key(a)] for a in args)
        # buffers whose last reader is this instruction can take its result (elementwise kernels)
        for a in dict.fromkeys(a.id for a in args if isinstance(a, _Sym)):
            if last_use.get(a) == k and a not in pinned and env[a] >= first_buf:
                free.setdefault(tr.widths[a], []).append(env[a])
        width = tr.widths[out]
        if free.get(width):
            buf = free[width].pop()
        else:
            buf = first_buf + len(widths)
            widths.append(width)
        env[out] = buf
        code.append(_instruction(prim, buf, idx, dict(ps)))

    return Program(tuple(inputs), tuple(consts), tuple(widths), tuple(code), tuple(env[_key(o)] for o in outputs),
                   tuple(rows), env[_key(chk)], None if bound is None else env[_key(bound)], bound_static)


def _instruction(prim: ops.Primitive, out: int, args: tuple[int, ...], params: dict[str, Any]) -> Any:
    """How the runner calls a kernel: a bare ufunc with a positional ``out`` where it can (the cheapest
    call numpy has: a block pays it once per instruction)."""
    if prim.name == "pow" and params.get("p") == 2:  # what ops._f64_pow does for p = 2: x*x, one rounding
        return (np.multiply, UFUNC, out, (args[0], args[0]), {})
    if prim.f64_into is None:
        return (prim.f64, VALUE, out, args, params)
    if isinstance(prim.f64_into, np.ufunc) and not params:
        return (prim.f64_into, UFUNC, out, args, {})
    return (prim.f64_into, INTO, out, args, params)


def _forward(graph: Graph, tr: _Trace, variables: dict[str, Any], lift: Callable[[Value], Any],
             apply: Callable[..., Any]) -> tuple[list[Any], list[Value]]:
    """Trace the graph's nodes; also the values to check (inputs of absorbing kernels, sinks)."""
    vals: list[Any] = []
    checks: list[Value] = []
    consumers = [0] * len(graph.nodes)
    for node in graph.nodes:
        for j in node.inputs:
            consumers[j] += 1
    for i, node in enumerate(graph.nodes):
        if node.op == "var":
            vals.append(variables[node.name])
            continue
        if node.op == "const":
            vals.append(lift(ops.F64.scalar(node.value)))
            continue
        prim = ops.REGISTRY[node.op]
        params = ops.F64.params(node.params)
        vals.append(apply(node.op, tuple(vals[j] for j in node.inputs), params))
        for slot, j in enumerate(node.inputs):
            if graph.nodes[j].op != "const" and _absorbs(prim, tuple(sorted(params.items())), slot):
                checks.append(_primal(vals[j]))
        if consumers[i] == 0:
            checks.append(_primal(vals[i]))
    return vals, checks


def _primal(v: Any) -> Value:
    return v.v if isinstance(v, _Dual) else v


@lru_cache(maxsize=256)
def _absorbs(prim: ops.Primitive, params: tuple[tuple[str, Any], ...], slot: int) -> bool:
    return _probe_absorbs(prim, dict(params), slot)


def _depends(graph: Graph, wrt: Sequence[str]) -> list[bool]:
    out: list[bool] = []
    for node in graph.nodes:
        out.append(node.name in wrt if node.op == "var" else any(out[j] for j in node.inputs))
    return out


def _reverse(graph: Graph, vals: list[Any], seed: Any, T: Any, wrt: Sequence[str]) -> list[Any]:
    """The reverse sweep with the registry's rules, as the tape does it: nodes in reverse order, only
    those depending on ``wrt``, cotangents added in the order they arrive."""
    dep = _depends(graph, wrt)
    adjoint: list[Any] = [None] * len(graph.nodes)
    adjoint[graph.output] = seed
    for i in range(len(graph.nodes) - 1, -1, -1):
        node, g = graph.nodes[i], adjoint[i]
        if g is None or node.op in ("var", "const") or not dep[i]:
            continue
        cts = ops.REGISTRY[node.op].vjp(T, g, vals[i], *(vals[j] for j in node.inputs), **ops.F64.params(node.params))
        for j, ct in zip(node.inputs, cts):
            if ct is None or not dep[j]:
                continue
            adjoint[j] = ct if adjoint[j] is None else adjoint[j] + ct
    return adjoint


def _trace_gradient(graph: Graph, wrt: tuple[str, ...], bound: bool) -> tuple[_Trace, Value, list[Value], list[Value]]:
    """The traced gradient: the trace, f, df/dw for each w in ``wrt``, and the values to check."""
    tr = _Trace(bound)
    variables = {name: tr.variable(name) for name in graph.variables}
    vals, checks = _forward(graph, tr, variables, lambda c: c, _sym_apply)
    adjoint = _reverse(graph, vals, 1.0, _SYM_T, wrt)
    index = {node.name: i for i, node in enumerate(graph.nodes) if node.op == "var"}
    grads = [adjoint[index[w]] if w in index and adjoint[index[w]] is not None else 0.0 for w in wrt]
    return tr, vals[graph.output], grads, checks


@lru_cache(maxsize=64)
def compile_gradient(graph: Graph, wrt: tuple[str, ...], bound: bool = True) -> Program:
    """Outputs: f, then df/dw for each w in ``wrt``; ``bound``: with the gradient's rounding-error bound."""
    tr, f, grads, checks = _trace_gradient(graph, wrt, bound)
    return _lower(tr, [f, *grads], [f, *grads], checks, bounded=grads)


@lru_cache(maxsize=64)
def compile_hessian(graph: Graph, wrt: tuple[str, ...], stacked: bool = False, bound: bool = True) -> Program:
    """Outputs: the entries (i, j), i <= j, row by row (forward-over-reverse, all directions at once);
    ``bound``: with their rounding-error bound (not with ``stacked``).

    By default a tangent is n separate values, one per direction, and the structurally zero ones are
    never computed (the tangent of x is e_x: no work in the other directions until x mixes with them);
    only the entries i <= j are kept. ``stacked``: every tangent is one value of n rows, the directions
    stacked along an axis (the seed of variable k is the constant column e_k, shape (n, 1), and
    broadcasting does the rest), so one instruction serves all directions. Fewer, wider instructions,
    but the zero rows are computed and so is the lower triangle: measured slower (H at 10^6 points,
    one thread, CPU: 53 ms stacked against 42 ms; 1.3-1.7x on four- and six-variable Hessians), so
    kept for measurement (bench/bench_batch.py prints both) and not used by default."""
    tr, f, entries, rows, checks = _trace_hessian(graph, wrt, stacked, bound and not stacked)
    return _lower(tr, entries, [f, *entries], checks, rows)


def _trace_hessian(graph: Graph, wrt: tuple[str, ...], stacked: bool,
                   bound: bool) -> tuple[_Trace, Value, list[Value], list[int | None], list[Value]]:
    """The traced Hessian (see :func:`compile_hessian`): the trace, f, the entries (i, j), i <= j, row by
    row, the row of each in its stacked tangent (or None), and the values to check."""
    n = len(wrt)
    tr = _Trace(bound)
    if stacked:
        seeds = {name: np.array([[1.0 if w == name else 0.0] for w in wrt]) for name in graph.variables}
        variables = {name: _Dual(tr.variable(name), (seeds[name] if seeds[name].any() else None,))
                     for name in graph.variables}
        width = 1
    else:
        variables = {name: _Dual(tr.variable(name), tuple(1.0 if w == name else None for w in wrt))
                     for name in graph.variables}
        width = n
    vals, checks = _forward(graph, tr, variables, lambda c: _Dual(c, (None,) * width), _dual_apply)
    seed = _Dual(1.0, (None,) * width)
    adjoint = _reverse(graph, vals, seed, _DUAL_T, wrt)
    index = {node.name: i for i, node in enumerate(graph.nodes) if node.op == "var"}
    entries: list[Value] = []
    rows: list[int | None] = []
    for i in range(n):
        for j in range(i, n):
            a = adjoint[index[wrt[j]]] if wrt[j] in index else None
            t = a.t[0 if stacked else i] if isinstance(a, _Dual) else None
            entries.append(0.0 if t is None else t)
            rows.append(i if stacked and t is not None else None)
    return tr, _primal(vals[graph.output]), entries, rows, checks


@lru_cache(maxsize=64)
def compile_entry_bounds(graph: Graph, wrt: tuple[str, ...], hessian: bool) -> Program:
    """Outputs: the rounding-error bound of each value of :func:`compile_gradient` (df/dw) or of
    :func:`compile_hessian` (the entries i <= j), one by one: what those programs sum into one bound
    per row. Run on the few rows whose sum exceeds the tolerance, it tells which of their values do."""
    if hessian:
        tr, _, values, _, _ = _trace_hessian(graph, wrt, False, True)
    else:
        tr, _, values, _ = _trace_gradient(graph, wrt, True)
    with tr.bounds_only():
        bounds = [_full(r) if r is not None else math.nan for r in map(tr.rho_of, values)]
    tr.rho = None  # the bounds are the outputs: no bound of their own
    return _lower(tr, bounds, [], [])


# ---- running ------------------------------------------------------------------------------------------
def _bind(prog: Program, env: list[Any]) -> list[tuple[Callable[..., Any], tuple[Any, ...]]]:
    """The program as ``(callable, arguments)`` pairs over one worker's arrays, so running a block is
    ``for fn, args in calls: fn(*args)``: no lookups, no keyword dicts, no temporaries per instruction."""
    calls: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
    for fn, how, out, args, params in prog.code:
        arrays = tuple(env[a] for a in args)
        if how == UFUNC:
            calls.append((fn, (*arrays, env[out])))
        elif how == INTO:
            calls.append((partial(fn, out=env[out], **params), arrays))
        else:
            calls.append((partial(_assign, fn, env[out], params), arrays))
    return calls


def _assign(fn: Callable[..., Any], out: np.ndarray, params: dict[str, Any], *args: Any) -> None:
    out[...] = fn(*args, **params)


def run(prog: Program, point: dict[str, np.ndarray], npoints: int, sink: Callable[[int, int, list[Any]], None],
        *, threads: int | None = None, block: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Run ``prog`` over every point, block by block on a pool of threads; ``sink(p0, p1, values)``
    receives each block's output values (arrays or floats; the buffers are reused right after).
    Returns the suspect rows (a value to check was not finite) and, when the program has one, each
    row's rounding-error bound (relative, in units of 2^-53; see :func:`_rho`).

    Blocks are handed out in order from one counter, so a worker that the OS sets aside for a while
    (a loaded machine) delays nothing: the others take the next blocks. The calling thread is a worker."""
    size = max(1, min(int(block or BLOCK), npoints))  # a call smaller than a block gets buffers its size
    nblocks = max(1, math.ceil(npoints / size))
    nthreads = min(threads_from(threads), nblocks)
    suspect = np.zeros(npoints, dtype=bool)
    rho = None if prog.bound is None else np.empty(npoints)
    arrays = [np.broadcast_to(np.asarray(point[name], dtype=np.float64), (npoints,)) for name in prog.inputs]
    nin = len(prog.inputs)
    counter = itertools.count()  # next() on it is atomic under the GIL

    def work() -> None:
        full = [np.empty(size) for _ in range(nin)] + [np.empty((w, size) if w > 1 else size) for w in prog.widths]
        fin = np.empty(size, dtype=bool)
        fins = np.empty((max(prog.widths, default=1), size), dtype=bool)
        bound: dict[int, tuple[list[Any], list[Any]]] = {}
        with np.errstate(all="ignore"):
            for b in iter(counter.__next__, None):
                if b >= nblocks:
                    return
                p0, p1 = b * size, min(npoints, (b + 1) * size)
                m = p1 - p0
                if m not in bound:  # the full size, and once the last (shorter) block
                    bufs = full if m == size else [a[..., :m] for a in full]
                    env = bufs[:nin] + list(prog.consts) + bufs[nin:]
                    bound[m] = (env, _bind(prog, env))
                env, calls = bound[m]
                for k in range(nin):
                    np.copyto(env[k], arrays[k][p0:p1])
                for fn, args in calls:
                    fn(*args)
                sink(p0, p1, [env[o] if r is None else env[o][r] for o, r in zip(prog.outputs, prog.rows)])
                if rho is not None:
                    np.add(env[prog.bound], prog.bound_static, out=rho[p0:p1])
                chk = env[prog.check]
                if isinstance(chk, np.ndarray) and chk.ndim == 2:  # stacked: every row must be finite
                    w = chk.shape[0]
                    np.isfinite(chk, out=fins[:w, :m])
                    np.logical_and.reduce(fins[:w, :m], axis=0, out=fin[:m])
                    np.logical_not(fin[:m], out=suspect[p0:p1])
                elif isinstance(chk, np.ndarray):
                    np.isfinite(chk, out=fin[:m])
                    np.logical_not(fin[:m], out=suspect[p0:p1])
                elif not math.isfinite(chk):
                    suspect[p0:p1] = True

    if nthreads == 1:
        work()
    else:
        pool = _pool(nthreads - 1)
        helpers = [pool.submit(work) for _ in range(nthreads - 1)]
        work()
        for f in helpers:
            f.result()
    return suspect, rho


_POOL: tuple[ThreadPoolExecutor, int] | None = None  # and its number of threads
_POOL_LOCK = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    """The helper threads, started by the first call that needs them and kept: a pool per call cost
    0.5 ms at 10^6 points (2 threads). Calls from several threads at once share it; each caller is a
    worker itself, so a helper that starts late finds no block left and returns."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL[1] < workers:
            old, _POOL = _POOL, (ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gradcli-batch"), workers)
            if old is not None:
                old[0].shutdown(wait=False)  # its running blocks finish
        return _POOL[0]


def _forget_pool() -> None:
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()  # a forked child has the pool's object, not its threads


os.register_at_fork(after_in_child=_forget_pool)


def gradient(graph: Graph, wrt: Sequence[str], point: dict[str, np.ndarray], npoints: int, *,
             threads: int | None = None, block: int | None = None,
             bound: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """df/dw for every w in ``wrt`` at every point, shape (P, len(wrt)), the suspect rows, and the rows'
    rounding-error bounds (``bound``; None when the graph has a primitive without one)."""
    prog = compile_gradient(graph, tuple(wrt), bound)
    out = np.empty((npoints, len(wrt)))

    def sink(p0: int, p1: int, values: list[Any]) -> None:
        for j, v in enumerate(values[1:]):
            out[p0:p1, j] = v

    return out, *run(prog, point, npoints, sink, threads=threads, block=block)


def hessian(graph: Graph, wrt: Sequence[str], point: dict[str, np.ndarray], npoints: int, *,
            threads: int | None = None, block: int | None = None,
            stacked: bool = False, bound: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The Hessian along ``wrt`` at every point, shape (P, n, n), exactly symmetric, the suspects, and
    the rows' rounding-error bounds as :func:`gradient` (``stacked``: the tangent directions along an
    axis, see :func:`compile_hessian`; no bound)."""
    n = len(wrt)
    prog = compile_hessian(graph, tuple(wrt), stacked, bound)
    out = np.empty((npoints, n, n))
    pairs = [(i, j) for i in range(n) for j in range(i, n)]

    def sink(p0: int, p1: int, values: list[Any]) -> None:
        for (i, j), v in zip(pairs, values):
            out[p0:p1, i, j] = v
            if i != j:
                out[p0:p1, j, i] = v

    return out, *run(prog, point, npoints, sink, threads=threads, block=block)


def entry_bounds(graph: Graph, wrt: Sequence[str], point: dict[str, np.ndarray], npoints: int, *,
                 hessian: bool) -> np.ndarray:
    """Each value's own rounding-error bound (relative, in units of 2^-53), shaped as :func:`gradient`'s
    values, (P, n), or :func:`hessian`'s, (P, n, n): for the rows whose summed bound is too large (see
    :func:`compile_entry_bounds`), usually a few (one block, no threads), all of them at a tolerance
    near float64's own precision."""
    n = len(wrt)
    prog = compile_entry_bounds(graph, tuple(wrt), hessian)
    out = np.empty((npoints, n, n) if hessian else (npoints, n))
    if not npoints:
        return out
    # where output k goes: a gradient's column, or a Hessian's entry (i, j), i <= j, and its mirror
    places = ([[(i, j), (j, i)][: 1 + (i != j)] for i in range(n) for j in range(i, n)] if hessian
              else [[(j,)] for j in range(n)])

    def sink(p0: int, p1: int, values: list[Any]) -> None:
        for where, v in zip(places, values):
            for ij in where:
                out[(slice(p0, p1), *ij)] = v

    run(prog, point, npoints, sink)
    return out
