"""The ball backend: Taylor mode over the graph on python-flint's arb balls (midpoint and radius).

Every number is a ball that provably contains the true value, and every power series an ``arb_series``
whose coefficients are such balls, so what comes out encloses the true derivative whatever float64
would have lost. Each registry entry says how its primitive runs on ball series (``Primitive.ball``:
FLINT's native series function where there is one, otherwise the entry's own rule); this module only
walks the graph with them:

* :func:`univariate` - the series of f(x0 + t) in one variable, all orders at once (C-level series
  arithmetic: an order-1000 series of exp(sin(x))*log(1+x^2) takes tens of milliseconds);
* :func:`mixed` - one mixed coefficient, in the truncated ring R[t1..td]/(t1^(n1+1), ...), its elements
  stored as univariate series by Kronecker substitution (t_i -> t^(S_i), S_i = prod_{j<i} (2 n_j - 1)),
  so a ring product is one FLINT series product;
* :func:`constant` - a sympy constant (``pi/2``, ``sqrt(2)``, ``1/3``) as a ball around the exact value,
  so a pole at pi/2 stays inside the ball at any precision.

Working precision and series length are python-flint's global context: :func:`precision` sets both for a
block and restores them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import mpmath
import sympy
from flint import arb, arb_series, ctx, fmpq, fmpz

from . import ops
from .graph import Graph
from .syntax import COMPOSITES
from .taylor import ring_rule

__all__ = ["precision", "constant", "univariate", "mixed", "coeff", "Enclosure"]


class _Precision:
    # a class, not a @contextmanager generator: it is entered twice per certified value, and a
    # generator-based one costs more than an order-8 series walk's arithmetic
    __slots__ = ("bits", "terms", "old")

    def __init__(self, bits: int, terms: int) -> None:
        self.bits, self.terms = int(bits), max(int(terms), 10)

    def __enter__(self) -> None:
        self.old = ctx.prec, ctx.cap
        ctx.prec, ctx.cap = self.bits, self.terms

    def __exit__(self, *exc: object) -> None:
        ctx.prec, ctx.cap = self.old


def precision(bits: int, terms: int = 10) -> AbstractContextManager[None]:
    """Run a block at ``bits`` of working precision with series of up to ``terms`` coefficients."""
    return _Precision(bits, terms)


def coeff(s: arb_series, k: int) -> arb:
    """The k-th coefficient (FLINT trims trailing zeros, so a missing one is an exact 0; indexing reads
    one coefficient, where ``coeffs()`` would copy all of them)."""
    return s[k]


def clean(s: arb_series) -> bool:
    """No undefined coefficient in ``s``. Undefined derivatives come as nan tails (every coefficient from
    some order on: a rule's "no derivatives here", or FLINT spreading a nan upward through products and
    compositions), so the first and the last stored coefficients tell."""
    n = len(s)
    return not n or (s[0].is_finite() and s[n - 1].is_finite())


def nan_series(n: int) -> arb_series:
    return arb_series([arb.nan()] * n, prec=n)


def const_series(value: arb, n: int) -> arb_series:
    return arb_series([value], prec=n)


def finite(b: arb) -> bool:
    return bool(b.is_finite())


# ---- exact constants as balls ---------------------------------------------------------------------------
def constant(value: Any) -> arb:
    """A number (int, float, sympy constant) as a ball containing its exact value at the working
    precision; nan for anything that is not a finite real number."""
    if isinstance(value, bool):
        return arb(int(value))
    if isinstance(value, int):
        return arb(fmpz(value))
    if isinstance(value, float):
        return arb(value)  # a double is a dyadic rational: exact
    if isinstance(value, mpmath.mpf):
        sign, man, exp, _ = value._mpf_
        if not man and exp:  # nan or inf
            return arb.nan()
        return arb(fmpz(-int(man) if sign else int(man))) * arb(2) ** int(exp)
    if not isinstance(value, sympy.Basic):
        try:
            return arb(float(value))
        except (TypeError, ValueError):
            return arb.nan()
    return _sympy_ball(value)


def _sympy_ball(e: sympy.Basic) -> arb:
    if e.is_Integer:
        return arb(fmpz(int(e)))
    if e.is_Rational:
        return arb(fmpq(int(e.p), int(e.q)))
    if e.is_Float:
        return constant(mpmath.mpf(e._mpf_))
    if e is sympy.pi:
        return arb.pi()
    if e is sympy.E:
        return arb.const_e()
    if e is sympy.EulerGamma:
        return arb.const_euler()
    if e.has(sympy.I):
        return _evalf_ball(e)
    if e.is_Add:
        out = arb(0)
        for a in e.args:
            out += _sympy_ball(a)
        return out
    if e.is_Mul:
        out = arb(1)
        for a in e.args:
            out *= _sympy_ball(a)
        return out
    if e.is_Pow:
        base, exp = e.args
        return _scalar(ops.POW, [_sympy_ball(base)], {"p": exp}) if exp.is_Rational else _scalar(
            ops.EXP, [_sympy_ball(exp) * _scalar(ops.LOG, [_sympy_ball(base)], {})], {})
    rewrite = COMPOSITES.get(type(e))
    if rewrite is not None:
        return _sympy_ball(rewrite(*e.args))
    prim = ops.BY_SYMPY.get(type(e))
    if prim is None or prim.ball is None:
        return _evalf_ball(e)
    params, args = prim.parts(e)  # polygamma(n, x), besselj(nu, x): parameters, then operands
    return _scalar(prim, [_sympy_ball(a) for a in args], params)


def _evalf_ball(e: sympy.Basic) -> arb:
    """A real constant sympy wrote in a form the registry does not cover (atan2(2, tan(E)) becomes
    -I*log(...)): sympy's evalf, which controls its own error, at the working precision plus 20 digits,
    as a ball 10^-(digits - 10) wide relative. Not a proof like the rest; such constants are rare."""
    digits = int(ctx.prec * 0.30103) + 20
    try:
        v = sympy.N(e, digits)
        re, im = v.as_real_imag()
        tiny = abs(sympy.N(re, 10)) * sympy.Float(10) ** (10 - digits)
        if not (re.is_Float or re.is_Number) or abs(sympy.N(im, 10)) > tiny:
            return arb.nan()
        mid = constant(mpmath.mpf(sympy.Float(re, digits)._mpf_))
    except (TypeError, ValueError, AttributeError):
        return arb.nan()
    return mid + arb(0, 1) * abs(mid) * arb(10) ** (10 - digits)


def _scalar(prim: ops.Primitive, args: list[arb], params: dict[str, Any]) -> arb:
    """A primitive on plain balls: its series rule on series of one term."""
    return _plain(prim.ball, args, params)


def apply(prim: ops.Primitive, args: list[arb_series], params: dict[str, Any]) -> arb_series:
    """``prim``'s ball rule; a series of nan where FLINT refuses (a quotient by a series that vanishes).
    Callers hand it finite constant terms (the walk never applies a rule to an undefined input)."""
    try:
        return prim.ball(*args, **params)
    except (ValueError, ZeroDivisionError, ArithmeticError):
        return nan_series(min(a.prec for a in args) if args else 1)


# ---- graph walks --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Enclosure:
    """The ball engine's answer: series coefficients (or one coefficient) and, where the function or a
    derivative is not defined, the first graph node that failed (``culprit``, -1 if none is known)."""

    value: Any  # arb_series (univariate) or arb (one mixed coefficient)
    culprit: int | None  # None: everything finite
    kink: int | None = None  # the first kink met (an abs or sign node at 0): wide means "not differentiable"
    #: with a kink: the coefficients the derivative needs (every order up to it), whose radii must shrink
    #: with the precision for it to exist (a kink leaves them wide however many bits)
    lower: tuple[Any, ...] = ()


class _Univariate:
    """Series in one variable t, ``n`` coefficients."""

    def __init__(self, n: int) -> None:
        self.n = n

    def const(self, value: arb) -> arb_series:
        return const_series(value, self.n)

    def seed(self, value: arb) -> arb_series:
        return arb_series([value, 1], prec=self.n) if self.n > 1 else const_series(value, 1)

    op = staticmethod(apply)  # a primitive on series: its ball rule, as it is

    @staticmethod
    def value(s: arb_series) -> arb:
        return coeff(s, 0)

    @staticmethod
    def finite(s: arb_series) -> bool:
        return clean(s)


class _Ring:
    """The truncated ring R[t1..td]/(t1^(n1+1), ..., td^(nd+1)), by Kronecker substitution."""

    def __init__(self, dims: tuple[int, ...]) -> None:
        self.strides: list[int] = []
        s = 1
        for n in dims:
            self.strides.append(s)
            s *= 2 * n - 1
        self.box = {sum(i * st for i, st in zip(idx, self.strides)) for idx in _indices(dims)}
        self.length = max(self.box) + 1
        self.total = sum(n - 1 for n in dims)
        self.dense = len(self.box) == self.length

    def const(self, value: arb) -> arb_series:
        return const_series(value, self.length)

    def seed_axis(self, value: arb, axis: int) -> arb_series:
        c = [value] + [arb(0)] * self.length
        if self.length > self.strides[axis]:
            c[self.strides[axis]] = arb(1)
        return arb_series(c[: self.length], prec=self.length)

    def trim(self, s: arb_series) -> arb_series:
        """Zero the coefficients outside the box (products of the substitution that are not ring terms)."""
        if self.dense:
            return s
        c = s.coeffs()
        return arb_series([v if k in self.box else arb(0) for k, v in enumerate(c)], prec=self.length)

    def mul(self, a: arb_series, b: arb_series) -> arb_series:
        return self.trim(a * b)

    def lift(self, prim: ops.Primitive, u: arb_series, params: dict[str, Any]) -> arb_series:
        """f(u0 + d) = sum_m f^(m)(u0)/m! d^m, d nilpotent of degree total: Horner in the ring."""
        u0 = coeff(u, 0)
        cs = apply(prim, [arb_series([u0, 1], prec=self.total + 1)], params)
        if not all(finite(coeff(cs, m)) for m in range(self.total + 1)):
            # f has no derivatives of these orders at u0: never multiplied away by a d that merely
            # truncates to 0 (acos(1 - x^2 y^2) in the ring of d^2/dxdy)
            return nan_series(self.length)
        d = u - u0
        out = self.const(coeff(cs, self.total))
        for m in range(self.total - 1, -1, -1):
            out = self.mul(out, d) + coeff(cs, m)
        return out

    def op(self, prim: ops.Primitive, args: list[arb_series], params: dict[str, Any]) -> arb_series:
        if any(not finite(coeff(a, 0)) for a in args):
            return nan_series(self.length)
        return ring_rule(self, prim, args, params)

    @staticmethod
    def origin(s: arb_series) -> arb:
        return coeff(s, 0)

    def with_origin(self, v: arb_series, prim: ops.Primitive, y0: arb, x0: arb) -> arb_series:
        if y0.contains(0) and not x0 > 0:  # atan2's branch cut (and the origin): as ops._b_atan2
            return nan_series(self.length)
        return v - coeff(v, 0) + arb.atan2(y0, x0)

    value = origin

    @staticmethod
    def finite(s: arb_series) -> bool:
        return clean(s)


def _indices(dims: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
    if not dims:
        yield ()
        return
    for rest in _indices(dims[1:]):
        for i in range(dims[0]):
            yield (i, *rest)


#: Per-graph facts computed once (which nodes move for a set of variables, constants as balls at a
#: precision): graphs are immutable, and a compiled expression's calls reuse them. Keyed by identity.
_FACTS: dict[int, tuple[Graph, dict[Any, Any]]] = {}


def facts(graph: Graph) -> dict[Any, Any]:
    """A cache dict that lives as long as ``graph`` is in use (bounded: cleared past 256 graphs)."""
    hit = _FACTS.get(id(graph))
    if hit is not None and hit[0] is graph:
        return hit[1]
    if len(_FACTS) >= 256:
        _FACTS.clear()
    found: dict[Any, Any] = {}
    _FACTS[id(graph)] = (graph, found)
    return found


def _moving(graph: Graph, names: frozenset[str]) -> list[bool]:
    moves: list[bool] = []
    for node in graph.nodes:
        moves.append(node.name in names if node.op == "var" else any(moves[j] for j in node.inputs))
    return moves


# What a step of the walk does with its node (see _steps).
_VAR, _CONST, _PLAIN, _GUARD, _SERIES = range(5)
# _SERIES steps that look at their inputs' values: atan2 with a constant y, abs and sign (kinks); and
# the output as a product, last of the series steps (see _top_product)
_ATAN2, _KINK, _PRODUCT = 1, 2, 3
#: From this order on, one coefficient of the output product is a dot product rather than FLINT's whole
#: truncated product (measured on exp(sin(x))*log(1+x^2): 7 vs 8 us at 24, 42 vs 126 us at 64, 170 vs
#: 970 us at 256; the same radius to six digits).
_DOT_MIN = 24


def _steps(graph: Graph, names: frozenset[str]) -> tuple[tuple[Any, ...], ...]:
    """The walk's instructions for a set of differentiated variables, built once per graph and set:
    ``(kind, variable name | ball rule | primitive, inputs, params, special)`` per node."""
    cache = facts(graph)
    key = ("steps", names)
    found = cache.get(key)
    if found is not None:
        return found
    moves = _moving(graph, names)
    series = [i for i, node in enumerate(graph.nodes)
              if node.op not in ("var", "const") and moves[i] and i not in graph.guards]
    steps: list[tuple[Any, ...]] = []
    for i, node in enumerate(graph.nodes):
        if node.op == "var":
            steps.append((_VAR, node.name, (), None, node.name in names))
        elif node.op == "const":
            steps.append((_CONST, None, (), None, 0))
        else:
            prim = ops.REGISTRY[node.op]
            params = dict(node.params)
            if i in graph.guards or not moves[i]:
                steps.append((_GUARD if i in graph.guards else _PLAIN, prim.ball, node.inputs, params, 0))
                continue
            special = 0
            if prim.name == "atan2" and not moves[node.inputs[0]]:
                special = _ATAN2
            elif prim.name in ("abs", "sign"):
                special = _KINK
            elif prim.name == "mul" and i == graph.output == series[-1]:
                special = _PRODUCT
            steps.append((_SERIES, prim, node.inputs, params, special))
    cache[key] = found = tuple(steps)
    return found


def _constants(graph: Graph) -> dict[int, arb]:
    """The graph's constants as balls at the working precision (computed once per precision)."""
    cache = facts(graph)
    key = ("const", ctx.prec)
    found = cache.get(key)
    if found is None:
        found = cache[key] = {i: constant(node.value) for i, node in enumerate(graph.nodes) if node.op == "const"}
    return found


def _plain(rule: Callable[..., arb_series], args: list[arb], params: dict[str, Any]) -> arb:
    """A ball rule on plain balls (series of one term); nan for an undefined input or where FLINT
    refuses (as :func:`apply`)."""
    for a in args:
        if not a.is_finite():
            return arb.nan()
    try:
        return rule(*[const_series(a, 1) for a in args], **params)[0]
    except (ValueError, ZeroDivisionError, ArithmeticError):
        return arb.nan()


def _top_product(a: arb_series, b: arb_series, k: int) -> arb_series:
    """The coefficients 0 and k of a * b (the others 0): all that a caller reading one derivative needs
    of the output, as two dot products instead of FLINT's whole truncated product (k^2 / 2 products of
    coefficients whose magnitudes spread, which its block algorithm splits up). The sum is taken with 32
    more bits, so that its k roundings weigh less than the product's one (exact inputs at x = 0)."""
    zero = arb(0)
    top = zero
    with precision(ctx.prec + 32, ctx.cap):
        for j in range(max(0, k - len(b) + 1), min(k, len(a) - 1) + 1):
            top += a[j] * b[k - j]
    return arb_series([a[0] * b[0], *([zero] * (k - 1)), top], prec=min(a.prec, b.prec))


def _walk(graph: Graph, alg: Any, point: dict[str, arb], seeds: dict[str, arb_series],
          top: int | None = None) -> Enclosure:
    """Evaluate every node: moving nodes in ``alg``, the others (and domain guards) as plain balls.

    A node that does not depend on a differentiated variable is exactly constant in t, so its series is
    its value alone, even where its function has no derivative (x * acos(y) at y = 1, by x). With
    ``top``, the caller reads only the output's coefficients 0 and ``top`` (a univariate derivative):
    an output product then computes only those."""
    steps = _steps(graph, frozenset(seeds))
    consts = _constants(graph)
    const, op = alg.const, alg.op
    values: list[Any] = []
    plain: list[arb] = []
    tainted = [False] * len(steps)
    culprit: int | None = None
    kink: int | None = None
    for i, (kind, what, inputs, params, special) in enumerate(steps):
        if kind == _VAR:
            v = point[what]
            plain.append(v)
            values.append(seeds[what] if special else const(v))
            continue
        if kind == _CONST:
            v = consts[i]
            plain.append(v)
            values.append(const(v))
            continue
        if kind != _SERIES:  # a guard, or a node that does not move: its value alone
            v = _plain(what, [plain[j] for j in inputs], params)
            plain.append(v)
            values.append(const(v) if kind == _PLAIN else None)
            if culprit is None and not v.is_finite():
                culprit = i
            continue
        if special == _ATAN2 and plain[inputs[0]].is_zero() and plain[inputs[1]] < 0:
            # y identically 0 (a constant, not a series that merely starts with 0) on the negative x axis:
            # the angle is pi, constant; with a moving y the angle jumps there (the rule's nan)
            out = const(arb.pi())
        elif culprit is not None and any(tainted[j] for j in inputs):  # (a tainted node set the culprit)
            # undefined derivatives stay undefined: FLINT's series product would turn 0 * nan into 0
            out = nan_series(values[inputs[0]].prec)
        elif special == _PRODUCT and top is not None and top >= _DOT_MIN and kink is None:
            out = _top_product(values[inputs[0]], values[inputs[1]], top)
        else:
            out = op(what, [values[j] for j in inputs], params)
        v = out[0]  # the value, and whether some coefficient is undefined (as clean: first and last)
        n = len(out)
        if n and not (v.is_finite() and out[n - 1].is_finite()):
            tainted[i] = True
            if culprit is None:
                culprit = i
        plain.append(v)
        values.append(out)
        if kink is None and special == _KINK and any(plain[j].contains(0) for j in inputs):
            kink = i
    return Enclosure(values[graph.output], culprit, kink)


def univariate(graph: Graph, var: str | None, order: int, point: dict[str, arb], *,
               top_only: bool = False) -> Enclosure:
    """Normalized coefficients c_k = f^(k)(x0)/k!, k <= order, of f along ``var`` at ``point``
    (``top_only``: only c_0 and c_order are wanted; the others may come as 0)."""
    alg = _Univariate(order + 1)
    seeds = {var: alg.seed(point[var])} if var is not None and var in graph.variables else {}
    with precision(ctx.prec, order + 1):
        return _walk(graph, alg, point, seeds, order if top_only else None)


def mixed(graph: Graph, counts: dict[str, int], point: dict[str, arb]) -> Enclosure:
    """The coefficient of prod t_i^(n_i) (the mixed partial over prod n_i!) at ``point``."""
    names = [n for n in counts if n in graph.variables]
    if len(names) < len(counts):
        # f does not depend on one of them: exactly 0 where f is defined (its values are still checked)
        enc = univariate(graph, None, 0, point)
        return Enclosure(arb(0), enc.culprit)
    dims = tuple(counts[n] + 1 for n in names)
    ring = _Ring(dims)
    with precision(ctx.prec, ring.length):
        seeds = {n: ring.seed_axis(point[n], a) for a, n in enumerate(names)}
        enc = _walk(graph, ring, point, seeds)
        pos = sum(counts[n] * st for n, st in zip(names, ring.strides))
        lower: tuple[Any, ...] = ()
        if enc.kink is not None:
            below = _indices(tuple(counts[n] + 1 for n in names))
            lower = tuple(coeff(enc.value, sum(i * st for i, st in zip(idx, ring.strides))) for idx in below)
        return Enclosure(coeff(enc.value, pos), enc.culprit, enc.kink, lower)


def factorials(counts: dict[str, int]) -> arb:
    out = arb(1)
    for k in counts.values():
        out *= arb(fmpz.fac_ui(k)) if hasattr(fmpz, "fac_ui") else arb.fac_ui(k)
    return out


def derivative(graph: Graph, counts: dict[str, int], point: dict[str, arb]) -> Enclosure:
    """The derivative d^n f / prod d x_i^(n_i) at ``point``, as a ball (one variable: univariate
    series; several: the ring)."""
    names = list(counts)
    if len(names) == 1:
        (var,) = names
        if var not in graph.variables:
            enc = univariate(graph, None, 0, point)
            return Enclosure(arb(0), enc.culprit, enc.kink)
        enc = univariate(graph, var, counts[var], point, top_only=True)  # (with a kink: every coefficient)
        lower = tuple(coeff(enc.value, k) for k in range(counts[var] + 1)) if enc.kink is not None else ()
        return Enclosure(coeff(enc.value, counts[var]) * factorials(counts), enc.culprit, enc.kink, lower)
    enc = mixed(graph, counts, point)
    return Enclosure(enc.value * factorials(counts), enc.culprit, enc.kink, enc.lower)


#: A unary rule builder for functions whose Taylor coefficients at u0 are known as a series c(t):
#: f(u) = c(u - u0), by FLINT's series composition.
def compose(coeffs_at: Callable[[arb, int], arb_series]) -> Callable[..., arb_series]:
    def rule(u: arb_series, **params: Any) -> arb_series:
        n = u.prec
        u0 = coeff(u, 0)
        cs = coeffs_at(u0, n, **params)
        d = arb_series([arb(0)] + u.coeffs()[1:], prec=n)
        return cs(d)

    return rule
