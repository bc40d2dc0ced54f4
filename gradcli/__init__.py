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

#: public name -> (module, attribute); the elementwise functions are ``tensor.T``'s, recorded by the
#: active tapes (one per user-facing primitive of the registry: tests check that none is missing).
_LAZY: dict[str, tuple[str, str]] = {
    **{name: ("api", name) for name in ("derivative", "gradient", "hessian", "jacobian", "taylor", "compile",
                                        "Compiled")},
    "CheckResult": ("check", "CheckResult"),
    **{name: ("errors", name) for name in ("CheckMismatch", "GradcliError", "InputError", "NotFinite", "IOFault",
                                           "Uncertified")},
    **{name: ("tape", name) for name in ("GradientTape", "Tape", "TapeError", "UnconnectedGradients")},
    **{name: ("tensor", name) for name in ("Tensor", "Variable", "constant", "maximum", "minimum", "reduce_sum",
                                           "sqrt", "square")},
    **{name: ("tensor", f"T.{name}") for name in (
        "abs", "sign", "sin", "cos", "tan", "exp", "log", "asin", "acos", "atan", "atan2",
        "sinh", "cosh", "tanh", "asinh", "acosh", "atanh", "erf", "erfc", "gamma", "loggamma", "erfinv", "lambertw",
        "besselj")},
}

__all__ = [
    "derivative", "gradient", "hessian", "jacobian", "taylor", "compile", "Compiled",
    "Tape", "GradientTape", "TapeError", "UnconnectedGradients", "Tensor", "Variable", "constant",
    "GradcliError", "InputError", "CheckMismatch", "NotFinite", "IOFault", "Uncertified", "CheckResult",
    "abs", "sign", "sin", "cos", "tan", "exp", "log", "sqrt", "square",
    "asin", "acos", "atan", "atan2", "sinh", "cosh", "tanh", "asinh", "acosh", "atanh",
    "erf", "erfc", "gamma", "loggamma", "erfinv", "lambertw", "besselj", "maximum", "minimum", "reduce_sum",
    "__version__",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access, and keep the value (later lookups are direct)."""
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'gradcli' has no attribute {name!r}") from None
    value: Any = importlib.import_module(f".{module}", __name__)
    for part in attr.split("."):
        value = getattr(value, part)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


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
