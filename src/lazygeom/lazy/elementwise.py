"""The elementwise math methods of :class:`lazygeom.LazyTensor` (``exp``, ``sqrt``, ``clamp``...).

Each function here is a method of LazyTensor, bound in the class body (``exp = elementwise.exp``):
the class stays one class, with no mixin, and its module short. Each one adds a node to the
formula and runs nothing; the result has the class of ``self`` (torch or NumPy front end). Operands
(:data:`Operand`) are LazyTensors, Python numbers or arrays of the front end (a 1D array is a
parameter vector); scalars broadcast against vectors.

This module does not import :mod:`.lazytensor` at run time.
"""

from __future__ import annotations

from ..formula import composites as C
from ._types import L, Operand


def exp(self: L) -> L:
    """Elementwise exponential."""
    return self._combine("exp")


def log(self: L) -> L:
    """Elementwise natural logarithm."""
    return self._combine("log")


def sqrt(self: L) -> L:
    """Elementwise square root."""
    return self._combine("sqrt")


def rsqrt(self: L) -> L:
    """Elementwise inverse square root ``1 / sqrt(x)`` (0 where x = 0, as pykeops)."""
    return self._combine("rsqrt")


def abs(self: L) -> L:
    """Elementwise absolute value."""
    return self._combine("abs")


def sign(self: L) -> L:
    """Elementwise sign: -1, 0 or 1."""
    return self._combine("sign")


def step(self: L) -> L:
    """Elementwise Heaviside step: 0 for x < 0, 1 for x >= 0."""
    return self._combine("step")


def relu(self: L) -> L:
    """Elementwise ``max(x, 0)``."""
    return self._combine("relu")


def sin(self: L) -> L:
    """Elementwise sine."""
    return self._combine("sin")


def cos(self: L) -> L:
    """Elementwise cosine."""
    return self._combine("cos")


def tanh(self: L) -> L:
    """Elementwise hyperbolic tangent."""
    return self._combine("tanh")


def asin(self: L) -> L:
    """Elementwise arcsine."""
    return self._combine("asin")


def acos(self: L) -> L:
    """Elementwise arccosine."""
    return self._combine("acos")


def atan(self: L) -> L:
    """Elementwise arctangent."""
    return self._combine("atan")


def square(self: L) -> L:
    """Elementwise square."""
    return self._combine("square")


def inv(self: L) -> L:
    """Elementwise inverse ``1 / x``."""
    return self._combine("inv")


def log1p(self: L) -> L:
    """Elementwise ``log(1 + x)``."""
    return self._combine("log1p")


def xlogx(self: L) -> L:
    """Elementwise ``x log x`` (0 at x = 0)."""
    return self._combine("xlogx")


def sinxdivx(self: L) -> L:
    """Elementwise ``sin(x) / x`` (1 at x = 0)."""
    return self._combine("sinxdivx")


def round(self: L) -> L:
    """Elementwise rounding to the nearest integer."""
    return self._combine("round")


def floor(self: L) -> L:
    """Elementwise floor."""
    return self._combine("floor")


def atan2(self: L, x: Operand) -> L:
    """Elementwise ``atan2(self, x)``: the angle of the point ``(x, self)``.

    Args:
        self: the ordinate.
        x: the abscissa.
    """
    return self._combine("atan2", x)


def minimum(self: L, other: Operand) -> L:
    """Elementwise ``min(self, other)``.

    Args:
        self: the first operand.
        other: the second operand.
    """
    return self._combine("min2", other)


def maximum(self: L, other: Operand) -> L:
    """Elementwise ``max(self, other)``.

    Args:
        self: the first operand.
        other: the second operand.
    """
    return self._combine("max2", other)


def ifelse(self: L, a: Operand, b: Operand) -> L:
    """``a if self >= 0 else b``, elementwise.

    Args:
        self: the condition.
        a: the value where self >= 0.
        b: the value where self < 0.
    """
    return self._combine("ifelse", a, b)


def clamp(self: L, a: Operand, b: Operand) -> L:
    """``min(max(self, a), b)``, elementwise.

    Args:
        self: the values.
        a: the lower bound.
        b: the upper bound.
    """
    return self._combine("clamp", a, b, build=C.clamp)


def clampint(self: L, a: int, b: int) -> L:
    """``min(max(self, a), b)`` with integer bounds (pykeops' ``ClampInt``).

    Args:
        self: the values.
        a: the lower bound.
        b: the upper bound.
    """
    return self.clamp(a, b)


def mod(self: L, modulus: Operand, offset: Operand = 0) -> L:
    """``self - modulus * floor((self - offset) / modulus)``, elementwise (pykeops' ``Mod``).

    Args:
        self: the values.
        modulus: the period.
        offset: the start of the interval ``[offset, offset + modulus)`` that the result lies in.
    """
    return self - modulus * ((self - offset) / modulus).floor()


def power(self: L, other: Operand) -> L:
    """``self ** other`` (see :meth:`LazyTensor.__pow__`).

    Args:
        self: the base.
        other: the exponent: a number or a LazyTensor.
    """
    return self ** other


def pow_(F: L, other: Operand) -> L:
    """``F ** other`` (see :meth:`LazyTensor.__pow__`)."""
    if isinstance(other, (int, float)) and not isinstance(other, bool):
        exact = C.sqrt_or_pow(F._node, other)
        if exact is not None:
            return F._combine("pow", build=lambda x: exact)
    return F._combine("powf", other, build=C.powf)
