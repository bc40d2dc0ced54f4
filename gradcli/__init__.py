"""gradcli: derivative values of any order, checked against sympy.

>>> import gradcli
>>> gradcli.derivative("2*x**3+5*y**2", wrt="x,x", at={"x": 5, "y": 2})
60.0
"""

from __future__ import annotations

from .api import derivative, gradient, hessian, jacobian, taylor
from .check import CheckResult
from .errors import CheckMismatch, GradcliError, InputError, NotFinite
from .tape import GradientTape, Tape, TapeError, UnconnectedGradients
from .tensor import T as _T
from .tensor import Tensor, Variable, constant, maximum, minimum, reduce_sum, sqrt, square

__version__ = "0.1.0"

# The elementwise functions, one per user-facing primitive of the registry (tests check that none is
# missing), recorded by the active tapes.
abs = _T.abs  # noqa: A001 - mirrors numpy/tf naming
sign, sin, cos, tan, exp, log = _T.sign, _T.sin, _T.cos, _T.tan, _T.exp, _T.log
asin, acos, atan, atan2 = _T.asin, _T.acos, _T.atan, _T.atan2
sinh, cosh, tanh, asinh, acosh, atanh = _T.sinh, _T.cosh, _T.tanh, _T.asinh, _T.acosh, _T.atanh
erf, erfc, gamma, loggamma = _T.erf, _T.erfc, _T.gamma, _T.loggamma

__all__ = [
    "derivative", "gradient", "hessian", "jacobian", "taylor",
    "Tape", "GradientTape", "TapeError", "UnconnectedGradients", "Tensor", "Variable", "constant",
    "GradcliError", "InputError", "CheckMismatch", "NotFinite", "CheckResult",
    "abs", "sign", "sin", "cos", "tan", "exp", "log", "sqrt", "square",
    "asin", "acos", "atan", "atan2", "sinh", "cosh", "tanh", "asinh", "acosh", "atanh",
    "erf", "erfc", "gamma", "loggamma", "maximum", "minimum", "reduce_sum", "__version__",
]
