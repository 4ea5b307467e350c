"""Vector math for the generated Triton kernels, from operations the interpreter also runs.

``triton.language`` offers exp, log, sqrt, sin, cos and floor everywhere; tanh, atan, asin, log1p
or rint exist only as libdevice calls, which the interpreter (``TRITON_INTERPRET=1``, how CI
runs this backend) does not support. The functions here are written with the portable
operations only, so that the code tested on a CPU is the code that runs on the GPU. Each works
for float32 and float64 tiles (a compile-time branch on the dtype picks the polynomial degree).

This file is *source*: :mod:`.kernel` pastes it into every generated module (under the
``@triton.jit`` decorator of that module's mode, interpreted or compiled), so it must stay
self-contained: no imports beyond ``triton`` and ``triton.language as tl``. Parameters carry no
type annotations: Triton reads those of a jit function as instructions (``tl.constexpr``).

Accuracy (float64 / float32, relative, measured against torch in the tests): atan, atan2, asin,
acos, tanh, log1p within a few ulps; round is exact (round half to even, as torch).
"""

import triton
import triton.language as tl


@triton.jit
def lg_round(x):
    """Round half to even (as torch), elementwise.

    |x| + 2^p rounds at the units in the current rounding mode (to nearest even), where p is the
    mantissa width; beyond 2^p every float is already an integer.

    Args:
        x: a tile.

    Returns:
        A tile of the same shape and dtype.
    """
    if x.dtype == tl.float64:
        big = 4503599627370496.0  # 2^52
    else:
        big = 8388608.0  # 2^23
    a = tl.abs(x)
    r = (a + big) - big
    r = tl.where(x < 0, -r, r)
    return tl.where(a < big, r, x)


@triton.jit
def lg_sign(x):
    """The sign of x, elementwise: -1, 0 or 1, and 0 for nan (as torch.sign).

    Args:
        x: a tile.

    Returns:
        A tile of the same shape and dtype.
    """
    return (x > 0).to(x.dtype) - (x < 0).to(x.dtype)


@triton.jit
def _atan_core(z):
    """atan(z) for |z| <= tan(pi/8): z P(z^2).

    P fitted for lazygeom (mpmath.chebyfit of atan(sqrt(u))/sqrt(u) on [0, tan(pi/8)^2]): 1 ulp in
    float64 (degree 11), 0.7 ulp in float32 (degree 5).
    """
    u = z * z
    if z.dtype == tl.float64:
        p = u * -0.017805397205419446 + 0.03796525745386593
        p = p * u - 0.05035102456601552
        p = p * u + 0.05846878297330872
        p = p * u - 0.06662951813629191
        p = p * u + 0.07692045330902225
        p = p * u - 0.09090896809064027
        p = p * u + 0.11111110744919658
        p = p * u - 0.14285714279250245
        p = p * u + 0.19999999999940893
        p = p * u - 0.3333333333333312
        p = p * u + 1.0
    else:
        p = u * -0.06026305227658459 + 0.10569828806414448
        p = p * u - 0.14239532669648974
        p = p * u + 0.19998183041083206
        p = p * u - 0.33333306893048514
        p = p * u + 0.9999999993712282
    return z * p


@triton.jit
def _atan_unit(t):
    """atan(t) for t in [0, 1] (or nan): above tan(pi/8), atan(t) = pi/4 + atan((t-1)/(t+1))."""
    red = t > 0.41421356237309503
    z = tl.where(red, (t - 1.0) / (t + 1.0), t)
    r = _atan_core(z)
    return tl.where(red, r + 0.7853981633974483, r)


@triton.jit
def lg_atan(x):
    """The arc tangent, elementwise.

    Args:
        x: a tile.

    Returns:
        A tile of the same shape and dtype.
    """
    a = tl.abs(x)
    inv = a > 1.0
    # atan(a) = pi/2 - atan(1/a) for a > 1 (1/inf = 0 gives pi/2 at infinity)
    r = _atan_unit(tl.where(inv, 1.0 / tl.where(inv, a, 1.0), a))
    r = tl.where(inv, 1.5707963267948966 - r, r)
    return tl.where(x < 0, -r, r)


@triton.jit
def lg_atan2(y, x):
    """The angle of the point (x, y), elementwise, with torch.atan2's signed zeros and infinities.

    Args:
        y: a tile.
        x: a tile of the same shape and dtype.

    Returns:
        A tile of the same shape and dtype.
    """
    ax = tl.abs(x)
    ay = tl.abs(y)
    mx = tl.where(ay > ax, ay, ax)
    mn = tl.where(ay > ax, ax, ay)
    # equal magnitudes (infinities included) give pi/4 exactly; 0/0 is fixed below
    t = tl.where(mx == mn, 1.0, mn / tl.where(mx == 0, 1.0, mx))
    r = _atan_unit(t)
    r = tl.where(ay > ax, 1.5707963267948966 - r, r)
    r = tl.where(x < 0, 3.141592653589793 - r, r)
    r = tl.where(mx == 0, tl.where(x < 0, 3.141592653589793, 0.0), r)
    r = tl.where(y < 0, -r, r)
    return tl.where((x != x) | (y != y), x + y, r)


@triton.jit
def lg_asin(x):
    """The arc sine, elementwise (nan outside [-1, 1]).

    Args:
        x: a tile.

    Returns:
        A tile of the same shape and dtype.
    """
    # (1-x)(1+x) is exact near |x| = 1, where 1 - x*x would cancel
    return lg_atan2(x, tl.sqrt((1.0 - x) * (1.0 + x)))


@triton.jit
def lg_acos(x):
    """The arc cosine, elementwise (nan outside [-1, 1]).

    Args:
        x: a tile.

    Returns:
        A tile of the same shape and dtype.
    """
    return lg_atan2(tl.sqrt((1.0 - x) * (1.0 + x)), x)


@triton.jit
def lg_tanh(x):
    """The hyperbolic tangent, elementwise.

    Below |x| = 0.625, sinh by its Taylor series and tanh = s / sqrt(1 + s^2) (no cancellation);
    above, 1 - 2 / (exp(2|x|) + 1), where tanh > 0.55 keeps the relative error of exp.

    Args:
        x: a tile.

    Returns:
        A tile of the same shape and dtype.
    """
    a = tl.abs(x)
    u = x * x
    if x.dtype == tl.float64:
        p = u * 2.8114572543455206e-15 + 7.647163731819816e-13  # 1/17!, 1/15!
        p = p * u + 1.6059043836821613e-10
        p = p * u + 2.505210838544172e-08
        p = p * u + 2.7557319223985893e-06
        p = p * u + 1.984126984126984e-04
        p = p * u + 8.333333333333333e-03
        p = p * u + 0.16666666666666666
        p = p * u + 1.0
    else:
        p = u * 2.505210838544172e-08 + 2.7557319223985893e-06  # 1/11!, 1/9!
        p = p * u + 1.984126984126984e-04
        p = p * u + 8.333333333333333e-03
        p = p * u + 0.16666666666666666
        p = p * u + 1.0
    s = x * p
    small = s / tl.sqrt(1.0 + s * s)
    big = 1.0 - 2.0 / (tl.exp(2.0 * a) + 1.0)
    big = tl.where(x < 0, -big, big)
    return tl.where(a < 0.625, small, big)


@triton.jit
def lg_log1p(x):
    """log(1 + x), elementwise, accurate for small x.

    Below |x| = 1/4, log1p(x) = 2 atanh(s) with s = x / (2 + x), |s| < 1/7, by its series
    (independent of the accuracy of log near 1); above, log(1 + x) loses nothing relative.

    Args:
        x: a tile.

    Returns:
        A tile of the same shape and dtype.
    """
    s = x / (2.0 + x)
    u = s * s
    if x.dtype == tl.float64:
        p = u * 0.047619047619047616 + 0.05263157894736842  # 1/21, 1/19
        p = p * u + 0.058823529411764705
        p = p * u + 0.06666666666666667
        p = p * u + 0.07692307692307693
        p = p * u + 0.09090909090909091
        p = p * u + 0.1111111111111111
        p = p * u + 0.14285714285714285
        p = p * u + 0.2
        p = p * u + 0.3333333333333333
        p = p * u + 1.0
    else:
        p = u * 0.1111111111111111 + 0.14285714285714285  # 1/9, 1/7
        p = p * u + 0.2
        p = p * u + 0.3333333333333333
        p = p * u + 1.0
    small = 2.0 * s * p
    return tl.where(tl.abs(x) < 0.25, small, tl.log(1.0 + x))


@triton.jit
def lg_xlogx(x):
    """The product x log x, elementwise, 0 at 0.

    Args:
        x: a tile.

    Returns:
        A tile of the same shape and dtype.
    """
    return tl.where(x == 0, 0.0, x * tl.log(x))


@triton.jit
def lg_sinxdivx(x):
    """sin(x) / x, elementwise, 1 at 0.

    Args:
        x: a tile.

    Returns:
        A tile of the same shape and dtype.
    """
    return tl.where(x == 0, 1.0, tl.sin(x) / tl.where(x == 0, 1.0, x))
