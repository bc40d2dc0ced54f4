"""``gradcli explain``: what the engine does for one derivative at one point, as data.

- **The tape**: EXPR's primitives in recording order (a :class:`gradcli.Tape` watching every variable
  records them as they run on :class:`~gradcli.tensor.Tensor` values), each with its inputs, its forward
  value and its adjoint ∂f/∂v (the cotangent the reverse sweep leaves on it; a variable's adjoint is
  the first partial).
- **The nested tape** for a second order, as the GradientTape examples nest it: an inner tape records
  f, its gradient along the first ``--wrt`` variable is computed inside an outer tape's block, so the
  outer tape records the forward pass *and* the inner reverse sweep; the outer sweep's adjoint of the
  second variable is the second derivative.
- **The engine** gradcli picks for this order (the rules of :func:`gradcli.derive.derivative_values`)
  and why, and for Taylor mode the normalized coefficients c_k = f⁽ᵏ⁾/k! of every primitive's series.

Everything here is float64, at the given point; the derivative printed by ``gradcli d`` is the
certified one (``value`` here, computed by :func:`gradcli.derivative`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import ops
from .errors import InputError
from .tape import Tape
from .tensor import Tensor

__all__ = ["Step", "Explanation", "explain", "to_json", "to_dot", "to_plain", "TAYLOR_ORDERS"]

#: The Taylor table shows coefficients c_0 ... c_K with K = min(order, TAYLOR_ORDERS).
TAYLOR_ORDERS = 4


@dataclass(frozen=True, slots=True)
class Step:
    """One recorded operation: ``out = op(inputs)``, its forward value and its adjoint."""

    out: str
    op: str
    inputs: tuple[str, ...]
    params: dict[str, Any]
    value: float
    adjoint: float


@dataclass(frozen=True, slots=True)
class Explanation:
    expr: str
    wrt: tuple[str, ...]
    at: dict[str, float]
    value: float
    engine: str  # "zero", "forward", "reverse", "taylor" or "taylor-mixed"
    why: str
    certified: str
    tape: tuple[Step, ...]
    partials: dict[str, float]  # the variables' adjoints: the gradient
    nested: tuple[Step, ...] | None = None  # the outer tape of a second order
    nested_note: str | None = None
    taylor_var: str | None = None
    taylor: tuple[tuple[str, str, tuple[float, ...]], ...] = field(default=())  # (node, op, c_0..c_K)


def _log(tape: Tape) -> list[tuple[ops.Primitive, tuple[Tensor, ...], Tensor, dict[str, Any]]]:
    """What ``tape`` recorded, in order, as (primitive, inputs, output, params)."""
    return [(op.prim, op.inputs, op.output, op.params) for op in tape.operations]


def _engine(graph: Any, wrt: list[str]) -> tuple[str, str]:
    """The float64 engine :func:`gradcli.derive.derivative_values` runs for ``wrt``, and why."""
    from .derive import degree

    order = len(wrt)
    counts = {n: wrt.count(n) for n in dict.fromkeys(wrt)}
    if any(n not in graph.variables or degree(graph, n) < k for n, k in counts.items()):
        name = next(n for n, k in counts.items() if n not in graph.variables or degree(graph, n) < k)
        why = (f"f does not depend on {name}" if name not in graph.variables
               else f"f is a polynomial of degree {degree(graph, name)} in {name}, below the order {counts[name]}")
        return "zero", f"{why}: the derivative is exactly 0, with no sweep"
    if order == 1:
        return "reverse", ("first order: one reverse sweep over the tape gives every first partial at once "
                           "(the adjoints below)")
    if len(counts) == 1:
        return "taylor", (f"order {order} in one variable: Taylor mode propagates the {order + 1} normalized "
                          "coefficients c_k = f^(k)/k! forward over the same tape, O(k^2) work per primitive, "
                          "where nested tapes grow exponentially with the order; f^(n) = n! c_n")
    spec = ", ".join(f"{n}:{k}" for n, k in counts.items())
    return "taylor-mixed", (f"mixed partial ({spec}): Taylor mode on multivariate truncated series (a series "
                            "whose coefficients are series) over the same tape")


def _label_of(graph: Any) -> dict[int, str]:
    out = {}
    for i, node in enumerate(graph.nodes):
        out[i] = node.name if node.op == "var" else str(node.value) if node.op == "const" else f"v{i}"
    return out


def _params_text(params: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if not isinstance(v, (int, float, str)) else v) for k, v in params.items()}


def _steps(log: list[Any], names: dict[int, str], adjoints: list[Any], fresh: str) -> tuple[Step, ...]:
    """The recorded operations as :class:`Step` records; tensors with no name yet get ``fresh``+n."""
    names = dict(names)
    steps = []
    count = 0
    for (prim, inputs, out, params), adj in zip(log, adjoints):
        labels = []
        for t in inputs:
            if t.uid not in names:  # a constant made inside a reverse rule (a seed 1.0, -1, 0.5)
                names[t.uid] = repr(float(np.asarray(t.value).reshape(-1)[0]))
            labels.append(names[t.uid])
        if out.uid not in names:
            names[out.uid] = f"{fresh}{count}"
            count += 1
        steps.append(Step(names[out.uid], prim.name, tuple(labels), _params_text(params), _scalar(out.value),
                          _scalar(adj.value) if adj is not None else 0.0))
    return tuple(steps)


def _scalar(v: Any) -> float:
    return float(np.asarray(v, dtype=np.float64).reshape(-1)[0])


def _forward(graph: Any, tensors: dict[str, Tensor]) -> tuple[Tensor, dict[int, str]]:
    """Run the graph on tensors (recorded by the active tapes); the output and each tensor's name."""
    from .graph import walk

    names: dict[int, str] = {t.uid: n for n, t in tensors.items()}
    label = _label_of(graph)

    def op(i: int, prim: ops.Primitive, args: list[Tensor], params: dict[str, Any]) -> Tensor:
        from .tensor import apply

        out = apply(prim, *args, **ops.F64.params(params))
        names[out.uid] = label[i]
        return out

    def const(c: Any) -> Tensor:
        t = Tensor(ops.F64.scalar(c))
        names[t.uid] = str(c)
        return t

    values = walk(graph, lambda name: tensors[name], const, op)
    return values[graph.output], names


_Row = tuple[str, str, tuple[float, ...]]


def _taylor_table(graph: Any, var: str, at: dict[str, float], order: int) -> tuple[_Row, ...]:
    """Every node's normalized Taylor coefficients c_0..c_order of f(var + t) (the engine's float64 rules)."""
    from .graph import walk

    bk = ops.F64
    label = _label_of(graph)

    def seed(name: str) -> np.ndarray:
        s = bk.zeros((order + 1, 1))
        s[0] = at[name]
        if name == var and order >= 1:
            s[1] = 1.0
        return s

    def const(c: Any) -> np.ndarray:
        s = bk.zeros((order + 1, 1))
        s[0] = bk.scalar(c)
        return s

    def op(i: int, prim: ops.Primitive, args: list[np.ndarray], params: dict[str, Any]) -> np.ndarray:
        with np.errstate(all="ignore"):
            return prim.taylor(bk, *args, **bk.params(params))

    values = walk(graph, seed, const, op)
    rows = []
    for i, node in enumerate(graph.nodes):
        if node.op == "const":
            continue
        coeffs = np.broadcast_to(values[i], (order + 1, 1))[:, 0]
        rows.append((label[i], node.op, tuple(float(c) for c in coeffs)))
    return tuple(rows)


def explain(expr: str, wrt: str | list[str] | None, at: dict[str, Any] | None) -> Explanation:
    """The tape, the nested tape (second order), the engine and its Taylor table for one derivative.

    The seed example 2x³+5y²+11xy+5 at (5, 2): the adjoints of x and y are ∂f/∂x = 172 and ∂f/∂y = 75.

    >>> e = explain("2*x**3+5*y**2+11*x*y+5", "x", {"x": 5, "y": 2})
    >>> e.value, e.partials, e.engine
    (172.0, {'x': 172.0, 'y': 75.0}, 'reverse')
    """
    from .api import _values, derivative
    from .derive import point_arrays, prepare, resolve_point, resolve_wrt

    prep = prepare(expr)
    names, _ = resolve_wrt(prep, wrt)
    point = resolve_point(prep, names, _values(at))
    arrays, n = point_arrays(point, ops.F64)
    if n != 1:
        raise InputError("explain takes one point (--at NAME=VALUE,...), not a grid")
    at_f = {k: float(v[0]) for k, v in arrays.items()}
    value = derivative(expr, names, dict(point))
    graph = prep.graph
    engine, why = _engine(graph, names)
    variables = list(dict.fromkeys([*graph.variables, *names]))
    tensors = {v: Tensor(np.float64(at_f.get(v, 0.0))) for v in variables}
    # the tape of f, every variable watched: forward values, then the adjoints of one reverse sweep
    outer = Tape(persistent=True) if len(names) == 2 else None
    if outer is not None:
        outer.__enter__()
        outer.watch(list(tensors.values()))
    try:
        with Tape() as inner:
            inner.watch(list(tensors.values()))
            y, labels = _forward(graph, tensors)
        outs = [op.output for op in inner.operations]
        grads = inner.gradient(y, [tensors[v] for v in variables] + outs, unconnected_gradients="zero")
    finally:
        if outer is not None:
            outer.__exit__(None, None, None)
    partials = {v: _scalar(g.value) for v, g in zip(variables, grads)}
    tape = _steps(_log(inner), labels, grads[len(variables):], "t")
    nested = note = None
    if outer is not None:
        first = grads[variables.index(names[0])]  # ∂f/∂wrt[0], computed while the outer tape recorded
        o_outs = [op.output for op in outer.operations]
        o_grads = outer.gradient(first, [tensors[v] for v in variables] + o_outs, unconnected_gradients="zero")
        o_labels = dict(labels)
        for v, g in zip(variables, grads):
            o_labels[g.uid] = f"∂f/∂{v}"
        nested = _steps(_log(outer), o_labels, o_grads[len(variables):], "g")
        second = _scalar(o_grads[variables.index(names[1])].value)
        note = (f"the outer tape recorded f and the inner tape's reverse sweep (ops g0, g1, ...); its own sweep "
                f"from ∂f/∂{names[0]} gives ∂²f/∂{names[1]}∂{names[0]} = {second!r} as the adjoint of {names[1]}")
    elif len(names) > 2:
        note = (f"order {len(names)}: the tape nests {len(names)} deep, each outer tape recording the sweep "
                "inside it; the Taylor table below is what gradcli computes instead")
    table: tuple[Any, ...] = ()
    tvar = None
    if engine in ("taylor", "taylor-mixed"):
        tvar = names[0]
        table = _taylor_table(graph, tvar, at_f, min(names.count(tvar), TAYLOR_ORDERS))
    certified = ("the value is certified by ball arithmetic (python-flint: Taylor mode on balls at rising "
                 "precision) and checked against sympy by gradcli d; at one point the ball engine computes it, "
                 "over many points (--points, arrays) the float64 engine above does and balls confirm it")
    return Explanation(prep.text, tuple(names), at_f, float(value), engine, why, certified, tape, partials,
                       nested, note, tvar, table)


def to_json(e: Explanation) -> str:
    """One JSON object (``allow_nan=False``: a value that is not finite is null)."""

    def num(v: float) -> float | None:
        return v if np.isfinite(v) else None

    def steps(ss: tuple[Step, ...] | None) -> Any:
        if ss is None:
            return None
        return [{"out": s.out, "op": s.op, "inputs": list(s.inputs), "params": s.params, "value": num(s.value),
                 "adjoint": num(s.adjoint)} for s in ss]

    from .render import compact_wrt

    obj = {
        "command": "explain", "expr": [e.expr], "wrt": compact_wrt(e.wrt), "order": len(e.wrt), "at": e.at,
        "value": num(e.value),
        "engine": {"name": e.engine, "why": e.why, "certified": e.certified},
        "tape": steps(e.tape), "partials": {k: num(v) for k, v in e.partials.items()},
        "nested": steps(e.nested), "nested_note": e.nested_note,
        "taylor": None if e.taylor_var is None else {
            "var": e.taylor_var,
            "rows": [{"node": n, "op": op, "coefficients": [num(c) for c in cs]} for n, op, cs in e.taylor]},
    }
    return json.dumps(obj, allow_nan=False, ensure_ascii=False) + "\n"


def to_plain(e: Explanation) -> str:
    """Text without a table: the value and the engine, then one line per recorded operation
    (``out = op(inputs)  value V  adjoint A``), the outer tape's under ``outer tape:``."""
    def lines(steps: tuple[Step, ...]) -> list[str]:
        out = []
        for s in steps:
            params = "".join(f", {k}={v}" for k, v in s.params.items())
            out.append(f"{s.out} = {s.op}({', '.join(s.inputs)}{params})  value {s.value!r}  adjoint {s.adjoint!r}")
        return out

    text = [f"value {e.value!r}", f"engine {e.engine}: {e.why}", "tape:", *lines(e.tape)]
    text.append("partials: " + " ".join(f"{k}={v!r}" for k, v in e.partials.items()))
    if e.nested is not None:
        text += ["outer tape:", *lines(e.nested)]
    if e.taylor_var is not None:
        text.append(f"taylor coefficients along {e.taylor_var}:")
        text += [f"{n} = {op}  " + " ".join(repr(c) for c in cs) for n, op, cs in e.taylor]
    return "\n".join(text) + "\n"


def _dot_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def to_dot(e: Explanation) -> str:
    """Graphviz: the tape as a data-flow graph (inputs → op), each op with its value and adjoint; the
    outer tape of a second order as a second cluster."""
    lines = ["digraph gradcli {", "  rankdir=LR;", '  node [fontname="Helvetica", fontsize=10];',
             f'  label="{_dot_text(e.expr)}  d/d{_dot_text(",".join(e.wrt))}  engine: {e.engine}";', "  labelloc=t;"]

    def cluster(tag: str, title: str, steps: tuple[Step, ...]) -> None:
        lines.append(f"  subgraph cluster_{tag} {{")
        lines.append(f'    label="{_dot_text(title)}";')
        known = {s.out for s in steps}
        leaves: dict[str, str] = {}
        for s in steps:
            for inp in s.inputs:
                if inp not in known and inp not in leaves:
                    leaves[inp] = f"{tag}_leaf{len(leaves)}"
                    shape = "ellipse" if inp in e.at or inp.startswith("∂") else "plaintext"
                    lines.append(f'    {leaves[inp]} [label="{_dot_text(inp)}", shape={shape}];')
        ids = {s.out: f"{tag}_{i}" for i, s in enumerate(steps)}
        for s in steps:
            params = "".join(f" {k}={v}" for k, v in s.params.items())
            label = "\\n".join(_dot_text(t) for t in (f"{s.out} = {s.op}{params}", f"value {s.value:.6g}",
                                                       f"adjoint {s.adjoint:.6g}"))
            lines.append(f'    {ids[s.out]} [label="{label}", shape=box];')
            for inp in s.inputs:
                lines.append(f"    {ids.get(inp) or leaves[inp]} -> {ids[s.out]};")
        lines.append("  }")

    cluster("tape", "tape (recording order; adjoint = ∂f/∂v)", e.tape)
    if e.nested is not None:
        cluster("outer", f"outer tape (adjoint = ∂(∂f/∂{e.wrt[0]})/∂v)", e.nested)
    lines.append("}")
    return "\n".join(lines) + "\n"
