"""``Tape``: tf.GradientTape semantics over :mod:`gradcli.tensor`.

A tape records the operations whose inputs it watches (directly, or through earlier recorded
operations). ``gradient`` sweeps the record backwards with each primitive's reverse rule; the rules are
Tensor operations, so every tape still recording (outer tapes, and a persistent tape inside its own
``with`` block) records the sweep, and differentiating it again gives higher orders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from . import ops
from .errors import GradcliError
from .tensor import ACTIVE_TAPES, T, Tensor, Variable, constant

__all__ = ["Tape", "TapeError"]


class TapeError(GradcliError, RuntimeError):
    """Misuse of a tape, such as a second ``gradient`` call on a non-persistent tape."""


@dataclass(frozen=True, slots=True)
class _Op:
    prim: ops.Primitive
    inputs: tuple[Tensor, ...]
    output: Tensor
    params: dict[str, Any]


class Tape:
    """Record operations on watched tensors and differentiate them, as tf.GradientTape.

    Args:
        persistent: allow several ``gradient``/``jacobian`` calls.
        watch_accessed_variables: watch every :class:`~gradcli.Variable` an operation reads.

    >>> import gradcli
    >>> x = gradcli.constant(3.0)
    >>> with gradcli.Tape() as g:
    ...     g.watch(x)
    ...     with gradcli.Tape() as gg:
    ...         gg.watch(x)
    ...         y = x * x * x
    ...     dy_dx = gg.gradient(y, x)
    >>> float(dy_dx), float(g.gradient(dy_dx, x))
    (27.0, 18.0)
    """

    def __init__(self, persistent: bool = False, watch_accessed_variables: bool = True) -> None:
        self.persistent = persistent
        self.watch_accessed_variables = watch_accessed_variables
        self._ops: list[_Op] = []
        self._watched: set[int] = set()
        self._recording = False
        self._used = False
        self._token: Any = None

    # -- context -------------------------------------------------------------------------------------
    def __enter__(self) -> Tape:
        self._token = ACTIVE_TAPES.set(ACTIVE_TAPES.get() + (self,))
        self._recording = True
        return self

    def __exit__(self, *exc: Any) -> None:
        self._recording = False
        ACTIVE_TAPES.set(tuple(t for t in ACTIVE_TAPES.get() if t is not self))

    # -- recording -----------------------------------------------------------------------------------
    def watch(self, tensor: Any) -> None:
        """Watch a tensor (or a list/tuple/dict of them)."""
        for t in _flatten(tensor):
            if not isinstance(t, Tensor):
                raise TapeError(f"can only watch gradcli tensors, got {type(t).__name__}")
            self._watched.add(t.uid)

    def watched_variables(self) -> tuple[Tensor, ...]:
        """The tensors this tape watches that appear in its record, in order of first use."""
        seen: dict[int, Tensor] = {}
        for op in self._ops:
            for t in op.inputs:
                if t.uid in self._watched and t.uid not in seen:
                    seen[t.uid] = t
        return tuple(seen.values())

    def _record(self, prim: ops.Primitive, inputs: tuple[Tensor, ...], out: Tensor, params: dict[str, Any]) -> None:
        if not self._recording:
            return
        if self.watch_accessed_variables:
            for t in inputs:
                if isinstance(t, Variable):
                    self._watched.add(t.uid)
        if any(t.uid in self._watched for t in inputs):
            self._ops.append(_Op(prim, inputs, out, params))
            self._watched.add(out.uid)

    def stop_recording(self) -> _Pause:
        """A context manager in which this tape records nothing."""
        return _Pause(self)

    def reset(self) -> None:
        """Forget everything recorded and watched (as tf.GradientTape.reset)."""
        self._ops.clear()
        self._watched.clear()
        self._used = False

    # -- differentiation -----------------------------------------------------------------------------
    def gradient(
        self,
        target: Any,
        sources: Any,
        output_gradients: Any = None,
        unconnected_gradients: str = "none",
    ) -> Any:
        """d target / d sources, with the structure of ``sources`` (a tensor, a list/tuple or a dict).

        A non-scalar target is summed (as in TensorFlow); ``output_gradients`` weights it instead.
        Sources the target does not depend on give ``None``, or zeros with
        ``unconnected_gradients="zero"``.

        Raises:
            TapeError: a second call on a non-persistent tape, or a bad argument.
        """
        self._claim()
        if not isinstance(target, Tensor):
            raise TapeError(f"target must be a gradcli tensor, got {type(target).__name__}")
        seed = Tensor(np.ones_like(target.value)) if output_gradients is None else output_gradients
        grads = self._backprop(target, seed)
        return _restructure(sources, lambda s: _pick(grads, s, unconnected_gradients))

    def jacobian(self, target: Tensor, sources: Any, unconnected_gradients: str = "none") -> Any:
        """The Jacobian: shape ``target.shape + source.shape`` for each source."""
        self._claim()
        flat_n = int(np.prod(target.shape)) if target.shape else 1
        rows: list[dict[int, Tensor]] = []
        for i in range(flat_n):
            seed = np.zeros(flat_n, dtype=target.value.dtype)
            seed[i] = 1
            rows.append(self._backprop(target, Tensor(seed.reshape(target.shape))))

        def stack(src: Tensor) -> Tensor | None:
            picked = [_pick(g, src, unconnected_gradients) for g in rows]
            if all(p is None for p in picked):
                return None
            vals = [np.zeros(src.shape) if p is None else np.broadcast_to(p.value, src.shape) for p in picked]
            return Tensor(np.stack(vals).reshape(target.shape + src.shape))

        return _restructure(sources, stack)

    def _claim(self) -> None:
        if self._used and not self.persistent:
            raise TapeError(
                "a non-persistent Tape can compute gradients only once; use Tape(persistent=True)"
            )
        self._used = True

    def _backprop(self, target: Tensor, seed: Any) -> dict[int, Tensor]:
        ops_snapshot = list(self._ops)
        grads: dict[int, Tensor] = {target.uid: constant(seed)}
        # A non-persistent tape does not record its own sweep; a persistent one inside its `with`
        # block does (so one persistent tape yields dx and then dxx).
        with _Pause(self) if not self.persistent else _Nothing():
            for op in reversed(ops_snapshot):
                g = grads.get(op.output.uid)
                if g is None:
                    continue
                cts = op.prim.vjp(T, g, op.output, *op.inputs, **op.params)
                for inp, ct in zip(op.inputs, cts):
                    if ct is None:
                        continue
                    if ct.shape != inp.shape:
                        ct = T.sum_to(ct, shape=inp.shape)
                    prev = grads.get(inp.uid)
                    grads[inp.uid] = ct if prev is None else prev + ct
        return grads


def _pick(grads: dict[int, Tensor], source: Any, unconnected: str) -> Tensor | None:
    if not isinstance(source, Tensor):
        raise TapeError(f"sources must be gradcli tensors, got {type(source).__name__}")
    g = grads.get(source.uid)
    if g is None and unconnected == "zero":
        return Tensor(np.zeros_like(source.value))
    if unconnected not in ("none", "zero"):
        raise TapeError(f"unconnected_gradients must be 'none' or 'zero', got {unconnected!r}")
    return g


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
        return type(sources)(_restructure(v, fn) for v in sources)
    return fn(sources)


class _Pause:
    def __init__(self, tape: Tape) -> None:
        self.tape = tape
        self.was = False

    def __enter__(self) -> None:
        self.was = self.tape._recording
        self.tape._recording = False

    def __exit__(self, *exc: Any) -> None:
        self.tape._recording = self.was


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None
