// lazygeom CPU kernels: SIMD vector type and vector math (GCC/Clang vector extensions).
//
// One `vec` holds W consecutive j-lanes of a formula component. Every op of the IR maps to an
// expression on vecs (see render.py). exp and log are our own inlined polynomial versions:
// libm's scalar calls would cap throughput far below the FMA peak. They keep IEEE special values
// (inf, -inf, nan) because LogSumExp and min reductions rely on them: do not build with
// -ffinite-math-only.
#pragma once
#include <cstdint>
#include <type_traits>
#include <utility>

// LG_DOUBLE=1 selects double lanes (the branches below are preprocessed, not `if constexpr`:
// in a non-template function both branches of `if constexpr` must compile).
#if LG_DOUBLE
#define LG_SCALAR double
#else
#define LG_SCALAR float
#endif
#ifndef LG_VBYTES
#define LG_VBYTES 32
#endif

// Everything is forced inline: a 64-byte vector returned from an out-of-line function goes
// through memory on AVX2 machines, which costs more than the arithmetic.
#define LG_INLINE static inline __attribute__((always_inline))

typedef LG_SCALAR scalar;
constexpr int W = LG_VBYTES / sizeof(scalar);
typedef scalar vec __attribute__((vector_size(LG_VBYTES)));
typedef typename std::conditional<sizeof(scalar) == 4, int32_t, int64_t>::type iscalar;
typedef iscalar ivec __attribute__((vector_size(LG_VBYTES)));

static const scalar LG_INF = (scalar)__builtin_inf();
static const scalar LG_NAN = (scalar)__builtin_nan("");

// The scalar math of the kernels, through the compiler's builtins (libm calls, or one instruction
// for sqrt / floor / nearbyint): <cmath> alone costs about 0.2 s of every kernel's compilation,
// half of it. Overloaded for float and double like std::.
namespace lg {
#define LG_MATH1(name)                                                      \
  LG_INLINE float name(float x) { return __builtin_##name##f(x); }         \
  LG_INLINE double name(double x) { return __builtin_##name(x); }
LG_MATH1(exp) LG_MATH1(log) LG_MATH1(log1p) LG_MATH1(sqrt) LG_MATH1(floor) LG_MATH1(nearbyint)
LG_MATH1(sin) LG_MATH1(cos) LG_MATH1(tanh) LG_MATH1(asin) LG_MATH1(acos) LG_MATH1(atan)
#undef LG_MATH1
LG_INLINE float atan2(float y, float x) { return __builtin_atan2f(y, x); }
LG_INLINE double atan2(double y, double x) { return __builtin_atan2(y, x); }
}  // namespace lg

// a vector of W equal entries, written as such so that it compiles to one broadcast (`vec{} + s`
// keeps an add, +0.0 being no identity for -0.0; a lane loop becomes a chain of inserts)
template <std::size_t... I> LG_INLINE vec bc_(scalar s, std::index_sequence<I...>) { return vec{((void)I, s)...}; }
LG_INLINE vec bc(scalar s) { return bc_(s, std::make_index_sequence<W>{}); }
LG_INLINE ivec ibc(iscalar s) { return ivec{} + s; }
LG_INLINE vec vload(const scalar* p) { vec v; __builtin_memcpy(&v, p, sizeof(vec)); return v; }
LG_INLINE vec vsel(ivec m, vec a, vec b) { return m ? a : b; }
LG_INLINE vec as_vec(ivec i) { vec v; __builtin_memcpy(&v, &i, sizeof(vec)); return v; }
LG_INLINE ivec as_ivec(vec v) { ivec i; __builtin_memcpy(&i, &v, sizeof(vec)); return i; }

template <class F> LG_INLINE vec vmap(vec a, F f) {
  vec r;
  for (int l = 0; l < W; ++l) r[l] = f(a[l]);
  return r;
}
template <class F> LG_INLINE vec vmap2(vec a, vec b, F f) {
  vec r;
  for (int l = 0; l < W; ++l) r[l] = f(a[l], b[l]);
  return r;
}

// v_min(a, b) = b < a ? b : a (a nan in `a` propagates). With AVX this is one vminps/vmaxps
// (which return their second operand when unordered); the generic form costs a compare + blend.
// The compiler builtins, not <immintrin.h>: that header alone takes 0.5 s to parse, the whole
// budget of a cold kernel compile.
#if defined(__AVX__) && LG_VBYTES == 32
#if LG_DOUBLE
LG_INLINE vec v_min(vec a, vec b) { return __builtin_ia32_minpd256(b, a); }
LG_INLINE vec v_max(vec a, vec b) { return __builtin_ia32_maxpd256(b, a); }
#else
LG_INLINE vec v_min(vec a, vec b) { return __builtin_ia32_minps256(b, a); }
LG_INLINE vec v_max(vec a, vec b) { return __builtin_ia32_maxps256(b, a); }
#endif
#else
LG_INLINE vec v_min(vec a, vec b) { return vsel(b < a, b, a); }
LG_INLINE vec v_max(vec a, vec b) { return vsel(b > a, b, a); }
#endif
// lane_bits(m): bit l set when lane l of the comparison mask m is (one vmovmskps / vmovmskpd with
// AVX; a lane loop compiles to a chain of extracts, which in kNN's threshold test cost as much as
// the products)
#if defined(__AVX__) && LG_VBYTES == 32
#if LG_DOUBLE
LG_INLINE unsigned lane_bits(ivec m) { return (unsigned)__builtin_ia32_movmskpd256(as_vec(m)); }
#else
LG_INLINE unsigned lane_bits(ivec m) { return (unsigned)__builtin_ia32_movmskps256(as_vec(m)); }
#endif
#else
LG_INLINE unsigned lane_bits(ivec m) {
  unsigned a = 0;
  for (int l = 0; l < W; ++l) a |= (m[l] != 0 ? 1u : 0u) << l;
  return a;
}
#endif
LG_INLINE scalar hmax(vec a) {
  scalar m = a[0];
  for (int l = 1; l < W; ++l) m = a[l] > m ? a[l] : m;
  return m;
}
LG_INLINE double hsum(vec a) {
  double s = 0;
  for (int l = 0; l < W; ++l) s += (double)a[l];
  return s;
}
LG_INLINE vec v_abs(vec a) { return vsel(a < 0, -a, a); }
LG_INLINE vec v_sign(vec a) { return vsel(a > 0, bc(1), vsel(a < 0, bc(-1), bc(0))); }
LG_INLINE vec v_step(vec a) { return vsel(a >= 0, bc(1), bc(0)); }
LG_INLINE vec v_relu(vec a) { return vsel(a > 0, a, bc(0)); }
LG_INLINE vec v_sqrt(vec a) { return vmap(a, [](scalar x) { return lg::sqrt(x); }); }
LG_INLINE vec v_floor(vec a) { return vmap(a, [](scalar x) { return lg::floor(x); }); }
LG_INLINE vec v_round(vec a) { return vmap(a, [](scalar x) { return lg::nearbyint(x); }); }
LG_INLINE vec v_sin(vec a) { return vmap(a, [](scalar x) { return lg::sin(x); }); }
LG_INLINE vec v_cos(vec a) { return vmap(a, [](scalar x) { return lg::cos(x); }); }
LG_INLINE vec v_tanh(vec a) { return vmap(a, [](scalar x) { return lg::tanh(x); }); }
LG_INLINE vec v_asin(vec a) { return vmap(a, [](scalar x) { return lg::asin(x); }); }
LG_INLINE vec v_acos(vec a) { return vmap(a, [](scalar x) { return lg::acos(x); }); }
LG_INLINE vec v_atan(vec a) { return vmap(a, [](scalar x) { return lg::atan(x); }); }
LG_INLINE vec v_log1p(vec a) { return vmap(a, [](scalar x) { return lg::log1p(x); }); }
LG_INLINE vec v_atan2(vec y, vec x) { return vmap2(y, x, [](scalar a, scalar b) { return lg::atan2(a, b); }); }

// exp: x = n ln2 + r with |r| <= ln2/2, exp(r) by a polynomial, 2^n through the exponent bits.
// exp_reduced computes it for an argument already clamped into the range where the exponent bits
// are valid (float: [-88, 88.7], double: [-709, 709]); v_exp and v_exp_nonpos clamp and treat the
// special values. At the lower clamp n is the exponent field's -bias (float -127, double -1023),
// whose 2^n bits are those of +0: exp_reduced returns exactly 0 there, so arguments below the
// clamp (and -inf) give 0 without a select.
LG_INLINE vec exp_reduced(vec xc) {
#if !LG_DOUBLE
  // t holds n in its low mantissa bits (round to nearest via 1.5 * 2^23), so (bits(t) + 127) << 23
  // is 2^n directly (the magic number's bits shift out).
  const vec t = xc * 1.44269504088896341f + 12582912.0f;
  const vec n = t - 12582912.0f;
  const vec r = xc - n * 0.693147180559945f;  // |error| < 2e-7 relative on exp for |x| < 88
  // degree-5 near-minimax polynomial (relative error 1.7e-7 on |r| <= ln2/2, fitted for lazygeom)
  vec p = bc(8.292494504e-03f);
  p = p * r + 4.189792325e-02f;
  p = p * r + 1.666760013e-01f;
  p = p * r + 4.999914960e-01f;
  p = p * r + 9.999997203e-01f;
  p = p * r + 1.0f;
  // nan propagates through the polynomial; above 88.38 the exponent bits overflow to +inf
  // (exp(x) < FLT_MAX up to 88.72: the one approximation here).
  return p * as_vec((as_ivec(t) + 127) << 23);
#else
  const vec t = xc * 1.4426950408889634 + 6755399441055744.0;  // 1.5 * 2^52
  const vec n = t - 6755399441055744.0;
  const vec r = xc - n * 6.93147180369123816490e-01 - n * 1.90821492927058770002e-10;
  vec p = bc(1.0 / 6227020800.0);  // Taylor to degree 13: relative error < 2e-16 on |r| <= ln2/2
  const double inv_fact[] = {1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0,
                             1.0 / 40320.0, 1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0,
                             1.0 / 6.0, 0.5, 1.0, 1.0};
  for (double c : inv_fact) p = p * r + c;
  return p * as_vec((__builtin_convertvector(n, ivec) + 1023) << 52);
#endif
}

#if !LG_DOUBLE
#define LG_EXP_LO -88.0f  // n = round(-88 log2(e)) = -127: 2^n has the bits of +0 (exp(-87.7) ~ 1e-38)
#define LG_EXP_HI 88.7f   // n = 128: 2^n has the bits of +inf
#else
#define LG_EXP_LO -709.0  // n = -1023: the bits of +0
#define LG_EXP_HI 709.0
#endif

LG_INLINE vec v_exp(vec x) {
  const vec out = exp_reduced(v_min(v_max(x, bc(LG_EXP_LO)), bc(LG_EXP_HI)));  // nan propagates
#if !LG_DOUBLE
  return out;  // above 88.38 the exponent bits overflow to +inf
#else
  const vec high = vsel(x > LG_EXP_HI, bc(LG_INF), out);
  return vsel(x != x, x, high);  // the integer conversion of nan is no nan
#endif
}

// exp for arguments x <= 0 (or -inf, nan), as LogSumExp's second pass computes exp(F - max) and
// exp(-|x - y|^2) is: no upper clamp (1 of about 13 vector ops; double also skips the +inf select).
LG_INLINE vec v_exp_nonpos(vec x) {
  const vec out = exp_reduced(v_max(x, bc(LG_EXP_LO)));  // nan propagates (v_max returns its first operand)
#if !LG_DOUBLE
  return out;
#else
  return vsel(x != x, x, out);
#endif
}

// log: x = m 2^e with m in [sqrt(1/2), sqrt(2)), log(m) by a polynomial (float); libm for double.
LG_INLINE vec v_log(vec x) {
#if !LG_DOUBLE
  {
    ivec i = as_ivec(x);
    ivec e = ((i >> 23) & 0xff) - 126;
    vec m = as_vec((i & 0x7fffff) | 0x3f000000);  // in [0.5, 1)
    ivec small = m < 0.707106781186547524f;
    vec ef = __builtin_convertvector(e, vec) - vsel(small, bc(1), bc(0));
    vec f = vsel(small, m + m, m) - 1.0f;
    vec z = f * f;
    vec y = bc(7.0376836292E-2f);
    y = y * f - 1.1514610310E-1f;
    y = y * f + 1.1676998740E-1f;
    y = y * f - 1.2420140846E-1f;
    y = y * f + 1.4249322787E-1f;
    y = y * f - 1.6668057665E-1f;
    y = y * f + 2.0000714765E-1f;
    y = y * f - 2.4999993993E-1f;
    y = y * f + 3.3333331174E-1f;
    y = y * f * z;
    y = y - ef * 2.12194440e-4f - 0.5f * z;
    vec out = f + y + ef * 0.693359375f;
    // special values, and subnormals (rare: computed exactly through libm)
    out = vsel(x < __FLT_MIN__, vmap(x, [](float v) { return lg::log(v); }), out);
    out = vsel(x == LG_INF, bc(LG_INF), out);
    return vsel(x != x, x, out);
  }
#else
  return vmap(x, [](double v) { return lg::log(v); });
#endif
}

LG_INLINE vec v_xlogx(vec a) { return vsel(a == 0, bc(0), a * v_log(a)); }
LG_INLINE vec v_sinxdivx(vec a) {
  vec safe = vsel(a == 0, bc(1), a);
  return vsel(a == 0, bc(1), v_sin(a) / safe);
}
LG_INLINE vec v_powi(vec a, int k) {
  vec r = bc(1), b = a;
  for (int n = k < 0 ? -k : k; n; n >>= 1, b = b * b)
    if (n & 1) r = r * b;
  return k < 0 ? bc(1) / r : r;
}
// index (as a float) of the first maximal / minimal entry of n components
LG_INLINE vec v_argext(const vec* c, int n, bool maximum) {
  vec best = c[0], idx = bc(0);
  for (int k = 1; k < n; ++k) {
    ivec m = maximum ? (c[k] > best) : (c[k] < best);
    best = vsel(m, c[k], best);
    idx = vsel(m, bc((scalar)k), idx);
  }
  return idx;
}
