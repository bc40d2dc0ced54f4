"""``Tape``: tf.GradientTape semantics over :mod:`gradcli.tensor`.

A tape records the operations whose inputs it watches (directly, or through earlier recorded
operations). ``gradient`` sweeps the record backwards with each primitive's reverse rule; the rules are
Tensor operations, so every tape still recording (outer tapes, and a persistent tape inside its own
``with`` block) records the sweep, and differentiating it again gives higher orders.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np

from . import ops
from .errors import GradcliError
from .tensor import ACTIVE_TAPES, T, Tensor, Variable

__all__ = ["Tape", "GradientTape", "TapeError", "UnconnectedGradients"]


class TapeError(GradcliError, RuntimeError):
    """Misuse of a tape, such as a second ``gradient`` call on a non-persistent tape."""


class UnconnectedGradients(str, enum.Enum):
    """What ``gradient`` gives for a source the target does not depend on (tf.UnconnectedGradients)."""

    NONE = "none"
    ZERO = "zero"


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation a tape recorded: the registry primitive, its input tensors, its output and its
    constant parameters (``Tape.operations``)."""

    prim: ops.Primitive
    inputs: tuple[Tensor, ...]
    output: Tensor
    params: dict[str, Any]


class Tape:
    """Record operations on watched tensors and differentiate them, as tf.GradientTape.

    Args:
        persistent: allow several ``gradient``/``jacobian`` calls; a gradient computed inside the
            tape's own ``with`` block is then recorded by the tape too (so it can be differentiated).
        watch_accessed_variables: watch every trainable :class:`~gradcli.Variable` an operation reads.

    The seed article's x³ at 3 (27, then 18) with nested tapes:

    >>> import gradcli
    >>> x = gradcli.constant(3.0)
    >>> with gradcli.Tape() as g:
    ...     g.watch(x)
    ...     with gradcli.Tape() as gg:
    ...         gg.watch(x)
    ...         y = x * x * x
    ...     dy_dx = gg.gradient(y, x)
    >>> d2y_dx2 = g.gradient(dy_dx, x)
    >>> float(dy_dx), float(d2y_dx2)
    (27.0, 18.0)

    One persistent tape gives first and second partials (2x³+5y²+11xy+5 at (5, 2)):

    >>> x, y = gradcli.Variable(5.0), gradcli.Variable(2.0)
    >>> with gradcli.Tape(persistent=True) as t:
    ...     f = 2 * x**3 + 5 * y**2 + 11 * x * y + 5
    ...     dx, dy = t.gradient(f, [x, y])
    >>> [float(v) for v in (dx, dy, t.gradient(dx, x), t.gradient(dy, y), t.gradient(dx, y))]
    [172.0, 75.0, 60.0, 10.0, 11.0]
    """

    def __init__(self, persistent: bool = False, watch_accessed_variables: bool = True) -> None:
        self.persistent = persistent
        self.watch_accessed_variables = watch_accessed_variables
        self._ops: list[Operation] = []
        self._watched: dict[int, Tensor] = {}  # watched explicitly or on access, in order
        self._reached: set[int] = set()  # outputs of recorded operations
        self._recording = False
        self._active = False
        self._used = False

    def __repr__(self) -> str:
        return (f"<gradcli.Tape persistent={self.persistent} recording={self._recording} "
                f"operations={len(self._ops)}>")

    # -- context -------------------------------------------------------------------------------------
    def __enter__(self) -> Tape:
        if self._active:
            raise TapeError("this Tape is already recording; a tape cannot be entered again inside its own block")
        ACTIVE_TAPES.set(ACTIVE_TAPES.get() + (self,))
        self._active = self._recording = True
        return self

    def __exit__(self, *exc: Any) -> None:
        self._active = self._recording = False
        ACTIVE_TAPES.set(tuple(t for t in ACTIVE_TAPES.get() if t is not self))

    # -- recording -----------------------------------------------------------------------------------
    def watch(self, tensor: Any) -> None:
        """Watch a tensor, or every tensor in a (nested) list, tuple or dict of them.

        Raises:
            TapeError: something that is not a gradcli tensor (wrap numbers with ``gradcli.constant``).
        """
        for t in _flatten(tensor):
            if not isinstance(t, Tensor):
                raise TapeError(f"can only watch gradcli tensors, got {type(t).__name__} "
                                "(wrap it with gradcli.constant)")
            self._watched.setdefault(t.uid, t)

    @property
    def operations(self) -> tuple[Operation, ...]:
        """The operations recorded so far, in order (``gradcli explain`` prints them)."""
        return tuple(self._ops)

    def watched_variables(self) -> tuple[Variable, ...]:
        """The :class:`~gradcli.Variable` objects this tape watches, in the order it began watching them."""
        return tuple(t for t in self._watched.values() if isinstance(t, Variable))

    def _tracks(self, t: Tensor) -> bool:
        return t.uid in self._watched or t.uid in self._reached

    def _record(self, prim: ops.Primitive, inputs: tuple[Tensor, ...], out: Tensor, params: dict[str, Any]) -> None:
        if not self._recording:
            return
        if self.watch_accessed_variables:
            for t in inputs:
                if isinstance(t, Variable) and t.trainable:
                    self._watched.setdefault(t.uid, t)
        if any(self._tracks(t) for t in inputs):
            self._ops.append(Operation(prim, inputs, out, params))
            self._reached.add(out.uid)

    def stop_recording(self) -> AbstractContextManager[None]:
        """A context manager in which this tape records nothing (other tapes go on recording).

        Raises:
            TapeError: the tape is not recording (outside its ``with`` block).
        """
        if not self._active:
            raise TapeError("stop_recording() needs a recording tape: call it inside the tape's with block")
        return _Pause(self)

    def reset(self) -> None:
        """Forget everything recorded and watched, as if a new tape were entered (tf.GradientTape.reset)."""
        self._ops.clear()
        self._watched.clear()
        self._reached.clear()
        self._used = False

    # -- differentiation -----------------------------------------------------------------------------
    def gradient(
        self,
        target: Any,
        sources: Any,
        output_gradients: Any = None,
        unconnected_gradients: str | UnconnectedGradients = UnconnectedGradients.NONE,
    ) -> Any:
        """d target / d sources, with the structure of ``sources`` (a tensor, a list/tuple or a dict).

        Args:
            target: a tensor, or a list/tuple/dict of them (their gradients are added).
            sources: a tensor, or a (nested) list/tuple/dict of them.
            output_gradients: weights for a non-scalar target (default: ones, so the target is summed).
            unconnected_gradients: ``"none"`` (default, as TensorFlow) or ``"zero"`` for sources the
                target does not depend on.

        Returns:
            Gradients shaped like their sources, in the structure of ``sources``; ``None`` for
            unconnected sources unless ``unconnected_gradients="zero"``.

        Raises:
            TapeError: a second call on a non-persistent tape, or a bad argument.

        >>> import gradcli
        >>> x = gradcli.Variable(3.0)
        >>> with gradcli.Tape() as tape:
        ...     y = x**2
        >>> float(tape.gradient(y, x))
        6.0
        """
        unconnected = _unconnected(unconnected_gradients)
        targets = _tensors(target, "target")
        seeds = _seeds(targets, output_gradients)
        self._claim()
        with self._sweep():
            grads = self._backprop(targets, seeds)
        return _restructure(sources, lambda s: self._pick(grads, s, unconnected))

    def jacobian(
        self,
        target: Tensor,
        sources: Any,
        unconnected_gradients: str | UnconnectedGradients = UnconnectedGradients.NONE,
    ) -> Any:
        """The Jacobian of every entry of ``target``: shape ``target.shape + source.shape`` per source.

        One reverse sweep per entry of ``target``; the result is assembled with tensor operations, so
        an outer tape can differentiate it again (a Hessian as the Jacobian of a gradient).

        >>> import gradcli, numpy as np
        >>> x = gradcli.constant(np.array([1.0, 2.0]))
        >>> with gradcli.Tape() as t:
        ...     t.watch(x)
        ...     y = x * x
        >>> t.jacobian(y, x).numpy().tolist()
        [[2.0, 0.0], [0.0, 4.0]]
        """
        unconnected = _unconnected(unconnected_gradients)
        if not isinstance(target, Tensor):
            raise TapeError(f"target must be a gradcli tensor, got {type(target).__name__}")
        self._claim()
        tshape = target.shape
        size = int(np.prod(tshape, dtype=np.int64))
        with self._sweep():
            rows = []
            for i in range(size):
                seed = np.zeros(size, dtype=np.float64)
                seed[i] = 1.0
                rows.append(self._backprop([target], [Tensor(seed.reshape(tshape))]))

            def assemble(src: Any) -> Tensor | None:
                picked = [self._pick(g, src, UnconnectedGradients.NONE) for g in rows]
                if tshape == () and picked[0] is not None:
                    return picked[0]
                jac = None
                for i, p in enumerate(picked):
                    if p is None:
                        continue
                    mask = np.zeros(size, dtype=np.float64)
                    mask[i] = 1.0
                    term = Tensor(mask.reshape(tshape + (1,) * p.value.ndim)) * p
                    jac = term if jac is None else jac + term
                if jac is None:
                    return _zeros(tshape + src.shape, src) if unconnected is UnconnectedGradients.ZERO else None
                if jac.shape != tshape + src.shape:
                    jac = T.broadcast_to(jac, shape=tshape + src.shape)
                return jac

            return _restructure(sources, assemble)

    def _claim(self) -> None:
        if self._used and not self.persistent:
            raise TapeError(
                "a non-persistent Tape can compute gradients only once; use gradcli.Tape(persistent=True)"
            )
        self._used = True

    def _sweep(self) -> AbstractContextManager[None]:
        # A persistent tape inside its `with` block records its own sweep (so one persistent tape
        # yields dx and then dxx); a non-persistent one cannot be asked again, so it does not.
        return nullcontext() if self.persistent else _Pause(self)

    def _pick(self, grads: dict[int, Tensor], source: Any, unconnected: UnconnectedGradients) -> Tensor | None:
        if not isinstance(source, Tensor):
            raise TapeError(f"sources must be gradcli tensors, got {type(source).__name__}")
        g = grads.get(source.uid) if self._tracks(source) else None
        if g is None:
            return _zeros(source.shape, source) if unconnected is UnconnectedGradients.ZERO else None
        if g.shape != source.shape:
            g = T.broadcast_to(g, shape=source.shape)
        return g

    def _backprop(self, targets: list[Tensor], seeds: list[Tensor]) -> dict[int, Tensor]:
        """One reverse sweep: the cotangent of every tensor the recorded operations reach."""
        grads: dict[int, Tensor] = {}
        for t, s in zip(targets, seeds):
            prev = grads.get(t.uid)
            grads[t.uid] = s if prev is None else prev + s
        for op in reversed(list(self._ops)):
            g = grads.get(op.output.uid)
            if g is None:
                continue
            cts = op.prim.vjp(T, g, op.output, *op.inputs, **op.params)
            for inp, ct in zip(op.inputs, cts):
                if ct is None or not self._tracks(inp):
                    continue
                if ct.shape != inp.shape:
                    ct = T.sum_to(ct, shape=inp.shape)
                prev = grads.get(inp.uid)
                grads[inp.uid] = ct if prev is None else prev + ct
        return grads


#: tf.GradientTape's name, so that TensorFlow code ports by replacing ``tf`` with ``gradcli``.
GradientTape = Tape


def _unconnected(value: Any) -> UnconnectedGradients:
    try:
        return UnconnectedGradients(str(getattr(value, "value", value)).lower())
    except ValueError:
        raise TapeError(f"unconnected_gradients must be 'none' or 'zero', got {value!r}") from None


def _tensors(target: Any, what: str) -> list[Tensor]:
    flat = list(_flatten(target))
    for t in flat:
        if not isinstance(t, Tensor):
            raise TapeError(f"{what} must be a gradcli tensor (or a list/dict of them), got {type(t).__name__}")
    if not flat:
        raise TapeError(f"{what} is empty")
    return flat


def _seeds(targets: list[Tensor], output_gradients: Any) -> list[Tensor]:
    if output_gradients is None:
        return [_full(t.shape, t, 1) for t in targets]
    given = list(_flatten(output_gradients))
    if len(given) != len(targets):
        raise TapeError(f"output_gradients has {len(given)} entries for {len(targets)} targets")
    seeds = []
    for t, s in zip(targets, given):
        s = s if isinstance(s, Tensor) else Tensor(s)
        if s.shape != t.shape:
            raise TapeError(f"output_gradients of shape {s.shape} for a target of shape {t.shape}")
        seeds.append(s)
    return seeds


def _full(shape: tuple[int, ...], like: Tensor, value: int) -> Tensor:
    """A constant tensor of ``value`` in ``like``'s number type (float64, or mpf objects)."""
    if like.dtype == object:
        out = np.empty(shape, dtype=object)
        out.fill(mpmath.mpf(value))
        return Tensor(out)
    return Tensor(np.full(shape, float(value)))


def _zeros(shape: tuple[int, ...], like: Tensor) -> Tensor:
    return _full(shape, like, 0)


def _flatten(x: Any) -> Iterator[Any]:
    if isinstance(x, dict):
        for v in x.values():
            yield from _flatten(v)
    elif isinstance(x, (list, tuple)):
        for v in x:
            yield from _flatten(v)
    else:
        yield x


def _restructure(sources: Any, fn: Any) -> Any:
    if isinstance(sources, dict):
        return {k: _restructure(v, fn) for k, v in sources.items()}
    if isinstance(sources, (list, tuple)):
        items = [_restructure(v, fn) for v in sources]
        return type(sources)(*items) if hasattr(sources, "_fields") else type(sources)(items)
    return fn(sources)


class _Pause:
    """Suspend one tape's recording for a block (restoring what it was)."""

    def __init__(self, tape: Tape) -> None:
        self.tape = tape
        self.was = False

    def __enter__(self) -> None:
        self.was = self.tape._recording
        self.tape._recording = False

    def __exit__(self, *exc: Any) -> None:
        self.tape._recording = self.was
