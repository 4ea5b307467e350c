// The ceiling program of benchmarks/cpu.py (its docstring and benchmarks/README.md say what it
// measures), compiled and run by benchmarks/cpu_machine.py with lazygeom's lgmath.hpp
// (src/lazygeom/backends/cpu, on the include path): FMA peak, v_exp, division and a fixed exp.
#include "lgmath.hpp"
#include <omp.h>
#include <cstdio>
#include <cstdlib>
#include <vector>

// stops the compiler from hoisting the loop body out of the repetition loop
#define OPAQUE(p) asm volatile("" : "+r"(p) : : "memory")

// GFLOP/s of `acc = acc * a + b` on A independent register accumulators (FMA = 2 flops)
static double fma_rate(int nt, long iters, float a0, float b0) {
  const int A = 12;  // FMA latency 4 x 2 pipes = 8 in flight needed; 12 + a + b fit in 16 ymm
  double sink = 0;
  double t0 = omp_get_wtime();
#pragma omp parallel num_threads(nt) reduction(+ : sink)
  {
    vec acc[A];
    for (int k = 0; k < A; ++k) acc[k] = bc(0.001f * (k + 1 + omp_get_thread_num()));
    vec a = bc(a0), b = bc(b0);
    for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 12
      for (int k = 0; k < A; ++k) acc[k] = acc[k] * a + b;
    }
    for (int k = 0; k < A; ++k)
      for (int l = 0; l < W; ++l) sink += acc[k][l];
  }
  double dt = omp_get_wtime() - t0;
  if (sink == 12345.678) std::printf("#");
  return 2.0 * W * A * (double)iters * nt / dt / 1e9;
}

// A fixed exp (Cephes expf: degree-6 polynomial, two-constant range reduction), kept here so that
// a change of lazygeom's v_exp shows as a change of the ceiling against a constant reference.
static inline __attribute__((always_inline)) vec ref_exp(vec x) {
  vec xc = x < -87.3f ? bc(-87.3f) : x;
  xc = xc > 88.7f ? bc(88.7f) : xc;
  vec t = xc * 1.44269504088896341f + 12582912.0f;
  vec n = t - 12582912.0f;
  vec r = xc - n * 0.693359375f + n * 2.12194440e-4f;
  vec p = bc(1.9875691500E-4f);
  p = p * r + 1.3981999507E-3f;
  p = p * r + 8.3334519073E-3f;
  p = p * r + 4.1665795894E-2f;
  p = p * r + 1.6666665459E-1f;
  p = p * r + 5.0000001201E-1f;
  p = p * (r * r) + r + 1.0f;
  ivec e = (__builtin_convertvector(n, ivec) + 127) << 23;
  vec s;
  __builtin_memcpy(&s, &e, sizeof(vec));
  return x < -87.3f ? bc(0) : p * s;
}

// G evaluations/s of lazygeom's v_exp (kind 0), of a division 1 / x (kind 1) or of ref_exp
// (kind 2) over an L1-resident array, summed into 4 accumulators
static double map_rate(int kind, int nt, long reps) {
  const int L = 2048;  // floats per thread: 8 KiB
  double sink = 0;
  double t0 = omp_get_wtime();
#pragma omp parallel num_threads(nt) reduction(+ : sink)
  {
    std::vector<scalar> buf(L + W);
    for (int k = 0; k < L; ++k) buf[k] = -10.0f * (k % 997) / 997.0f - 0.01f;
    const scalar* x = buf.data();
    vec s0 = bc(0), s1 = bc(0), s2 = bc(0), s3 = bc(0);
    for (long r = 0; r < reps; ++r) {
      OPAQUE(x);
      if (kind == 0) {
        for (int k = 0; k < L; k += 4 * W) {
          s0 += v_exp(vload(x + k));
          s1 += v_exp(vload(x + k + W));
          s2 += v_exp(vload(x + k + 2 * W));
          s3 += v_exp(vload(x + k + 3 * W));
        }
      } else if (kind == 2) {
        for (int k = 0; k < L; k += 4 * W) {
          s0 += ref_exp(vload(x + k));
          s1 += ref_exp(vload(x + k + W));
          s2 += ref_exp(vload(x + k + 2 * W));
          s3 += ref_exp(vload(x + k + 3 * W));
        }
      } else {
        for (int k = 0; k < L; k += 4 * W) {
          s0 += bc(1) / vload(x + k);
          s1 += bc(1) / vload(x + k + W);
          s2 += bc(1) / vload(x + k + 2 * W);
          s3 += bc(1) / vload(x + k + 3 * W);
        }
      }
    }
    vec s = s0 + s1 + s2 + s3;
    for (int l = 0; l < W; ++l) sink += s[l];
  }
  double dt = omp_get_wtime() - t0;
  if (sink == 12345.678) std::printf("#");
  return (double)L * reps * nt / dt / 1e9;
}

// usage: ceil THREADS TRIALS; prints the best trial of each measure
int main(int argc, char** argv) {
  int nt = std::atoi(argv[1]);
  int trials = std::atoi(argv[2]);
  float a0 = argc > 3 ? (float)std::atof(argv[3]) : 0.9999999f;
  double f = 0, e = 0, d = 0, re = 0;
  for (int t = 0; t < trials; ++t) {  // about 5 ms per measure and trial
    double v;
    v = fma_rate(nt, 1000000, a0, 1e-7f); if (v > f) f = v;
    v = map_rate(0, nt, 4000); if (v > e) e = v;
    v = map_rate(1, nt, 8000); if (v > d) d = v;
    v = map_rate(2, nt, 4000); if (v > re) re = v;
  }
  std::printf("{\"threads\": %d, \"lanes\": %d, \"fma_gflops\": %.4f, \"exp_g_per_s\": %.5f, "
              "\"div_g_per_s\": %.5f, \"ref_exp_g_per_s\": %.5f}\n", nt, W, f, e, d, re);
  return 0;
}
