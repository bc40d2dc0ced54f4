"""gradcli: derivative values of any order, checked against sympy.

>>> import gradcli
>>> gradcli.derivative("2*x**3+5*y**2", wrt="x,x", at={"x": 5, "y": 2})
60.0

The package imports lazily (PEP 562): ``import gradcli`` loads nothing heavy, and each public name
imports its module (and with it numpy and sympy) on first use. So ``gradcli --help``, ``--version``
and shell completion, which only need the CLI's options, start in the time of ``import click``.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> (module, attribute). The elementwise functions (``gradcli.sin``, ...) are not listed:
#: each public primitive of the registry (``ops.REGISTRY``) is ``tensor.T``'s function of that name,
#: recorded by the active tapes, so a function added to the registry is a ``gradcli`` function too.
_LAZY: dict[str, tuple[str, str]] = {
    **{name: ("api", name) for name in ("derivative", "gradient", "hessian", "jacobian", "taylor", "compile",
                                        "Compiled")},
    "CheckResult": ("check", "CheckResult"),
    **{name: ("errors", name) for name in ("CheckMismatch", "GradcliError", "InputError", "NotFinite", "IOFault",
                                           "Uncertified")},
    **{name: ("tape", name) for name in ("GradientTape", "Tape", "TapeError", "UnconnectedGradients")},
    **{name: ("tensor", name) for name in ("Tensor", "Variable", "constant", "maximum", "minimum", "reduce_sum",
                                           "sqrt", "square")},
}


def _elementwise() -> list[str]:
    """The registry's public primitives, by name (imports the registry: numpy and sympy)."""
    from .ops import REGISTRY

    return [name for name, prim in REGISTRY.items() if prim.public]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access, and keep the value (later lookups are direct).
    ``__all__`` is built on first use too (``from gradcli import *``): it names the registry's functions."""
    if name == "__all__":
        value: Any = [*_LAZY, *_elementwise(), "__version__"]
    elif name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attr)
    elif not name.startswith("_") and name in _elementwise():
        value = getattr(importlib.import_module(".tensor", __name__).T, name)
    else:
        raise AttributeError(f"module 'gradcli' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(globals().get("__all__") or __getattr__("__all__")))


class _Package(types.ModuleType):
    """The package's module type: importing the submodule ``gradcli.taylor`` (as the engines do) must
    not replace the function ``gradcli.taylor`` (importlib sets a submodule as its parent's attribute)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

if TYPE_CHECKING:  # static tools see the eager imports
    from .api import derivative, gradient, hessian, jacobian, taylor  # noqa: F401
    from .check import CheckResult  # noqa: F401
    from .errors import CheckMismatch, GradcliError, InputError, IOFault, NotFinite  # noqa: F401
    from .tape import GradientTape, Tape, TapeError, UnconnectedGradients  # noqa: F401
    from .tensor import Tensor, Variable, constant, maximum, minimum, reduce_sum, sqrt, square  # noqa: F401
